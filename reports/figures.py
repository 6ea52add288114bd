"""The report's figures: one function per figure, each returning an inspectable :class:`FigureData`.

Inputs are the tidy table of :func:`reports.table.build_table` (``df``), the per-row sparsities of
:func:`reports.table.row_sparsity_table` (``rows``) and sweep results (``sweep``).  A function that
finds nothing to draw raises :class:`NoData` with the reason; the page says so instead of showing an
empty frame.  Every figure keeps what it plotted in ``FigureData.panels`` (arrays, colour limits),
so tests check the data, not pixels.

:data:`FIGURES` (at the end) declares each figure once — section id, title, function, input,
when the page shows it and how many drawings it gets — and :func:`build_figures` and the page
(:mod:`reports.html`: sections, table of contents) follow from it.

Conventions: sparsity = fraction of weights pruned; speedup = dense cycles / cycles on the same
machine (> 1 = faster); ``tokens`` = N, the tokens in flight; "decode" = the smallest N simulated on a
machine (normally 1), "prefill" = the largest.  Runs are named by their ``label`` (``run``, or
``experiment/run`` when several experiments are compared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from reports.fmt import number
from reports.plotkit import (
    BOUND_COLORS,
    EXPERIMENT_COLORS,
    FigureData,
    NoData,
    boxes_overlap,
    color,
    marker,
    new_figure,
    order_runs,
    pick,
    place_labels,
    plain_log,
)
from reports.siblings import sibling_table
from reports.table import PROJECTIONS, phase_of, summary_table
from simulator.hardware import load_hardware
from simulator.schema import SWEEP_AXES, SWEEP_NON_HARDWARE
from simulator.sweep import RESULT_FIELDS

__all__ = [
    "FIGURES",
    "Figure",
    "FigureInputs",
    "FigureData",
    "NoData",
    "allocation",
    "row_sparsity",
    "layer_speedup",
    "speedup_vs_sparsity",
    "ppl_vs_speedup",
    "roofline",
    "sweep_heatmaps",
    "compare_experiments",
    "sibling_pairs",
    "build_figures",
    "boxes_overlap",
]

UNIFORM_TOL = 0.001  # a run whose every layer is within 0.1 point of its target allocates uniformly
DENSE_TOL = 1e-9  # a dense run's speedup must be 1.0 to this relative tolerance


def _proj_order(values) -> list[str]:
    present = set(values)
    return [p for p in PROJECTIONS if p in present] + sorted(present - set(PROJECTIONS))


def _cycle_sim(df: pd.DataFrame, preset: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of the cycle-mode simulation (any mode if none is cycle) on ``preset`` (default: vitcod or the first)."""
    sim = df.dropna(subset=["cycles"])
    if sim.empty:
        raise NoData("no simulated layers (sim/*/layers.csv) in any run")
    cyc = sim[sim["mode"] == "cycle"]
    sim = cyc if not cyc.empty else sim
    preset = preset or pick(sim["preset"], prefer="vitcod")
    return sim[sim["preset"] == preset], preset


def _phases(tokens) -> dict[str, int]:
    """{"decode": smallest N, "prefill": largest N} (one entry when only one N was simulated)."""
    ts = sorted({int(t) for t in tokens if pd.notna(t)})
    if not ts:
        return {}
    return {"decode": ts[0], "prefill": ts[-1]} if len(ts) > 1 else {phase_of(ts[0], ts): ts[0]}


# --- 1. allocation ---------------------------------------------------------------------------


