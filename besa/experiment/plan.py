"""What ``besa run`` will do for an experiment: the command line of every step, the simulations of
each run, the sibling pairing files, and the check of every command line by the real parsers.

Nothing here runs a step (:mod:`besa.experiment.runner` does).  Each step is one ``besa``
subcommand: ``besa prune`` (not for the dense run), ``besa eval``, then ``besa simulate`` once per
(preset, mode) of :func:`plan_sims`.

Siblings (``[siblings]``, :func:`besa.experiment.spec.pair_siblings`): every pruned unstructured run at
the sparsity of the sibling pattern (2:4 = 50 %) is paired with an n:m run of the same sparsity and
weight bits.  Each sibling run is additionally simulated in mode ``nm`` (the n:m engine) on every
preset the experiment simulates in ``cycle`` mode (:func:`sibling_sims`), and each paired run records
the pairing in ``DIR/<run>/sibling.json`` (:func:`sibling_record`), which the report reads to put the
two side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

from besa.argcheck import MissingParsers, check_commands
from besa.experiment.spec import option_flags, sim_label
from besa_common.errors import UserError
from besa_common.fileio import atomic_write_json


# ---------------------------------------------------------------- commands of each step
def prune_cmd(exp, spec, run_dir: Path) -> list[str]:
    cal = exp.calibration
    cmd = [
        "prune",
        "--model",
        exp.experiment.model,
        "--method",
        spec.method,
        "--sparsity",
        f"{spec.sparsity:g}",
        "--calib-dataset",
        cal.dataset,
        "--no-progress",
        "--nsamples",
        str(cal.nsamples),
        "--seqlen",
        str(cal.seqlen),
        "--seed",
        str(exp.experiment.seed),
        "--out",
        str(run_dir),
    ]
    if spec.pattern != "unstructured":
        cmd += ["--pattern", spec.pattern]
    if spec.wbits != 16:
        cmd += ["--wbits", str(spec.wbits)]
    return cmd + option_flags({**exp.options.get(spec.method, {}), **dict(spec.options)})  # the grid's own flags win


def eval_cmd(exp, spec, run_dir: Path) -> list[str]:
    ev = exp.eval
    cmd = ["eval", "--model", exp.experiment.model, "--dataset", ev.dataset, "--seqlen", str(ev.seqlen), "--no-progress", "--out", str(run_dir)]
    if ev.max_windows:
        cmd += ["--max-windows", str(ev.max_windows)]
    if ev.hellaswag:  # the same seeded tasks for every run: the report pairs them
        cmd += ["--tasks", "hellaswag", "--limit", str(ev.hellaswag), "--zs-scorer", "shared"]
    if not spec.dense:
        cmd += ["--masks", str(run_dir / "masks.safetensors")]
    return cmd


def prune_outputs(run_dir: Path) -> list[Path]:
    """Files a finished prune step leaves: masks, manifest, and ``weights.safetensors`` when the run
    changed weights (an older run directory of SparseGPT lacks it, so its prune step runs again)."""
    outs = [run_dir / "masks.safetensors", run_dir / "manifest.json"]
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return outs
    updated = manifest.get("updated_weights")
    if updated is None:  # written before the key existed: ask the method (imports torch, old dirs only)
        # Function-local on purpose: pruning.runfiles imports torch (the ``prune`` extra), and this
        # module must import without it (``besa run --dry-run``, the report's tests).
        from pruning.runfiles import updates_weights

        updated = updates_weights(manifest)
    return outs + [run_dir / "weights.safetensors"] if updated else outs


SIBLING_FILE = "sibling.json"
SIBLING_FORMAT = "besa-sibling"
SIBLING_ENGINE = "nm"  # the simulator mode of the n:m engine


def sibling_sims(exp) -> list[tuple[str, str, tuple[int, ...]]]:
    """The n:m-engine simulations of a sibling run, on top of the experiment's own: mode ``nm`` on
    each preset the experiment simulates in ``cycle`` mode (the machine model the unstructured run is
    compared in), at that preset's cycle token counts — unless the experiment already simulates mode
    ``nm`` on that preset, which every run (the siblings included) gets anyway."""
    cycle: dict[str, set[int]] = {}
    have_nm = {t.preset for t in exp.simulate if SIBLING_ENGINE in t.modes}
    for t in exp.simulate:
        if "cycle" in t.modes and t.preset not in have_nm:
            cycle.setdefault(t.preset, set()).update(t.tokens)
    return [(preset, SIBLING_ENGINE, tuple(sorted(toks))) for preset, toks in cycle.items()]


def plan_sims(exp) -> dict[str, list[tuple[str, str, tuple[int, ...]]]]:
    """Run name -> the (preset, mode, tokens) simulations ``besa run`` gives it: the experiment's
    ``[[simulate]]`` targets, plus :func:`sibling_sims` for the runs that are some run's sibling."""
    sims = [(t.preset, m, tuple(t.tokens)) for t in exp.simulate for m in t.modes]
    pairs, _ = exp.sibling_plan()
    siblings = {p.sibling for p in pairs.values()}
    extra = sibling_sims(exp)
    return {s.name: sims + (extra if s.name in siblings else []) for s in exp.run_specs()}


