"""The self-contained HTML report: every figure PNG base64-embedded, tables inline, no external files.

``render_report(runs, out_dir, sweep=None)`` writes ``OUT/report.html`` (plus the CSV/Markdown
tables of :mod:`reports.table`) and returns its path.  Each figure of
:data:`reports.figures.FIGURES` gets a section with ``id="fig-<name>"``; a figure that has no
data gets the section too, saying why, and every gap found in the run directories (a run with no
simulation, no eval ...) is listed at the top, so a partial experiment still gives an honest page.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from reports.figures import FIGURES, NoData, allocation_heatmap
from reports.table import RunInfo, build_table, summary_table, write_tables
from besa_common.fileio import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.8em;margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.5em 0}
.missing{color:#a00}.caption{color:#555;font-size:.9em}img{max-width:100%}
figure{margin:1em 0}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_html(fig_id: str, title: str, draw, df: pd.DataFrame | None, size=(8.0, 4.6)) -> str:
    """One ``<section>``: the rendered figure, or a note saying why there is none."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)  # rendered by the Agg canvas on savefig; no pyplot state
    ax = fig.subplots()
    try:
        caption = draw(df, ax)
        body = f'<figure><img id="img-{fig_id}" alt="{html.escape(title)}" src="data:image/png;base64,{_png(fig)}"><figcaption class="caption">{html.escape(caption)}</figcaption></figure>'
    except NoData as exc:
        body = f'<p class="note missing">Not shown: {html.escape(str(exc))}.</p>'
    return body


def _table_html(df: pd.DataFrame) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _decode_note(summ: pd.DataFrame) -> str:
    """The simulator spec asks the report to say when decode is memory-bound, not quote compute-only speedups alone."""
    cyc = summ[(summ["mode"] == "cycle") & summ["speedup"].notna()] if "mode" in summ.columns else summ.iloc[0:0]
    if cyc.empty:
        return ""
    lo, hi = cyc["tokens"].min(), cyc["tokens"].max()
    dec = cyc[cyc["tokens"] == lo]["speedup"]
    pre = cyc[cyc["tokens"] == hi]["speedup"]
    return (f'<p class="note">Decode (N = {int(lo)}) is usually memory-bound on these presets: its speedup comes from fewer bytes '
            f'(kept values + index metadata), not fewer MACs. Pruned-run speedups here: decode {dec.min():.2f}–{dec.max():.2f}×, '
            f'prefill (N = {int(hi)}) {pre.min():.2f}–{pre.max():.2f}×. The besa-compat mode is compute-only (N = 1, no memory model) '
            f'and reproduces the BESA authors\' quirks; do not read it as a decode speedup.</p>')


# Preferred axes of the sweep heatmaps, when swept (the most asked what-if questions first).
_AXES = ["lines", "dram_bytes_per_cycle", "macs_per_line", "index_format", "split", "tau", "weight_buffer_bytes", "index_buffer_bytes"]


def sweep_views(sweep: pd.DataFrame | None) -> list[tuple[str, str, int]]:
    """(x, y, tokens) of the sweep heatmaps to draw: up to two pairs of swept fields × each token count."""
    from simulator.sweep import RESULT_FIELDS

    if sweep is None or sweep.empty or "tokens" not in sweep.columns:
        return []
    ok = sweep[sweep["status"] == "ok"] if "status" in sweep.columns else sweep
    swept = [c for c in ok.columns if c not in RESULT_FIELDS and c not in ("tokens", "workload", "mode", "preset", "sweep")
             and ok[c].nunique(dropna=True) > 1]
    swept.sort(key=lambda c: _AXES.index(c) if c in _AXES else len(_AXES))
    pairs = [(swept[i], swept[i + 1]) for i in (0, 2) if i + 1 < len(swept)]
    return [(x, y, int(t)) for x, y in pairs for t in sorted(ok["tokens"].dropna().unique())]