def allocation(df: pd.DataFrame) -> FigureData:
    """Realised minus target sparsity per layer (blocks × projections), one panel per run that does
    not allocate uniformly, all panels on ONE colour scale centred at 0 (percentage points)."""
    alloc = df.dropna(subset=["layer_sparsity", "block"])
    alloc = alloc[alloc["method"] != "dense"]
    if alloc.empty:
        raise NoData("no per-layer sparsity (allocation.json) in any pruned run")
    grids, uniform = {}, []
    for label in order_runs(alloc):
        sub = alloc[alloc["label"] == label].drop_duplicates("layer")
        cols = _proj_order(sub["projection"])
        grid = sub.pivot_table(index="block", columns="projection", values="layer_sparsity", aggfunc="mean").reindex(columns=cols)
        tgt = sub["sparsity"].iloc[0]
        target = float(tgt) if pd.notna(tgt) else float(np.nanmean(grid.values))
        dev = grid.to_numpy(float) - target
        if np.nanmax(np.abs(dev)) <= UNIFORM_TOL:
            uniform.append(label)
            continue
        grids[label] = (grid, dev, target)
    note = (f"Uniform allocation (every layer within {UNIFORM_TOL * 100:.1f} point of its target), not drawn: {', '.join(uniform)}.") if uniform else ""
    if not grids:
        raise NoData(f"no run allocates sparsity unevenly. {note}".strip())
    span = max(float(np.nanmax(np.abs(d))) for _, d, _ in grids.values()) * 100.0
    span = math.ceil(span * 2) / 2  # to half a point, so the scale reads cleanly
    n = len(grids)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    blocks = max(len(g.index) for g, _, _ in grids.values())
    fig, axes = new_figure(nrows, ncols, 3.0 * ncols + 1.2, nrows * max(2.4, min(8.0, 0.16 * blocks + 1.4)))
    panels = {}
    im = None
    for ax, (label, (grid, dev, target)) in zip(axes.flat, grids.items()):
        im = ax.imshow(dev * 100.0, aspect="auto", cmap="RdBu_r", vmin=-span, vmax=span, interpolation="nearest")
        ax.set_xticks(range(len(grid.columns)), [c.replace("_proj", "") for c in grid.columns], rotation=45, ha="right", fontsize=7)
        step = max(1, len(grid.index) // 12)
        ax.set_yticks(range(0, len(grid.index), step), [int(b) for b in grid.index[::step]], fontsize=7)
        ax.set_title(f"{label} (target {target:.0%})", fontsize=9)
        panels[label] = {
            "deviation_pt": dev * 100.0,
            "sparsity": grid.to_numpy(float),
            "target": target,
            "vmin": -span,
            "vmax": span,
            "blocks": [int(b) for b in grid.index],
            "projections": list(grid.columns),
        }
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("decoder block")
    fig.colorbar(im, ax=axes.ravel().tolist(), label="realised − target sparsity (points)", shrink=0.9)
    cap = (
        f"Realised minus target sparsity of every layer, in percentage points, on one colour scale shared by all panels "
        f"(±{span:g} points; red = pruned more than the target, blue = less). {note}"
    ).strip()
    return _figure("allocation", fig, cap, panels, meta={"uniform": uniform, "vmin": -span, "vmax": span})


# --- 2. per-row sparsity -----------------------------------------------------------------------


def row_sparsity(rows: pd.DataFrame) -> FigureData:
    """Distribution of per-row sparsity (allocation.json ``row_sparsity``) per projection, one panel
    per run whose rows are not all at the target; shared y axis."""
    if rows is None or rows.empty:
        raise NoData("no per-row sparsity (allocation.json row_sparsity) in any run")
    runs, uniform = {}, []
    for label in order_runs(rows):
        sub = rows[rows["label"] == label]
        target = float(sub["target"].iloc[0]) if pd.notna(sub["target"].iloc[0]) else None
        vals = {p: np.concatenate(sub.loc[sub["projection"] == p, "row_sparsity"].to_list()) for p in _proj_order(sub["projection"])}
        spread = max(float(np.max(np.abs(v - (target if target is not None else np.median(v))))) for v in vals.values())
        (runs.__setitem__(label, (vals, target)) if spread > UNIFORM_TOL else uniform.append(label))
    note = f"Every row at the target, not drawn: {', '.join(uniform)}." if uniform else ""
    if not runs:
        raise NoData(f"no run has uneven per-row sparsity. {note}".strip())
    lo = min(float(np.min(v)) for vals, _ in runs.values() for v in vals.values())
    hi = max(float(np.max(v)) for vals, _ in runs.values() for v in vals.values())
    pad = max(0.02, 0.05 * (hi - lo))
    ylim = (max(0.0, lo - pad), min(1.0, hi + pad))
    n = len(runs)
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig, axes = new_figure(nrows, ncols, 6.0 * ncols, 2.8 * nrows, sharey=True)
    panels = {}
    for ax, (label, (vals, target)) in zip(axes.flat, runs.items()):
        names = list(vals)
        spread_ok = [i for i, p in enumerate(names) if np.ptp(vals[p]) > 0]
        if spread_ok:
            parts = ax.violinplot([vals[names[i]] for i in spread_ok], positions=spread_ok, widths=0.8, showmedians=True, showextrema=True)
            for body in parts["bodies"]:
                body.set_facecolor(color(rows.loc[rows["label"] == label, "method"].iloc[0]))
                body.set_alpha(0.5)
        for i, p in enumerate(names):
            if i not in spread_ok:
                ax.plot([i - 0.3, i + 0.3], [vals[p][0]] * 2, color="k", lw=1.5)
        if target is not None:
            ax.axhline(target, color="k", lw=0.6, ls=":")
        ax.set_xticks(range(len(names)), [p.replace("_proj", "") for p in names], fontsize=7)
        ax.set_ylim(*ylim)
        ax.set_title(f"{label}", fontsize=9)
        panels[label] = {"values": vals, "target": target, "ylim": ylim, "median": {p: float(np.median(v)) for p, v in vals.items()}}
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("row sparsity (fraction pruned)")
    cap = (
        f"Sparsity of each output row, pooled over the decoder blocks, per projection (violin = distribution, bar = median; "
        f"dotted = the run's target). Shared y axis {ylim[0]:.2f}–{ylim[1]:.2f}. {note}"
    ).strip()
    return _figure("row_sparsity", fig, cap, panels, meta={"uniform": uniform, "ylim": ylim})


# --- 3. per-layer speedup ------------------------------------------------------------------------


def layer_speedup(df: pd.DataFrame, preset: str | None = None) -> FigureData:
    """Speedup of every layer, grouped by projection (x) and ordered by block inside each group,
    points coloured by what bounds the layer (memory / compute); one row of panels per pruned run,
    decode and prefill side by side, one shared y axis."""
    sim, preset = _cycle_sim(df, preset)
    phases = _phases(sim["tokens"])
    runs = [r for r in order_runs(sim) if (sim.loc[sim["label"] == r, "method"] != "dense").all()]
    if not runs:
        raise NoData(f"no pruned run simulated on {preset}")
    sub = sim[sim["label"].isin(runs)]
    smin, smax = float(sub["speedup"].min()), float(sub["speedup"].max())
    ylim = (min(0.9, smin * 0.95), max(1.1, smax * 1.05))
    fig, axes = new_figure(len(runs), 2, 11.0, 1.9 * len(runs) + 0.8, sharey=True)
    panels = {}
    summ = summary_table(sub)
    projs = _proj_order(sub["projection"].dropna())
    nblocks = max(1, int(sub["block"].max() + 1) if sub["block"].notna().any() else 1)
    for i, label in enumerate(runs):
        for j, phase in enumerate(("decode", "prefill")):
            ax = axes[i, j]
            ax.set_ylim(*ylim)
            if phase not in phases:
                ax.text(0.5, 0.5, f"{phase} not simulated on {preset}", transform=ax.transAxes, ha="center", va="center", color="#a00")
                panels[f"{label}|{phase}"] = {"tokens": None, "speedup": np.array([])}
                continue
            n = phases[phase]
            g = sub[(sub["label"] == label) & (sub["tokens"] == n)]
            pidx = g["projection"].map(lambda p: projs.index(p) if p in projs else len(projs)).to_numpy(float)
            blk = g["block"].fillna(0).to_numpy(float)
            x = pidx + (blk / max(1, nblocks - 1) - 0.5) * 0.7 if nblocks > 1 else pidx
            bound = g["bound"].fillna("?").astype(str).to_numpy() if "bound" in g.columns else np.array(["?"] * len(g))
            cols = [BOUND_COLORS.get(b, "#999999") for b in bound]
            ax.scatter(x, g["speedup"], c=cols, s=9, linewidths=0)
            ax.axhline(1.0, color="k", lw=0.6)
            tot = summ[(summ["label"] == label) & (summ["tokens"] == n)]["speedup"]
            model = float(tot.iloc[0]) if len(tot) else math.nan
            ax.axhline(model, color="#d62728", lw=0.8, ls="--")
            for k in range(1, len(projs)):
                ax.axvline(k - 0.5, color="#dddddd", lw=0.5)
            ax.set_xticks(range(len(projs)), [p.replace("_proj", "") for p in projs], fontsize=7)
            ax.set_title(f"{label}: {phase} (N = {n}), model {model:.2f}×", fontsize=8)
            panels[f"{label}|{phase}"] = {
                "tokens": n,
                "projection": g["projection"].to_numpy(),
                "block": blk,
                "x": x,
                "speedup": g["speedup"].to_numpy(float),
                "bound": bound,
                "model_speedup": model,
            }
        axes[i, 0].set_ylabel("speedup (×)")
    for b, c in BOUND_COLORS.items():
        axes[0, 0].scatter([], [], color=c, s=12, label=f"{b}-bound")
    axes[0, 0].plot([], [], color="#d62728", ls="--", lw=0.8, label="whole model")
    axes[0, 0].legend(fontsize=7, loc="best")
    cap = (
        f"Speedup of every layer on {preset} (dense cycles / cycles), grouped by projection; within a group the points "
        f"run from block 0 (left) to the last block (right). Blue = memory-bound, orange = compute-bound; dashed = whole "
        f"model. Decode N = {phases.get('decode', '—')}, prefill N = {phases.get('prefill', '—')}."
    )
    return _figure("layer_speedup", fig, cap, panels, meta={"preset": preset, "ylim": ylim, "phases": phases}, variant=preset)


# --- 4. speedup vs sparsity (dot plot) ---------------------------------------------------------


def speedup_vs_sparsity(df: pd.DataFrame) -> FigureData:
    """Dot plot: one row per run (labelled with its realised sparsity), one panel per (preset, mode,
    N); marker by pattern, colour by method; a dense run must be exactly 1.0× and is flagged if not."""
    summ = summary_table(df).dropna(subset=["speedup"])
    if summ.empty:
        raise NoData("no simulated runs")
    runs = order_runs(summ)
    configs = sorted({(p, m, int(t)) for p, m, t in zip(summ["preset"], summ["mode"], summ["tokens"])}, key=lambda c: (c[1] != "cycle", c[0], c[1], c[2]))
    lo, hi = float(summ["speedup"].min()), float(summ["speedup"].max())
    xlim = (min(0.9, lo * 0.93), max(1.1, hi * 1.07))
    ncols = len(configs)
    fig, axes = new_figure(1, ncols, max(6.0, 2.6 * ncols + 2.0), 0.32 * len(runs) + 1.6, sharey=True)
    realised = summ.groupby("label")["realised_sparsity"].first()
    panels, flags = {}, []
    ypos = {r: len(runs) - 1 - i for i, r in enumerate(runs)}
    for ax, (preset, mode, n) in zip(axes[0], configs):
        g = summ[(summ["preset"] == preset) & (summ["mode"] == mode) & (summ["tokens"] == n)]
        key = f"{preset}/{mode} N={n}"
        for _, r in g.iterrows():
            ax.scatter(r["speedup"], ypos[r["label"]], marker=marker(r["pattern"]), color=color(r["method"]), s=36, zorder=3)
        ax.axvline(1.0, color="k", lw=0.6)
        dense = g[g["method"] == "dense"]["speedup"]
        dense_ok = bool(((dense - 1.0).abs() <= DENSE_TOL).all()) if len(dense) else None
        if dense_ok is False:
            bad = float(dense.iloc[0])
            flags.append(f"{key}: the dense run shows {bad:.3f}×, not 1.0× — this mode's baseline is not the dense run's own cycles")
            ax.text(
                0.5,
                1.0 - 0.3 / max(1, len(runs)),
                f"⚠ dense = {bad:.3f}× ≠ 1.0×",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="#c00000",
                fontsize=8,
                fontweight="bold",
                bbox={"facecolor": "#ffecec", "edgecolor": "#c00000", "lw": 0.8},
            )
            ax.set_facecolor("#fff6f6")
        ax.set_xlim(*xlim)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("speedup vs dense (×)")
        ax.grid(axis="y", color="#eeeeee", lw=0.5)
        panels[key] = {
            "label": g["label"].to_list(),
            "speedup": g["speedup"].to_numpy(float),
            "pattern": g["pattern"].to_list(),
            "marker": [marker(p) for p in g["pattern"]],
            "dense_speedup": dense.to_list(),
            "dense_ok": dense_ok,
        }
    axes[0, 0].set_yticks([ypos[r] for r in runs], [f"{r} ({realised.get(r, math.nan):.1%})" if pd.notna(realised.get(r)) else r for r in runs], fontsize=8)
    axes[0, 0].set_ylim(-0.7, len(runs) - 0.3)
    handles = [axes[0, -1].scatter([], [], marker=marker(p), color="#666666", label=p) for p in pd.unique(summ["pattern"].astype(str))]
    handles += [axes[0, -1].scatter([], [], marker="o", color=color(m), label=m) for m in pd.unique(summ["method"].astype(str))]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(8, len(handles)),
        fontsize=7,
        frameon=False,
        title="marker = pattern (grey), colour = method",
        title_fontsize=7,
    )
    cap = (
        "Whole-model speedup (Σ dense cycles / Σ cycles) of every run, in brackets its realised sparsity; one panel per "
        "machine, mode and token count N on a shared axis. Marker = sparsity pattern, colour = method. A dense run must be "
        "exactly 1.0×" + ("; FLAGGED: " + "; ".join(flags) if flags else " and is.")
    )
    return _figure("speedup_vs_sparsity", fig, cap, panels, flags, meta={"xlim": xlim, "runs": runs})