def sibling_record(exp, pair) -> dict:
    """The content of ``DIR/<run>/sibling.json`` for one pairing (see :mod:`besa.experiment`)."""
    spec = {s.name: s for s in exp.run_specs()}[pair.sibling]
    nm_sims = sorted({f"{sim_label(p)}-{m}" for p, m, _ in plan_sims(exp)[pair.sibling] if m == SIBLING_ENGINE})
    return {
        "format": SIBLING_FORMAT,
        "version": 1,
        "run": pair.run,
        "sibling": pair.sibling,
        "why": pair.why,
        "added": pair.added,
        "method": spec.method,
        "pattern": spec.pattern,
        "sparsity": spec.sparsity,
        "wbits": spec.wbits,
        "engine": SIBLING_ENGINE,
        "simulations": [f"../{pair.sibling}/sim/{k}" for k in nm_sims],  # relative to this run directory
    }


def write_sibling_files(exp, out: Path) -> None:
    """Write each paired run's ``sibling.json`` (atomically) and remove a stale one left by an earlier
    plan from a run that is no longer paired."""
    pairs, _ = exp.sibling_plan()
    for s in exp.run_specs():
        path = out / s.name / SIBLING_FILE
        if s.name in pairs:
            atomic_write_json(path, sibling_record(exp, pairs[s.name]))
        elif path.is_file():
            path.unlink()


WHY = {
    "same-method": "the same method at {pattern}",
    "fallback": "{method} {pattern} on the same calibration",
    "configured": "[siblings].pairs",
}


def describe_siblings(exp) -> list[str]:
    """One line per pairing, for the run's header and the dry run."""
    pairs, _ = exp.sibling_plan()
    specs = {s.name: s for s in exp.run_specs()}
    lines = []
    for p in pairs.values():
        sib = specs[p.sibling]
        why = WHY[p.why].format(method=sib.method, pattern=sib.pattern) + (", added to the plan" if p.added else "")
        lines.append(f"{p.run} vs {p.sibling} ({why})")
    return lines


def sim_cmd(masks: Path, preset: str, mode: str, tokens, out: Path, wbits: int) -> list[str]:
    cmd = ["simulate", "--masks", str(masks), "--hw", preset, "--mode", mode, "--tokens", ",".join(str(t) for t in tokens), "--out", str(out)]
    if wbits != 16:
        # a quantized run moves wbits-wide weights: simulate it with its real width
        cmd += ["--set", f"weight_bits={wbits}"]
    return cmd


def check_steps(exp, out: Path, dry_run: bool = False) -> None:
    """Every command line the experiment will run, checked by the commands' real parsers (see
    :mod:`besa.argcheck`) BEFORE anything runs — in a dry run too; the first problem is a
    UserError naming the experiment key behind it.  Without the ``prune`` extra (no torch) a dry
    run says it could not check them; a real run has already refused to start."""
    specs = exp.run_specs()
    sims = plan_sims(exp)
    pruned = [s for s in specs if not s.dense]
    scratch = out / "_check"
    lines: list[tuple[str, list[str]]] = []
    for method, tbl in exp.options.items():  # one line per key, so the error names the key
        for key, value in tbl.items():
            lines.append((f"[options.{method}].{key}", ["prune", "--method", method, "--out", str(scratch)] + option_flags({key: value})))
    for i, g in enumerate(exp.runs):
        for key, value in g.options.items():
            for method in g.methods:
                lines.append((f"[[runs]][{i}].options.{key}", ["prune", "--method", method, "--out", str(scratch)] + option_flags({key: value})))
    if pruned:
        lines.append(("[calibration].dataset", ["prune", "--method", pruned[0].method, "--out", str(scratch), "--calib-dataset", exp.calibration.dataset]))
    lines.append(("[eval].dataset", ["eval", "--dataset", exp.eval.dataset, "--out", str(scratch)]))
    for s in specs:
        d = out / s.name
        if not s.dense:
            lines.append((f"run {s.name}: besa prune", prune_cmd(exp, s, d)))
        lines.append((f"run {s.name}: besa eval", eval_cmd(exp, s, d)))
        for preset, mode, tokens in sims[s.name]:
            lines.append((f"run {s.name}: besa simulate", sim_cmd(d / "masks.safetensors", preset, mode, tokens, d / "sim", s.wbits)))
    try:
        errors = check_commands([a for _, a in lines])
    except MissingParsers as exc:
        if not dry_run:
            raise
        print(f"note: the step command lines were not checked against besa prune/eval: {exc}", flush=True)
        return
    for (where, argv), err in zip(lines, errors):
        if err is not None:
            raise UserError(f"{exp.source}: {where}: `besa {argv[0]}` rejects it: {err}")
