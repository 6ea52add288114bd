"""The report's plots: ONE function per figure, each ``fn(df, ax, **choices) -> str``.

``df`` is the tidy table of :mod:`reports.table` (or a sweep results table for
:func:`sweep_heatmap`), ``ax`` a matplotlib Axes to draw on; the return value is a one-line
caption saying what was drawn (and what was chosen when the table holds several options).
A function that finds nothing to draw raises :class:`NoData` with the reason, and the HTML page
says so instead of showing an empty frame.  The report draws on bare ``matplotlib.figure.Figure``
objects rendered by the Agg canvas (no pyplot, no display, no global backend switch), so
importing this module in a notebook leaves its inline backend alone.

Conventions: sparsity = fraction of weights pruned; speedup = dense cycles / cycles on the same
machine; ``tokens`` = N, the tokens in flight (1 = a decode step, seqlen = prefill).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports.table import PROJECTIONS, summary_table

METHOD_COLORS = {"dense": "#444444", "magnitude": "#8c564b", "wanda": "#1f77b4", "sparsegpt": "#2ca02c", "owl": "#9467bd", "besa": "#d62728"}


class NoData(Exception):
    """The table has nothing this figure can show; the message says why (one line)."""


def _label(row) -> str:
    pat = row.get("pattern")
    lab = f"{row.get('method')}"
    if row.get("method") != "dense":
        lab += f" {row.get('sparsity', 0):.0%}" if pd.notna(row.get("sparsity")) else ""
        if pat and pat not in ("unstructured", "dense"):
            lab += f" {pat}"
    if pd.notna(row.get("wbits")) and int(row.get("wbits")) < 16:
        lab += f" w{int(row['wbits'])}"
    return lab


def _color(method: str) -> str:
    return METHOD_COLORS.get(str(method), "#17becf")


def _cycle_rows(df: pd.DataFrame, mode: str | None = None) -> pd.DataFrame:
    sim = df.dropna(subset=["cycles"])
    if mode is not None:
        sim = sim[sim["mode"] == mode]
    return sim


def _pick(series: pd.Series, prefer=None):
    vals = [v for v in pd.unique(series.dropna())]
    if not vals:
        return None
    if prefer is not None and prefer in vals:
        return prefer
    return vals[0]


def allocation_heatmap(df: pd.DataFrame, ax, run: str | None = None) -> str:
    """Realised sparsity per layer (rows: decoder blocks, columns: the 7 projections) of one run."""
    alloc = df.dropna(subset=["layer_sparsity", "block"])
    alloc = alloc[alloc["method"] != "dense"]
    if alloc.empty:
        raise NoData("no per-layer sparsity (allocation.json) in any pruned run")
    if run is None:
        run = _pick(alloc["run"], prefer=_pick(alloc.loc[alloc["method"] == "besa", "run"]))
    sub = alloc[alloc["run"] == run].drop_duplicates(["layer"])
    if sub.empty:
        raise NoData(f"run {run!r} has no per-layer sparsity")
    cols = [p for p in PROJECTIONS if p in set(sub["projection"])] + sorted(set(sub["projection"]) - set(PROJECTIONS))
    grid = sub.pivot_table(index="block", columns="projection", values="layer_sparsity", aggfunc="mean").reindex(columns=cols)
    target = float(sub["sparsity"].iloc[0]) if pd.notna(sub["sparsity"].iloc[0]) else float(np.nanmean(grid.values))
    span = max(0.02, float(np.nanmax(np.abs(grid.values - target))))
    im = ax.imshow(grid.values, aspect="auto", cmap="RdBu_r", vmin=target - span, vmax=target + span, interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    step = max(1, len(grid.index) // 16)
    ax.set_yticks(range(0, len(grid.index), step), [int(b) for b in grid.index[::step]])
    ax.set_ylabel("decoder block")
    ax.set_title(f"sparsity allocation: {_label(sub.iloc[0])} ({run})")
    ax.figure.colorbar(im, ax=ax, label="fraction pruned")
    return f"Realised per-layer sparsity of run {run} (target {target:.0%}; red = pruned more than the target, blue = less)."


def layer_cycles(df: pd.DataFrame, ax, preset: str | None = None, tokens: int | None = None) -> str:
    """Per-layer cycles: the dense baseline, the n:m run(s) and the unstructured run(s) on one machine."""
    sim = _cycle_rows(df, "cycle")
    if sim.empty:
        sim = _cycle_rows(df)
    if sim.empty:
        raise NoData("no simulated layers (sim/*/layers.csv) in any run")
    preset = preset or _pick(sim["preset"], prefer="vitcod")
    sim = sim[sim["preset"] == preset]
    tokens = tokens if tokens is not None else int(sim["tokens"].max())
    sim = sim[sim["tokens"] == tokens].copy()
    sim["order"] = sim["block"].fillna(0) * 100 + sim["projection"].map(lambda p: PROJECTIONS.index(p) if p in PROJECTIONS else 99)
    base = sim.drop_duplicates("layer").sort_values("order")
    x = np.arange(len(base))
    pos = dict(zip(base["layer"], x))
    ax.plot(x, base["dense_cycles"].to_numpy(), color="#444444", lw=2, label="dense")
    if "nm_cycles" in sim.columns and sim["nm_cycles"].notna().any():
        nm = sim.dropna(subset=["nm_cycles"]).drop_duplicates("layer").sort_values("order")
        ax.plot([pos[n] for n in nm["layer"]], nm["nm_cycles"].to_numpy(), color="#ff7f0e", lw=1.2, ls="--", label="2:4 engine (n:m)")
    runs = sim[sim["method"] != "dense"]
    for _run, g in runs.groupby("run", sort=True):
        g = g.sort_values("order")
        r0 = g.iloc[0]
        ls = ":" if r0["pattern"] not in ("unstructured",) else "-"
        ax.plot([pos[n] for n in g["layer"]], g["cycles"].to_numpy(), ls=ls, lw=1, color=_color(r0["method"]), label=_label(r0))
    ax.set_yscale("log")
    ax.set_xlabel("layer (block-major: q k v o gate up down)")
    ax.set_ylabel("cycles")
    step = max(1, len(base) // 12)
    ax.set_xticks(x[::step], [f"{int(b)}.{p.replace('_proj', '')}" if pd.notna(b) else p for b, p in zip(base["block"][::step], base["projection"][::step])], rotation=45, ha="right", fontsize=7)
    ax.set_title(f"per-layer cycles, preset {preset}, N = {tokens} tokens")
    ax.legend(fontsize=7, ncol=2)
    return f"Cycles per layer on preset {preset} at N = {tokens} tokens: dense baseline, the n:m engine, and every pruned run (dotted = n:m-pattern runs)."


def speedup_vs_sparsity(df: pd.DataFrame, ax) -> str:
    """Whole-model speedup against realised sparsity, one series per (preset, mode, tokens)."""
    summ = summary_table(df).dropna(subset=["speedup"])
    if summ.empty:
        raise NoData("no simulated runs")
    summ = summ.assign(x=summ["realised_sparsity"].fillna(summ["sparsity"]).fillna(0.0))
    markers = "osD^v<>p*h"
    for i, ((preset, mode, tokens), g) in enumerate(summ.groupby(["preset", "mode", "tokens"], sort=True)):
        g = g.sort_values("x")
        ax.plot(g["x"], g["speedup"], ls="-", lw=0.6, color="#999999", zorder=1)
        for _, r in g.iterrows():
            ax.scatter(r["x"], r["speedup"], marker=markers[i % len(markers)], color=_color(r["method"]), zorder=2, s=30)
        last = g.iloc[-1]
        ax.annotate(f"{preset}/{mode} N={int(tokens)}", (last["x"], last["speedup"]), fontsize=7, xytext=(4, 0), textcoords="offset points")
    for m in sorted(summ["method"].unique()):
        ax.scatter([], [], color=_color(m), label=m)
    ax.axhline(1.0, color="k", lw=0.5)
    ax.set_xlabel("realised sparsity (fraction pruned)")
    ax.set_ylabel("speedup vs dense (×)")
    ax.set_title("simulated speedup vs sparsity")
    ax.legend(fontsize=7)
    return "Whole-model speedup (Σ dense cycles / Σ cycles) against realised sparsity; one marker shape per preset/mode/token count."


def ppl_vs_speedup(df: pd.DataFrame, ax, preset: str | None = None, mode: str | None = None, tokens: int | None = None) -> str:
    """Perplexity against simulated speedup, with the Pareto front (lower ppl, higher speedup)."""
    summ = summary_table(df).dropna(subset=["speedup", "ppl"])
    if summ.empty:
        raise NoData("no run has both a perplexity (eval.json) and a simulation")
    preset = preset or _pick(summ["preset"], prefer="vitcod")
    summ = summ[summ["preset"] == preset]
    mode = mode or _pick(summ["mode"], prefer="cycle")
    summ = summ[summ["mode"] == mode]
    tokens = tokens if tokens is not None else int(summ["tokens"].max())
    # ties in speedup: the lower perplexity dominates, so it must come first
    summ = summ[summ["tokens"] == tokens].sort_values(["speedup", "ppl"], ascending=[False, True])
    front, best = [], np.inf
    for _, r in summ.iterrows():
        if r["ppl"] < best:
            front.append(r)
            best = r["ppl"]
    for _, r in summ.iterrows():
        ax.scatter(r["speedup"], r["ppl"], color=_color(r["method"]), s=40, zorder=3)
        ax.annotate(_label(r), (r["speedup"], r["ppl"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if front:
        f = pd.DataFrame(front).sort_values("speedup")
        ax.step(f["speedup"], f["ppl"], where="post", color="#d62728", lw=1, ls="--", label="Pareto front", zorder=2)
        ax.legend(fontsize=7)
    ds = _pick(summ["ppl_dataset"])
    sl = _pick(summ["ppl_seqlen"])
    ax.set_yscale("log")
    ax.set_xlabel(f"simulated speedup vs dense (×), {preset}/{mode}, N = {tokens}")
    ax.set_ylabel(f"perplexity ({ds}, seqlen {sl})" if ds else "perplexity")
    ax.set_title("quality vs speed")
    return f"Perplexity ({ds}, seqlen {sl}) against whole-model speedup on {preset}/{mode} at N = {tokens}; dashed = Pareto front."


def _hw_roofs(sim: pd.DataFrame) -> tuple[float | None, float | None]:
    peak = _pick(sim["peak_macs_per_cycle"]) if "peak_macs_per_cycle" in sim.columns else None
    bw = _pick(sim["bandwidth_bytes_per_cycle"]) if "bandwidth_bytes_per_cycle" in sim.columns else None
    return (float(peak) if peak else None, float(bw) if bw else None)


def roofline(df: pd.DataFrame, ax, phase: str = "prefill", preset: str | None = None) -> str:
    """Roofline per layer: achieved MACs/cycle against operational intensity (MACs per DRAM byte).

    ``phase`` = ``"decode"`` (the smallest token count, normally N = 1) or ``"prefill"`` (the largest).
    MACs = kept weights × N; bytes = weights + index metadata + activations as the simulator counted them.
    """
    sim = _cycle_rows(df, "cycle")
    need = {"bytes_weights", "bytes_act"}
    if sim.empty or not need <= set(sim.columns) or sim["bytes_weights"].isna().all():
        raise NoData("no cycle-mode simulation with byte counts (layers.csv bytes_weights / bytes_act)")
    preset = preset or _pick(sim["preset"], prefer="vitcod")
    sim = sim[sim["preset"] == preset]
    toks = sorted(sim["tokens"].dropna().unique())
    tokens = toks[0] if phase == "decode" else toks[-1]
    sim = sim[sim["tokens"] == tokens].copy()
    density = 1.0 - sim["layer_sparsity"].fillna(0.0)
    macs = sim["rows"] * sim["cols"] * density * tokens
    nbytes = sim["bytes_weights"].fillna(0) + sim.get("bytes_index", 0).fillna(0) + sim["bytes_act"].fillna(0)
    if "bytes_out" in sim.columns:
        nbytes = nbytes + sim["bytes_out"].fillna(0)
    sim["oi"] = macs / nbytes.where(nbytes > 0)
    sim["perf"] = macs / sim["cycles"]
    for _run, g in sim.groupby("run", sort=True):
        r0 = g.iloc[0]
        ax.scatter(g["oi"], g["perf"], s=12, alpha=0.75, color=_color(r0["method"]), marker="s" if r0["pattern"] not in ("unstructured", "dense") else "o", label=_label(r0))
    peak, bw = _hw_roofs(sim)
    note = ""
    if peak and bw:
        lo = max(1e-3, min(float(np.nanmin(sim["oi"])), peak / bw) / 4)  # show both sides of the ridge
        hi = max(float(np.nanmax(sim["oi"])) * 4, peak / bw * 4)
        xs = np.logspace(np.log10(lo), np.log10(hi), 200)
        ax.plot(xs, np.minimum(peak, bw * xs), color="k", lw=1.2, label=f"roof: {peak:g} MACs/cycle, {bw:g} B/cycle")
        ax.axvline(peak / bw, color="k", lw=0.5, ls=":")
        note = f" Ridge point {peak / bw:.3g} MACs/byte."
    else:
        note = " (The simulation summary gives no peak/bandwidth, so no roof is drawn.)"
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (MACs per DRAM byte)")
    ax.set_ylabel("achieved MACs / cycle")
    ax.set_title(f"roofline, {phase} (N = {int(tokens)}), preset {preset}")
    ax.legend(fontsize=6, ncol=2)
    bound = ""
    if "bound" in sim.columns and sim["bound"].notna().any():
        share = float((sim["bound"] == "memory").mean())
        bound = f" {share:.0%} of layer points are memory-bound."
    return f"Per-layer roofline for {phase} (N = {int(tokens)}) on {preset}.{note}{bound}"


def sweep_heatmap(df: pd.DataFrame, ax, x: str | None = None, y: str | None = None, value: str = "speedup", tokens: int | None = None) -> str:
    """What-if sweep: ``value`` (median over the other swept fields) on a grid of two swept hardware fields."""
    if df is None or df.empty:
        raise NoData("no sweep results")
    ok = df[df["error"].fillna("").astype(str) == ""] if "error" in df.columns else df
    ok = ok.dropna(subset=[value]) if value in ok.columns else ok.iloc[0:0]
    if ok.empty:
        raise NoData(f"no successful sweep point has {value!r}")
    from simulator.sweep import RESULT_FIELDS

    swept = [c for c in ok.columns if c not in RESULT_FIELDS and c not in ("tokens", "workload", "mode", "preset") and ok[c].nunique(dropna=True) > 1]
    if tokens is None and "tokens" in ok.columns:
        tokens = int(ok["tokens"].max())
    if "tokens" in ok.columns:
        ok = ok[ok["tokens"] == tokens]
    if x is None or y is None:
        if len(swept) < 2:
            raise NoData(f"need two swept fields for a heatmap, found {swept}")
        x, y = x or swept[0], y or swept[1]
    grid = ok.pivot_table(index=y, columns=x, values=value, aggfunc="median")
    im = ax.imshow(grid.values, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(grid.columns)), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.columns], rotation=45)
    ax.set_yticks(range(len(grid.index)), [f"{v:g}" if isinstance(v, float) else str(v) for v in grid.index])
    for (i, j), v in np.ndenumerate(grid.values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < np.nanmean(grid.values) else "k")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    others = [c for c in swept if c not in (x, y)]
    wl = ", ".join(map(str, pd.unique(ok["workload"]))) if "workload" in ok.columns else ""
    ax.set_title(f"sweep: {value} ({wl}, N = {tokens})")
    ax.figure.colorbar(im, ax=ax, label=value)
    return f"Sweep {value} over {x} × {y} at N = {tokens}" + (f" (median over {', '.join(others)})" if others else "") + "."


# The page shows these, in this order: figure id -> (function, title).  The HTML test checks
# that every id here is referenced by the page.
FIGURES = {
    "allocation": (allocation_heatmap, "Per-layer sparsity allocation"),
    "layer_cycles": (layer_cycles, "Per-layer cycles: dense vs n:m vs unstructured"),
    "speedup_vs_sparsity": (speedup_vs_sparsity, "Speedup vs sparsity"),
    "ppl_vs_speedup": (ppl_vs_speedup, "Perplexity vs simulated speedup (Pareto)"),
    "roofline_prefill": (lambda df, ax: roofline(df, ax, phase="prefill"), "Roofline per layer, prefill"),
    "roofline_decode": (lambda df, ax: roofline(df, ax, phase="decode"), "Roofline per layer, decode"),
    "sweep_heatmap": (sweep_heatmap, "What-if sweep heatmap"),
}
