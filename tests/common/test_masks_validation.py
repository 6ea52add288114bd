"""besa_common.masks.validate_masks: the one check every reader of a masks file uses."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from besa_common.masks import FORMAT, VERSION, _popcount, read_masks, read_masks_packed, write_masks


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 5), cols=st.integers(0, 40), seed=st.integers(0, 2**32 - 1))
def test_popcount_matches_unpackbits(rows, cols, seed):
    a = np.random.default_rng(seed).integers(0, 256, (rows, cols), dtype=np.uint8)
    assert _popcount(a) == int(np.unpackbits(a).sum())
    assert _popcount(a[:, ::2]) == int(np.unpackbits(a[:, ::2]).sum())  # non-contiguous input


def test_written_manifest_stores_exact_kept_counts(tmp_path):
    keep = np.zeros((3, 5), bool)
    keep[0, :4] = True
    keep[2, 4] = True  # 5 kept of 15, by hand
    man = write_masks(tmp_path / "m.safetensors", {"a": keep}, {"method": "x"})
    assert man["layers"]["a"] == {"shape": [3, 5], "kept": 5, "density": 5 / 15}
    k, _ = read_masks(tmp_path / "m.safetensors")
    assert (k["a"] == keep).all()


def test_old_file_without_counts_is_checked_by_density(tmp_path):
    """Files written before ``kept`` existed: density within float tolerance is accepted."""
    from safetensors.numpy import save

    keep = np.random.default_rng(0).random((6, 10)) < 0.3
    packed = np.packbits(keep, axis=1, bitorder="little")
    man = {"layers": {"a": {"shape": [6, 10], "density": float(keep.mean())}}}
    (tmp_path / "old.safetensors").write_bytes(save({"a": packed}, metadata={"format": FORMAT, "version": VERSION, "manifest": json.dumps(man)}))
    packed_out, shapes, _ = read_masks_packed(tmp_path / "old.safetensors")
    assert shapes == {"a": (6, 10)} and (packed_out["a"] == packed).all()