# --- 5. perplexity vs speedup (Pareto) ----------------------------------------------------------


def _pareto(speedup: np.ndarray, ppl: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both (higher speedup, lower perplexity)."""
    keep = np.ones(len(speedup), bool)
    for i in range(len(speedup)):
        better = (speedup >= speedup[i]) & (ppl <= ppl[i]) & ((speedup > speedup[i]) | (ppl < ppl[i]))
        keep[i] = not better.any()
    return keep


def _eval_size(summ: pd.DataFrame) -> str:
    ds, sl, win = pick(summ["ppl_dataset"]), pick(summ["ppl_seqlen"]), pick(summ["ppl_windows"])
    parts = [str(ds)] if ds else []
    if pd.notna(sl) and sl is not None:
        parts.append(f"{int(win)} windows × {int(sl)} tokens" if win is not None and pd.notna(win) else f"seqlen {int(sl)}")
    return ", ".join(parts)


def _one_machine(summ: pd.DataFrame, preset: str | None) -> tuple[pd.DataFrame, str, str]:
    """The rows of one (preset, mode) for a Pareto figure: the cycle mode when present, ``preset`` or
    the vitcod one by preference."""
    cyc = summ[summ["mode"] == "cycle"]
    summ = cyc if not cyc.empty else summ
    preset = preset or pick(summ["preset"], prefer="vitcod")
    summ = summ[summ["preset"] == preset]
    mode = pick(summ["mode"], prefer="cycle")
    return summ[summ["mode"] == mode], preset, mode


def ppl_vs_speedup(df: pd.DataFrame, preset: str | None = None) -> FigureData:
    """Perplexity against whole-model speedup, decode and prefill panels, Pareto front dashed,
    labels placed so they never overlap."""
    summ = summary_table(df).dropna(subset=["speedup", "ppl"])
    if summ.empty:
        raise NoData("no run has both a perplexity (eval.json) and a simulation")
    summ, preset, mode = _one_machine(summ, preset)
    phases = _phases(summ["tokens"])
    sizes = summ[["ppl_seqlen", "ppl_windows"]].drop_duplicates()
    flags = [f"runs were evaluated on different sizes: {sizes.to_dict('records')}"] if len(sizes) > 1 else []
    fig, axes = new_figure(1, 2, 12.0, 4.6, sharey=True)
    ylo = float(np.nanmin([summ["ppl"].min(), summ["ppl_ci_low"].min() if "ppl_ci_low" in summ.columns else np.nan]))
    yhi = float(np.nanmax([summ["ppl"].max(), summ["ppl_ci_high"].max() if "ppl_ci_high" in summ.columns else np.nan]))
    ylim = (ylo / 1.25, yhi * 1.25)
    panels = {}
    for ax, phase in zip(axes[0], ("decode", "prefill")):
        ax.set_yscale("log")
        ax.set_ylim(*ylim)
        plain_log(ax, "y")
        if phase not in phases:
            ax.text(0.5, 0.5, f"{phase} not simulated", transform=ax.transAxes, ha="center", color="#a00")
            panels[phase] = {"label": [], "speedup": np.array([]), "ppl": np.array([]), "label_boxes": []}
            continue
        g = summ[summ["tokens"] == phases[phase]].reset_index(drop=True)
        sp, pp = g["speedup"].to_numpy(float), g["ppl"].to_numpy(float)
        front = _pareto(sp, pp)
        lo = g["ppl_ci_low"].to_numpy(float) if "ppl_ci_low" in g.columns else np.full(len(g), np.nan)
        hi = g["ppl_ci_high"].to_numpy(float) if "ppl_ci_high" in g.columns else np.full(len(g), np.nan)
        for i, r in g.iterrows():
            ax.scatter(r["speedup"], r["ppl"], marker=marker(r["pattern"]), color=color(r["method"]), s=40, zorder=3)
            if np.isfinite(lo[i]) and np.isfinite(hi[i]):  # the run's 95 % bootstrap interval over windows
                ax.errorbar(r["speedup"], r["ppl"], yerr=[[r["ppl"] - lo[i]], [hi[i] - r["ppl"]]], color=color(r["method"]), lw=1, capsize=3, zorder=2.5)
        f = g[front].sort_values("speedup")
        ax.step(f["speedup"], f["ppl"], where="post", color="#d62728", lw=1, ls="--", zorder=2, label="Pareto front")
        span = max(sp.max() - sp.min(), 0.05)
        ax.set_xlim(sp.min() - 0.25 * span, sp.max() + 0.35 * span)
        ax.set_xlabel(f"speedup vs dense (×), {preset}/{mode}, {phase} N = {phases[phase]}")
        ax.set_title(f"{phase} (N = {phases[phase]})", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
        panels[phase] = {
            "label": g["label"].to_list(),
            "speedup": sp,
            "ppl": pp,
            "ppl_low": lo,
            "ppl_high": hi,
            "front": g.loc[front, "label"].to_list(),
            "tokens": phases[phase],
        }
    axes[0, 0].set_ylabel(f"perplexity ({_eval_size(summ)})")
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # freeze the layout: label boxes are measured in final display coordinates
    for ax, phase in zip(axes[0], ("decode", "prefill")):
        p = panels[phase]
        if len(p["label"]):
            p["label_boxes"] = place_labels(ax, p["speedup"], p["ppl"], p["label"])
    cap = (
        f"Perplexity ({_eval_size(summ)}) against whole-model speedup on {preset}/{mode}: decode (what serving a token costs) "
        f"and prefill side by side; dashed = Pareto front (no other run is both faster and better)"
        + (
            "; bars = each run's 95 % bootstrap interval over the evaluation windows (whether two runs differ: the paired "
            "comparisons table, which is much tighter)."
            if summ["ppl_ci_low"].notna().any()
            else "."
        )
    )
    return _figure("ppl_vs_speedup", fig, cap, panels, flags, meta={"preset": preset, "eval": _eval_size(summ)})


def acc_vs_speedup(df: pd.DataFrame, preset: str | None = None) -> FigureData:
    """HellaSwag accuracy against whole-model speedup, decode and prefill panels, error bars (95 %),
    Pareto front dashed (no other run both faster and more accurate)."""
    summ = summary_table(df).dropna(subset=["speedup", "hellaswag"])
    if summ.empty:
        raise NoData("no run has both a HellaSwag accuracy (eval.json) and a simulation")
    summ, preset, mode = _one_machine(summ, preset)
    phases = _phases(summ["tokens"])
    ns = sorted({int(n) for n in summ["hellaswag_n"].dropna()})
    flags = [f"runs were scored on different numbers of tasks: {ns}"] if len(ns) > 1 else []
    what = f"HellaSwag acc_norm %, {'/'.join(map(str, ns))} tasks, ± 95 %"
    fig, axes = new_figure(1, 2, 12.0, 4.6, sharey=True)
    panels = {}
    for ax, phase in zip(axes[0], ("decode", "prefill")):
        if phase not in phases:
            ax.text(0.5, 0.5, f"{phase} not simulated", transform=ax.transAxes, ha="center", color="#a00")
            panels[phase] = {"label": [], "speedup": np.array([]), "acc": np.array([]), "label_boxes": []}
            continue
        g = summ[summ["tokens"] == phases[phase]].reset_index(drop=True)
        sp, acc = g["speedup"].to_numpy(float), g["hellaswag"].to_numpy(float)
        half = 1.96 * g["hellaswag_se"].to_numpy(float)
        front = _pareto(sp, -acc)  # higher accuracy is better
        for i, r in g.iterrows():
            ax.errorbar(r["speedup"], r["hellaswag"], yerr=half[i], fmt="none", ecolor=color(r["method"]), elinewidth=0.8, alpha=0.6, zorder=2)
            ax.scatter(r["speedup"], r["hellaswag"], marker=marker(r["pattern"]), color=color(r["method"]), s=40, zorder=3)
        f = g[front].sort_values("speedup")
        ax.step(f["speedup"], f["hellaswag"], where="post", color="#d62728", lw=1, ls="--", zorder=2, label="Pareto front")
        span = max(sp.max() - sp.min(), 0.05)
        ax.set_xlim(sp.min() - 0.25 * span, sp.max() + 0.35 * span)
        ax.set_xlabel(f"speedup vs dense (×), {preset}/{mode}, {phase} N = {phases[phase]}")
        ax.set_title(f"{phase} (N = {phases[phase]})", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
        panels[phase] = {"label": g["label"].to_list(), "speedup": sp, "acc": acc, "front": g.loc[front, "label"].to_list(), "tokens": phases[phase]}
    axes[0, 0].set_ylabel(what)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # freeze the layout: label boxes are measured in final display coordinates
    for ax, phase in zip(axes[0], ("decode", "prefill")):
        p = panels[phase]
        if len(p["label"]):
            p["label_boxes"] = place_labels(ax, p["speedup"], p["acc"], p["label"])
    cap = (
        f"Zero-shot HellaSwag accuracy ({what}) against whole-model speedup on {preset}/{mode}; dashed = Pareto front (no "
        "other run is both faster and more accurate). Bars are each run's own interval; runs compare much more tightly "
        "paired, on the same tasks (the paired-differences table)."
    )
    return _figure("acc_vs_speedup", fig, cap, panels, flags, meta={"preset": preset, "tasks": ns})


# --- 6. roofline ---------------------------------------------------------------------------------


def _roofs(sim: pd.DataFrame) -> tuple[float | None, float | None]:
    peak = pick(sim["peak_macs_per_cycle"]) if "peak_macs_per_cycle" in sim.columns else None
    bw = pick(sim["bandwidth_bytes_per_cycle"]) if "bandwidth_bytes_per_cycle" in sim.columns else None
    return (float(peak) if peak else None, float(bw) if bw else None)


def roofline(df: pd.DataFrame, preset: str | None = None) -> FigureData:
    """Per-layer roofline in DENSE-EQUIVALENT terms, decode and prefill panels.

    x = dense MACs (rows × cols × N) per DRAM byte moved; y = dense MACs per cycle, so a pruned layer
    that runs 1.8× faster than dense plots 1.8× higher.  The memory roof ``y = B·x`` bounds every
    layer whatever its sparsity (bytes/cycle can never exceed B); the horizontal line is the dense
    compute peak, which only pruned layers may pass.  A point above the memory roof, or whose KEPT
    MACs per cycle exceed the peak, is impossible and is flagged.
    """
    sim, preset = _cycle_sim(df, preset)
    if not {"bytes_weights", "bytes_act"} <= set(sim.columns) or sim["bytes_weights"].isna().all():
        raise NoData("no cycle-mode simulation with byte counts (layers.csv bytes_weights / bytes_act)")
    peak, bw = _roofs(sim)
    phases = _phases(sim["tokens"])
    fig, axes = new_figure(1, 2, 12.0, 4.8)
    panels, flags = {}, []
    for ax, phase in zip(axes[0], ("decode", "prefill")):
        if phase not in phases:
            ax.text(0.5, 0.5, f"{phase} not simulated", transform=ax.transAxes, ha="center", color="#a00")
            panels[phase] = {"oi": np.array([]), "perf": np.array([])}
            continue
        n = phases[phase]
        g = sim[sim["tokens"] == n].copy()
        dense_macs = g["rows"] * g["cols"] * n
        density = g["density"] if "density" in g.columns and g["density"].notna().all() else 1.0 - g["layer_sparsity"].fillna(0.0)
        kept_macs = dense_macs * density
        nbytes = sum(g[c].fillna(0) for c in ("bytes_weights", "bytes_index", "bytes_act", "bytes_out") if c in g.columns)
        g["oi"] = dense_macs / nbytes.where(nbytes > 0)
        g["perf"] = dense_macs / g["cycles"]
        anomaly = np.zeros(len(g), bool)
        if bw:
            anomaly |= (g["perf"] > bw * g["oi"] * (1 + 1e-6)).to_numpy()
        if peak:
            anomaly |= (kept_macs / g["cycles"] > peak * (1 + 1e-6)).to_numpy()
        for label in order_runs(g):
            h = g[g["label"] == label]
            ax.scatter(h["oi"], h["perf"], s=12, alpha=0.8, color=color(h["method"].iloc[0]), marker=marker(h["pattern"].iloc[0]), label=label)
        if anomaly.any():
            a = g[anomaly]
            ax.scatter(a["oi"], a["perf"], s=70, facecolors="none", edgecolors="#c00000", lw=1.2, label="impossible (flagged)")
            flags.append(
                f"roofline {phase}: {int(anomaly.sum())} layer point(s) above a roof: "
                + ", ".join(sorted({f"{r.label}:{r.layer}" for r in a.itertuples()})[:4])
            )
        x0, x1 = float(g["oi"].min()) / 1.6, float(g["oi"].max()) * 1.6
        y0, y1 = float(g["perf"].min()) / 1.6, float(g["perf"].max()) * 1.6
        xs = np.logspace(np.log10(x0), np.log10(x1), 100)
        if bw:
            ax.plot(xs, bw * xs, color="k", lw=1.0, label=f"memory roof ({number(bw)} B/cycle)")
        if peak and y0 <= peak <= y1 * 4:
            ax.axhline(peak, color="k", lw=1.0, ls="--", label=f"dense peak ({number(peak)} MACs/cycle)")
            y1 = max(y1, peak * 1.3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log(ax)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("dense MACs per DRAM byte")
        ax.set_ylabel("dense-equivalent MACs / cycle")
        ax.set_title(f"{phase} (N = {n}), {preset}", fontsize=9)
        panels[phase] = {
            "tokens": n,
            "label": g["label"].to_list(),
            "layer": g["layer"].to_list(),
            "oi": g["oi"].to_numpy(float),
            "perf": g["perf"].to_numpy(float),
            "anomaly": anomaly,
            "peak": peak,
            "bw": bw,
            "xlim": (x0, x1),
            "ylim": (y0, y1),
        }
    seen = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="outside right center", fontsize=7, frameon=False)
    cap = (
        "Every layer in dense-equivalent terms: work = the dense layer's MACs, so a pruned layer that runs faster sits higher "
        "than its dense twin. Solid = memory roof (no layer can move more bytes per cycle than the DRAM gives); dashed = dense "
        "compute peak, which only pruned layers may pass. Axes trimmed to the data. " + (f"FLAGGED: {'; '.join(flags)}." if flags else "No point above a roof.")
    )
    return _figure("roofline", fig, cap, panels, flags, meta={"preset": preset}, variant=preset)


# --- 7. sweep heatmaps ---------------------------------------------------------------------------

# Preferred axes of the sweep heatmaps (SWEEP_AXES) and the columns that are not hardware fields: simulator.schema
_NOT_SWEPT = SWEEP_NON_HARDWARE
_FACET_COLUMNS = ("sweep", "workload", "preset", "mode", "context", "batch")


def swept_fields(sweep: pd.DataFrame) -> list[str]:
    """Hardware fields that take more than one value among the successful points, preferred axes first."""
    ok = _ok_points(sweep)
    swept = [c for c in ok.columns if c not in RESULT_FIELDS and c not in _NOT_SWEPT and c not in _FACET_COLUMNS and ok[c].nunique(dropna=True) > 1]
    return sorted(swept, key=lambda c: SWEEP_AXES.index(c) if c in SWEEP_AXES else len(SWEEP_AXES))


def _ok_points(sweep: pd.DataFrame) -> pd.DataFrame:
    if "status" in sweep.columns:
        ok = sweep[sweep["status"] == "ok"]
    elif "error" in sweep.columns:
        ok = sweep[sweep["error"].fillna("").astype(str) == ""]
    else:
        ok = sweep
    return ok.dropna(subset=["speedup", "cycles"]) if {"speedup", "cycles"} <= set(ok.columns) else ok.iloc[0:0]


def _clock_mhz(ok: pd.DataFrame) -> pd.Series:
    """Clock of every point: the row's ``clock_mhz`` (every sweep row carries its machine's clock), else
    the swept ``freq_mhz``, else the preset's (older sweep folders)."""
    if "clock_mhz" in ok.columns and ok["clock_mhz"].notna().all():
        return ok["clock_mhz"].astype(float)
    if "freq_mhz" in ok.columns and ok["freq_mhz"].notna().all():
        return ok["freq_mhz"].astype(float)
    clocks = {}
    for p in pd.unique(ok["preset"]) if "preset" in ok.columns else []:
        try:
            clocks[p] = float(load_hardware(str(p)).freq_mhz)
        except Exception:  # an unknown or user preset path: no clock, the panel says cycles instead
            clocks[p] = math.nan
    return ok["preset"].map(clocks).astype(float) if "preset" in ok.columns else pd.Series(math.nan, index=ok.index)


