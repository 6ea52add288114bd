"""Run directories -> one tidy table (pandas); :mod:`reports.writers` writes it as CSV and Markdown.

Reads only the files other stages write (see DESIGN.md, "Run directory"); never imports torch:

    RUN/manifest.json       method, target sparsity, pattern, wbits (written by ``besa prune``)
    RUN/allocation.json     per-layer target / expected / realised sparsity (1 = kept convention upstream)
    RUN/eval.json           perplexity (``besa eval --out RUN``); HellaSwag accuracy when scored (reports.zeroshot)
    RUN/sim/<preset>-<mode>/layers.csv + summary.json   (``besa simulate``)
    SIM/layers.csv + summary.json                       (a plain ``besa simulate --out SIM``: a run of its own)
    RUN/sibling.json        the run's equal-sparsity n:m sibling (``besa run``; see reports.siblings)

Runs are identified by EXPERIMENT + run name: the experiment is the folder given to
:func:`load_runs` that holds the runs (``besa run --out DIR`` -> ``DIR``'s name), so two experiments
with the same run names stay apart.  Columns ``experiment`` and ``run`` (the run directory's name),
and ``label`` = ``run`` for a single experiment, ``experiment/run`` when several are loaded; every
grouping uses ``label``.

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

import numpy as np
import pandas as pd

from besa_common import llama
from besa_common.digest import json_digest
from besa_common.errors import UserError
from besa_common.fileio import resolve_path
from besa_common.masks import read_manifest
from besa_common.sparsity import PATTERN_CONVENTION, pattern_label
from reports.plotkit import order_runs
from reports.zeroshot import accuracy_columns
from simulator.schema import read_layers
from simulator.totals import model_totals

# Columns first in the tidy table, in this order; any other layers.csv column follows.
CORE_COLUMNS = [
    "label",
    "experiment",
    "run",
    "method",
    "sparsity",
    "pattern",
    "wbits",
    "model",
    "layer",
    "block",
    "projection",
    "rows",
    "cols",
    "target_sparsity",
    "expected_sparsity",
    "layer_sparsity",
    "preset",
    "mode",
    "tokens",
    "cycles",
    "dense_cycles",
    "nm_cycles",
    "speedup",
    "speedup_vs_nm",
    "ppl",
    "ppl_ci_low",
    "ppl_ci_high",
    "ppl_dataset",
    "ppl_seqlen",
    "ppl_windows",
]
# Order of the projections of a LLaMA decoder block (heatmap columns).
PROJECTIONS = list(llama.PROJECTIONS)
_LAYER_RE = re.compile(r"layers\.(\d+)\.(?:[\w]+\.)*?(\w+)$")


@dataclass
class RunInfo:
    """What was found in one run directory."""

    name: str
    path: Path
    experiment: str = ""
    label: str = ""  # unique within one report: name, or experiment/name when several experiments are loaded
    manifest: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    allocation: dict[str, Any] = field(default_factory=dict)
    sims: dict[str, tuple[pd.DataFrame, dict[str, Any]]] = field(default_factory=dict)  # "<preset>-<mode>" -> (layers, summary)
    missing: list[str] = field(default_factory=list)  # human-readable notes for the report
    status: dict[str, Any] = field(default_factory=dict)  # besa run's status.json, when present
    sibling: dict[str, Any] = field(default_factory=dict)  # besa run's sibling.json, when present


def split_layer(name: str) -> tuple[int | None, str]:
    """``model.layers.12.mlp.down_proj`` -> ``(12, "down_proj")``; unknown shapes -> ``(None, last part)``."""
    m = _LAYER_RE.search(str(name))
    if m:
        return int(m.group(1)), m.group(2)
    return None, str(name).rsplit(".", 1)[-1]


def is_sim_dir(path: Path) -> bool:
    """A ``besa simulate --out DIR`` output: layers.csv beside summary.json."""
    return (path / "layers.csv").is_file() and (path / "summary.json").is_file()


def is_run_dir(path: Path) -> bool:
    """A run directory holds at least one of the files a stage writes (a simulate output is one too)."""
    return is_sim_dir(path) or any((path / f).exists() for f in ("manifest.json", "eval.json", "allocation.json", "sim", "status.json"))


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path: a run directory itself, or a folder whose sub-folders are runs (``besa run --out``)."""
    return [p for _, p in find_experiments(paths)]


