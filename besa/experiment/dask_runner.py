"""``besa run`` on Dask: the experiment's steps (:func:`besa.experiment.graph.build_graph`) as tasks.

Every task is one step's ``besa`` command in a child process on a worker
(:func:`besa.experiment.stepexec.execute`, the serial path's function), so the results are those
of the serial path.  This process keeps ALL the bookkeeping: it submits a step when its
dependencies are done (skipping one whose ``status.json`` says it finished with the same digest and
whose outputs exist — resume), records each outcome in its run's ``status.json`` as it arrives (one
writer), writes the dense run's all-kept masks once some pruned masks exist, and holds the run
directory's lock throughout.  Independent runs go in parallel; a step whose prune failed is not run
(as serially).  The what-if sweep and the report follow, in this process, as serially.

Every worker must see the run directory at the same path (checked before any step:
:func:`besa.experiment.cluster.check_visible`).  A torch step asks for a ``GPU`` resource on a
cluster whose workers have one (:func:`besa.experiment.graph.resources_for`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from besa.experiment.cluster import check_visible, cluster_resources, dashboard_link, open_client
from besa.experiment.graph import DENSE_MASKS, GPU, Step, build_graph, resources_for
from besa.experiment.status import Runner, step_digest, write_dense_masks
from besa.experiment.stepexec import execute, step_environ

PROGRESS_EVERY_S = 30.0  # a line of every step's state at least this often while steps run
# Which ready step takes a free worker first: the one with the longest chain of work still behind it
# (its own cost + its run's eval), so that a long prune never starts last and sets the wall time alone.
# Rough single-thread seconds of SmolLM2-135M at the default calibration on a 2-core CPU (only their
# order matters): a weight update (ADMM / OBS) adds WEIGHT_UPDATE_COST to its prune.
PRUNE_COST = {"besa": 300, "sparsegpt": 250, "owl": 120, "wanda": 100, "magnitude": 30}
WEIGHT_UPDATE_COST = 300
STEP_COST = {"eval": 100, "sim": 5}


@dataclass(frozen=True)
class DaskOptions:
    scheduler: str | None = None  # an existing scheduler's address; None = a LocalCluster
    workers: int | None = None  # LocalCluster workers (None = one per core)
    security: object | None = None  # distributed.security.Security for tls://


def run_on_dask(exp, out: Path, runner: Runner, opts: DaskOptions) -> None:
    """Open the cluster, check that its workers see ``out``, run the graph, close the cluster."""
    client, cluster, threads = open_client(opts.scheduler, opts.workers, opts.security)
    try:
        workers = client.scheduler_info().get("workers", {})
        where = f"the scheduler at {opts.scheduler}" if opts.scheduler else "a local Dask cluster on 127.0.0.1"
        per = f"{threads} OpenMP thread(s) per step" if threads else "the workers' own thread settings per step"
        nthreads = sorted({w.get("nthreads") for w in workers.values()})
        print(f"besa run: {where}: {len(workers)} worker(s), {'/'.join(map(str, nthreads))} thread(s) each, {per}", flush=True)
        link = dashboard_link(client)
        if link:
            print(f"besa run: Dask dashboard at {link}", flush=True)
        check_visible(client, out)
        run_graph(exp, out, runner, client, threads)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _priority(step: Step, exp) -> int:
    """The work (rough seconds, :data:`PRUNE_COST`) still behind ``step``: a prune carries its run's eval."""
    if step.kind != "prune":
        return STEP_COST.get(step.kind, 0)
    spec = {s.name: s for s in exp.run_specs()}[step.run]
    heavy = any(k == "weight_update" for k, _ in spec.options) or "weight_update" in exp.options.get(spec.method, {})
    return PRUNE_COST.get(spec.method, 100) + (WEIGHT_UPDATE_COST if heavy else 0) + STEP_COST["eval"]


def worker_slots(client, resources: dict[str, float]) -> tuple[int, int]:
    """``(steps, GPU steps)`` the cluster runs at once: its worker threads, and its GPUs (0 = none advertised).

    ``besa run`` submits a step only into a free slot: Dask would otherwise place every ready step
    on a worker at once, and with work stealing off (the local cluster) a worker that finishes its
    short steps idles while another holds a queue of long ones."""
    workers = client.scheduler_info().get("workers", {})
    threads = sum(int(w.get("nthreads") or 1) for w in workers.values())
    return max(1, threads), int(resources.get(GPU, 0))


