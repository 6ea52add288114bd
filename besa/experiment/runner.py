"""Running an experiment: ``besa run``'s orchestration (the command line is :mod:`besa.commands.run`).

Every step is one ``besa`` subcommand (:mod:`besa.experiment.plan`) run in a CHILD PROCESS
(``python -m besa.cli ...``):

* error isolation — a step that fails (or crashes) is recorded in its run's ``status.json`` with
  the last line of its log, the runs that do not depend on it go on, and the report lists it;
* resume — a step is skipped when ``status.json`` says it finished with the same command (a
  digest of its command line and of the steps it depends on) and its outputs exist.  The status
  is written atomically AFTER the step's outputs, so a kill midway leaves either a finished step
  or one that is simply run again (``besa prune`` itself resumes from its per-block checkpoint);
* a child dies with its parent (``PR_SET_PDEATHSIG``), so killing ``besa run`` leaves nothing
  running behind.

Layout: ``DIR/<run>/`` per run (``besa-s50``, ``wanda-s50-2x4``, ``dense`` ...) with the prune /
eval / simulate outputs of DESIGN.md, ``status.json`` and ``logs/<step>.log``;
``DIR/experiment.toml`` (the experiment as given), ``DIR/whatif/`` (optional sweep) and the report:
``DIR/report.html``, ``table.csv``, ``summary.csv``, ``report.md``.  A "dense" run is not pruned:
it is evaluated without masks and simulated on an all-kept masks file of the model's shapes.
Each paired run's ``sibling.json`` is written before any step (:func:`besa.experiment.plan.write_sibling_files`).
"""

from __future__ import annotations

import time
from pathlib import Path

from besa.experiment.dask_runner import run_on_dask
from besa.experiment.plan import check_steps, describe_siblings, eval_cmd, plan_sims, prune_cmd, prune_outputs, sim_cmd, write_sibling_files
from besa.experiment.spec import sim_label
from besa.experiment.status import Runner
from besa.experiment.status import step_digest as _digest
from besa.experiment.status import write_dense_masks as _write_dense_masks
from besa_common.fileio import atomic_write_json, atomic_write_text, check_output_path, dir_lock, resolve_path
from reports.build import build_report
from simulator.sweep import parse_sweep, run_sweep


def run_experiment(exp, out: Path, dry_run: bool = False, report: bool = True, experiment_text: str | None = None, wait: bool = False, dask=None) -> int:
    """Run (or resume) every step of ``exp`` into ``out``; return 0, or 1 when some step failed.

    ``out`` is checked (writable, not a file) in a dry run too; a real run holds its writer lock
    (a second ``besa run`` on the same folder fails at once, or waits with ``wait=True``).
    ``dask``: a :class:`besa.experiment.dask_runner.DaskOptions` runs the steps on a Dask cluster
    (:func:`besa.experiment.dask_runner.run_on_dask`); None runs them one after another here.
    """
    check_output_path(out)
    check_steps(exp, out, dry_run)  # the same checks in a dry run and a real one, before the lock
    if dry_run:
        return _run_experiment(exp, out, True, report, experiment_text, None, None)
    with dir_lock(out, wait=wait) as lock:
        return _run_experiment(exp, out, False, report, experiment_text, lock, dask)


