"""OWL: outlier ratio, the reference's normalisation, and per-block targets through the driver."""

import json

import numpy as np
import pytest
import torch

import pruning.methods  # noqa: F401
from besa_common.errors import UserError
from besa_common.masks import read_masks
from pruning.driver import DriverConfig, prune_model
from pruning.methods.base import METHODS
from pruning.methods.owl import OWL, OWLConfig, outlier_ratio, owl_sparsities
from tests.pruning.helpers import tiny_model


def test_outlier_ratio_by_hand():
    # mean = (1*9 + 91) / 10 = 10; M = 5 -> threshold 50: one entry of ten is an outlier
    s = [torch.ones(3, 3), torch.tensor([[91.0]])]
    assert outlier_ratio(s, 5.0) == pytest.approx(0.1)


def test_owl_sparsities_by_hand():
    # ratios 0, 0.5, 1 -> scaled to 0, λ, 2λ -> centred on density 0.5 -> densities 0.42, 0.5, 0.58
    sp = owl_sparsities([0.0, 0.05, 0.1], 0.5, 0.08)
    assert sp == pytest.approx([0.58, 0.5, 0.42])
    assert np.mean(sp) == pytest.approx(0.5)
    assert owl_sparsities([0.2, 0.2], 0.6, 0.08) == [0.6, 0.6]


def test_owl_through_driver(tmp_path):
    model = tiny_model(layers=3)
    calib = torch.randint(0, 256, (3, 16), generator=torch.Generator().manual_seed(0))
    method = OWL(OWLConfig(lam=0.08, m=2.0))
    manifest = prune_model(model, method, calib, tmp_path, DriverConfig(sparsity=0.5, progress=False))
    targets = method.block_targets
    assert len(targets) == 3 and np.mean(list(targets.values())) == pytest.approx(0.5)
    assert max(targets.values()) - min(targets.values()) > 0  # random blocks still differ a little
    keep, _ = read_masks(tmp_path / "masks.safetensors")
    for i, s in targets.items():
        k = keep[f"model.layers.{i}.mlp.up_proj"]
        assert ((~k).sum(1) == int(k.shape[1] * s)).all()  # Wanda per row at the block's target
    alloc = json.loads((tmp_path / "allocation.json").read_text())
    assert alloc["layers"]["model.layers.2.self_attn.q_proj"]["target"] == pytest.approx(targets[2])
    assert alloc["blocks"]["1"]["outlier_ratio"] == method.ratios[1]
    assert manifest["planned_sparsity"]["model.layers.0.mlp.down_proj"] == pytest.approx(targets[0])


def test_owl_rejects_pattern(tmp_path):
    with pytest.raises(UserError, match="pattern"):
        prune_model(tiny_model(), METHODS["owl"](), torch.randint(0, 256, (2, 8)), tmp_path, DriverConfig(sparsity=0.5, pattern=(2, 4), progress=False))
