"""Mask statistics computed once and reused: workload_stats + simulate(stats=) give exactly the
results of plain simulate() on every machine and mode, without reading the masks again."""

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from besa_common.masks import pack_keep
from simulator import run
from simulator import workload as wl
from simulator.cost.partition import partition_candidates
from simulator.hardware import load_hardware
from simulator.stats import MaskStats

MACHINES = [("vitcod", {}), ("gpu-h100", {}), ("hbm-4k", {}), ("vitcod", {"index_format": "rle", "rle_bits": 2}), ("vitcod", {"partition": "tau", "tau": 0.3})]
MODES = ["cycle", "nm", "dense", "besa-compat", "corrected"]


def _counted(layers):
    calls = [0]

    def wrap(layer):
        def loader():
            calls[0] += 1
            return layer.loader()

        return dataclasses.replace(layer, loader=loader)

    return [wrap(l) for l in layers], calls


def test_stats_reused_across_machines_equal_fresh_runs():
    layers, calls = _counted(wl.synthetic("96x160*2:skewed=0.5/1.0", 3) + wl.synthetic("64x64:nm=2:4", 1) + wl.synthetic("40x72:sparsity=0.3", 2))
    machines = [load_hardware(name, over) for name, over in MACHINES]
    stats = run.workload_stats(layers, prepare_for=machines)
    assert calls[0] == len(layers)  # each mask read once
    stats = pickle.loads(pickle.dumps(stats))  # what a worker process receives: no mask, no loader
    for hw in machines:
        for mode in MODES:
            fresh = run.simulate(layers, hw, mode, [1, 64])
            reused = run.simulate(layers, hw, mode, [1, 64], stats=stats)
            pd.testing.assert_frame_equal(reused, fresh)


def test_unprepared_statistic_reads_the_mask_through_the_loader():
    layers, calls = _counted(wl.synthetic("64x96*2:skewed=0.5/1.0", 0))
    stats = run.workload_stats(layers)
    assert calls[0] == 2
    hw = load_hardware("vitcod")
    reused = run.simulate(layers, hw, "cycle", [8], stats=stats)
    assert calls[0] > 2  # the partition candidates' row counts came from the masks again
    pd.testing.assert_frame_equal(reused, run.simulate(layers, hw, "cycle", [8]))
    gone = pickle.loads(pickle.dumps(run.workload_stats(layers)))
    with pytest.raises(RuntimeError, match="not prepared"):
        run.simulate(layers, hw, "cycle", [8], stats=gone)


def test_stats_must_match_the_workload():
    layers = wl.synthetic("32x32*2", 0)
    stats = run.workload_stats(layers)
    hw = load_hardware("vitcod")
    from besa_common.errors import UserError

    with pytest.raises(UserError, match="layers for a workload"):
        run.simulate(layers, hw, "cycle", [1], stats=stats[:1])
    with pytest.raises(UserError, match="not 32x32"):
        run.simulate(layers, hw, "cycle", [1], stats=[MaskStats(16, 32, packed=layers[0].load()[:16])] * 2)


@settings(max_examples=150, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))), st.sampled_from(["optimal", "tau"]), st.sampled_from([0.0, 0.3, 0.5, 0.9, 0.99]))
def test_candidates_are_the_references(keep, partition, tau):
    """MaskStats builds the partition candidates from the histogram of the column counts: the same
    (tau, dense set) list as reference.partition_candidates, in the same order."""
    hw = load_hardware("vitcod", {"partition": partition, "tau": tau})
    got = MaskStats(*keep.shape, packed=pack_keep(keep)).candidates(hw)
    want = partition_candidates(keep.sum(0), keep.shape[0], hw)
    assert [t for t, _ in got] == [t for t, _ in want]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want))