def short_names(roots: list[Path]) -> dict[Path, str]:
    """Name each experiment folder by the shortest tail of its path that no other folder shares."""
    names: dict[Path, str] = {}
    parts = {r: resolve_path(r).parts for r in roots}
    for r in roots:
        for k in range(1, len(parts[r]) + 1):
            tail = parts[r][-k:]
            if all(parts[o][-k:] != tail for o in roots if o != r):
                names[r] = "/".join(tail).lstrip("/") or str(r)
                break
        else:
            names[r] = str(r)
    return names


def find_experiments(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """``(experiment, run directory)`` for every run under ``paths``.

    A folder of runs is one experiment named after the folder; a run directory given directly
    belongs to the experiment of its parent folder.  Folders sharing a name (``a/default``,
    ``b/default``) are told apart by a longer tail of their path.
    """
    found: list[tuple[Path, Path]] = []  # (experiment folder, run dir)
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise UserError(f"not a directory: {p}")
        if is_run_dir(p):
            found.append((resolve_path(p).parent, p))
        else:
            found.extend((resolve_path(p), c) for c in sorted(p.iterdir()) if c.is_dir() and not c.name.startswith(".") and is_run_dir(c))
    seen: set[Path] = set()
    unique = []
    for root, p in found:
        if resolve_path(p) not in seen:
            seen.add(resolve_path(p))
            unique.append((root, p))
    names = short_names(list(dict.fromkeys(r for r, _ in unique)))
    return [(names[r], p) for r, p in unique]


_NUM = (int, float)
# The keys the report reads from each run-directory file and the JSON types they may have (null is
# always allowed).  A file that is not a JSON object, or a key of another type, is a one-line
# UserError naming the file and the key, before anything is written.
_SCHEMAS: dict[str, dict[str, tuple[type, ...]]] = {
    "manifest.json": {"method": (str,), "target": _NUM, "sparsity": _NUM, "pattern": (str, list), "wbits": (int,), "model": (str,)},
    "allocation.json": {"layers": (dict,), "method": (str,), "target": _NUM},
    "status.json": {"method": (str,), "sparsity": _NUM, "pattern": (str, list), "wbits": (int,), "model": (str,), "steps": (dict,)},
    "eval.json": {
        "method": (str,),
        "model": (str,),
        "ppl": _NUM,
        "ppl_ci95": (list,),
        "window_nll": (list,),
        "window_tokens": (list,),
        "windows_sha256": (str,),
    },
    "summary.json": {"preset": (str,), "mode": (str,), "hardware": (dict,), "totals": (dict,)},
    "sibling.json": {"run": (str,), "sibling": (str,), "why": (str,), "method": (str,), "pattern": (str,), "sparsity": _NUM, "wbits": (int,)},
}
_LAYER_SCHEMA: dict[str, tuple[type, ...]] = {"shape": (list,), "target": _NUM, "expected": _NUM, "realised": _NUM, "block": (int,), "proj": (str,)}


def _jsontype(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _check_types(obj: dict, schema: dict[str, tuple[type, ...]], where: str) -> None:
    for key, types in schema.items():
        v = obj.get(key)
        if v is None:
            continue
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if ok and isinstance(v, float) and not math.isfinite(v) and key != "ppl":  # a destroyed model's ppl may be inf
            ok = False
        if ok and key in ("pattern", "shape") and isinstance(v, list):
            ok = len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) or x is None for x in v)
        if not ok:
            want = " or ".join(sorted({_jsontype(tp()) if tp is not float else "a number" for tp in types}))
            raise UserError(f"{where}: {key!r} must be {want}, got {_jsontype(v)} {json.dumps(v)[:40]}")


class _NonFinite(Exception):
    pass


def _non_finite(name: str):
    raise _NonFinite(name)


