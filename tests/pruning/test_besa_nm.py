"""Learned n:m BESA: the pure functions (pruning.methods.besa.nm) by hand, and the method on a tiny LLaMA block."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import pruning.methods  # noqa: F401  (fills the registry)
import pruning.methods.besa.nm as nm
from pruning.methods.base import LINEAR_NAMES, METHODS
from pruning.methods.besa import Besa, BesaConfig, kept_per_group
from pruning.methods.scoring import nm_mask
from tests.pruning.test_besa_method import block_inputs, job, masked_loss


def test_keep_patterns_2_of_4_by_hand():
    pats = nm.keep_patterns(4, 2)
    assert pats.int().tolist() == [[1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]]
    assert nm.keep_patterns(8, 4).shape == (70, 8) and nm.pattern_count(8, 4) == 70
    assert (nm.keep_patterns(8, 4).sum(1) == 4).all()
    with pytest.raises(ValueError):
        nm.keep_patterns(4, 4)


def test_small_case_by_hand():
    """One row, two groups of 4, keep 2.  Group 0 scores [0.3, 0.1, 0.4, 0.1]: ranks [2, 0, 3, 1] (the tie
    0.1/0.1 keeps column order); group 1 all equal: ranks [0, 1, 2, 3]."""
    score = torch.tensor([[0.3, 0.1, 0.4, 0.1, 1.0, 1.0, 1.0, 1.0]])
    ranks = nm.group_ranks(score, 4)
    assert ranks.tolist() == [[[2, 0, 3, 1], [0, 1, 2, 3]]]
    pats = nm.keep_patterns(4, 2)
    logits = nm.init_logits(ranks, pats, 0.5)
    # rank sums of the 6 patterns {01,02,03,12,13,23}: group 0 -> 2,5,3,3,1,4 ; group 1 -> 1,2,3,3,4,5
    assert logits.shape == (6, 1, 2)  # pattern-major
    assert logits[:, 0, :].t().tolist() == [[1.0, 2.5, 1.5, 1.5, 0.5, 2.0], [0.5, 1.0, 1.5, 1.5, 2.0, 2.5]]
    hard = nm.hard_keep(logits, pats)
    assert hard.int().tolist() == [[1, 0, 1, 0, 0, 0, 1, 1]]  # keep the two best of each group
    assert torch.equal(hard, nm_mask(score, 2, 4))  # = Wanda's 2:4 (2 kept of 4) on the same scores
    q = nm.probabilities(logits)
    soft = nm.soft_keep(q, pats)
    assert torch.allclose(soft.reshape(2, 4).sum(1), torch.tensor([2.0, 2.0]))  # 2 expected kept per group
    # gradient: d loss / d q_p = sum of d loss / d mask over the weights p keeps
    W = torch.arange(1.0, 9.0).reshape(1, 8)
    qq = q.clone().requires_grad_(True)
    y = nm.masked_weight(W, hard, qq, pats)
    assert torch.equal(y, W * hard)
    (y * torch.ones_like(y)).sum().backward()  # d loss / d mask = W
    want = torch.stack([pats.float() @ W[0, :4], pats.float() @ W[0, 4:]], dim=1).unsqueeze(1)  # (6, 1, 2)
    assert torch.equal(qq.grad, want)
    # the soft mask is the probability-weighted sum of the patterns
    manual = sum(q[p, 0, g] * pats[p].float() for p in range(6) for g in [0]).tolist()
    assert soft[0, :4].tolist() == pytest.approx(manual)


@settings(max_examples=40, deadline=None)
@given(
    R=st.integers(1, 4),
    G=st.integers(1, 5),
    mk=st.sampled_from([(4, 2), (4, 1), (4, 3), (8, 4), (8, 2), (3, 1)]),
    ties=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_init_argmax_is_wanda_and_every_group_keeps_exactly_k(R, G, mk, ties, seed):
    m, k = mk
    gen = torch.Generator().manual_seed(seed)
    score = torch.rand(R, G * m, generator=gen)
    if ties:
        score = torch.round(score * 2) / 2
    pats = nm.keep_patterns(m, k)
    logits = nm.init_logits(nm.group_ranks(score, m), pats, 1.0)
    assert torch.equal(nm.hard_keep(logits, pats), nm_mask(score, k, m))  # N:M = N kept
    noisy = logits + torch.randn(logits.shape, generator=gen) * 5  # any logits: still exactly k per group
    assert (nm.hard_keep(noisy, pats).reshape(R, G, m).sum(-1) == k).all()


def test_choice_is_argmax_with_first_index_on_ties():
    x = torch.tensor([[1.0, 2.0, 0.0, 3.0], [1.0, 5.0, 0.0, 3.0], [0.5, 5.0, 0.0, 3.0]])  # (P=3, R=1, G=4)
    assert nm.choice(x.reshape(3, 1, 4)).tolist() == [[0, 1, 0, 0]]
    gen = torch.Generator().manual_seed(3)
    y = torch.round(torch.randn(6, 5, 7, generator=gen))  # many ties
    assert torch.equal(nm.choice(y), torch.argmax(y, dim=0))


def test_gradient_equals_autograd_of_the_soft_composition():
    gen = torch.Generator().manual_seed(1)
    W = torch.randn(3, 16, generator=gen)
    G_up = torch.randn(3, 16, generator=gen)
    pats = nm.keep_patterns(8, 4)
    base = torch.randn(70, 3, 2, generator=gen)
    grads = []
    for fused in (False, True):
        logits = base.clone().requires_grad_(True)
        q = nm.probabilities(logits)
        hard = nm.hard_keep(logits.detach(), pats)
        if fused:
            y = nm.masked_weight(W, hard, q, pats)
        else:
            soft = nm.soft_keep(q, pats)
            y = W * (hard.float() + soft - soft.detach())
        (y * G_up).sum().backward()
        grads.append(logits.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_kept_per_group_reads_the_driver_convention():
    assert kept_per_group((2, 4)) == 2 and kept_per_group((1, 4)) == 1 and kept_per_group((6, 8)) == 6


# --- the method on a tiny LLaMA block ------------------------------------------------------------


@pytest.mark.parametrize("pattern", [(2, 4), (4, 8), (3, 4), (1, 4)])
def test_frozen_besa_nm_equals_wanda_nm_bit_exactly(tiny_llama, pattern):
    block = tiny_llama.model.layers[1]
    inputs = block_inputs(tiny_llama)
    S = 1 - pattern[0] / pattern[1]  # N:M = N kept of M
    res = Besa(BesaConfig(freeze=True, verbose=False)).prune_block(block, inputs, None, job(S, pattern=pattern))
    want = METHODS["wanda"]().prune_block(block, inputs, None, job(S, pattern=pattern)).keep
    for n in LINEAR_NAMES:
        assert torch.equal(res.keep[n], want[n].bool()), n


@pytest.mark.parametrize("pattern", [(2, 4), (4, 8)])
def test_learned_nm_keeps_exactly_k_per_group_and_beats_wanda(tiny_llama, pattern):
    block = tiny_llama.model.layers[0]
    with torch.no_grad():  # random init leaves the residual dominant; make the block matter
        saved = {n: dict(block.named_modules())[n].weight.clone() for n in LINEAR_NAMES}
        for n in LINEAR_NAMES:
            dict(block.named_modules())[n].weight.mul_(8)
    try:
        inputs = block_inputs(tiny_llama, n=8)
        with torch.no_grad():
            targets = torch.cat([inputs.run(block, i, torch.device("cpu")) for i in range(len(inputs))])
        S = 1 - pattern[0] / pattern[1]  # N:M = N kept of M
        m, k = pattern[1], pattern[0]
        res = Besa(BesaConfig(epochs=4, verbose=False)).prune_block(block, inputs, targets, job(S, pattern=pattern))
        wanda = METHODS["wanda"]().prune_block(block, inputs, None, job(S, pattern=pattern)).keep
        for n in LINEAR_NAMES:
            kept = res.keep[n].reshape(res.keep[n].shape[0], -1, m).sum(-1)
            assert (kept == k).all(), n
            assert res.record["layers"][n]["realised"] == pytest.approx(S)
        changed = [res.record["layers"][n]["changed_groups"] for n in LINEAR_NAMES]
        assert max(changed) > 0  # learning moved some groups away from Wanda's choice
        assert res.record["steps"] == 32 and res.record["pattern"] == f"{pattern[0]}:{pattern[1]}"
        assert masked_loss(block, inputs, targets, res.keep) < masked_loss(block, inputs, targets, wanda)
    finally:
        with torch.no_grad():
            for n in LINEAR_NAMES:
                dict(block.named_modules())[n].weight.copy_(saved[n])


def test_learned_nm_is_deterministic_and_own_targets_match_given_ones(tiny_llama):
    """Same inputs -> identical masks; without targets the statistics pass supplies the dense outputs,
    which gives the same masks as passing them in."""
    block = tiny_llama.model.layers[0]
    inputs = block_inputs(tiny_llama, n=3)
    with torch.no_grad():
        targets = torch.cat([inputs.run(block, i, torch.device("cpu")) for i in range(len(inputs))])
    runs = [Besa(BesaConfig(epochs=2, verbose=False)).prune_block(block, inputs, t, job(0.5, pattern=(2, 4))) for t in (None, None, targets)]
    for n in LINEAR_NAMES:
        assert torch.equal(runs[0].keep[n], runs[1].keep[n]) and torch.equal(runs[0].keep[n], runs[2].keep[n])
    assert runs[0].record["loss_last"] == runs[2].record["loss_last"]


def test_learned_nm_with_joint_quant(tiny_llama):
    block = tiny_llama.model.layers[0]
    inputs = block_inputs(tiny_llama, n=2)
    res = Besa(BesaConfig(epochs=1, verbose=False)).prune_block(block, inputs, None, job(0.5, pattern=(2, 4), wbits=4, group_size=32))
    assert res.tensors["mlp.up_proj.lwc_upper"].shape == (160,)
    assert (res.keep["mlp.up_proj"].reshape(160, -1, 4).sum(-1) == 2).all()


def test_nm_runs_get_their_own_optimiser_defaults_unless_given():
    import argparse

    from pruning.methods.besa import NM_OPTIMISER_DEFAULTS, UNSTRUCTURED_OPTIMISER_DEFAULTS, Besa

    parser = argparse.ArgumentParser()
    parser.add_argument("--pattern", default=None)
    Besa.add_arguments(parser)
    cfg = lambda argv: Besa.from_args(parser.parse_args(argv)).config  # noqa: E731
    unstructured, nm = cfg([]), cfg(["--pattern", "2:4"])
    assert (unstructured.d_coef, unstructured.epochs, unstructured.lr) == (5.0, 1, 1.0)
    assert {k: getattr(unstructured, k) for k in UNSTRUCTURED_OPTIMISER_DEFAULTS} == UNSTRUCTURED_OPTIMISER_DEFAULTS
    assert (nm.d_coef, nm.epochs, nm.lr) == (1.0, 3, 0.2)
    assert {k: getattr(nm, k) for k in NM_OPTIMISER_DEFAULTS} == NM_OPTIMISER_DEFAULTS
    given = cfg(["--pattern", "2:4", "--d-coef", "5", "--epochs", "1"])
    assert (given.d_coef, given.epochs, given.lr) == (5.0, 1, 0.2)
