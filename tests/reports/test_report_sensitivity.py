"""The report's "which guesses decide the answer" section, from ``besa simulate --sensitivity`` results."""

from __future__ import annotations

from reports.build import build_report
from reports.sensitivity import sensitivity_table
from reports.table import load_run
from tests.simulator.test_cli import run_cli


def test_a_sensitivity_run_gets_its_section_and_banks_decides(tmp_path, capsys):
    out = tmp_path / "o"
    code, printed, err = run_cli(
        ["--synthetic", "llama-7b[1]:sparsity=0.5", "--set", "macs_per_line=16", "--tokens", "1,2048", "--out", str(out), "--sensitivity"], capsys
    )
    assert code == 0, err
    table = sensitivity_table([load_run(out)])
    banks = table[table["field"] == "banks"].iloc[0]
    assert banks["decides"] and banks["range"] == "32 .. 128" and banks["speedup move"] < -0.05 and banks["at N (speedup)"] == 2048
    assert set(table["field"][table["decides"]]) <= set(table["field"])  # every guessed field has a row
    # the printed line for banks and the table agree on the largest speedup move
    line = next(l for l in printed.splitlines() if l.strip().startswith("banks ["))
    assert f"({banks['speedup move']:+.1%})" in line
    page = build_report([out]).read_text()
    assert "Which guesses decide the answer" in page and "<td>banks</td>" in page
    md = (out / "report.md").read_text()
    assert "## Which guesses decide the answer" in md and "| banks |" in md


def test_no_sensitivity_no_section(tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = run_cli(["--synthetic", "llama-7b[1]:sparsity=0.5", "--tokens", "1", "--out", str(out)], capsys)
    assert code == 0, err
    assert sensitivity_table([load_run(out)]).empty
    assert "Which guesses decide the answer" not in build_report([out]).read_text()
