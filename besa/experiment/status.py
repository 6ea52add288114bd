"""Bookkeeping of ``besa run``'s steps, shared by the serial path (:mod:`besa.experiment.runner`)
and the Dask path (:mod:`besa.experiment.dask_runner`): each run's ``status.json`` (a step is done
when it finished with the same digest — its command line and its upstream — and its outputs exist;
written atomically AFTER the outputs), the step logs, the dense run's all-kept masks.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np

from besa.experiment.stepexec import execute
from besa_common.digest import json_digest
from besa_common.fileio import atomic_write_json
from besa_common.masks import read_masks_packed, write_masks


def step_digest(*parts: Any) -> str:
    """A step's identity in status.json (sha1, 16 hex digits: the recorded format; see besa_common.digest)."""
    return json_digest(parts, algorithm="sha1", length=16)


class Runner:
    """Runs the steps of one experiment, keeping each run's ``status.json`` up to date."""

    def __init__(self, out: Path, total_steps: int):
        self.out = out
        self.total = total_steps
        self.count = 0
        self.failed: list[str] = []

    @staticmethod
    def status_path(run_dir: Path) -> Path:
        return run_dir / "status.json"

    def load_status(self, run_dir: Path, spec, model: str) -> dict:
        p = self.status_path(run_dir)
        st: dict = {}
        if p.is_file():
            try:
                st = json.loads(p.read_text())
            except ValueError:
                st = {}
        st.update({"run": spec.name, "method": spec.method, "sparsity": spec.sparsity, "pattern": spec.pattern, "wbits": spec.wbits, "model": model})
        st.setdefault("steps", {})
        return st

    @staticmethod
    def log_path(run_dir: Path, key: str) -> Path:
        return run_dir / "logs" / f"{key.replace('/', '-')}.log"

    @staticmethod
    def done_digest(st: dict, key: str, args: list[str], outputs: list[Path], upstream: str = "") -> tuple[str, bool]:
        """``(the step's digest, whether status.json says it finished with it and its outputs exist)``."""
        digest = step_digest(args, upstream)
        rec = st["steps"].get(key, {})
        return digest, bool(rec.get("done") and rec.get("digest") == digest and all(p.exists() for p in outputs))

    def step(self, run_dir: Path, st: dict, key: str, args: list[str], outputs: list[Path], upstream: str = "") -> str | None:
        """Run ``besa ARGS`` unless already done; return the step's digest, or None when it failed."""
        self.count += 1
        digest, done = self.done_digest(st, key, args, outputs, upstream)
        label = f"[{self.count}/{self.total}] {run_dir.name}: {key}"
        if done:
            print(f"{label} - already done, skipped", flush=True)
            return digest
        print(f"{label} ...", flush=True)
        res = execute(args, self.log_path(run_dir, key))
        return self.record(run_dir, st, key, args, outputs, digest, res["rc"], res["wall_s"], label)

    def record(self, run_dir: Path, st: dict, key: str, args: list[str], outputs: list[Path], digest: str, rc: int, wall: float, label: str) -> str | None:
        """Record a finished step's outcome in ``status.json`` (atomically, the completion marker);
        return its digest, or None when it failed (a Ctrl-C of the child is re-raised)."""
        log = self.log_path(run_dir, key)
        if rc == 0 and all(p.exists() for p in outputs):
            st["steps"][key] = {"done": True, "digest": digest, "wall_s": round(wall, 2), "cmd": "besa " + " ".join(args)}
            atomic_write_json(self.status_path(run_dir), st)  # the completion marker, written last
            print(f"{label} - done in {wall:.1f} s", flush=True)
            return digest
        if rc in (130, -signal.SIGINT):
            raise KeyboardInterrupt
        lines = [l for l in log.read_text(errors="replace").splitlines() if l.strip()]
        why = lines[-1].strip() if len(lines) > 1 else f"exit status {rc}"
        if rc == 0:
            why = f"finished but did not write {', '.join(p.name for p in outputs if not p.exists())}"
        st["steps"][key] = {
            "done": False,
            "digest": digest,
            "wall_s": round(wall, 2),
            "error": why[:500],
            "log": str(log.relative_to(run_dir)),
            "cmd": "besa " + " ".join(args),
        }
        atomic_write_json(self.status_path(run_dir), st)
        self.failed.append(f"{run_dir.name}: {key}")
        print(f"{label} - FAILED after {wall:.1f} s: {why} (log: {log})", flush=True)
        return None


def write_dense_masks(path: Path, template: Path) -> None:
    """An all-kept masks file with the layer shapes of ``template`` (the dense run's workload)."""
    _, shapes, manifest = read_masks_packed(template)
    keep = {n: np.ones(s, dtype=bool) for n, s in shapes.items()}
    write_masks(
        path,
        keep,
        {"method": "dense", "target": 0.0, "pattern": None, "model": manifest.get("model"), "note": "all weights kept: the dense run's simulation workload"},
    )
