"""--weight-update {obs,admm}: the fixed-mask update reaches the per-row least-squares optimum (hand-computed
and hypothesis), obs is SparseGPT's own update, masks never change, the run directory carries the
weights, resume is bit-identical."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning.methods  # noqa: F401  (fills the registry)
from besa_common.errors import UserError
from besa_common.masks import read_masks
from pruning.driver import DriverConfig, prune_model
from pruning.methods.base import METHODS
from pruning.weight_update import WeightUpdateConfig, admm_update, exact_solve, obs_update, reconstruction_error
from tests.pruning.helpers import tiny_model


def optimum(W0, H, keep, lam):
    """Per row, in float64: minimise (w - w0) Hλ (w - w0)ᵀ over w supported on keep, Hλ = H + λ diag(H)."""
    W0, H, keep = np.asarray(W0, np.float64), np.asarray(H, np.float64), np.asarray(keep, bool)
    Hl = H + lam * np.diag(np.diag(H))
    out = np.zeros_like(W0)
    for r in range(W0.shape[0]):
        S = np.flatnonzero(keep[r])
        if S.size:
            out[r, S] = np.linalg.solve(Hl[np.ix_(S, S)], (W0[r] @ Hl)[S])
    return out


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)


def test_hand_computed_two_inputs():
    # One row, two inputs, the second pruned.  H = [[2, 1], [1, 2]], λ = 0.5: Hλ = [[3, 1], [1, 3]].
    # Optimum w1 = (Hλ w0)_1 / Hλ_11 = (3·1 + 1·2) / 3 = 5/3 (the kept weight absorbs the pruned one).
    W0 = torch.tensor([[1.0, 2.0]])
    H = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    keep = torch.tensor([[True, False]])
    assert exact_solve(W0, H, keep, 0.5).tolist()[0] == pytest.approx([5 / 3, 0.0], rel=1e-6)
    W, info = admm_update(W0, H, keep, WeightUpdateConfig("admm", damp=0.5, iters=200))
    assert W.tolist()[0] == pytest.approx([5 / 3, 0.0], rel=1e-5)
    assert info["exact"] is False
    # obs: the pruned column is the last one, nothing comes after it to compensate: w1 stays 1.
    Wo, _ = obs_update(W0, H, keep, WeightUpdateConfig("obs", damp=0.5))
    assert Wo.tolist() == [[1.0, 0.0]]
    # ... and when the pruned column comes FIRST, OBS is the optimum (with its own damping λ·mean diag).
    keep2 = torch.tensor([[False, True]])
    Wo2, _ = obs_update(W0, H, keep2, WeightUpdateConfig("obs", damp=0.5))
    Hd = H + 0.5 * H.diag().mean() * torch.eye(2)  # [[3, 1], [1, 3]] as well (mean diag 2)
    assert Wo2[0, 1].item() == pytest.approx(float((W0 @ Hd)[0, 1] / Hd[1, 1]), rel=1e-6)


@settings(max_examples=25, deadline=None)
@given(out=st.integers(1, 6), cols=st.integers(2, 12), density=st.floats(0.2, 0.9), seed=st.integers(0, 2**16))
def test_admm_and_exact_reach_the_least_squares_optimum(out, cols, density, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4 * cols, cols, generator=g) * (torch.rand(cols, generator=g) * 3 + 0.2)
    H = X.t() @ X
    W0 = torch.randn(out, cols, generator=g)
    keep = torch.rand(out, cols, generator=g) < density
    ref = optimum(W0, H, keep, 0.01)
    assert _rel(exact_solve(W0, H, keep, 0.01), ref) < 1e-5
    W, _ = admm_update(W0, H, keep, WeightUpdateConfig("admm", iters=400))
    assert _rel(W, ref) < 1e-4
    assert not W[~keep].any()  # exactly on the mask
    Hl = H + 0.01 * torch.diag(H.diag())
    err_none = reconstruction_error(W0 * keep, W0, Hl)
    assert reconstruction_error(W, W0, Hl) <= err_none + 1e-6
    Wo, _ = obs_update(W0, H, keep, WeightUpdateConfig("obs"))
    assert not Wo[~keep].any()  # (OBS is greedy, left to right: not always below the mask-only error on tiny layers)


def test_obs_with_sparsegpts_own_mask_is_sparsegpt():
    from pruning.methods.sparsegpt import SparseGPTLayer

    g = torch.Generator().manual_seed(3)
    X = torch.randn(200, 40, generator=g)
    W0 = torch.randn(8, 40, generator=g)
    layer = SparseGPTLayer(W0)
    layer.add_batch(X)
    W_sgpt, keep, _ = layer.prune(W0, 0.5, None, blocksize=16)
    layer2 = SparseGPTLayer(W0)
    layer2.add_batch(X)
    W_fix, keep2, _ = layer2.prune(W0, 0.9, (2, 4), blocksize=16, fixed_keep=keep)  # sparsity/pattern ignored
    assert torch.equal(keep2, keep) and torch.equal(W_fix, W_sgpt)


def test_config_validation():
    with pytest.raises(UserError, match="--weight-update"):
        WeightUpdateConfig("lsq")
    with pytest.raises(UserError, match="--admm-iters"):
        WeightUpdateConfig("admm", iters=0)
    with pytest.raises(UserError, match="damp"):
        WeightUpdateConfig("admm", damp=0)


# ----------------------------------------------------------------------------- through the driver

CFG = dict(progress=False)


def _calib(n=3, T=16):
    return torch.randint(0, 256, (n, T), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mode", ["obs", "admm"])
def test_update_keeps_masks_lowers_error_and_is_carried(tmp_path, mode):
    from pruning.runfiles import apply_run, open_run

    cfg = DriverConfig(sparsity=0.5, weight_update=WeightUpdateConfig(mode), **CFG)
    prune_model(tiny_model(), METHODS["wanda"](), _calib(), tmp_path / "none", DriverConfig(sparsity=0.5, **CFG))
    model = tiny_model()
    prune_model(model, METHODS["wanda"](), _calib(), tmp_path / "upd", cfg)
    a, b = read_masks(tmp_path / "none" / "masks.safetensors")[0], read_masks(tmp_path / "upd" / "masks.safetensors")[0]
    # block 0 sees the same inputs in both runs, so its masks must be identical (the update never moves a mask)
    assert all(np.array_equal(a[n], b[n]) for n in a if n.startswith("model.layers.0."))
    man = json.loads((tmp_path / "upd" / "manifest.json").read_text())
    assert man["updated_weights"] is True and man["weight_update"]["mode"] == mode
    alloc = json.loads((tmp_path / "upd" / "allocation.json").read_text())["layers"]
    for name, entry in alloc.items():
        assert entry["update_error_after"] <= entry["update_error_before"] * (1 + 1e-5), name
    rebuilt = tiny_model()
    apply_run(rebuilt, open_run(tmp_path / "upd"))
    for (n, p), (_, q) in zip(rebuilt.named_parameters(), model.named_parameters()):
        assert torch.equal(p, q), n
    for name, k in b.items():  # pruned weights exactly zero
        assert not model.get_submodule(name).weight[~torch.from_numpy(k)].any()


class _Interrupt(Exception):
    pass


def test_resume_with_update_is_bit_identical(tmp_path):
    cfg = DriverConfig(sparsity=0.5, weight_update=WeightUpdateConfig("admm", iters=5), **CFG)
    ref = tiny_model(layers=3)
    prune_model(ref, METHODS["wanda"](), _calib(), tmp_path / "ref", cfg)

    def boom(i):
        if i == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        prune_model(tiny_model(layers=3), METHODS["wanda"](), _calib(), tmp_path / "run", cfg, on_block_done=boom)
    resumed = tiny_model(layers=3)
    prune_model(resumed, METHODS["wanda"](), _calib(), tmp_path / "run", cfg)
    for (n, p), (_, q) in zip(resumed.named_parameters(), ref.named_parameters()):
        assert torch.equal(p, q), n
    assert (tmp_path / "run" / "masks.safetensors").read_bytes() == (tmp_path / "ref" / "masks.safetensors").read_bytes()
    assert (tmp_path / "run" / "weights.safetensors").read_bytes() == (tmp_path / "ref" / "weights.safetensors").read_bytes()


# ----------------------------------------------------------------------------- XᵀX from the method's own pass


def _block_job(model, calib, observer=None):
    """Block 0 of ``model``, its captured inputs and a job (as the driver builds them)."""
    from pruning.driver.capture import capture_inputs
    from pruning.methods.base import LINEAR_NAMES, BlockJob
    from pruning.models import decoder_layers

    cpu = torch.device("cpu")
    inputs = capture_inputs(model, calib, cpu, cpu)
    job = BlockJob(0, "model.layers.0.", {n: 0.5 for n in LINEAR_NAMES}, None, cpu, None, 0, input_observer=observer)
    return decoder_layers(model)[0], inputs, job


@pytest.mark.parametrize("method", ["wanda", "besa", "sparsegpt"])
def test_grams_from_the_methods_pass_equal_a_pass_of_their_own(method):
    """The collector riding along the method's statistics pass gives the same XᵀX bits as a separate
    pass (q/k/v and gate/up share one product), and the update from them is the same."""
    from pruning.weight_update import GramCollector, block_grams, update_block

    model = tiny_model()
    col = GramCollector()
    block, inputs, job = _block_job(model, _calib(), col)
    opts = {"verbose": False} if method == "besa" else {}
    res = METHODS[method](**opts).prune_block(block, inputs, None, job)
    names = tuple(res.keep)
    assert col.covers(names, len(inputs)) and not col.covers(names, len(inputs) + 1)
    own = block_grams(block, inputs, job, names)
    assert set(own) == set(names) and all(torch.equal(col.grams[n], own[n]) for n in names)
    assert torch.equal(own["self_attn.q_proj"], own["self_attn.k_proj"]) and torch.equal(own["mlp.gate_proj"], own["mlp.up_proj"])
    # hand check of one: H = Σ_windows XᵀX of the q/k/v input
    xs = []
    hook = block.get_submodule("self_attn.q_proj").register_forward_hook(lambda m, a, o: xs.append(a[0].detach().reshape(-1, a[0].shape[-1])))
    for j in range(len(inputs)):
        inputs.run(block, j, torch.device("cpu"))
    hook.remove()
    X = torch.cat(xs).double()
    assert torch.allclose(own["self_attn.q_proj"].double(), X.T @ X, rtol=1e-5, atol=1e-4)
    cfg = WeightUpdateConfig("admm", iters=5)
    keep = {n: k.bool() for n, k in res.keep.items()}
    a, ra, _ = update_block(block, inputs, job, keep, cfg)  # collector complete: no pass of its own
    assert col.closed and not col.grams
    b, rb, _ = update_block(block, inputs, _block_job(model, _calib())[2], keep, cfg)  # no collector: its own pass
    assert all(torch.equal(a[n], b[n]) for n in names) and ra == rb


def test_incomplete_collector_is_not_used():
    """A collector that saw a layer twice per window (two passes) or not at all is ignored: the update
    runs its own pass and gets the same result as without a collector."""
    from pruning.weight_update import GramCollector, update_block

    model = tiny_model()
    col = GramCollector()
    block, inputs, job = _block_job(model, _calib(), col)
    res = METHODS["wanda"]().prune_block(block, inputs, None, job)
    METHODS["wanda"]().prune_block(block, inputs, None, job)  # a second pass: every count doubles
    keep = {n: k.bool() for n, k in res.keep.items()}
    assert not col.covers(tuple(keep), len(inputs))
    cfg = WeightUpdateConfig("admm", iters=3)
    a, _, _ = update_block(block, inputs, job, keep, cfg)
    b, _, _ = update_block(block, inputs, _block_job(model, _calib())[2], keep, cfg)
    assert all(torch.equal(a[n], b[n]) for n in keep)


@settings(max_examples=20, deadline=None)
@given(out=st.integers(1, 5), cols=st.integers(2, 10), seed=st.integers(0, 2**16))
def test_update_errors_match_reconstruction_error(out, cols, seed):
    from pruning.weight_update import update_errors

    g = torch.Generator().manual_seed(seed)
    W0, W = torch.randn(out, cols, generator=g), torch.randn(out, cols, generator=g)
    X = torch.randn(3 * cols, cols, generator=g)
    H = X.T @ X
    keep = torch.rand(out, cols, generator=g) < 0.5
    W = W * keep
    before, after = update_errors(W, W0, keep, H)
    assert before == pytest.approx(reconstruction_error(W0 * keep, W0, H), rel=1e-4, abs=1e-6)
    assert after == pytest.approx(reconstruction_error(W, W0, H), rel=1e-4, abs=1e-6)


# ----------------------------------------------------------------------------- --admm-reselect


def test_reselect_finds_the_better_mask_at_the_same_count():
    """Hand-built: x2 = x1 + small noise, x3 independent, w0 = [1, -1, 0.5], keep 2 of 3.  Wanda's order
    (|w|·‖x‖) keeps x1 and x2, whose outputs nearly cancel, and drops x3 (error 0.25 ‖x3‖²).  Keeping x3
    and one of x1/x2 costs only the noise: reselection must find it, with the same count per row."""
    g = torch.Generator().manual_seed(0)
    x1, x3 = torch.randn(400, generator=g), torch.randn(400, generator=g)
    X = torch.stack([x1, x1 + 0.05 * torch.randn(400, generator=g), x3], 1)
    H = X.T @ X
    W0 = torch.tensor([[1.0, -1.0, 0.5]])
    keep = torch.tensor([[True, True, False]])
    cfg = WeightUpdateConfig("admm", iters=200, reselect=30)
    from pruning.weight_update import reselect_mask

    k = reselect_mask(W0, H, keep, cfg)
    assert bool(k[0, 2]) and int(k.sum()) == 2
    fixed = reconstruction_error(admm_update(W0, H, keep, cfg)[0] * keep, W0, H)
    new = reconstruction_error(admm_update(W0, H, k, cfg)[0] * k, W0, H)
    assert new < 0.1 * fixed


@settings(max_examples=15, deadline=None)
@given(out=st.integers(1, 5), groups=st.integers(1, 4), seed=st.integers(0, 2**16), nm=st.booleans())
def test_reselect_keeps_the_count_of_every_row_and_group(out, groups, seed, nm):
    from pruning.weight_update import reselect_mask

    g = torch.Generator().manual_seed(seed)
    cols = 4 * groups
    X = torch.randn(3 * cols, cols, generator=g)
    W0 = torch.randn(out, cols, generator=g)
    if nm:  # 2 of every 4 kept
        keep = torch.zeros(out, groups, 4, dtype=torch.bool)
        keep[..., :2] = True
        keep = keep[:, :, torch.randperm(4, generator=g)].reshape(out, cols)
    else:
        keep = torch.rand(out, cols, generator=g) < 0.5
    k = reselect_mask(W0, X.T @ X, keep, WeightUpdateConfig("admm", reselect=5), 4 if nm else None)
    assert k.dtype == torch.bool and k.shape == keep.shape
    assert torch.equal(k.sum(1), keep.sum(1))
    if nm:
        assert (k.reshape(out, groups, 4).sum(2) == 2).all()


def test_reselect_through_the_driver_changes_masks_not_counts(tmp_path):
    cfg = DriverConfig(sparsity=0.5, weight_update=WeightUpdateConfig("admm", reselect=6), **CFG)
    prune_model(tiny_model(), METHODS["wanda"](), _calib(), tmp_path / "fixed", DriverConfig(sparsity=0.5, **CFG))
    model = tiny_model()
    man = prune_model(model, METHODS["wanda"](), _calib(), tmp_path / "re", cfg)
    a, b = read_masks(tmp_path / "fixed" / "masks.safetensors")[0], read_masks(tmp_path / "re" / "masks.safetensors")[0]
    n0 = "model.layers.0.mlp.down_proj"  # block 0: same inputs in both runs
    assert not np.array_equal(a[n0], b[n0]) and np.array_equal(a[n0].sum(1), b[n0].sum(1))
    assert man["realised_sparsity"] == pytest.approx(0.5, abs=1e-9)
    alloc = json.loads((tmp_path / "re" / "allocation.json").read_text())["layers"]
    assert 0 < alloc[n0]["update_reselected"] < 1
    for name, k in b.items():  # the run's masks are the reselected ones, and the weights follow them
        assert not model.get_submodule(name).weight[~torch.from_numpy(k)].any()
    with pytest.raises(UserError, match="--admm-reselect"):
        WeightUpdateConfig("obs", reselect=3)
