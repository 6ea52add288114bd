"""SparseGPT: OBS reconstruction beats Wanda on correlated inputs; damping retry; exact counts."""

import pytest
import torch

from pruning.methods.scoring import InputNormStat, mask_from_scores, wanda_scores
from pruning.methods.sparsegpt import SparseGPTLayer


def _correlated_inputs(inn, windows=8, tokens=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(inn, inn, generator=g) / inn**0.5  # strong correlation between input columns
    return [torch.randn(tokens, inn, generator=g) @ mix + 0.05 * torch.randn(tokens, inn, generator=g) for _ in range(windows)]


@pytest.mark.parametrize("pattern", [None, (2, 4), (4, 8)])
def test_reconstruction_error_not_worse_than_wanda(pattern):
    out, inn = 48, 256
    W = torch.randn(out, inn, generator=torch.Generator().manual_seed(1))
    X = _correlated_inputs(inn)
    layer, stat = SparseGPTLayer(W), InputNormStat()
    for x in X:
        layer.add_batch(x)
        stat.update("w", x)
    W_s, keep_s, info = layer.prune(W, 0.5, pattern, blocksize=128)
    keep_w = mask_from_scores(wanda_scores(W, stat.stat["w"]), 0.5, pattern)
    Xc = torch.cat(X)  # (tokens, in)
    err_s = ((Xc @ (W - W_s * keep_s).t()) ** 2).sum()
    err_w = ((Xc @ (W - W * keep_w).t()) ** 2).sum()
    assert err_s <= err_w
    assert (W_s[~keep_s] == 0).all()  # pruned weights are exactly zero in the returned weights
    assert info["damp"] == 0.01
    if pattern is None:
        # one threshold per 128-column block over all rows: the count per block is exact ...
        for i1 in range(0, inn, 128):
            assert (~keep_s[:, i1 : i1 + 128]).sum() == int(out * 128 * 0.5)
        # ... while rows differ
        assert len(set((~keep_s).sum(1).tolist())) > 1
    else:
        n, m = pattern  # n kept of every m
        assert (keep_s.reshape(out, -1, m).sum(-1) == n).all()


def test_hessian_is_two_over_n_sum_xxt():
    W = torch.zeros(2, 3)
    X = [torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])]
    layer = SparseGPTLayer(W)
    for x in X:
        layer.add_batch(x)
    expect = 2 / 2 * sum(x.t() @ x for x in X)
    assert torch.allclose(layer.H, expect)


def test_cholesky_failure_raises_damping_and_retries(capsys):
    W = torch.randn(4, 2)
    layer = SparseGPTLayer(W)
    layer.H = torch.tensor([[1.0, 0.0], [0.0, -0.5]])  # indefinite: plain 1 % damping cannot fix it
    W_s, keep, info = layer.prune(W, 0.5, None)
    assert info["damp"] > 0.01  # it retried with more damping
    assert torch.isfinite(W_s).all() and (~keep).sum() == 4
    assert "Cholesky failed" in capsys.readouterr().err


def test_dead_input_columns_are_zeroed():
    W = torch.ones(3, 4)
    layer = SparseGPTLayer(W)
    layer.add_batch(torch.tensor([[1.0, 0.0, 2.0, 1.0], [0.5, 0.0, 1.0, -1.0]]))  # column 1 never fires
    W_s, keep, _ = layer.prune(W, 0.25, None)
    assert (W_s[:, 1] == 0).all()