def _tick(field: str, v: Any, mhz: float | None) -> str:
    if field == "dram_bytes_per_cycle" and mhz:
        return number(float(v) * mhz / 1000.0, 3)  # bytes/cycle × MHz = MB/s; /1000 = GB/s
    return number(v, 4) if isinstance(v, (int, float, np.integer, np.floating)) else str(v)


def _facet_value(field: str, v: Any) -> str:
    """A facet's value as the reader should see it: a missing value is said, never ``nan``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none (the linear layers only)" if field == "context" else "not set"
    if field == "context" and int(v) == 0:
        return "0 (a fresh prompt)"
    return number(v, 4) if isinstance(v, (int, float, np.integer, np.floating)) else str(v)


def _axis_name(field: str, mhz: float | None) -> str:
    if field == "dram_bytes_per_cycle":
        return f"DRAM bandwidth (GB/s at {number(mhz)} MHz)" if mhz else "DRAM bytes / cycle"
    return field


def sweep_heatmaps(sweep: pd.DataFrame, x: str | None = None, y: str | None = None, max_facets: int = 16) -> FigureData:
    """What-if sweep: per token count and per value of every other swept field (a facet row each,
    never a silent median), an ABSOLUTE panel (tokens/s at the preset clock) beside the speedup
    panel.  All speedup panels share one colour scale centred at 1.0×; absolute panels share one
    scale per token count."""
    from matplotlib.colors import LogNorm

    if sweep is None or sweep.empty:
        raise NoData("no sweep results")
    ok = _ok_points(sweep).copy()
    if ok.empty:
        raise NoData("no successful sweep point")
    swept = swept_fields(ok)
    x = x or (swept[0] if swept else None)
    y = y or (next((s for s in swept if s != x), None))
    if x is None or y is None:
        raise NoData(f"need two swept hardware fields for a heatmap, found {swept}")
    # points with a context carry the whole decoder step: its cycles and speedup are what context and batch move
    whole = {"e2e_cycles", "e2e_speedup"} <= set(ok.columns) and ok["e2e_cycles"].notna().all() and ok["e2e_speedup"].notna().all()
    if whole:
        ok = ok.assign(cycles=ok["e2e_cycles"], speedup=ok["e2e_speedup"])
    scope = "whole decoder step" if whole else "linear layers"
    ok["_mhz"] = _clock_mhz(ok)
    ok["tokens_per_s"] = ok["tokens"] * ok["_mhz"] * 1e6 / ok["cycles"]
    absolute = "tokens_per_s" if ok["tokens_per_s"].notna().all() else "cycles_per_token"
    if absolute == "cycles_per_token":
        ok["cycles_per_token"] = ok["cycles"] / ok["tokens"]
    facets = [c for c in swept if c not in (x, y)] + [c for c in _FACET_COLUMNS if c in ok.columns and ok[c].nunique(dropna=True) > 1]
    groups = list(ok.groupby(["tokens"] + facets, sort=True, dropna=False))
    dropped = max(0, len(groups) - max_facets)
    groups = groups[:max_facets]
    smax = max(2.0, float(ok["speedup"].max()), 1.0 / float(ok["speedup"].min()))
    snorm = (1.0 / smax, smax)
    alim = {int(t): (float(g[absolute].min()), float(g[absolute].max())) for t, g in ok.groupby("tokens")}
    fig, axes = new_figure(len(groups), 2, 11.5, 3.0 * len(groups) + 0.6)
    panels = {}
    for row, (key, g) in enumerate(groups):
        key = key if isinstance(key, tuple) else (key,)
        tokens = int(key[0])
        facet = ", ".join(f"{f}={_facet_value(f, v)}" for f, v in zip(facets, key[1:]))
        mhz = pick(g["_mhz"]) if g["_mhz"].nunique(dropna=True) == 1 else None
        for col, (value, cmap, lims, norm) in enumerate(
            [(absolute, "viridis", alim[tokens], None), ("speedup", "RdBu", snorm, LogNorm(vmin=snorm[0], vmax=snorm[1]))]
        ):
            ax = axes[row, col]
            grid = g.pivot_table(index=y, columns=x, values=value, aggfunc="first")
            kw = {"norm": norm} if norm is not None else {"vmin": lims[0], "vmax": lims[1]}
            im = ax.imshow(grid.to_numpy(float), origin="lower", aspect="auto", cmap=cmap, interpolation="nearest", **kw)
            ax.set_xticks(range(len(grid.columns)), [_tick(x, v, mhz) for v in grid.columns], fontsize=7)
            ax.set_yticks(range(len(grid.index)), [_tick(y, v, mhz) for v in grid.index], fontsize=7)
            vals = grid.to_numpy(float)
            for (i, j), v in np.ndenumerate(vals):
                if np.isfinite(v):
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}" if value == "speedup" else number(v, 3),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="k" if value == "speedup" or v > (lims[0] + lims[1]) / 2 else "w",
                    )
            ax.set_xlabel(_axis_name(x, mhz), fontsize=8)
            ax.set_ylabel(_axis_name(y, mhz), fontsize=8)
            what = {
                "tokens_per_s": f"tokens/s ({scope})",
                "cycles_per_token": f"cycles / token ({scope})",
                "speedup": f"speedup vs same machine dense, {scope} (×)",
            }[value]
            ax.set_title(f"{what}, N = {tokens}" + (f"\n{facet}" if facet else ""), fontsize=8)
            cb = fig.colorbar(im, ax=ax, shrink=0.9)
            if value == "speedup":
                ticks = [t for t in (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0) if snorm[0] <= t <= snorm[1]]
                cb.set_ticks(ticks, labels=[f"{t:g}×" for t in ticks])
                cb.minorticks_off()
            panels[f"N={tokens}|{facet}|{'speedup' if value == 'speedup' else 'absolute'}"] = {
                "value": value,
                "grid": vals,
                "x": list(grid.columns),
                "y": list(grid.index),
                "vmin": lims[0],
                "vmax": lims[1],
                "tokens": tokens,
                "facet": facet,
                "mhz": mhz,
            }
    cap = (
        f"What-if sweep over {x} × {y} ({scope}). Left: absolute throughput ({'tokens per second at the preset clock' if absolute == 'tokens_per_s' else 'cycles per token: no clock known'}), "
        f"one colour scale per token count; right: speedup vs the SAME machine's dense run, one scale centred at 1.0× for every panel "
        f"({snorm[0]:.2f}–{snorm[1]:.2f}×). "
        + (f"One row per value of {', '.join(facets)} (nothing is averaged away). " if facets else "")
        + (f"{dropped} more facet row(s) not drawn; see the results file. " if dropped else "")
    )
    return _figure(
        "sweep",
        fig,
        cap.strip(),
        panels,
        meta={"x": x, "y": y, "facets": facets, "speedup_lims": snorm, "absolute": absolute, "dropped": dropped, "scope": scope},
        variant=f"{x} × {y}",
        fig_id="sweep" if (x, y) == tuple(swept[:2]) else f"sweep-{x}-{y}",
    )


def sweep_pairs(sweep: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(x, y) of the sweep figures to draw: the first two swept fields, and the next two when swept."""
    if sweep is None or sweep.empty:
        return []
    swept = swept_fields(sweep)
    return [(swept[i], swept[i + 1]) for i in (0, 2) if i + 1 < len(swept)]


