"""--calib-ids / --eval-ids: token-exact calibration and evaluation from .npy files."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from besa.cli import main
from besa_common.errors import UserError
from pruning.token_ids import check_vocab, load_token_ids
from tests.pruning.helpers import tiny_model


def _save(path, arr):
    np.save(path, arr, allow_pickle=True)
    return path


def test_load_checks_and_records(tmp_path):
    p = _save(tmp_path / "ok.npy", np.array([[1, 2, 3], [4, 5, 6]], np.int32))
    ids, rec = load_token_ids(p, "--calib-ids")
    assert ids.dtype == np.int64 and ids.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert rec == {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "shape": [2, 3]}
    cases = {
        "float.npy": (np.ones((2, 3), np.float32), "must be integers"),
        "flat.npy": (np.arange(6), "expected \\[n, T\\]"),
        "empty.npy": (np.zeros((0, 4), np.int64), "at least 1 window"),
        "short.npy": (np.zeros((3, 1), np.int64), "at least 2 tokens"),
        "neg.npy": (np.array([[1, -2]]), "negative token id"),
        "obj.npy": (np.array([[1, None]], dtype=object), "not a plain numeric"),
    }
    for name, (arr, msg) in cases.items():
        with pytest.raises(UserError, match=msg):
            load_token_ids(_save(tmp_path / name, arr), "--calib-ids")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(UserError, match="not a readable .npy"):
        load_token_ids(tmp_path / "junk.npy", "--eval-ids")
    with pytest.raises(UserError, match="not found"):
        load_token_ids(tmp_path / "nope.npy", "--eval-ids")
    with pytest.raises(UserError, match="token id 256, outside"):
        check_vocab(np.array([[0, 256]]), 256, "--eval-ids", "f.npy")


@pytest.fixture
def tiny_dir(tmp_path):
    from tests.pruning.test_zeroshot import byte_tokenizer

    d = tmp_path / "model"
    tiny_model().save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    return d


def _one_line_exit2(argv, capsys, msg):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1, err


def test_prune_calib_ids_token_exact_and_bad_files(tiny_dir, tmp_path, capsys, monkeypatch):
    ids = np.random.default_rng(0).integers(0, 256, (3, 16)).astype(np.int64)
    f = _save(tmp_path / "calib.npy", ids)
    out = tmp_path / "run"
    base = ["prune", "--model", str(tiny_dir), "--method", "wanda", "--no-progress", "--out", str(out)]
    assert main([*base, "--calib-ids", str(f)]) == 0
    man = json.loads((out / "manifest.json").read_text())
    cal = man["calibration"]
    assert cal["sampling"] == "ids" and cal["nsamples"] == 3 and cal["seqlen"] == 16
    assert cal["ids"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    # the masks equal a driver run on exactly these tokens
    import pruning.methods  # noqa: F401
    from besa_common.masks import read_masks
    from pruning.driver import DriverConfig, prune_model
    from pruning.methods.base import METHODS
    from pruning.models import load_model

    model, _ = load_model(str(tiny_dir))
    prune_model(model, METHODS["wanda"](), torch.from_numpy(ids), tmp_path / "ref", DriverConfig(sparsity=0.5, progress=False))
    a, b = read_masks(out / "masks.safetensors")[0], read_masks(tmp_path / "ref" / "masks.safetensors")[0]
    assert all(np.array_equal(a[n], b[n]) for n in a)
    # bad files and contradictions: one line, exit 2, before the model is loaded
    import pruning.models

    monkeypatch.setattr(pruning.models, "load_model", lambda *a, **k: pytest.fail("model loaded before the check"))
    bad = tmp_path / "bad"
    base = ["prune", "--model", str(tiny_dir), "--method", "wanda", "--no-progress", "--out", str(bad)]
    _one_line_exit2([*base, "--calib-ids", str(_save(tmp_path / "v.npy", np.array([[1, 300]])))], capsys, "outside the model's vocabulary [0, 256)")
    _one_line_exit2([*base, "--calib-ids", str(_save(tmp_path / "f.npy", np.ones((2, 4), np.float64)))], capsys, "must be integers")
    _one_line_exit2([*base, "--calib-ids", str(_save(tmp_path / "s.npy", np.ones((2, 2, 2), np.int64)))], capsys, "expected [n, T]")
    _one_line_exit2([*base, "--calib-ids", str(_save(tmp_path / "e.npy", np.ones((0, 8), np.int64)))], capsys, "at least 1 window")
    _one_line_exit2([*base, "--calib-ids", str(f), "--nsamples", "4"], capsys, "--nsamples 4 contradicts")
    _one_line_exit2([*base, "--calib-ids", str(f), "--calib-dataset", "wiki"], capsys, "exclude each other")
    assert not (bad / "masks.safetensors").exists()


def test_eval_ids_token_exact_and_bad_files(tiny_dir, tmp_path, capsys, monkeypatch):
    from pruning.evaluate import perplexity
    from pruning.models import load_model

    ids = np.random.default_rng(1).integers(0, 256, (3, 12)).astype(np.int32)
    f = _save(tmp_path / "eval.npy", ids)
    capsys.readouterr()
    assert main(["eval", "--model", str(tiny_dir), "--eval-ids", str(f), "--json", "--no-progress", "--out", str(tmp_path / "e.json")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["windows"] == 3 and res["seqlen"] == 12 and res["dataset"] is None
    assert res["eval_ids"]["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "e.json").read_text()) == res
    # by hand: mean next-token NLL over each window separately
    model, _ = load_model(str(tiny_dir))
    t = torch.from_numpy(ids.astype(np.int64))
    with torch.no_grad():
        nll = [torch.nn.functional.cross_entropy(model(t[i : i + 1]).logits[0, :-1], t[i, 1:]).item() for i in range(3)]
    assert res["ppl"] == pytest.approx(float(np.exp(np.mean(nll))), rel=1e-6)
    assert res["ppl"] == perplexity(model, t.reshape(1, -1), 12, progress=False)["ppl"]
    # per-window NLLs (summed: mean x seqlen), the windows' digest and the bootstrap interval of the ppl
    assert res["window_nll"] == pytest.approx([x * 12 for x in nll], rel=1e-6) and res["window_tokens"] == [12, 12, 12]
    assert res["windows_sha256"] == hashlib.sha256(ids.astype(np.int64).tobytes()).hexdigest()
    lo, hi = res["ppl_ci95"]
    assert np.exp(min(nll)) - 1e-9 <= lo <= res["ppl"] <= hi <= np.exp(max(nll)) + 1e-9  # 3 windows: bounds = extremes
    assert lo == pytest.approx(np.exp(min(nll)), rel=1e-9) and hi == pytest.approx(np.exp(max(nll)), rel=1e-9)
    import pruning.models

    monkeypatch.setattr(pruning.models, "load_model", lambda *a, **k: pytest.fail("model loaded before the check"))
    ev = ["eval", "--model", str(tiny_dir), "--json", "--no-progress"]
    _one_line_exit2([*ev, "--eval-ids", str(_save(tmp_path / "v.npy", np.array([[5, 256]])))], capsys, "outside the model's vocabulary")
    _one_line_exit2([*ev, "--eval-ids", str(f), "--seqlen", "8"], capsys, "--seqlen 8 contradicts")
    _one_line_exit2([*ev, "--eval-ids", str(_save(tmp_path / "b.npy", np.array([[True, False]])))], capsys, "must be integers")
