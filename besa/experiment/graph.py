"""An experiment as a graph of steps: what ``besa run`` on Dask submits (:mod:`besa.experiment.dask_runner`).

Each run gives ``<run>/prune`` (not for the dense run), ``<run>/eval`` (after its prune) and one
``<run>/sim/<preset>-<mode>`` per simulation of :func:`besa.experiment.plan.plan_sims` (after its
prune; the dense run's after ANY pruned run's masks exist, whose layer shapes its all-kept workload
takes: the dependency ``DENSE_MASKS``).  ``whatif`` (the sweep, after its run's prune) and
``report`` (after everything) close the graph.  The command lines are those of the serial path
(:mod:`besa.experiment.plan`), so both paths run exactly the same commands.

``Step.torch``: the step loads a model (``besa prune`` / ``besa eval``): on a worker with a GPU it
runs on CUDA (``--device auto``), so on a cluster whose workers advertise a ``GPU`` resource it
asks for one (:func:`resources_for`): one prune per GPU at a time.  Simulations, the sweep and
the report never touch torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from besa.experiment.plan import eval_cmd, plan_sims, prune_cmd, prune_outputs, sim_cmd
from besa.experiment.spec import sim_label

DENSE_MASKS = "dense-masks"  # the dense run's all-kept workload: written by besa run once some pruned masks exist
GPU = "GPU"  # the Dask worker resource a CUDA step asks for (dask worker --resources GPU=1)


@dataclass(frozen=True)
class Step:
    key: str  # "besa-s50/prune", "dense/sim/vitcod-cycle", "whatif", "report"
    run: str | None  # the run directory's name (None: whatif, report)
    kind: str  # prune | eval | sim | whatif | report
    args: tuple[str, ...]  # the besa command line (empty for whatif / report: besa run does them itself)
    deps: tuple[str, ...]  # step keys that must finish first (DENSE_MASKS: see the module docstring)
    torch: bool = False  # loads a model: asks for a GPU resource where workers have one

    @property
    def name(self) -> str:
        """The step's key inside its run (status.json, logs/): ``prune``, ``eval``, ``sim/vitcod-cycle``."""
        return self.key.split("/", 1)[1] if self.run else self.key

    def outputs(self, out: Path) -> list[Path]:
        d = out / (self.run or "")
        if self.kind == "prune":
            return prune_outputs(d)
        if self.kind == "eval":
            return [d / "eval.json"]
        if self.kind == "sim":
            sd = d / self.name
            return [sd / "layers.csv", sd / "summary.json"]
        return []


def build_graph(exp, out: Path, report: bool = True) -> dict[str, Step]:
    """Every step of ``exp`` into ``out``, keyed, in the serial path's order (dense run first)."""
    specs = exp.run_specs()
    sims = plan_sims(exp)
    steps: dict[str, Step] = {}

    def add(step: Step) -> None:
        steps[step.key] = step

    for s in sorted(specs, key=lambda s: not s.dense):
        d = out / s.name
        prune = () if s.dense else (f"{s.name}/prune",)
        if not s.dense:
            add(Step(f"{s.name}/prune", s.name, "prune", tuple(prune_cmd(exp, s, d)), (), torch=True))
        add(Step(f"{s.name}/eval", s.name, "eval", tuple(eval_cmd(exp, s, d)), prune, torch=True))
        for preset, mode, tokens in sims[s.name]:
            args = sim_cmd(d / "masks.safetensors", preset, mode, tokens, d / "sim" / f"{sim_label(preset)}-{mode}", s.wbits)
            add(Step(f"{s.name}/sim/{sim_label(preset)}-{mode}", s.name, "sim", tuple(args), prune or (DENSE_MASKS,)))
    if exp.whatif:
        add(Step("whatif", None, "whatif", (), (f"{exp.whatif.run}/prune",) if f"{exp.whatif.run}/prune" in steps else ()))
    if report:
        add(Step("report", None, "report", (), tuple(k for k in steps)))
    return steps


def resources_for(step: Step, cluster_resources: dict[str, float]) -> dict[str, float] | None:
    """The Dask ``resources=`` of a step: ``{"GPU": 1}`` for a torch step when some worker of the
    cluster advertises GPUs (``cluster_resources``: resource -> total over the workers), else None
    (a CPU-only cluster would never run a task that asks for a GPU)."""
    if step.torch and cluster_resources.get(GPU, 0) > 0:
        return {GPU: 1}
    return None