def _non_finite_key(obj: Any, prefix: str = "") -> tuple[str, float] | None:
    """(dotted key, value) of the first NaN / Infinity in ``obj`` (JSON has no such numbers), else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return prefix or "(top level)", obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        found = _non_finite_key(v, f"{prefix}.{k}" if prefix else str(k))
        if found is not None:
            return found
    return None


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
    # NaN / Infinity are refused like a truncated file: a report would draw blanks (eval.json's ppl of
    # a destroyed model may be Infinity: only that one key may hold it)
    bad = _non_finite_key({k: v for k, v in obj.items() if not (path.name == "eval.json" and k == "ppl")})
    if bad is not None:
        raise UserError(f"{path}: {bad[0]!r} is {json.dumps(bad[1])}, not a finite number (NaN and Infinity are refused); fix or remove it")
    _check_types(obj, _SCHEMAS.get(path.name, {}), str(path))
    if path.name == "allocation.json":
        for name, rec in (obj.get("layers") or {}).items():
            if not isinstance(rec, dict):
                raise UserError(f"{path}: layers[{name!r}] must be an object, got {_jsontype(rec)}")
            _check_types(rec, _LAYER_SCHEMA, f"{path}: layers[{name!r}]")
    return obj


def load_run(path: str | Path, experiment: str | None = None) -> RunInfo:
    """Read every file of one run directory that exists; note the ones that do not."""
    path = Path(path)
    exp = experiment if experiment is not None else resolve_path(path).parent.name
    info = RunInfo(name=path.name, path=path, experiment=exp, label=path.name)
    info.manifest = _read_json(path / "manifest.json", info.missing)
    info.eval = _read_json(path / "eval.json", info.missing)
    info.allocation = _read_json(path / "allocation.json", info.missing)
    if (path / "status.json").is_file():
        info.status = _read_json(path / "status.json", [])
    if (path / "sibling.json").is_file():
        info.sibling = _read_json(path / "sibling.json", [])
    if "dense" in (info.manifest.get("method"), info.status.get("method"), info.eval.get("method")):
        # A dense run has no masks, hence no manifest / allocation of its own: not a gap.
        info.missing = [m for m in info.missing if m not in ("no manifest.json", "no allocation.json")]
    sim_root = path / "sim"
    if is_sim_dir(path):  # a plain simulate output: the run IS its one simulation
        info.missing = [m for m in info.missing if m not in ("no manifest.json", "no allocation.json", "no eval.json")]
        _add_sim(info, path, path.name)
        source = (info.sims.get(path.name, (None, {}))[1] or {}).get("source") or {}
        if not info.manifest and isinstance(source.get("masks"), str):  # what the masks' run recorded
            info.manifest = read_manifest(source["masks"]) or {}
        if not info.manifest and isinstance(source.get("synthetic"), str):
            info.manifest = {"method": "synthetic", "model": source["synthetic"].split(":", 1)[0]}
    elif sim_root.is_dir():
        for d in sorted(sim_root.iterdir()):
            if not d.is_dir() or d.name.startswith("."):
                continue
            if not (d / "layers.csv").is_file():
                info.missing.append(f"sim/{d.name} has no layers.csv")
                continue
            _add_sim(info, d, f"sim/{d.name}")
    if not info.sims:
        info.missing.append("no simulation (sim/ is empty or absent)")
    return info


def _add_sim(info: RunInfo, d: Path, where: str) -> None:
    try:
        layers = read_layers(d / "layers.csv")  # any results version (an old `tau` column renamed)
    except Exception as exc:  # a damaged CSV must not stop the whole report
        info.missing.append(f"{where}/layers.csv unreadable ({type(exc).__name__})")
        return
    info.sims[d.name] = (layers, _read_json(d / "summary.json", []))


def ppl_record(ev: dict[str, Any]) -> dict[str, Any]:
    """Find the perplexity record in eval.json, whatever nesting the writer chose.

    Accepts ``{"ppl": 21.3, ...}``, ``{"perplexity": {"wiki": {"ppl": ...}}}`` and similar; returns
    ``{"ppl", "dataset", "seqlen", "windows", "ci95", "record"}`` (missing fields None; ``ci95`` = the
    record's ``ppl_ci95`` [low, high]; ``record`` = the whole record, whose per-window NLLs
    :mod:`reports.pplci` reads).
    """

    def walk(obj: Any, key: str | None) -> dict[str, Any] | None:
        if isinstance(obj, dict):
            if isinstance(obj.get("ppl"), (int, float)):
                ci = obj.get("ppl_ci95")
                ci = (float(ci[0]), float(ci[1])) if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, _NUM) for x in ci) else None
                return {
                    "ppl": float(obj["ppl"]),
                    "dataset": obj.get("dataset", key),
                    "seqlen": obj.get("seqlen"),
                    "windows": obj.get("windows"),
                    "ci95": ci,
                    "record": obj,
                }
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

    return walk(ev, None) or {"ppl": None, "dataset": None, "seqlen": None, "windows": None, "ci95": None, "record": {}}


def run_meta(info: RunInfo) -> dict[str, Any]:
    """Run-level columns: method, sparsity target, pattern, wbits, model, perplexity."""
    man, st = info.manifest, info.status
    method = man.get("method") or st.get("method") or info.allocation.get("method") or info.eval.get("method") or info.name.split("-")[0]
    sparsity = man.get("target", man.get("sparsity", st.get("sparsity", info.allocation.get("target"))))
    if method == "dense":
        sparsity = 0.0
    wbits = man.get("wbits", st.get("wbits"))
    ppl = ppl_record(info.eval)
    return {
        "label": info.label or info.name,
        "experiment": info.experiment,
        "run": info.name,
        "method": method,
        "sparsity": float(sparsity) if sparsity is not None else math.nan,
        "pattern": "dense"
        if method == "dense"
        else pattern_label(man.get("pattern", st.get("pattern")), man.get("pattern_convention", PATTERN_CONVENTION if not man else None)),
        "wbits": int(wbits) if wbits not in (None, "", 0) else 16,
        "model": man.get("model") or st.get("model") or info.eval.get("model"),
        "ppl": ppl["ppl"],
        "ppl_ci_low": ppl["ci95"][0] if ppl["ci95"] else math.nan,  # eval.json ppl_ci95: 95 % bootstrap over windows
        "ppl_ci_high": ppl["ci95"][1] if ppl["ci95"] else math.nan,
        "ppl_dataset": ppl["dataset"],
        "ppl_seqlen": ppl["seqlen"],
        "ppl_windows": ppl["windows"],
        **accuracy_columns(info.eval),  # hellaswag, hellaswag_se, hellaswag_n
        "sibling": info.sibling.get("sibling"),  # run name of the equal-sparsity n:m sibling (same experiment)
        "sibling_why": info.sibling.get("why"),
    }


# summary.json totals (simulator.totals) copied into every tidy row of that token count as ``total_<key>``
TOTAL_KEYS = ("layers", "cycles", "dense_cycles", "nm_cycles", "energy_uj", "dense_energy_uj")


def sim_totals(layers: pd.DataFrame, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{str(tokens): totals}`` of one simulation: summary.json's ``totals`` (written by
    :mod:`simulator.totals`, the one definition of a model total); for a summary without them (a
    hand-written or older file) the same function applied to its layers.csv."""
    tot = summary.get("totals")
    if isinstance(tot, dict) and tot:
        return {str(k): v for k, v in tot.items() if isinstance(v, dict)}
    if "tokens" not in layers.columns or layers.empty:
        return {}
    toks = sorted({int(t) for t in layers["tokens"].dropna()})
    return {str(t): row for t, row in zip(toks, model_totals(layers, toks))}


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
        tot = sim_totals(layers, summary)
        e2e = sorted({k for t in tot.values() if isinstance(t, dict) for k in t if k.startswith(("e2e_", "end_to_end"))})
        for k in e2e:  # end-to-end totals (attention, KV cache ...) per token count, when the simulator wrote them
            df[k] = df["tokens"].map(lambda n, k=k, tot=tot: (tot.get(str(int(n))) or {}).get(k) if pd.notna(n) else None)
        for k in TOTAL_KEYS:  # the model totals, read by summary_table
            df["total_" + k] = df["tokens"].map(lambda n, k=k, tot=tot: (tot.get(str(int(n))) or {}).get(k) if pd.notna(n) else None)
        hw = summary.get("hardware") if isinstance(summary.get("hardware"), dict) else {}
        df["machine_json"] = json.dumps({k: v for k, v in hw.items() if k not in ("name", "description")}, sort_keys=True) if hw else None
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