# --- 8. two experiments side by side ------------------------------------------------------------


def compare_experiments(df: pd.DataFrame, preset: str | None = None) -> FigureData:
    """Runs of several experiments side by side: per run name, one marker per experiment (joined by a
    line) for perplexity, decode speedup and prefill speedup."""
    if df["experiment"].nunique(dropna=True) < 2:
        raise NoData("one experiment only: pass two or more to `besa report` to compare them")
    summ = summary_table(df)
    exps = list(dict.fromkeys(summ["experiment"].dropna()))
    sim = summ.dropna(subset=["speedup"])
    cyc = sim[sim["mode"] == "cycle"]
    sim = cyc if not cyc.empty else sim
    preset = preset or pick(sim["preset"], prefer="vitcod")
    sim = sim[sim["preset"] == preset]
    phases = _phases(sim["tokens"])
    metrics = {"perplexity": summ.groupby("label").first()[["experiment", "run", "ppl"]].rename(columns={"ppl": "value"})}
    for phase, n in phases.items():
        metrics[f"{phase} speedup (N = {n})"] = (
            sim[sim["tokens"] == n].groupby("label").first()[["experiment", "run", "speedup"]].rename(columns={"speedup": "value"})
        )
    names = list(dict.fromkeys(r for lab in order_runs(summ) for r in summ.loc[summ["label"] == lab, "run"].iloc[:1]))
    ypos = {r: len(names) - 1 - i for i, r in enumerate(names)}
    fig, axes = new_figure(1, len(metrics), 4.0 * len(metrics), 0.35 * len(names) + 1.8, sharey=True)
    panels = {}
    off = np.linspace(-0.18, 0.18, len(exps)) if len(exps) > 1 else [0.0]
    for ax, (mname, m) in zip(axes[0], metrics.items()):
        m = m.dropna(subset=["value"])
        for run, g in m.groupby("run"):
            ax.plot(g["value"], [ypos[run]] * len(g), color="#bbbbbb", lw=1, zorder=1)
        for k, exp in enumerate(exps):
            h = m[m["experiment"] == exp]
            ax.scatter(h["value"], [ypos[r] + off[k] for r in h["run"]], color=EXPERIMENT_COLORS[k % len(EXPERIMENT_COLORS)], s=30, zorder=3, label=exp)
        if mname == "perplexity":
            ax.set_xscale("log")
            plain_log(ax, "x")
        else:
            ax.axvline(1.0, color="k", lw=0.6)
        ax.set_title(mname if mname == "perplexity" else f"{mname}, {preset}", fontsize=9)
        ax.grid(axis="y", color="#eeeeee", lw=0.5)
        panels[mname] = {"experiment": m["experiment"].to_list(), "run": m["run"].to_list(), "value": m["value"].to_numpy(float)}
    axes[0, 0].set_yticks([ypos[r] for r in names], names, fontsize=8)
    axes[0, 0].legend(fontsize=7, title="experiment", title_fontsize=7)
    cap = (
        f"The same run names in {len(exps)} experiments ({', '.join(exps)}), side by side: each experiment keeps its own "
        f"runs (labels experiment/run elsewhere on this page); grey lines join a run's values across experiments."
    )
    return _figure("compare", fig, cap, panels, meta={"experiments": exps})


