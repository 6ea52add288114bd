"""reports.figures.FIGURES drives the page: one Figure entry gives a section, a table-of-contents link,
the dispatch (with its variants) and the figure files — nothing else to edit."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from reports import figures as F
from reports.html import render_report
from reports.plotkit import new_figure
from reports.table import build_table, load_runs, row_sparsity_table

DEFAULT = Path(__file__).parent / "fixtures" / "default"


@pytest.fixture(scope="module")
def runs():
    return load_runs([DEFAULT])


def _demo(df: pd.DataFrame, method: str | None = None) -> F.FigureData:
    """A figure added the documented way: a function returning FigureData (title from the registry)."""
    sub = df if method is None else df[df["method"] == method]
    if sub.empty:
        raise F.NoData(f"no {method} run")
    fig, axes = new_figure(1, 1, 3.0, 2.0)
    axes[0, 0].bar(range(len(sub["label"].unique())), 1.0)
    return F._figure("demo", fig, f"{len(sub)} rows", {"all": {"rows": len(sub)}}, variant=method)


def _toc(page: str) -> list[str]:
    return re.findall(r"href='#([\w-]+)'", re.search(r"<nav id='toc'>(.*?)</nav>", page, re.S).group(1))


def test_registry_order_is_the_page_order(runs):
    df = build_table(runs)
    got = [sec for sec, _, _ in F.build_figures(df, row_sparsity_table(runs), None)]
    ids = list(F.FIGURES)
    assert got == sorted(got, key=ids.index)  # sections come in registry order, variants kept together
    assert set(got) == set(ids) - {"compare", "acc_vs_speedup"}  # one experiment: no comparison; no HellaSwag scores
    titles = {sec: title for sec, title, _ in F.build_figures(df, row_sparsity_table(runs), None)}
    assert titles == {k: F.FIGURES[k].title for k in titles}


def test_one_registry_entry_adds_section_toc_and_files(runs, tmp_path, monkeypatch):
    demo = F.Figure("demo", "Demo figure", _demo, variants=lambda inp: [{"method": "wanda"}, {"method": "besa"}, {"method": "nosuch"}])
    monkeypatch.setattr(F, "FIGURES", {"demo": demo})
    page = render_report(runs, tmp_path).read_text()
    assert "fig-demo" in _toc(page) and "<section id='fig-demo'><h2>Demo figure</h2>" in page
    for method in ("wanda", "besa"):  # one drawing per variant, id and title from the registry entry
        assert f'id="img-demo-{method}" alt="Demo figure: {method}"' in page
        assert (tmp_path / "figures" / f"demo-{method}.svg").is_file()
    assert "Not shown: no nosuch run" in page  # NoData keeps its place and says why
    assert "fig-allocation" not in page  # the page draws exactly the registry


def test_shown_false_means_no_section(runs, tmp_path, monkeypatch):
    hidden = F.Figure("demo", "Demo figure", _demo, shown=lambda inp: False)
    monkeypatch.setattr(F, "FIGURES", {"demo": hidden})
    assert F.build_figures(build_table(runs), None, None) == []
    assert "fig-demo" not in render_report(runs, tmp_path).read_text()


def test_input_names_what_the_function_gets(runs, monkeypatch):
    seen = {}

    def grab(x):
        seen["x"] = x
        raise F.NoData("nothing")

    rows = row_sparsity_table(runs)
    monkeypatch.setattr(F, "FIGURES", {"g": F.Figure("g", "G", grab, input="rows")})
    assert F.build_figures(build_table(runs), rows, None) == [("g", "G", "nothing")]
    assert seen["x"] is rows


def test_shipped_figures_draw_with_registry_titles(runs):
    fd = F.allocation(build_table(runs))
    assert (fd.fig_id, fd.title) == ("allocation", F.FIGURES["allocation"].title)
    fd = F.layer_speedup(build_table(runs), "vitcod")
    assert (fd.fig_id, fd.title) == ("layer_speedup-vitcod", f"{F.FIGURES['layer_speedup'].title}: vitcod")
