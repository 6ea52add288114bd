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


# What a Dask nanny sets in its worker's environment (distributed.nanny.pre-spawn-environ) that a step's child must
# not inherit: glibc's MALLOC_TRIM_THRESHOLD_=65536 more than doubles a BESA block's time (4.0 s -> 8.6 s per block
# on SmolLM2 at one thread, docs/results.md#besa-run-on-dask), and its OMP/MKL/OpenBLAS thread count of 1 would
# override the threads besa run gives each step.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def step_environ(threads: int | None) -> dict[str, str | None]:
    """In ``besa run``'s own process: the environment a step's child gets on a Dask worker, for :func:`execute`.

    ``besa run``'s own ``MALLOC_TRIM_THRESHOLD_`` (None = unset: removed in the child), and with
    ``threads`` (a local cluster) the OpenMP / MKL threads of each step unless ``besa run``'s
    environment sets them.  ``threads`` None (an external cluster) keeps the workers' thread settings."""
    env: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": os.environ.get("MALLOC_TRIM_THRESHOLD_")}
    if threads is not None:
        env.update({var: os.environ.get(var, str(threads)) for var in THREAD_ENV})
    return env


def execute(args: list[str], log: str | Path, environ: dict[str, str | None] | None = None) -> dict:
    """Run ``python -m besa.cli ARGS`` with stdout + stderr in ``log`` (first line: the command);
    return ``{"rc", "wall_s", "host", "pid"}``.  ``environ``: variables to set in the child's
    environment (None = remove; :func:`step_environ`), else it inherits this process's.
    The child dies with its parent (``PR_SET_PDEATHSIG``)."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for var, value in (environ or {}).items():
        if value is None:
            env.pop(var, None)
        else:
            env[var] = value
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