def label_runs(runs: list[RunInfo]) -> list[RunInfo]:
    """Give every run its unique ``label``: the run name, or ``experiment/run`` when several experiments
    are loaded (so equal run names of two experiments never merge)."""
    several = len({r.experiment for r in runs}) > 1
    for r in runs:
        r.label = f"{r.experiment}/{r.name}" if several else r.name
    labels = [r.label for r in runs]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise UserError(f"two run directories would both be labelled {dup[0]!r}; give them distinct folder names")
    return runs


def load_runs(paths: Iterable[str | Path]) -> list[RunInfo]:
    """Every run under ``paths`` (see :func:`find_experiments`), labelled (see :func:`label_runs`)."""
    paths = list(paths)
    runs = [load_run(p, exp) for exp, p in find_experiments(paths)]
    if not runs:
        raise UserError(f"no run directories found in {', '.join(str(p) for p in paths)} (expected manifest.json, eval.json, allocation.json or sim/)")
    return label_runs(runs)


def name_machines(df: pd.DataFrame) -> pd.DataFrame:
    """Keep machines apart by what they ARE: when simulations under one preset name ran different
    machines (``--set index_format=csr`` beside the preset, an edited preset file), each one's
    ``preset`` becomes ``NAME (field=value, ...)`` with the fields that tell them apart, so no
    table or figure ever merges them.  Column ``machine_id``: a digest of the machine's fields."""
    if "machine_json" not in df.columns or "preset" not in df.columns:
        return df
    rename: dict[tuple[str, str], str] = {}
    for preset, g in df.dropna(subset=["machine_json"]).groupby("preset", sort=False):
        kinds = list(dict.fromkeys(g["machine_json"]))
        if len(kinds) < 2:
            continue
        hws = [json.loads(k) for k in kinds]
        differ = [f for f in hws[0] if any(h.get(f) != hws[0].get(f) for h in hws)] + sorted({f for h in hws for f in h} - set(hws[0]))
        for k, h in zip(kinds, hws):
            rename[(preset, k)] = f"{preset} ({', '.join(f'{f}={h.get(f)}' for f in differ)})"
    df = df.copy()
    if rename:
        df["preset"] = [rename.get((p, k), p) for p, k in zip(df["preset"], df["machine_json"])]
    ids = {k: json_digest(k, algorithm="sha1", length=12) for k in df["machine_json"].dropna().unique()}
    df["machine_id"] = df["machine_json"].map(ids)  # the full machine stays in each summary.json
    return df.drop(columns="machine_json")