def run_graph(exp, out: Path, runner: Runner, client, threads: int | None) -> None:
    """Run every prune / eval / simulate step of ``exp`` on ``client`` (see the module docstring)."""
    from distributed import wait

    graph = {k: s for k, s in build_graph(exp, out, report=False).items() if s.kind != "whatif"}
    specs = {s.name: s for s in exp.run_specs()}
    statuses = {name: runner.load_status(out / name, spec, exp.experiment.model) for name, spec in specs.items()}
    resources = cluster_resources(client)
    state: dict[str, str] = {k: "waiting" for k in graph}  # waiting | submitted | done | skipped | failed | blocked
    digests: dict[str, str] = {}
    for s in specs.values():
        if s.dense:
            digests[f"{s.name}/prune"] = step_digest("dense", exp.experiment.model)
    state[DENSE_MASKS] = "waiting" if any(DENSE_MASKS in s.deps for s in graph.values()) else "done"
    futures: dict = {}
    started: dict[str, float] = {}

    def label(step: Step) -> str:
        runner.count += 1
        return f"[{runner.count}/{runner.total}] {step.run}: {step.name}"

    def upstream(step: Step) -> str:
        up = digests.get(f"{step.run}/prune", "")
        if step.kind == "eval" and (out / step.run / "weights.safetensors").is_file():
            up += "+weights"  # as serially: a run re-pruned to store its weights re-evaluates
        return up

    def dep_state(step: Step) -> str:
        states = [state.get(d, "done") for d in step.deps]
        if any(s in ("failed", "blocked") for s in states):
            return "blocked"
        return "ready" if all(s in ("done", "skipped") for s in states) else "waiting"

    slots, gpu_slots = worker_slots(client, resources)
    environ = step_environ(threads)  # not the Dask nanny's malloc / thread settings (stepexec.step_environ)

    def free(step: Step) -> bool:
        if len(futures) >= slots:
            return False
        gpu_busy = sum(1 for k in futures.values() if resources_for(graph[k], resources))
        return not resources_for(step, resources) or gpu_busy < gpu_slots

    by_priority = sorted(graph.items(), key=lambda kv: -_priority(kv[1], exp))  # stable: graph order on ties

    def submit_ready() -> None:
        for key, step in by_priority:
            if state[key] != "waiting":
                continue
            ds = dep_state(step)
            if ds == "waiting":
                continue
            if ds == "blocked":
                state[key] = "blocked"
                runner.count += 1
                continue
            st = statuses[step.run]
            args = list(step.args)
            digest, done = runner.done_digest(st, step.name, args, step.outputs(out), upstream(step))
            if done:
                state[key], digests[key] = "skipped", digest
                print(f"{label(step)} - already done, skipped", flush=True)
                continue
            if not free(step):
                continue  # ready, but every slot is busy: it goes when one frees
            digests[key] = digest
            fut = client.submit(
                execute,
                args,
                str(runner.log_path(out / step.run, step.name)),
                environ,
                key=f"besa-run-{key}-{digest}-{time.time_ns()}",
                pure=False,
                resources=resources_for(step, resources),
                priority=_priority(step, exp),
            )
            futures[fut] = key
            state[key] = "submitted"
            started[key] = time.perf_counter()
            print(f"[queued] {step.run}: {step.name}" + (" (GPU)" if resources_for(step, resources) else ""), flush=True)

    def dense_masks() -> None:
        if state[DENSE_MASKS] != "waiting":
            return
        prunes = [k for k, s in graph.items() if s.kind == "prune"]
        ok = [k for k in prunes if state[k] in ("done", "skipped")]
        if ok:
            for s in specs.values():
                if s.dense and not (out / s.name / "masks.safetensors").is_file():
                    write_dense_masks(out / s.name / "masks.safetensors", out / graph[ok[0]].run / "masks.safetensors")
            state[DENSE_MASKS] = "done"
        elif all(state[k] in ("failed", "blocked") for k in prunes):
            state[DENSE_MASKS] = "failed"
            dense = [s.name for s in specs.values() if s.dense]
            print(f"{', '.join(dense)}: no pruned masks file to take the layer shapes from; dense simulation skipped", flush=True)
            runner.failed.extend(f"{d}: simulation (no pruned masks for the shapes)" for d in dense)

    def finish(fut) -> None:
        key = futures.pop(fut)
        step = graph[key]
        d = out / step.run
        if fut.status == "finished":
            res = fut.result()
            rc, wall = res["rc"], res["wall_s"]
        else:  # the task itself failed (a worker died ...) or was cancelled: its log says why
            rc, wall = -1, time.perf_counter() - started[key]
            why = f"{type(fut.exception()).__name__}: {fut.exception()}" if fut.status == "error" else fut.status
            with open(runner.log_path(d, step.name), "a") as fh:
                fh.write(f"Dask task {why}\n")
        ok = runner.record(d, statuses[step.run], step.name, list(step.args), step.outputs(out), digests[key], rc, wall, label(step))
        state[key] = "done" if ok else "failed"

    def progress() -> None:
        counts: dict[str, int] = {}
        for k in graph:
            counts[state[k]] = counts.get(state[k], 0) + 1
        busy = {w: [k for k in ks] for w, ks in client.processing().items() if ks}
        on = "; ".join(f"{w.rsplit(':', 1)[-1]}: {', '.join(_step_of(k, graph) for k in ks)}" for w, ks in busy.items())
        print(f"[state] {', '.join(f'{n} {c}' for c, n in sorted(counts.items()))}" + (f" | assigned to workers: {on}" if on else ""), flush=True)

    try:
        last = time.perf_counter()
        while True:
            before = dict(state)
            dense_masks()
            submit_ready()
            dense_masks()
            if not futures:
                if state != before:
                    continue  # e.g. steps released by the dense masks just written
                break
            try:
                done, _ = wait(list(futures), timeout=PROGRESS_EVERY_S, return_when="FIRST_COMPLETED")
            except TimeoutError:  # distributed raises instead of returning nothing done
                done = set()
            for fut in done:
                finish(fut)
            if time.perf_counter() - last >= PROGRESS_EVERY_S or not done:
                progress()
                last = time.perf_counter()
    except BaseException:
        client.cancel(list(futures))
        raise
    for k, s in graph.items():
        if state[k] == "waiting":  # cannot happen with a well-formed graph; never silently
            runner.failed.append(f"{s.run}: {s.name} (never became ready)")


def _step_of(task_key, graph: dict[str, Step]) -> str:
    """A Dask task key back to the step's name (``besa-s50/prune``)."""
    text = str(task_key)
    for k in graph:
        if text.startswith(f"besa-run-{k}-"):
            return k
    return text
