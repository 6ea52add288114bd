"""The Dask cluster of ``besa run``: a local one, or an existing scheduler (optionally over TLS);
the check that every worker sees the run directory; the cluster's resources.

Local: ``LocalCluster`` of ``workers`` processes with ONE thread each (a step is a child process:
the worker thread only waits for it), bound to 127.0.0.1 (nothing listens on other interfaces), no
work stealing, the dashboard on a free 127.0.0.1 port when bokeh is installed.  Each step's child
gets ``cores // workers`` OpenMP / MKL threads (:func:`step_threads`) unless the environment sets
``OMP_NUM_THREADS``.  Remote (``--scheduler ADDRESS``): the workers are whatever was started
there — ``dask worker ADDRESS --nthreads 1 [--resources GPU=1]``, one per GPU; their steps use the
libraries' default thread count unless the worker's environment sets it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from besa.experiment.stepexec import can_see
from besa_common.errors import UserError
from besa_common.fileio import resolve_path

HOST = "127.0.0.1"


def security(ca_file: str | None, cert: str | None, key: str | None):
    """``distributed.security.Security`` for a TLS scheduler (``tls://``), or None without TLS flags.
    Every file must exist (checked here, before anything runs); the CA file is required with TLS."""
    given = {"--tls-ca-file": ca_file, "--tls-cert": cert, "--tls-key": key}
    if not any(given.values()):
        return None
    for flag, path in given.items():
        if path is not None and not Path(path).is_file():
            raise UserError(f"{flag} {path}: no such file")
    if ca_file is None:
        raise UserError("--tls-cert / --tls-key need --tls-ca-file (the CA that signed the scheduler's certificate)")
    from distributed.security import Security

    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def step_threads(n_workers: int) -> int:
    """OpenMP threads of each step's child on a local cluster: the cores shared by the workers."""
    return max(1, (os.cpu_count() or 1) // max(1, n_workers))


def open_client(scheduler: str | None, workers: int | None, sec=None):
    """``(client, cluster or None, threads per step or None)``.  ``workers`` None = one per core."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s", security=sec), None, None
        except Exception as exc:
            raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {type(exc).__name__}: {exc}") from None
    n = workers or os.cpu_count() or 1
    try:
        import bokeh  # noqa: F401  (the dashboard needs it; without it there is none)

        dashboard = f"{HOST}:0"
    except ImportError:
        dashboard = None
    saved = dict(os.environ)
    try:
        with dask.config.set({"distributed.scheduler.work-stealing": False}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host=HOST, dashboard_address=dashboard, silence_logs=40)
    finally:  # the nannies set their workers' environment (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS ...) in THIS process's
        os.environ.clear()  # os.environ and leave it there: besa run's steps would inherit it (stepexec.step_environ)
        os.environ.update(saved)
    return Client(cluster), cluster, step_threads(n)


def dashboard_link(client) -> str | None:
    """The dashboard's address when the scheduler serves one."""
    try:
        return client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None
    except Exception:
        return None


def check_visible(client, out: Path) -> None:
    """Every worker must see ``out`` (the run directory) at the same path and be able to write into
    it: the steps write their outputs and logs there and ``besa run`` reads them.  A UserError naming
    the first worker that cannot."""
    if not client.scheduler_info().get("workers"):
        client.wait_for_workers(1, timeout=60)
    token = f".besa-run-visible-{secrets.token_hex(6)}"
    marker = out / token
    marker.write_text("besa run: this directory must be visible to every worker\n")
    try:
        answers = client.run(can_see, str(resolve_path(out)), token)
    finally:
        marker.unlink(missing_ok=True)
    bad = [f"{w}: {why}" for w, why in sorted(answers.items()) if why]
    if bad:
        raise UserError(f"the run directory is not shared with every Dask worker: {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))


def cluster_resources(client) -> dict[str, float]:
    """Resource name -> total over the workers (``{"GPU": 4}`` for four ``--resources GPU=1`` workers)."""
    total: dict[str, float] = {}
    for w in client.scheduler_info().get("workers", {}).values():
        for k, v in (w.get("resources") or {}).items():
            total[k] = total.get(k, 0) + v
    return total
