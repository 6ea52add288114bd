"""pruning.quant: per-group asymmetric fake-quantization (RTN + learnable clipping)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from besa_common.errors import UserError
from pruning.methods.base import LINEAR_NAMES, BlockJob
from pruning.quant import (
    QuantSpec,
    apply_quant,
    fake_quant,
    group_params,
    load_quant,
    quantize_block,
    quantize_weight,
    save_quant,
)


def test_hand_computed_group():
    # one row, one group of 4: range [min(w,0), max(w,0)] = [-1, 2], 2 bits -> 3 steps of 1.0, zero-point 1
    spec = QuantSpec(wbits=2, group_size=4)
    w = torch.tensor([[-1.0, 0.4, 1.6, 2.0]])
    scale, zero = group_params(w, spec)
    assert scale.tolist() == [[1.0]] and zero.tolist() == [[1.0]]
    assert fake_quant(w, scale, zero, spec).tolist() == [[-1.0, 0.0, 2.0, 2.0]]


def test_groups_are_independent():
    spec = QuantSpec(wbits=4, group_size=2)
    w = torch.tensor([[0.0, 1.0, 0.0, 100.0]])
    scale, _ = group_params(w, spec)
    assert scale.shape == (1, 2)
    assert torch.allclose(scale, torch.tensor([[1 / 15, 100 / 15]]))


@settings(max_examples=40, deadline=None)
@given(
    wbits=st.integers(2, 8),
    groups=st.integers(1, 4),
    gs=st.sampled_from([1, 4, 8, 16]),
    rows=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_rtn_error_bound_and_zeros(wbits, groups, gs, rows, seed):
    """|w - w_hat| <= scale / 2 per group (no clipping), pruned zeros stay exactly 0."""
    gen = torch.Generator().manual_seed(seed)
    spec = QuantSpec(wbits, gs)
    w = torch.randn(rows, groups * gs, generator=gen) * 3
    keep = torch.rand(rows, groups * gs, generator=gen) > 0.4
    w_hat, p = quantize_weight(w, keep, spec)
    assert (w_hat[~keep] == 0).all()
    err = (w * keep - w_hat).abs().reshape(rows, groups, gs)
    assert (err <= p["scale"][:, :, None] / 2 * (1 + 1e-5) + 1e-7).all()
    # at most 2**wbits distinct values per group
    for r in range(rows):
        for g in range(groups):
            assert len(torch.unique(w_hat[r, g * gs : (g + 1) * gs])) <= 2**wbits


def test_clipping_shrinks_range_and_gets_gradients():
    spec = QuantSpec(4, 8)
    w = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    up = torch.zeros(3, requires_grad=True)  # sigmoid(0) = 0.5
    lo = torch.zeros(3, requires_grad=True)
    w_hat, p = quantize_weight(w, None, spec, up, lo)
    # Per group, the dequantised grid ends at (qmax - zero) * scale: the clipped max up to half a step
    # (the zero point is rounded), never the unclipped max.
    g_hat, g = w_hat.detach().reshape(3, 2, 8), w.reshape(3, 2, 8)
    half_step = p["scale"] / 2
    assert (g_hat.amax(2) <= g.amax(2).clamp(min=0) * 0.5 + half_step + 1e-6).all()
    assert (g_hat.amin(2) >= g.amin(2).clamp(max=0) * 0.5 - half_step - 1e-6).all()
    _, p_rtn = quantize_weight(w, None, spec)
    assert torch.allclose(p["scale"], p_rtn["scale"] * 0.5, atol=1e-6)
    ((w_hat - w) ** 2).sum().backward()
    assert up.grad is not None and up.grad.abs().sum() > 0 and lo.grad.abs().sum() > 0


def _job(**kw):
    base = dict(
        index=0,
        prefix="model.layers.0.",
        sparsity={n: 0.5 for n in LINEAR_NAMES},
        pattern=None,
        device=torch.device("cpu"),
        autocast_dtype=None,
        seed=0,
        wbits=4,
        group_size=32,
    )
    base.update(kw)
    return BlockJob(**base)


def test_quantize_block_roundtrip_through_file(tiny_llama, tmp_path):
    block = tiny_llama.model.layers[0]
    mods = dict(block.named_modules())
    gen = torch.Generator().manual_seed(1)
    keep = {n: torch.rand(mods[n].weight.shape, generator=gen) > 0.5 for n in LINEAR_NAMES}
    with torch.no_grad():
        for n in LINEAR_NAMES:
            mods[n].weight.mul_(keep[n])
    masked = {n: mods[n].weight.detach().clone() for n in LINEAR_NAMES}
    tensors = {"mlp.up_proj.lwc_upper": torch.full((160,), 2.0), "mlp.up_proj.lwc_lower": torch.full((160,), 2.0)}
    q = quantize_block(block, keep, _job(), tensors)
    assert set(q) >= {f"{n}.scale" for n in LINEAR_NAMES} and "mlp.up_proj.clip_upper" in q
    for n in LINEAR_NAMES:
        assert (mods[n].weight[~keep[n]] == 0).all()
        assert not torch.equal(mods[n].weight, masked[n])
    # eval side: apply saved parameters to the masked (unquantized) weights -> identical weights
    quantized = {n: mods[n].weight.detach().clone() for n in LINEAR_NAMES}
    save_quant(tmp_path / "quant.safetensors", {f"model.layers.0.{k}": v for k, v in q.items()}, {"wbits": 4, "group_size": 32})
    params, meta = load_quant(tmp_path / "quant.safetensors")
    assert meta["wbits"] == 4 and meta["group_size"] == 32 and meta["method"] == "lwc"
    with torch.no_grad():
        for n in LINEAR_NAMES:
            mods[n].weight.copy_(masked[n])
    done = apply_quant(tiny_llama, params, meta)
    assert len(done) == 7
    for n in LINEAR_NAMES:
        assert torch.equal(mods[n].weight, quantized[n])


def test_bad_inputs_are_one_line_user_errors(tiny_llama, tmp_path):
    block = tiny_llama.model.layers[0]
    keep = {"mlp.down_proj": torch.ones(64, 160, dtype=torch.bool)}
    with pytest.raises(UserError, match="does not divide the 160 input features"):
        quantize_block(block, keep, _job(group_size=64), None)
    with pytest.raises(UserError, match="--wbits"):
        QuantSpec(1, 128)
    with pytest.raises(UserError, match="--group-size"):
        QuantSpec(4, 0)
    bad = tmp_path / "q.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(UserError) as ei:
        load_quant(bad)
    assert "\n" not in str(ei.value)
