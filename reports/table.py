"""Run directories -> one tidy table (pandas), plus CSV and Markdown writers.

Reads only the files other stages write (see DESIGN.md, "Run directory"); never imports torch:

    RUN/manifest.json       method, target sparsity, pattern, wbits (written by ``besa prune``)
    RUN/allocation.json     per-layer target / expected / realised sparsity (1 = kept convention upstream)
    RUN/eval.json           perplexity (``besa eval --out RUN``)
    RUN/sim/<preset>-<mode>/layers.csv + summary.json   (``besa simulate``)

The tidy table has ONE ROW per (run, simulation config, layer, tokens).  A run without a
simulation still contributes one row per layer (sim columns empty), and a run without any
per-layer file contributes one row (layer empty), so nothing silently disappears from the report;
what is missing is listed by :func:`load_runs` in ``RunInfo.missing`` for the report to say so.

Units: ``cycles`` are accelerator clock cycles for one forward pass of the layer over ``tokens``
tokens; ``speedup`` = dense_cycles / cycles (same machine, all weights kept); sparsities are the
fraction of weights PRUNED (0.5 = half the weights are zero).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from besa_common import llama
from besa_common.errors import UserError
from besa_common.fileio import atomic_write_text

# Columns first in the tidy table, in this order; any other layers.csv column follows.
CORE_COLUMNS = [
    "run", "method", "sparsity", "pattern", "wbits", "model",
    "layer", "block", "projection", "rows", "cols", "target_sparsity", "expected_sparsity", "layer_sparsity",
    "preset", "mode", "tokens", "cycles", "dense_cycles", "nm_cycles", "speedup", "speedup_vs_nm",
    "ppl", "ppl_dataset", "ppl_seqlen", "ppl_windows",
]
# Order of the projections of a LLaMA decoder block (heatmap columns).
PROJECTIONS = list(llama.PROJECTIONS)
_LAYER_RE = re.compile(r"layers\.(\d+)\.(?:[\w]+\.)*?(\w+)$")


@dataclass
class RunInfo:
    """What was found in one run directory."""

    name: str
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    allocation: dict[str, Any] = field(default_factory=dict)
    sims: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = field(default_factory=dict)  # "<preset>-<mode>" -> (layers, summary)
    missing: list[str] = field(default_factory=list)  # human-readable notes for the report
    status: dict[str, Any] = field(default_factory=dict)  # besa run's status.json, when present


def split_layer(name: str) -> tuple[int | None, str]:
    """``model.layers.12.mlp.down_proj`` -> ``(12, "down_proj")``; unknown shapes -> ``(None, last part)``."""
    m = _LAYER_RE.search(str(name))
    if m:
        return int(m.group(1)), m.group(2)
    return None, str(name).rsplit(".", 1)[-1]


def is_run_dir(path: Path) -> bool:
    """A run directory holds at least one of the files a stage writes."""
    return any((path / f).exists() for f in ("manifest.json", "eval.json", "allocation.json", "sim", "status.json"))


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path: a run directory itself, or a folder whose sub-folders are runs (``besa run --out``)."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise UserError(f"not a directory: {p}")
        if is_run_dir(p):
            found.append(p)
        else:
            found.extend(sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".") and is_run_dir(c)))
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


_NUM = (int, float)
# The keys the report reads from each run-directory file and the JSON types they may have (null is
# always allowed).  A file that is not a JSON object, or a key of another type, is a one-line
# UserError naming the file and the key, before anything is written.
_SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "manifest.json": {"method": (str,), "target": _NUM, "sparsity": _NUM, "pattern": (str, list), "wbits": (int,), "model": (str,)},
    "allocation.json": {"layers": (dict,), "method": (str,), "target": _NUM},
    "status.json": {"method": (str,), "sparsity": _NUM, "pattern": (str, list), "wbits": (int,), "model": (str,), "steps": (dict,)},
    "eval.json": {"method": (str,), "model": (str,), "ppl": _NUM},
    "summary.json": {"preset": (str,), "mode": (str,), "hardware": (dict,)},
}
_LAYER_SCHEMA: dict[str, tuple[type, ...]] = {"shape": (list,), "target": _NUM, "expected": _NUM, "realised": _NUM,
                                              "block": (int,), "proj": (str,)}


def _jsontype(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _check_types(obj: dict, schema: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in schema.items():
        v = obj.get(key)
        if v is None:
            continue
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if ok and isinstance(v, float) and not math.isfinite(v):
            ok = False
        if ok and key in ("pattern", "shape") and isinstance(v, list):
            ok = len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) or x is None for x in v)
        if not ok:
            want = " or ".join(sorted({_jsontype(tp()) if tp is not float else "a number" for tp in types}))
            raise UserError(f"{where}: {key!r} must be {want}, got {_jsontype(v)} {json.dumps(v)[:40]}")


def _read_json(path: Path, missing: list[str]) -> dict[str, Any]:
    """A run-directory JSON file, type-checked against :data:`_SCHEMAS` ({} and a note when absent)."""
    if not path.is_file():
        missing.append(f"no {path.name}")
        return {}
    try:
        obj = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not valid JSON ({type(exc).__name__}); fix or remove it") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object, got {_jsontype(obj)}")
    _check_types(obj, _SCHEMAS.get(path.name, {}), str(path))
    if path.name == "allocation.json":
        for name, rec in (obj.get("layers") or {}).items():
            if not isinstance(rec, dict):
                raise UserError(f"{path}: layers[{name!r}] must be an object, got {_jsontype(rec)}")
            _check_types(rec, _LAYER_SCHEMA, f"{path}: layers[{name!r}]")
    return obj


def load_run(path: str | Path) -> RunInfo:
    """Read every file of one run directory that exists; note the ones that do not."""
    path = Path(path)
    info = RunInfo(name=path.name, path=path)
    info.manifest = _read_json(path / "manifest.json", info.missing)
    info.eval = _read_json(path / "eval.json", info.missing)
    info.allocation = _read_json(path / "allocation.json", info.missing)
    if (path / "status.json").is_file():
        info.status = _read_json(path / "status.json", [])
    if "dense" in (info.manifest.get("method"), info.status.get("method"), info.eval.get("method")):
        # A dense run has no masks, hence no manifest / allocation of its own: not a gap.
        info.missing = [m for m in info.missing if m not in ("no manifest.json", "no allocation.json")]
    sim_root = path / "sim"
    if sim_root.is_dir():
        for d in sorted(sim_root.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            if not (d / "layers.csv").is_file():
                info.missing.append(f"sim/{d.name} has no layers.csv")
                continue
            try:
                layers = pd.read_csv(d / "layers.csv")
            except Exception as exc:  # a damaged CSV must not stop the whole report
                info.missing.append(f"sim/{d.name}/layers.csv unreadable ({type(exc).__name__})")
                continue
            summary = _read_json(d / "summary.json", [])
            info.sims[d.name] = (layers, summary)
    if not info.sims:
        info.missing.append("no simulation (sim/ is empty or absent)")
    return info


def _pattern(value: Any, convention: Any = "n_kept_of_m") -> str:
    """Normalise a pattern to ``"unstructured"`` or ``"n:m"`` (at most n of every m KEPT).

    Manifests before ``pattern_convention`` (version 1) wrote n PRUNED of m: converted to m-n:m."""
    if value in (None, "", "unstructured", "none"):
        return "unstructured"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        value = f"{int(value[0])}:{int(value[1])}"
    parts = str(value).split(":")
    if convention is None and len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        n, m = int(parts[0]), int(parts[1])
        return f"{m - n}:{m}"
    return str(value)


def _first_ppl(ev: dict[str, Any]) -> dict[str, Any]:
    """Find the perplexity record in eval.json, whatever nesting the writer chose.

    Accepts ``{"ppl": 21.3, ...}``, ``{"perplexity": {"wiki": {"ppl": ...}}}`` and similar; returns
    ``{"ppl", "dataset", "seqlen", "windows"}`` (missing fields None).
    """

    def walk(obj: Any, key: str | None) -> dict[str, Any] | None:
        if isinstance(obj, dict):
            if isinstance(obj.get("ppl"), (int, float)):
                return {"ppl": float(obj["ppl"]), "dataset": obj.get("dataset", key), "seqlen": obj.get("seqlen"), "windows": obj.get("windows")}
            for k, v in obj.items():
                r = walk(v, k)
                if r is not None:
                    if r.get("dataset") in (None, "perplexity", "ppl"):
                        r["dataset"] = k if k not in ("perplexity", "ppl") else r.get("dataset")
                    return r
        elif isinstance(obj, list):
            for v in obj:
                r = walk(v, key)
                if r is not None:
                    return r
        return None

    return walk(ev, None) or {"ppl": None, "dataset": None, "seqlen": None, "windows": None}


def run_meta(info: RunInfo) -> dict[str, Any]:
    """Run-level columns: method, sparsity target, pattern, wbits, model, perplexity."""
    man, st = info.manifest, info.status
    method = man.get("method") or st.get("method") or info.allocation.get("method") or info.eval.get("method") or info.name.split("-")[0]
    sparsity = man.get("target", man.get("sparsity", st.get("sparsity", info.allocation.get("target"))))
    if method == "dense":
        sparsity = 0.0
    wbits = man.get("wbits", st.get("wbits"))
    ppl = _first_ppl(info.eval)
    return {
        "run": info.name,
        "method": method,
        "sparsity": float(sparsity) if sparsity is not None else math.nan,
        "pattern": "dense" if method == "dense" else _pattern(man.get("pattern", st.get("pattern")), man.get("pattern_convention", "n_kept_of_m" if not man else None)),
        "wbits": int(wbits) if wbits not in (None, "", 0) else 16,
        "model": man.get("model") or st.get("model") or info.eval.get("model"),
        "ppl": ppl["ppl"],
        "ppl_dataset": ppl["dataset"],
        "ppl_seqlen": ppl["seqlen"],
        "ppl_windows": ppl["windows"],
    }


def hw_numbers(summary: dict[str, Any]) -> tuple[float | None, float | None]:
    """(peak MACs per cycle, DRAM bytes per cycle) from a simulation summary, for the roofline."""
    hw = summary.get("hardware") if isinstance(summary.get("hardware"), dict) else summary
    hw = {k: v for k, v in hw.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    peak = hw.get("peak_macs_per_cycle") or hw.get("macs")
    if not peak and hw.get("lines") and hw.get("macs_per_line"):
        peak = float(hw["lines"]) * float(hw["macs_per_line"])
    bw = None
    for k in ("bandwidth_bytes_per_cycle", "bytes_per_cycle", "dram_bytes_per_cycle", "bandwidth"):
        if isinstance(hw.get(k), (int, float)):
            bw = float(hw[k])
            break
    return (float(peak) if peak else None, bw)


def _allocation_rows(info: RunInfo) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for name, rec in (info.allocation.get("layers") or {}).items():
        block, proj = split_layer(name)
        shape = rec.get("shape") or [None, None]
        rows[name] = {
            "layer": name,
            "block": rec.get("block", block),
            "projection": rec.get("proj", proj).rsplit(".", 1)[-1] if rec.get("proj") else proj,
            "rows": shape[0],
            "cols": shape[1],
            "target_sparsity": rec.get("target"),
            "expected_sparsity": rec.get("expected"),
            "layer_sparsity": rec.get("realised"),
        }
    return rows


def run_table(info: RunInfo) -> pd.DataFrame:
    """The tidy rows of one run (see the module docstring)."""
    meta = run_meta(info)
    alloc = _allocation_rows(info)
    frames = []
    for key, (layers, summary) in info.sims.items():
        df = layers.copy()
        if "layer" not in df.columns:
            info.missing.append(f"sim/{key}/layers.csv has no 'layer' column")
            continue
        preset, _, mode = key.partition("-")
        df["preset"] = summary.get("preset", preset) if isinstance(summary.get("preset"), str) else preset
        if "mode" not in df.columns:
            df["mode"] = summary.get("mode", mode)
        if "speedup_vs_dense" in df.columns:
            df["speedup"] = df["speedup_vs_dense"]
        elif {"cycles", "dense_cycles"} <= set(df.columns):
            df["speedup"] = df["dense_cycles"] / df["cycles"]
        df["sim"] = key
        peak, bw = hw_numbers(summary)
        df["peak_macs_per_cycle"] = peak
        df["bandwidth_bytes_per_cycle"] = bw
        for col in ("block", "projection"):
            if col in df.columns:
                df = df.drop(columns=col)
        split = df["layer"].map(split_layer)
        df["block"] = [b for b, _ in split]
        df["projection"] = [p for _, p in split]
        for col in ("target_sparsity", "expected_sparsity", "layer_sparsity"):
            df[col] = df["layer"].map(lambda n, c=col: alloc.get(n, {}).get(c))
        if not alloc and {"rows", "cols"} <= set(df.columns) and "density" in df.columns:
            df["layer_sparsity"] = 1.0 - df["density"]
        frames.append(df)
    if frames:
        df = pd.concat(frames, ignore_index=True)
    elif alloc:
        df = pd.DataFrame(list(alloc.values()))
    else:
        df = pd.DataFrame([{"layer": None}])
    for k, v in meta.items():
        df[k] = v
    if meta["method"] == "dense" and "layer_sparsity" in df.columns:
        df["layer_sparsity"] = df["layer_sparsity"].fillna(0.0)
    return df


def load_runs(paths: Iterable[str | Path]) -> list[RunInfo]:
    runs = [load_run(p) for p in find_runs(paths)]
    if not runs:
        raise UserError(f"no run directories found in {', '.join(str(p) for p in paths)} (expected manifest.json, eval.json, allocation.json or sim/)")
    return runs


def build_table(runs: Iterable[RunInfo]) -> pd.DataFrame:
    """Concatenate every run's tidy rows; core columns first, in :data:`CORE_COLUMNS` order."""
    frames = [run_table(r) for r in runs]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in CORE_COLUMNS:
        if col not in df.columns:
            df[col] = None
    rest = [c for c in df.columns if c not in CORE_COLUMNS]
    df = df[CORE_COLUMNS + rest]
    for col in ("sparsity", "target_sparsity", "expected_sparsity", "layer_sparsity", "cycles", "dense_cycles", "nm_cycles", "speedup", "speedup_vs_nm", "ppl", "tokens", "rows", "cols"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Whole-model totals per (run, preset, mode, tokens): cycles summed over layers, speedup = Σdense / Σcycles.

    Runs without a simulation keep one row (cycles empty) so their perplexity still shows.
    """
    keys = ["run", "method", "sparsity", "pattern", "wbits"]
    sim = df.dropna(subset=["cycles"])
    rows = []
    if not sim.empty:
        def total(s: pd.Series) -> float:
            return s.sum(min_count=1)  # all-missing stays missing (e.g. no n:m engine in besa-compat)

        agg = {"cycles": ("cycles", total), "dense_cycles": ("dense_cycles", total), "layers": ("layer", "nunique")}
        if sim["nm_cycles"].notna().any():
            agg["nm_cycles"] = ("nm_cycles", total)
        g = sim.groupby(keys + ["preset", "mode", "tokens"], dropna=False).agg(**agg).reset_index()
        g["speedup"] = g["dense_cycles"] / g["cycles"]
        if "nm_cycles" in g.columns:
            g["speedup_vs_nm"] = g["nm_cycles"] / g["cycles"]
        rows.append(g)
    runs = df.groupby("run", sort=False).first().reset_index()
    nosim = runs[~runs["run"].isin(sim["run"].unique())][keys]
    if not nosim.empty:
        rows.append(nosim)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=keys)
    # the model-level realised sparsity: parameter-weighted over layers
    size = (df["rows"] * df["cols"]).where(df["layer_sparsity"].notna())
    per_run = df.assign(_w=size, _z=size * df["layer_sparsity"]).drop_duplicates(["run", "layer"]).groupby("run")[["_w", "_z"]].sum()
    realised = (per_run["_z"] / per_run["_w"]).rename("realised_sparsity")
    ppl = runs.set_index("run")[["ppl", "ppl_dataset", "ppl_seqlen", "ppl_windows"]]
    out = out.join(realised, on="run").join(ppl, on="run")
    for col in ("preset", "mode", "tokens", "cycles", "dense_cycles", "speedup"):
        if col not in out.columns:
            out[col] = None
    return out.sort_values(["preset", "mode", "tokens", "method", "sparsity"], na_position="last", kind="stable").reset_index(drop=True)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency: tabulate is optional)."""
    cols = list(df.columns)

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """Write ``OUT/table.csv`` (every tidy row), ``OUT/summary.csv`` and ``OUT/report.md`` atomically."""
    out = Path(out)
    summ = summary_table(df)
    paths = {"table": out / "table.csv", "summary": out / "summary.csv", "markdown": out / "report.md"}
    atomic_write_text(paths["table"], df.to_csv(index=False))
    atomic_write_text(paths["summary"], summ.to_csv(index=False))
    show = [c for c in ("run", "method", "sparsity", "pattern", "wbits", "realised_sparsity", "ppl", "preset", "mode", "tokens", "cycles", "dense_cycles", "speedup", "speedup_vs_nm") if c in summ.columns]
    md = "# besa report\n\nWhole-model totals (cycles summed over layers; speedup = dense cycles / cycles).\n\n" + to_markdown(summ[show])
    atomic_write_text(paths["markdown"], md)
    return paths
