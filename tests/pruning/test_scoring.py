"""Hand-computed masks for magnitude, Wanda and n:m (1 = kept)."""

import pytest
import torch

from pruning.methods.scoring import InputNormStat, layer_mask, mask_from_scores, nm_mask, row_mask, wanda_scores


def test_row_mask_weights_1_to_8():
    w = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8]])
    keep = row_mask(w.abs(), 0.5)
    assert keep.tolist() == [[False, False, False, False, True, True, True, True]]


def test_nm_mask_2_of_4_weights_1_to_8():
    # torchao's example: weights [1..8] -> kept [0,0,3,4,0,0,7,8]
    w = torch.tensor([[1.0, 2, 3, 4, 5, 6, 7, 8]])
    keep = nm_mask(w.abs(), 2, 4)
    assert (w * keep).tolist() == [[0, 0, 3, 4, 0, 0, 7, 8]]


def test_nm_mask_4_of_8_mixed_order_and_signs():
    w = torch.tensor([[-8.0, 1, 7, -2, 6, 3, -5, 4]])
    keep = nm_mask(w.abs(), 4, 8)
    # |w| = 8 1 7 2 6 3 5 4 -> the four smallest (1,2,3,4) are pruned
    assert keep.int().tolist() == [[1, 0, 1, 0, 1, 0, 1, 0]]


def test_row_mask_truncates_count_and_breaks_ties_by_column():
    scores = torch.ones(2, 5)  # all tied
    keep = row_mask(scores, 0.5)  # int(5 * 0.5) = 2 pruned per row: the first two columns
    assert keep.int().tolist() == [[0, 0, 1, 1, 1]] * 2


def test_layer_mask_prunes_exact_count_over_whole_layer():
    w = torch.tensor([[1.0, 10, 2, 20], [3.0, 30, 4, 40]])
    keep = layer_mask(w, 0.5)
    # the 4 smallest of the layer are 1,2,3,4: whole first... third columns
    assert keep.int().tolist() == [[0, 1, 0, 1], [0, 1, 0, 1]]
    keep_row = row_mask(w, 0.75)  # int(4 * 0.75) = 3 per row
    assert keep_row.int().tolist() == [[0, 0, 0, 1], [0, 0, 0, 1]]


def test_wanda_statistic_and_mask_by_hand():
    # Two windows of two tokens, 3 input columns.
    x1 = torch.tensor([[1.0, 0.0, 2.0], [1.0, 0.0, 0.0]])  # ||X_c||^2 = 2, 0, 4
    x2 = torch.tensor([[3.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # ||X_c||^2 = 10, 2, 0
    st = InputNormStat()
    st.update("l", x1)
    st.update("l", x2)
    assert torch.allclose(st.stat["l"], torch.tensor([6.0, 1.0, 2.0]))  # mean over the 2 windows
    w = torch.tensor([[1.0, 4.0, 2.0], [-3.0, 1.0, 1.0]])
    scores = wanda_scores(w, st.stat["l"])
    # row 0: 1*sqrt6=2.45, 4*1=4, 2*sqrt2=2.83 -> prune int(3*0.5)=1: column 0
    # row 1: 3*sqrt6=7.35, 1*1=1, 1*sqrt2=1.41 -> prune column 1
    keep = mask_from_scores(scores, 0.5, None)
    assert keep.int().tolist() == [[0, 1, 1], [1, 0, 1]]
    # Where the activations disagree with |W|, Wanda and magnitude differ:
    w3 = torch.tensor([[1.0, 2.0, 3.0]])
    stat3 = torch.tensor([100.0, 1.0, 1.0])  # scores 10, 2, 3
    assert mask_from_scores(wanda_scores(w3, stat3), 0.5, None).int().tolist() == [[1, 0, 1]]
    assert mask_from_scores(w3.abs(), 0.5, None).int().tolist() == [[0, 1, 1]]
    # n:m on Wanda scores
    w2 = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    stat2 = torch.tensor([4.0, 1.0, 9.0, 0.25])  # sqrt: 2 1 3 0.5 -> scores 2 1 3 0.5
    keep2 = mask_from_scores(wanda_scores(w2, stat2), 0.5, (2, 4))
    assert keep2.int().tolist() == [[1, 0, 1, 0]]


def test_nm_realised_exact_per_group_random():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(16, 64, generator=g)
    for n, m in [(2, 4), (4, 8), (1, 4), (3, 4)]:
        keep = nm_mask(scores, n, m)  # n KEPT of every m
        per_group = keep.reshape(16, 64 // m, m).sum(-1)
        assert (per_group == n).all()
        assert (~keep).float().mean().item() == pytest.approx(1 - n / m)


def test_nm_mask_1_of_4_keeps_the_largest():
    w = torch.tensor([[0.5, 3.0, 1.0, 2.0, 9.0, 8.0, 7.0, 6.0]])
    assert nm_mask(w, 1, 4).int().tolist() == [[0, 1, 0, 0, 1, 0, 0, 0]]
    assert nm_mask(w, 3, 4).int().tolist() == [[0, 1, 1, 1, 1, 1, 1, 0]]


def test_row_mask_realised_is_int_c_s_per_row():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(7, 101, generator=g)
    for s in (0.1, 0.5, 0.7, 0.33):
        keep = row_mask(scores, s)
        assert ((~keep).sum(1) == int(101 * s)).all()
