"""BESA through the project's block driver on a tiny random model: resume, joint quantization, targets,
run-directory records, bad inputs.  Mechanics only (quality claims are on SmolLM2, docs/results.md)."""

from __future__ import annotations

import json

import pytest
import torch

import pruning.methods  # noqa: F401  (fills the registry)
from pruning.driver import DriverConfig, prune_model
from pruning.methods.besa import Besa, BesaConfig
from besa_common.errors import UserError
from besa_common.masks import read_masks
from tests.pruning.helpers import tiny_model


def calib(n=4, T=24, seed=0):
    return torch.randint(0, 256, (n, T), generator=torch.Generator().manual_seed(seed))


def _read(path):
    keep, _meta = read_masks(path / "masks.safetensors")
    return {k: torch.as_tensor(v) for k, v in keep.items()}


def cfg(**kw):
    base = dict(sparsity=0.5, device="cpu", progress=False)
    base.update(kw)
    return DriverConfig(**base)


def besa(**kw):
    return Besa(BesaConfig(epochs=1, verbose=False, **kw))


def test_interrupted_run_resumes_with_identical_masks(tmp_path):
    full = tmp_path / "full"
    prune_model(tiny_model(3), besa(), calib(), full, cfg(), meta={"model": "tiny"})

    part = tmp_path / "part"

    def stop_after_block_1(i):
        if i == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prune_model(tiny_model(3), besa(), calib(), part, cfg(), meta={"model": "tiny"}, on_block_done=stop_after_block_1)
    assert json.loads((part / "checkpoint" / "state.json").read_text())["done"] == 2
    prune_model(tiny_model(3), besa(), calib(), part, cfg(), meta={"model": "tiny"})
    a, b = _read(full), _read(part)
    assert a.keys() == b.keys() and len(a) == 21
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_joint_quant_run_dir_and_allocation(tmp_path):
    from pruning.quant import apply_quant, load_quant
    from pruning.models import apply_masks

    out = tmp_path / "q"
    model = tiny_model(2)
    man = prune_model(model, besa(), calib(), out, cfg(wbits=4, group_size=32), meta={"model": "tiny"})
    params, meta = load_quant(out / "quant.safetensors")
    assert meta["method"] == "lwc" and meta["wbits"] == 4 and meta["group_size"] == 32
    assert "model.layers.1.mlp.down_proj.clip_upper" in params
    alloc = json.loads((out / "allocation.json").read_text())
    lay = alloc["layers"]["model.layers.0.mlp.up_proj"]
    assert lay["expected"] is not None and 0.3 < lay["expected"] < 0.7
    assert len(lay["row_sparsity"]) == 160
    assert "loss_first" in alloc["blocks"]["0"]
    assert man["layers"]["model.layers.0.mlp.up_proj"]["expected"] == lay["expected"]
    # eval side: dense model + masks + saved parameters == the pruned-and-quantized model
    fresh = tiny_model(2)
    apply_masks(fresh, _read(out))
    apply_quant(fresh, params, meta)
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters()):
        assert torch.equal(p, q), n


def test_dense_targets_and_layer_granularity_run(tmp_path):
    man = prune_model(tiny_model(2), besa(granularity="layer"), calib(), tmp_path / "d", cfg(target="dense"), meta={"model": "tiny"})
    assert man["target_mode"] == "dense"
    for name, lay in man["layers"].items():
        assert 0.3 < lay["realised"] < 0.7, name


def test_bad_inputs_one_line():
    with pytest.raises(UserError, match="target must be one of"):
        cfg(target="trajectory")
    with pytest.raises(UserError, match="sparsity must be in"):
        cfg(sparsity=1.2)


def test_cli_errors_are_one_line(capsys):
    from besa.cli import main

    for argv, msg in (
        (["prune", "--method", "besa", "--sparsity", "1.5", "--out", "x"], "--sparsity must be in (0, 1)"),
        (["prune", "--method", "besa", "--target", "x", "--out", "x"], "invalid choice"),
        (["prune", "--method", "besa", "--exact-budget", "all", "--out", "x"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) if msg == "invalid choice" else _nullctx():
            rc = main(argv)
            assert rc == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert msg in err[-1]


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("target", ["pruned", "dense"])
def test_besa_targets_come_from_its_statistics_pass(tmp_path, monkeypatch, target):
    """Pruned targets: the driver makes no target pass of its own (BESA records the dense outputs in its
    statistics pass), so per block the driver forwards only to propagate; dense targets: plus the dense
    trajectory.  That the masks are unchanged by this is pinned in test_besa_golden.py."""
    import pruning.driver.loop as drv

    calls = []
    real = drv.forward_block
    monkeypatch.setattr(drv, "forward_block", lambda block, src, dst, *a: (calls.append(src is dst), real(block, src, dst, *a)))
    prune_model(tiny_model(2), besa(), calib(), tmp_path / target, cfg(target=target), meta={"model": "tiny"})
    assert calls.count(True) == 2  # in-place pruned propagation, once per block
    assert calls.count(False) == (2 if target == "dense" else 0)  # the dense trajectory only