def build_table(runs: Iterable[RunInfo]) -> pd.DataFrame:
    """Concatenate every run's tidy rows; core columns first, in :data:`CORE_COLUMNS` order."""
    frames = [run_table(r) for r in runs]
    df = name_machines(pd.concat(frames, ignore_index=True)) if frames else pd.DataFrame()
    for col in CORE_COLUMNS:
        if col not in df.columns:
            df[col] = None
    rest = [c for c in df.columns if c not in CORE_COLUMNS]
    df = df[CORE_COLUMNS + rest]
    for col in (
        "sparsity",
        "target_sparsity",
        "expected_sparsity",
        "layer_sparsity",
        "cycles",
        "dense_cycles",
        "nm_cycles",
        "speedup",
        "speedup_vs_nm",
        "ppl",
        "ppl_ci_low",
        "ppl_ci_high",
        "tokens",
        "rows",
        "cols",
    ):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Whole-model totals per (run label, preset, mode, tokens), READ from each simulation's
    summary.json (the tidy table's ``total_*`` columns, see :func:`sim_totals`), never re-summed
    here: ``cycles``, ``dense_cycles``, ``nm_cycles`` (empty unless EVERY layer fits the n:m engine),
    ``layers``, ``speedup`` = dense_cycles / cycles, ``speedup_vs_nm`` = nm_cycles / cycles;
    ``energy_uj``, ``dense_energy_uj`` and ``energy_vs_dense`` (dense / run, > 1 = less energy) when
    the simulator wrote energy; ``e2e_*`` columns when present; the run's ``sibling`` (see
    :mod:`reports.siblings`).

    Runs without a simulation keep one row (cycles empty) so their perplexity still shows.
    """
    keys = ["label", "experiment", "run", "method", "sparsity", "pattern", "wbits"]
    sim = df.dropna(subset=["cycles"])
    rows = []
    if not sim.empty:
        agg = {k: ("total_" + k, "first") for k in TOTAL_KEYS if "total_" + k in sim.columns}
        for c in sim.columns:
            if c.startswith("e2e_") or c.startswith("end_to_end"):
                agg[c] = (c, "first")
        g = sim.groupby(keys + ["preset", "mode", "tokens"], dropna=False).agg(**agg).reset_index()
        for k in TOTAL_KEYS:
            g[k] = pd.to_numeric(g[k], errors="coerce") if k in g.columns else np.nan
        g["speedup"] = g["dense_cycles"] / g["cycles"]
        if g["nm_cycles"].notna().any():
            g["speedup_vs_nm"] = g["nm_cycles"] / g["cycles"]
        else:
            g = g.drop(columns="nm_cycles")
        if g["energy_uj"].notna().any():
            g["energy_vs_dense"] = g["dense_energy_uj"] / g["energy_uj"]  # like speedup: > 1 = less energy than dense
        else:
            g = g.drop(columns=["energy_uj", "dense_energy_uj"])
        rows.append(g)
    runs = df.groupby("label", sort=False).first().reset_index()
    nosim = runs[~runs["label"].isin(sim["label"].unique())][keys]
    if not nosim.empty:
        rows.append(nosim)
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=keys)
    # the model-level realised sparsity: parameter-weighted over layers
    size = (df["rows"] * df["cols"]).where(df["layer_sparsity"].notna())
    per_run = df.assign(_w=size, _z=size * df["layer_sparsity"]).drop_duplicates(["label", "layer"]).groupby("label")[["_w", "_z"]].sum()
    realised = (per_run["_z"] / per_run["_w"].where(per_run["_w"] > 0)).rename("realised_sparsity")
    extra = [
        c
        for c in (
            "ppl",
            "ppl_ci_low",
            "ppl_ci_high",
            "ppl_dataset",
            "ppl_seqlen",
            "ppl_windows",
            "hellaswag",
            "hellaswag_se",
            "hellaswag_n",
            "sibling",
            "sibling_why",
        )
        if c in runs.columns
    ]
    ppl = runs.set_index("label")[extra]
    out = out.join(realised, on="label").join(ppl, on="label")
    for col in ("preset", "mode", "tokens", "cycles", "dense_cycles", "speedup"):
        if col not in out.columns:
            out[col] = None
    return out.sort_values(["preset", "mode", "tokens", "experiment", "method", "sparsity"], na_position="last", kind="stable").reset_index(drop=True)


def phase_of(tokens: float, all_tokens: Iterable[float]) -> str:
    """``decode`` for the smallest token count simulated on a machine, ``prefill`` for the largest
    (N = 1 is a decode step; N = seqlen processes a prompt), ``N=<n>`` for any in between."""
    ts = sorted({float(t) for t in all_tokens if pd.notna(t)})
    if not ts or pd.isna(tokens):
        return "?"
    if float(tokens) == ts[0]:
        return "decode"
    if float(tokens) == ts[-1]:
        return "prefill"
    return f"N={int(tokens)}"


def glance_table(summ: pd.DataFrame) -> pd.DataFrame:
    """The page's first table: one row per run, one column per question.

    Columns: label, method, pattern, target and realised sparsity, perplexity, HellaSwag acc_norm % and
    its standard error when some run was scored on it (:mod:`reports.zeroshot`), then per simulated
    machine ``<preset> decode ×`` (smallest N) and ``<preset> prefill ×`` (largest N) speedups
    (``<preset> <mode> N=<n> ×`` for modes other than ``cycle``), and ``<preset> <phase> energy ×``
    (dense energy / energy, > 1 = less energy) and ``e2e ×`` speedups when the simulator wrote them.
    Values stay numbers; :mod:`reports.fmt` makes them readable.
    """
    if summ.empty:
        return pd.DataFrame()
    base_cols = [
        "label",
        "experiment",
        "method",
        "pattern",
        "wbits",
        "sparsity",
        "realised_sparsity",
        "ppl",
        "ppl_ci_low",
        "ppl_ci_high",
        "hellaswag",
        "hellaswag_se",
    ]
    base = summ.groupby("label", sort=False)[[c for c in base_cols if c != "label"]].first()
    base = base.rename(columns={"sparsity": "target_sparsity"})
    wide = {}
    sim = summ.dropna(subset=["speedup"])
    machines = sorted(sim.groupby(["preset", "mode"], sort=False), key=lambda kv: (kv[0][1] != "cycle", kv[0][0], kv[0][1]))
    for (preset, mode), g in machines:
        toks = g["tokens"].unique()
        for tokens, h in g.groupby("tokens", sort=True):
            phase = phase_of(tokens, toks) if mode == "cycle" else f"{mode} N={int(tokens)}"
            name = f"{preset} {phase}"
            wide[f"{name} ×"] = h.set_index("label")["speedup"]
            if "energy_vs_dense" in h.columns and h["energy_vs_dense"].notna().any():
                wide[f"{name} energy ×"] = h.set_index("label")["energy_vs_dense"]
            for c in [c for c in h.columns if c.startswith("e2e_speedup") or c.startswith("end_to_end_speedup")]:
                if h[c].notna().any():
                    wide[f"{name} e2e ×"] = h.set_index("label")[c]
    out = base.join(pd.DataFrame(wide)) if wide else base
    out = out.reindex(order_runs(summ.drop_duplicates("label")))
    if out["experiment"].nunique(dropna=True) <= 1:
        out = out.drop(columns="experiment")
    if (out["wbits"] == 16).all():
        out = out.drop(columns="wbits")
    if out["hellaswag"].isna().all():
        out = out.drop(columns=["hellaswag", "hellaswag_se"])
    if out["ppl_ci_low"].isna().all():  # no eval.json with an interval (one window, or written before them)
        out = out.drop(columns=["ppl_ci_low", "ppl_ci_high"])
    out = out.rename(
        columns={
            "target_sparsity": "target sparsity",
            "realised_sparsity": "realised sparsity",
            "ppl_ci_low": "ppl 95% low",
            "ppl_ci_high": "ppl 95% high",
            "hellaswag": "HellaSwag %",
            "hellaswag_se": "HellaSwag ±",
        }
    )
    return out.rename_axis("label").reset_index()


def row_sparsity_table(runs: Iterable[RunInfo]) -> pd.DataFrame:
    """One row per (run, layer) with ``row_sparsity``: the per-output-row fraction pruned from
    allocation.json as a float array (the distribution BESA learns; uniform runs have one value)."""
    recs = []
    for info in runs:
        for name, rec in (info.allocation.get("layers") or {}).items():
            rs = rec.get("row_sparsity")
            if not isinstance(rs, list) or not rs:
                continue
            block, proj = split_layer(name)
            recs.append(
                {
                    "label": info.label or info.name,
                    "experiment": info.experiment,
                    "run": info.name,
                    "method": info.allocation.get("method") or info.manifest.get("method"),
                    "target": rec.get("target", info.allocation.get("target")),
                    "layer": name,
                    "block": rec.get("block", block),
                    "projection": proj,
                    "row_sparsity": np.asarray(rs, dtype=float),
                }
            )
    return pd.DataFrame(recs, columns=["label", "experiment", "run", "method", "target", "layer", "block", "projection", "row_sparsity"])