def _run_experiment(exp, out: Path, dry_run: bool, report: bool, experiment_text: str | None, lock, dask) -> int:
    t0 = time.perf_counter()
    specs = exp.run_specs()
    plan = plan_sims(exp)
    sims = [(t.preset, m, t.tokens) for t in exp.simulate for m in t.modes]
    n_steps = sum((0 if s.dense else 1) + 1 + len(plan[s.name]) for s in specs) + (1 if exp.whatif else 0)
    extra = sum(len(plan[s.name]) - len(sims) for s in specs)
    print(
        f"besa run: experiment {exp.experiment.name!r} ({exp.source}), model {exp.experiment.model}: "
        f"{len(specs)} runs ({', '.join(s.name for s in specs)}), {len(sims)} simulation(s) each"
        + (f" (+{extra} on the n:m engine for the 2:4 siblings)" if extra else "")
        + f", {n_steps} steps -> {out}",
        flush=True,
    )
    for line in describe_siblings(exp):
        print(f"  sibling: {line}", flush=True)
    if dry_run:
        for s in specs:
            d = out / s.name
            if not s.dense:
                print("  besa " + " ".join(prune_cmd(exp, s, d)))
            print("  besa " + " ".join(eval_cmd(exp, s, d)))
            for preset, mode, tokens in plan[s.name]:
                print("  besa " + " ".join(sim_cmd(d / "masks.safetensors", preset, mode, tokens, d / "sim" / f"{sim_label(preset)}-{mode}", s.wbits)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if experiment_text is not None:
        atomic_write_text(out / "experiment.toml", experiment_text)
    # A step killed mid-write leaves the temp file of an atomic write behind (the real file is
    # intact, or absent): remove such leftovers of earlier, dead writers before resuming (only the
    # lock holder may, and only temps whose writer pid no longer runs).
    lock.clean_temps()
    for s in specs:
        (out / s.name).mkdir(parents=True, exist_ok=True)
    write_sibling_files(exp, out)  # the pairing, before any step: the report reads it even if a step fails
    runner = Runner(out, n_steps)
    if dask is None:
        _serial_steps(exp, out, specs, plan, sims, runner)
    else:
        run_on_dask(exp, out, runner, dask)

    if exp.whatif:
        runner.count += 1
        _run_whatif(exp, out, runner)
    wall = time.perf_counter() - t0
    atomic_write_json(
        out / "experiment.json",
        {
            "name": exp.experiment.name,
            "source": exp.source,
            "runs": [s.name for s in specs],
            "siblings": {p.run: p.sibling for p in exp.sibling_plan()[0].values()},
            "failed_steps": runner.failed,
            "wall_s": round(wall, 1),
        },
    )
    if report:
        notes = [
            f"besa run wall time: {wall / 60:.1f} min ({wall:.0f} s) for this invocation (finished steps of earlier invocations are skipped, not re-timed)."
        ]
        page = build_report([out], out, title=f"besa run: {exp.experiment.name}", notes=notes)
        print(f"report: {resolve_path(page)}")
    print(
        f"besa run: total wall time {wall:.1f} s ({wall / 60:.1f} min); "
        + (f"{len(runner.failed)} step(s) failed: {'; '.join(runner.failed)}" if runner.failed else "all steps done"),
        flush=True,
    )
    return 1 if runner.failed else 0


def _serial_steps(exp, out: Path, specs, plan, sims, runner: Runner) -> None:
    """Every prune / eval / simulate step, one after another in this process (``--workers 0``)."""
    statuses: dict[str, dict] = {}
    prune_digest: dict[str, str | None] = {}

    # Run by run (prune -> eval -> simulate), cheapest first in file order, so a long experiment
    # has complete runs early and an interrupted one keeps them.  The dense run is evaluated first
    # and simulated last: its all-kept workload takes the layer shapes from a pruned masks file.
    def simulate_run(s, d: Path) -> None:
        masks = d / "masks.safetensors"
        for preset, mode, tokens in plan[s.name]:
            if prune_digest[s.name] is None:
                runner.count += 1
                continue
            sd = d / "sim" / f"{sim_label(preset)}-{mode}"
            runner.step(
                d,
                statuses[s.name],
                f"sim/{sim_label(preset)}-{mode}",
                sim_cmd(masks, preset, mode, tokens, sd, s.wbits),
                [sd / "layers.csv", sd / "summary.json"],
                upstream=prune_digest[s.name] or "",
            )

    for s in sorted(specs, key=lambda s: not s.dense):
        d = out / s.name
        d.mkdir(parents=True, exist_ok=True)
        st = statuses[s.name] = runner.load_status(d, s, exp.experiment.model)
        if s.dense:
            prune_digest[s.name] = _digest("dense", exp.experiment.model)
        else:
            prune_digest[s.name] = runner.step(d, st, "prune", prune_cmd(exp, s, d), prune_outputs(d))
        if prune_digest[s.name] is None:
            runner.count += 1 + len(plan[s.name])
            continue
        # The evaluation depends on the updated weights too: a run directory pruned before they were
        # stored re-prunes (prune_outputs) and must then re-evaluate.
        weights = "+weights" if (d / "weights.safetensors").is_file() else ""
        runner.step(d, st, "eval", eval_cmd(exp, s, d), [d / "eval.json"], upstream=(prune_digest[s.name] or "") + weights)
        if not s.dense:
            simulate_run(s, d)
    for s in specs:
        if not (s.dense and sims):
            continue
        d = out / s.name
        template = next((out / p.name / "masks.safetensors" for p in specs if not p.dense and prune_digest.get(p.name)), None)
        if template is None:
            print(f"{s.name}: no pruned masks file to take the layer shapes from; dense simulation skipped", flush=True)
            runner.count += len(plan[s.name])
            runner.failed.append(f"{s.name}: simulation (no pruned masks for the shapes)")
            continue
        if not (d / "masks.safetensors").is_file():
            _write_dense_masks(d / "masks.safetensors", template)
        simulate_run(s, d)


def _run_whatif(exp, out: Path, runner: Runner) -> None:
    """The experiment's small hardware sweep over one run's masks (the report's sweep heatmap)."""
    w = exp.whatif
    masks = out / w.run / "masks.safetensors"
    label = f"[{runner.count}/{runner.total}] whatif sweep on {w.run}"
    if not masks.is_file():
        print(f"{label} - skipped: {masks} does not exist (its prune step failed?)", flush=True)
        runner.failed.append("whatif: no masks")
        return
    spec = parse_sweep(
        {
            "sweep": {"preset": w.preset, "mode": w.mode, "tokens": list(w.tokens), "seed": exp.experiment.seed},
            "grid": dict(w.grid),
            "workload": [{"name": w.run, "masks": str(resolve_path(masks))}],
        },
        source=f"{exp.source}: [whatif]",
    )
    print(f"{label} ...", flush=True)
    res = run_sweep(spec, out / "whatif", workers=w.workers, progress=False)
    print(f"{label} - {res.total} points ({res.skipped} already done, {res.failed} failed) in {res.wall_s:.1f} s", flush=True)
    if res.failed:
        runner.failed.append(f"whatif: {res.failed} point(s) failed")
