"""One step of ``besa run``: ``besa ARGS`` in a child process, its output in the step's log.

The same function runs a step in ``besa run``'s own process (``--workers 0``) and on a Dask worker
(:mod:`besa.experiment.dask_runner`), so both paths run exactly the same command.  Light on
purpose (standard library only): a Dask worker imports it for every task.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def execute(args: list[str], log: str | Path, threads: int | None = None) -> dict:
    """Run ``python -m besa.cli ARGS`` with stdout + stderr in ``log`` (first line: the command);
    return ``{"rc", "wall_s", "host", "pid"}``.  ``threads``: the child's OpenMP / MKL threads
    (``OMP_NUM_THREADS`` ...) unless the environment already sets them; None = the libraries' default.
    The child dies with its parent (``PR_SET_PDEATHSIG``)."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, str(threads))
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        fh.write("$ besa " + " ".join(args) + "\n")
        fh.flush()
        proc = subprocess.run([sys.executable, "-m", "besa.cli", *args], stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
    return {"rc": proc.returncode, "wall_s": time.perf_counter() - t0, "host": socket.gethostname(), "pid": os.getpid()}


def can_see(directory: str, token: str) -> str | None:
    """On a worker: None when ``directory/token`` (written by ``besa run``) is visible and the
    directory writable from here, else the reason (the run directory must be shared storage)."""
    d = Path(directory)
    if not (d / token).is_file():
        return f"{socket.gethostname()}: {d} is not the directory besa run writes (no {token} there): put --out on storage every worker mounts at the same path"
    probe = d / f".{token}.{socket.gethostname()}.{os.getpid()}.probe"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        return f"{socket.gethostname()}: cannot write into {d}: {exc.strerror or exc}"
    return None