# --- unstructured vs its equal-sparsity n:m sibling ---------------------------------------------


def sibling_pairs(df: pd.DataFrame) -> FigureData:
    """Per (machine, phase): each unstructured run (circle, sparse engine) joined by a line to its
    equal-sparsity n:m sibling (square, n:m engine); x = speedup vs dense, y = perplexity."""
    summ = summary_table(df)
    sib = sibling_table(summ).dropna(subset=["speedup", "sibling_speedup"])
    if sib.empty:
        raise NoData("no unstructured run with an n:m sibling simulated on the n:m engine (besa run writes RUN/sibling.json and sim/<preset>-nm)")
    keys = list(dict.fromkeys(zip(sib["preset"], sib["phase"], sib["tokens"].astype(int))))
    fig, axes = new_figure(1, len(keys), max(6.0, 5.0 * len(keys)), 4.6, sharey=True)
    ppl = pd.concat([sib["ppl"], sib["sibling_ppl"]]).dropna()
    panels = {}
    for ax, (preset, phase, n) in zip(axes[0], keys):
        g = sib[(sib["preset"] == preset) & (sib["tokens"] == n)]
        for _, r in g.iterrows():
            ax.plot([r["speedup"], r["sibling_speedup"]], [r["ppl"], r["sibling_ppl"]], color=color(r["method"]), lw=0.8, alpha=0.7, zorder=2)
            ax.scatter(r["speedup"], r["ppl"], marker="o", color=color(r["method"]), s=40, zorder=3)
            ax.scatter(r["sibling_speedup"], r["sibling_ppl"], marker="s", color=color(r["sibling_method"]), s=40, zorder=3)
        if not ppl.empty:
            ax.set_yscale("log")
            ax.set_ylim(float(ppl.min()) / 1.3, float(ppl.max()) * 1.3)
            plain_log(ax, "y")
        sp = np.concatenate([g["speedup"].to_numpy(float), g["sibling_speedup"].to_numpy(float)])
        span = max(float(sp.max() - sp.min()), 0.05)
        ax.set_xlim(float(sp.min()) - 0.3 * span, float(sp.max()) + 0.45 * span)
        ax.set_title(f"{preset} {phase} (N = {n})", fontsize=9)
        ax.set_xlabel("speedup vs dense (×)")
        panels[f"{preset} {phase}"] = {
            "label": g["label"].to_list(),
            "sibling": g["sibling"].to_list(),
            "speedup": g["speedup"].to_numpy(float),
            "sibling_speedup": g["sibling_speedup"].to_numpy(float),
            "ppl": g["ppl"].to_numpy(float),
            "sibling_ppl": g["sibling_ppl"].to_numpy(float),
            "faster": g["faster"].to_list(),
            "tokens": n,
        }
    axes[0, 0].set_ylabel(f"perplexity ({_eval_size(summ)})" if _eval_size(summ) else "perplexity")
    handles = [
        axes[0, -1].scatter([], [], marker="o", color="#666666", label="unstructured, sparse engine (cycle)"),
        axes[0, -1].scatter([], [], marker="s", color="#666666", label="n:m sibling, n:m engine"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7, frameon=False)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")  # label boxes are measured in final display coordinates
    for ax, p in zip(axes[0], panels.values()):
        sibs = list(dict.fromkeys(zip(p["sibling"], p["sibling_speedup"], p["sibling_ppl"])))
        xs = [*p["speedup"], *(x for _, x, _ in sibs)]
        ys = [*p["ppl"], *(y for _, _, y in sibs)]
        ok = [i for i in range(len(xs)) if np.isfinite(xs[i]) and np.isfinite(ys[i])]
        texts = [*p["label"], *(name for name, _, _ in sibs)]
        p["label_boxes"] = place_labels(ax, [xs[i] for i in ok], [ys[i] for i in ok], [texts[i] for i in ok])
    cap = (
        "Each pruned unstructured run (●, simulated on the machine's sparse engine, cycle mode) joined to its n:m sibling at the "
        "SAME sparsity and weight bits (■, simulated on the machine's n:m engine): further right = faster, lower = better "
        "perplexity. Table: 'Unstructured vs its n:m sibling' and siblings.csv."
    )
    return _figure("siblings", fig, cap, panels, meta={"keys": keys})


# --- registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureInputs:
    """What the page has to draw from: the tidy table (``df``, None without runs), the per-row
    sparsities (``rows``) and the sweep results (``sweep``)."""

    df: pd.DataFrame | None = None
    rows: pd.DataFrame | None = None
    sweep: pd.DataFrame | None = None

    @property
    def have_runs(self) -> bool:
        return self.df is not None and not self.df.empty


def _with_runs(inp: FigureInputs) -> bool:
    return inp.have_runs


def _with_siblings(inp: FigureInputs) -> bool:  # only experiments that pair runs (besa run)
    return inp.have_runs and "sibling" in inp.df.columns and bool(inp.df["sibling"].notna().any())


def _with_hellaswag(inp: FigureInputs) -> bool:  # only runs scored on HellaSwag ([eval].hellaswag)
    return inp.have_runs and "hellaswag" in inp.df.columns and bool(inp.df["hellaswag"].notna().any())


def _with_sweep_or_runs(inp: FigureInputs) -> bool:  # a run-only page still says why it has no sweep
    return inp.sweep is not None or inp.have_runs


def _with_experiments(inp: FigureInputs) -> bool:
    return inp.have_runs and inp.df["experiment"].nunique(dropna=True) > 1


def _once(inp: FigureInputs) -> list[dict[str, Any]]:
    return [{}]


def _cycle_presets(df: pd.DataFrame) -> list[str]:
    sim = df.dropna(subset=["cycles"])
    cyc = sim[sim["mode"] == "cycle"]
    sim = cyc if not cyc.empty else sim
    return sorted(pd.unique(sim["preset"].dropna()), key=lambda p: (p != "vitcod", p))


def _per_machine(inp: FigureInputs) -> list[dict[str, Any]]:
    """One drawing per simulated machine (vitcod first); one that says why when none is."""
    return [{"preset": p} for p in _cycle_presets(inp.df) or [None]]


def _per_swept_pair(inp: FigureInputs) -> list[dict[str, Any]]:
    """One drawing per pair of swept fields (:func:`sweep_pairs`); one that says why when none is."""
    return [{"x": x, "y": y} for x, y in sweep_pairs(inp.sweep)] or [{}]


@dataclass(frozen=True)
class Figure:
    """One section of the page: ``draw(<input>, **variant)`` for every variant, under ``title``.

    ``input`` names the :class:`FigureInputs` field ``draw`` gets first; ``shown`` says whether the
    page has the section at all; ``variants`` gives the keyword arguments of each drawing (one per
    machine, one per pair of swept fields ...).  A drawing that raises :class:`NoData` keeps its
    place on the page with the reason.
    """

    id: str
    title: str
    draw: Callable[..., FigureData]
    input: str = "df"
    shown: Callable[[FigureInputs], bool] = _with_runs
    variants: Callable[[FigureInputs], list[dict[str, Any]]] = _once


# The page's figure sections, in page order: the ONE declaration of each figure's id, title and
# function.  Adding a figure = its function above + one entry here.
FIGURES: dict[str, Figure] = {
    f.id: f
    for f in (
        Figure("allocation", "Per-layer sparsity allocation", allocation),
        Figure("row_sparsity", "Per-row sparsity distribution", row_sparsity, input="rows"),
        Figure("layer_speedup", "Per-layer speedup by projection", layer_speedup, variants=_per_machine),
        Figure("speedup_vs_sparsity", "Speedup of every run", speedup_vs_sparsity),
        Figure("ppl_vs_speedup", "Perplexity vs speedup (Pareto)", ppl_vs_speedup),
        Figure("acc_vs_speedup", "HellaSwag accuracy vs speedup (Pareto)", acc_vs_speedup, shown=_with_hellaswag),
        Figure("siblings", "Unstructured vs its n:m sibling (equal sparsity)", sibling_pairs, shown=_with_siblings),
        Figure("roofline", "Roofline per layer (dense-equivalent)", roofline, variants=_per_machine),
        Figure("sweep", "What-if sweep", sweep_heatmaps, input="sweep", shown=_with_sweep_or_runs, variants=_per_swept_pair),
        Figure("compare", "Experiments side by side", compare_experiments, shown=_with_experiments),
    )
}


def _figure(section: str, fig, caption: str, panels: dict, flags=(), meta=None, *, variant: str | None = None, fig_id: str | None = None) -> FigureData:
    """The :class:`FigureData` of the :data:`FIGURES` section ``section``: its title (``title: variant``
    for one of several drawings, e.g. one per machine) and id ``fig_id`` (default ``section`` or
    ``section-variant``)."""
    title = FIGURES[section].title
    return FigureData(
        fig_id or (f"{section}-{variant}" if variant else section),
        f"{title}: {variant}" if variant else title,
        fig,
        caption,
        panels,
        list(flags),
        dict(meta or {}),
    )


def build_figures(df: pd.DataFrame | None, rows: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None) -> list[tuple[str, str, FigureData | str]]:
    """Every figure of the page, in :data:`FIGURES` order: ``(section id, title, FigureData or the
    reason it is not shown)``."""
    inp = FigureInputs(df, rows, sweep)
    out: list[tuple[str, str, FigureData | str]] = []
    for f in FIGURES.values():
        if not f.shown(inp):
            continue
        for kw in f.variants(inp):
            try:
                out.append((f.id, f.title, f.draw(getattr(inp, f.input), **kw)))
            except NoData as exc:
                out.append((f.id, f.title, str(exc)))
    return out
