"""bench/quality.py end to end on a tiny random model (mechanics only; the SmolLM2 numbers are in docs/results.md)."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def quality():
    spec = importlib.util.spec_from_file_location("bench_quality", ROOT / "bench" / "quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_rows_and_ratio(quality, tmp_path, capsys):
    from tests.pruning.helpers import tiny_model
    from tests.pruning.test_zeroshot import byte_tokenizer

    d = tmp_path / "model"
    tiny_model().save_pretrained(str(d))
    byte_tokenizer().save_pretrained(str(d))
    assert (
        quality.main(
            [
                "--model",
                str(d),
                "--only",
                "wanda,besa-exact+admm",
                "--nsamples",
                "2",
                "--seqlen",
                "32",
                "--eval-windows",
                "2",
                "--eval-seqlen",
                "64",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "q"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [l for l in out.splitlines() if l.startswith("| wanda") or l.startswith("| besa-exact+admm")]
    assert len(rows) == 2 and rows[0].split("|")[5].strip() == "1.000"  # Wanda is the only baseline here
    assert (tmp_path / "q" / "besa-exact+admm" / "weights.safetensors").is_file()
    # a second call reuses the stored rows (same flags, same protocol): same table, no new run
    stamp = (tmp_path / "q" / "wanda" / "quality.json").stat().st_mtime_ns
    args = ["--model", str(d), "--nsamples", "2", "--seqlen", "32", "--eval-windows", "2", "--eval-seqlen", "64", "--threads", "1"]
    assert quality.main([*args, "--only", "wanda,besa-exact+admm", "--out", str(tmp_path / "q")]) == 0
    again = [l for l in capsys.readouterr().out.splitlines() if l.startswith("| wanda") or l.startswith("| besa-exact+admm")]
    assert again == rows and (tmp_path / "q" / "wanda" / "quality.json").stat().st_mtime_ns == stamp
    # --add: an extra configuration with its own flags; 2:4 rows are compared with the 2:4 baselines only
    assert (
        quality.main([*args, "--only", "wanda,wanda-2:4", "--add", "w24u=--method wanda --pattern 2:4 --weight-update obs", "--out", str(tmp_path / "q")]) == 0
    )
    table = {l.split("|")[1].strip(): l.split("|") for l in capsys.readouterr().out.splitlines() if l.startswith("| w")}
    assert table["wanda-2:4"][5].strip() == "1.000" and table["wanda"][5].strip() == "1.000"
    assert float(table["w24u"][3]) == pytest.approx(0.5, abs=1e-4) and table["w24u"][2].strip() == "`--method wanda --pattern 2:4 --weight-update obs`"
    with pytest.raises(SystemExit):
        quality.main(["--only", "nope"])