def render_report(runs: list[RunInfo], out_dir: str | Path, sweep: pd.DataFrame | None = None, title: str = "besa report",
                  notes: Iterable[str] = ()) -> Path:
    """Write ``out_dir/report.html`` (+ table.csv, summary.csv, report.md) and return the HTML path."""
    out_dir = Path(out_dir)
    df = build_table(runs)
    write_tables(df, out_dir)
    summ = summary_table(df)

    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    models = ", ".join(sorted({str(m) for m in df["model"].dropna().unique()})) or "unknown model"
    what = f"{len(runs)} run(s) of {html.escape(models)}" if runs else "what-if sweep results"
    parts.append(f"<p>{what}; generated {stamp} by <code>besa report</code>. "
                 "Sparsity = fraction of weights pruned; speedup = dense cycles / cycles on the same simulated machine.</p>")
    if sweep is not None and not sweep.empty:
        bad = sweep[sweep["status"] != "ok"] if "status" in sweep.columns else sweep.iloc[0:0]
        wls = ", ".join(map(str, pd.unique(sweep["workload"]))) if "workload" in sweep.columns else "?"
        msg = f"Sweep: {len(sweep)} points over workload(s) {wls}; {len(bad)} failed"
        if len(bad):
            msg += f" (e.g. {bad['error'].astype(str).iloc[0]}; rerun the sweep to retry them)"
        parts.append(f"<p class='note'>{html.escape(msg)}.</p>")
    if any(r.manifest.get("fixture") for r in runs):
        parts.append('<p class="note">FIXTURE data: hand-made files for tests, not measurements.</p>')
    if "smollm2" in models.lower():
        parts.append('<p class="note">SmolLM2-135M weights come from a Q4_1 GGUF file dequantized to fp32: a trained model with a little quantization noise.</p>')
    for n in notes:
        parts.append(f'<p class="note">{html.escape(n)}</p>')
    gaps = [(r.name, m) for r in runs for m in r.missing]
    failures = [(r.name, step, rec.get("error")) for r in runs for step, rec in (r.status.get("steps") or {}).items() if isinstance(rec, dict) and rec.get("error")]
    if gaps or failures:
        parts.append("<h2 id='gaps'>Missing pieces</h2><ul>")
        parts += [f"<li class='missing'>{html.escape(n)}: {html.escape(m)}</li>" for n, m in gaps]
        parts += [f"<li class='missing'>{html.escape(n)}: step {html.escape(s)} failed: {html.escape(str(e))}</li>" for n, s, e in failures]
        parts.append("</ul>")

    if runs:
        parts.append("<h2 id='summary'>Summary</h2>")
    show = [c for c in ("run", "method", "sparsity", "pattern", "wbits", "realised_sparsity", "ppl", "ppl_dataset", "ppl_seqlen", "ppl_windows",
                        "preset", "mode", "tokens", "cycles", "dense_cycles", "speedup", "speedup_vs_nm") if c in summ.columns]
    if runs:
        parts.append(_table_html(summ[show]))
        parts.append(_decode_note(summ))

    for fig_id, (draw, fig_title) in FIGURES.items():
        if not runs and fig_id != "sweep_heatmap":
            continue  # a sweep-only page (besa sweep): no run directories to plot
        parts.append(f"<h2 id='fig-{fig_id}'>{html.escape(fig_title)}</h2>")
        if fig_id == "allocation":
            pruned = [r for r in df.dropna(subset=["layer_sparsity", "block"])["run"].unique() if (df.loc[df["run"] == r, "method"] != "dense").all()]
            if not pruned:
                parts.append(figure_html(fig_id, fig_title, draw, df))
            for run in pruned:
                blocks = df.loc[df["run"] == run, "block"].nunique()
                parts.append(figure_html(f"{fig_id}-{run}", f"{fig_title}: {run}", lambda d, ax, r=run: allocation_heatmap(d, ax, run=r), df,
                                         size=(7.0, max(2.5, min(9.0, 0.25 * blocks + 1.5)))))
        elif fig_id == "sweep_heatmap":
            views = sweep_views(sweep)
            if not views:
                parts.append(figure_html(fig_id, fig_title, draw, sweep))
            for i, (x, y, tokens) in enumerate(views):
                vid = fig_id if i == 0 else f"{fig_id}-{x}-{y}-n{tokens}"
                parts.append(figure_html(vid, f"{fig_title}: {x} × {y}, N = {tokens}",
                                         lambda d, ax, x=x, y=y, t=tokens, draw=draw: draw(d, ax, x=x, y=y, tokens=t), sweep))
        else:
            parts.append(figure_html(fig_id, fig_title, draw, df))
    parts.append("<h2 id='files'>Files</h2><p>Every row of the tidy table: <code>table.csv</code>; whole-model totals: "
                 "<code>summary.csv</code>; Markdown: <code>report.md</code> (next to this page). Regenerate with "
                 "<code>besa report DIR...</code>.</p></body></html>")
    path = out_dir / "report.html"
    atomic_write_text(path, "\n".join(parts))
    return path
