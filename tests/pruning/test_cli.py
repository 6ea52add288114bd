"""besa prune / besa eval: bad input -> ONE line on stderr and exit status 2; the happy path on a local model."""

import json

import pytest

from besa.cli import main
from tests.pruning.helpers import save_tiny_hf_dir, tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_hf_dir(tiny_model(), tmp_path_factory.mktemp("m") / "tiny")


def _one_line_error(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    err = [e for e in err if not e.startswith(("Loading weights", "prune "))]  # progress bars
    assert rc == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("besa ")
    return err[0]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["prune", "--method", "wanda", "--sparsity", "1.5", "--out", "X"], "(0, 1)"),
        (["prune", "--method", "wanda", "--sparsity", "0", "--out", "X"], "(0, 1)"),
        (["prune", "--method", "wanda", "--pattern", "4:2", "--out", "X"], "0 < N < M"),
        (["prune", "--method", "wanda", "--pattern", "2-4", "--out", "X"], "N:M"),
        (["prune", "--method", "wanda", "--pattern", "2:4", "--sparsity", "0.7", "--out", "X"], "contradicts"),
        (["prune", "--method", "wanda", "--pattern", "1:4", "--sparsity", "0.25", "--out", "X"], "prunes 0.75"),  # N:M = N kept
        (["prune", "--method", "nosuch", "--out", "X"], "unknown method"),
        (["prune", "--method", "wanda", "--model", "no-such-model", "--out", "X"], "unknown model"),
        (["prune", "--method", "wanda", "--model", "/nonexistent/m.gguf", "--out", "X"], "not found"),
        (["prune", "--method", "wanda", "--layer-sparsity", "/nonexistent.json", "--out", "X"], "not found"),
        (["eval", "--masks", "/nonexistent/masks.safetensors"], "not found"),
        (["eval", "--seqlen", "1"], "seqlen"),
        (["eval", "--max-windows", "0"], "max-windows"),
    ],
)
def test_bad_inputs_give_one_line(capsys, argv, needle):
    assert needle in _one_line_error(capsys, argv)


def test_bad_inputs_needing_a_model(capsys, tmp_path, tiny_dir):
    base = ["prune", "--model", str(tiny_dir), "--method", "wanda", "--nsamples", "2", "--seqlen", "8", "--no-progress", "--out", str(tmp_path / "r")]
    assert "group-size" in _one_line_error(capsys, base + ["--wbits", "4", "--group-size", "48"])
    assert "multiple of 3" in _one_line_error(capsys, base + ["--pattern", "2:3"])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    assert "corrupt" in _one_line_error(capsys, ["eval", "--model", str(tiny_dir), "--masks", str(bad)])
    assert "not found" in _one_line_error(
        capsys,
        ["prune", "--model", str(tiny_dir), "--method", "wanda", "--calib-dataset", "wikitext2", "--data-path", str(tmp_path), "--out", str(tmp_path / "r")],
    )


def test_prune_then_eval_on_local_model(capsys, tmp_path, tiny_dir, monkeypatch):
    # WikiText-2 in its native raw layout, so no offline corpus or hub is involved.
    wt = tmp_path / "wt2"
    wt.mkdir()
    text = "".join(" the a of and to in is was for on that with as by at from \n" for _ in range(40))
    for split in ("train", "valid", "test"):
        (wt / f"wiki.{split}.raw").write_text(text)
    out = tmp_path / "run"
    rc = main(
        [
            "prune",
            "--model",
            str(tiny_dir),
            "--method",
            "wanda",
            "--pattern",
            "2:4",
            "--calib-dataset",
            "wikitext2",
            "--data-path",
            str(wt),
            "--nsamples",
            "2",
            "--seqlen",
            "16",
            "--no-progress",
            "--out",
            str(out),
            "--save-model",
            str(tmp_path / "pruned"),
        ]
    )
    assert rc == 0
    capsys.readouterr()
    man = json.loads((out / "manifest.json").read_text())
    assert man["pattern"] == "2:4" and man["calibration"]["dataset"] == "wikitext2" and man["calibration"]["nsamples"] == 2
    assert (tmp_path / "pruned" / "config.json").is_file()
    rc = main(
        [
            "eval",
            "--model",
            str(tiny_dir),
            "--masks",
            str(out),
            "--dataset",
            "wikitext2",
            "--data-path",
            str(wt),
            "--seqlen",
            "16",
            "--max-windows",
            "3",
            "--json",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    res = json.loads(lines[0])
    for key in ("ppl", "dataset", "seqlen", "windows", "sparsity"):
        assert key in res
    assert res["windows"] == 3 and res["seqlen"] == 16 and res["sparsity"] == pytest.approx(0.5) and res["dataset"] == "wikitext2"
    assert json.loads((out / "eval.json").read_text()) == res
    # The saved pruned model gives the same ppl without masks.
    rc = main(
        [
            "eval",
            "--model",
            str(tmp_path / "pruned"),
            "--dataset",
            "wikitext2",
            "--data-path",
            str(wt),
            "--seqlen",
            "16",
            "--max-windows",
            "3",
            "--json",
            "--no-progress",
        ]
    )
    res2 = json.loads(capsys.readouterr().out.strip())
    assert res2["ppl"] == pytest.approx(res["ppl"], rel=1e-5)
