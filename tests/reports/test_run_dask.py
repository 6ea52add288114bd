"""``besa run`` on Dask: the task graph (dependencies, GPU resources), the checks before anything runs,
and the same results as the serial path — through a local cluster and through an external
``dask scheduler`` + two ``dask worker`` processes on loopback (slow: they prune and evaluate)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from besa.experiment.graph import DENSE_MASKS, GPU, build_graph, resources_for
from besa.experiment.spec import load_experiment, parse_experiment
from besa.experiment.stepexec import can_see
from besa_common.resources import config_file

TINY = """
[experiment]
name = "tiny"
model = "smollm2-135m"
seed = 0
[calibration]
dataset = "wiki"
nsamples = 2
seqlen = 32
[eval]
dataset = "wiki"
seqlen = 64
max_windows = 3
[[runs]]
methods = ["dense", "magnitude", "wanda"]
sparsities = [0.5]
[[simulate]]
preset = "vitcod"
modes = ["cycle"]
tokens = [1, 64]
"""

# What the slow tests run three ways (serial, local cluster, external scheduler): the smallest experiment that still
# has a dense run (its all-kept masks wait for a pruned run) and a calibrated prune; 5 steps.
SMALL = TINY.replace('methods = ["dense", "magnitude", "wanda"]', 'methods = ["dense", "wanda"]') + "[siblings]\nenabled = false\n"


def _besa(*args, **kw):
    # One OpenMP thread per step on both paths: torch's parallel reductions may round differently at another
    # thread count, so "the same results" is at the same threads per step (docs/run.md#on-dask).
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "besa.cli", *args], capture_output=True, text=True, env=env, **kw)


def test_graph_of_the_default_experiment(tmp_path):
    exp = load_experiment(config_file("experiments", "default"))
    g = build_graph(exp, tmp_path)
    specs = exp.run_specs()
    assert "besa-admm-s50" in {s.name for s in specs}  # the headline configuration runs by default
    for s in specs:
        ev = g[f"{s.name}/eval"]
        assert ev.torch and ev.deps == (() if s.dense else (f"{s.name}/prune",))
        sims = [st for st in g.values() if st.run == s.name and st.kind == "sim"]
        assert sims and all(not st.torch for st in sims)
        assert all(st.deps == ((DENSE_MASKS,) if s.dense else (f"{s.name}/prune",)) for st in sims)
        if not s.dense:
            assert g[f"{s.name}/prune"].torch and g[f"{s.name}/prune"].deps == ()
    assert g["whatif"].deps == ("besa-s50/prune",)
    assert list(g)[-1] == "report" and set(g["report"].deps) == set(g) - {"report"}
    # the command lines are the serial path's (plan.py): the same commands run both ways
    adm = g["besa-admm-s50/prune"].args
    assert adm[:2] == ("prune", "--model") and adm[-6:] == ("--exact-budget", "model", "--weight-update", "admm", "--admm-reselect", "10")


def test_cuda_steps_ask_for_a_gpu_where_workers_have_one(tmp_path):
    exp = parse_experiment(tomllib.loads(TINY), "tiny")
    g = build_graph(exp, tmp_path)
    gpu_cluster, cpu_cluster = {GPU: 4.0, "memory": 1.0}, {}
    asked = {k for k, s in g.items() if resources_for(s, gpu_cluster) == {GPU: 1}}
    runs = ("magnitude-s50", "wanda-s50", "wanda-s50-2x4")  # the 2:4 sibling is added by the pairing
    assert asked == {"dense/eval"} | {f"{r}/{k}" for r in runs for k in ("prune", "eval")}
    assert all(resources_for(s, cpu_cluster) is None for s in g.values())  # never a task no worker can run
    assert all(resources_for(s, gpu_cluster) is None for s in g.values() if s.kind in ("sim", "report"))


def test_worker_visibility_check(tmp_path):
    (tmp_path / ".tok").write_text("x")
    assert can_see(str(tmp_path), ".tok") is None
    other = tmp_path / "elsewhere"
    other.mkdir()
    why = can_see(str(other), ".tok")
    assert why and "every worker mounts at the same path" in why


@pytest.mark.parametrize(
    "extra, msg",
    [
        (["--workers", "-1"], "--workers must be an integer >= 0"),
        (["--scheduler", "tcp://127.0.0.1:9", "--workers", "2"], "exclude each other"),
        (["--tls-ca-file", "ca.pem"], "go with --scheduler"),
        (["--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", "nope.pem"], "no such file"),
    ],
)
def test_bad_dask_flags_one_line_exit_2(tmp_path, extra, msg):
    exp = tmp_path / "t.toml"
    exp.write_text(TINY)
    r = _besa("run", str(exp), "--out", str(tmp_path / "o"), *extra, cwd=tmp_path)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_unreachable_scheduler_is_one_line(tmp_path):
    exp = tmp_path / "t.toml"
    exp.write_text(TINY)
    r = _besa("run", str(exp), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:9", timeout=300)
    assert r.returncode == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in r.stderr and "Traceback" not in r.stderr


def _results(out: Path) -> dict:
    """Every run's masks (bytes digest), perplexity and per-window NLLs, and the simulations' totals."""
    res = {}
    for d in sorted(p for p in out.iterdir() if (p / "status.json").is_file()):
        ev = json.loads((d / "eval.json").read_text())
        masks = d / "masks.safetensors"
        res[d.name] = {
            "masks": hashlib.sha256(masks.read_bytes()).hexdigest() if masks.is_file() else None,
            "ppl": ev["ppl"],
            "window_nll": ev["window_nll"],
            "ppl_ci95": ev["ppl_ci95"],
            "sims": {
                s.name: json.loads((s / "summary.json").read_text())["totals"]
                for s in sorted((d / "sim").iterdir())
                if s.is_dir() and not s.name.startswith(".")
            },
        }
    return res


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serial")
    exp = tmp / "small.toml"
    exp.write_text(SMALL)
    r = _besa("run", str(exp), "--out", str(tmp / "out"), "--workers", "0", "--no-report", timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Dask" not in r.stdout  # the serial path
    return exp, _results(tmp / "out")


@pytest.mark.slow
def test_local_cluster_gives_the_serial_results(serial, tmp_path):
    exp, want = serial
    out = tmp_path / "out"
    r = _besa("run", str(exp), "--out", str(out), "--workers", "2", "--no-report", timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "a local Dask cluster on 127.0.0.1: 2 worker(s), 1 thread(s) each" in r.stdout
    got = _results(out)
    assert got == want  # bit-identical masks, identical ppl and per-window NLLs, identical cycle totals
    assert len(want) == 2 and want["dense"]["masks"] and want["wanda-s50"]["ppl"] > want["dense"]["ppl"]
    # resume: a second run skips every step
    r = _besa("run", str(exp), "--out", str(out), "--workers", "2", "--no-report", timeout=600)
    steps = len(build_graph(parse_experiment(tomllib.loads(SMALL), "small"), out, report=False))
    assert r.returncode == 0 and r.stdout.count("already done, skipped") == steps == 5 and "[queued]" not in r.stdout


@pytest.mark.slow
def test_external_scheduler_and_two_workers_on_loopback(serial, tmp_path):
    exp, want = serial
    sched_file = tmp_path / "scheduler.json"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    ]
    try:
        deadline = time.time() + 120
        while not sched_file.is_file() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "distributed.cli.dask_worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--host",
                        "127.0.0.1",
                        "--no-dashboard",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env=env,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=120)
        out = tmp_path / "out"
        r = _besa("run", str(exp), "--out", str(out), "--scheduler", address, "--no-report", timeout=1200)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"the scheduler at {address}: 2 worker(s)" in r.stdout
        assert _results(out) == want
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


SLOTS = TINY.replace('methods = ["dense", "magnitude", "wanda"]', 'methods = ["magnitude", "wanda", "sparsegpt", "besa"]') + (
    '[[runs]]\nmethods = ["besa"]\ntag = "admm"\noptions = { weight_update = "admm" }\n[siblings]\nenabled = false\n'
)


class _FakeFuture:
    def __init__(self, outputs):
        self.outputs, self.status = outputs, "finished"

    def result(self):
        for p in self.outputs:  # the step "ran": its outputs exist
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
        return {"rc": 0, "wall_s": 0.0}


class _FakeClient:
    """A cluster of ``threads`` worker threads (``gpus`` of them with a GPU) that records what is in flight."""

    def __init__(self, graph, out, threads, gpus=0):
        self.graph, self.out, self.inflight, self.order, self.peak, self.peak_gpu = graph, out, [], [], 0, 0
        res = {"GPU": 1} if gpus else {}
        self.workers = {f"tcp://127.0.0.1:{i}": {"nthreads": 1, "resources": res if i < gpus else {}} for i in range(threads)}

    def scheduler_info(self):
        return {"workers": self.workers}

    def processing(self):
        return {}

    def submit(self, fn, args, log, environ, key, pure, resources, priority):
        step = next(k for k in self.graph if key.startswith(f"besa-run-{k}-"))
        fut = _FakeFuture(self.graph[step].outputs(self.out))
        fut.step, fut.gpu = step, bool(resources)
        self.inflight.append(fut)
        self.order.append(step)
        self.peak = max(self.peak, len(self.inflight))
        self.peak_gpu = max(self.peak_gpu, sum(f.gpu for f in self.inflight))
        return fut

    def wait(self, futs, timeout, return_when):
        first = self.inflight.pop(0)  # the oldest step finishes first
        return {first}, set(futs) - {first}

    def cancel(self, futs):
        pass


@pytest.mark.parametrize("threads,gpus", [(2, 0), (3, 1)])
def test_steps_go_into_free_slots_longest_chain_first(tmp_path, monkeypatch, threads, gpus):
    # Dask would place every ready step on a worker at once; with work stealing off a worker that finished its
    # short steps then idles beside another's queue of long ones (the default run: one core idle for minutes).
    import distributed

    from besa.experiment.dask_runner import run_graph
    from besa.experiment.status import Runner

    exp = parse_experiment(tomllib.loads(SLOTS), "slots")
    graph = {k: s for k, s in build_graph(exp, tmp_path, report=False).items() if s.kind != "whatif"}
    client = _FakeClient(graph, tmp_path, threads, gpus)
    monkeypatch.setattr(distributed, "wait", client.wait)
    runner = Runner(tmp_path, len(graph))
    run_graph(exp, tmp_path, runner, client, 1)
    assert not runner.failed and sorted(client.order) == sorted(graph)
    assert client.peak == threads  # never more in flight than the workers' threads, and they are all used
    if gpus:
        assert client.peak_gpu == gpus  # a torch step waits for a free GPU rather than queueing on a worker
    prunes = [k for k in client.order if k.endswith("/prune")]
    assert client.order[0] == "besa-admm-s50/prune"  # the longest chain (BESA + ADMM, then its eval) starts first
    assert prunes[0] == "besa-admm-s50/prune" and prunes.index("besa-s50/prune") < prunes.index("sparsegpt-s50/prune") < prunes.index("magnitude-s50/prune")


def test_steps_do_not_inherit_the_dask_nannys_malloc_and_thread_settings(tmp_path, monkeypatch):
    # A Dask nanny sets MALLOC_TRIM_THRESHOLD_=65536 and OMP_NUM_THREADS=1 in its worker: inherited, the first made
    # every BESA block 2.4x slower, the second overrode the threads besa run gives each step.
    from besa.experiment import stepexec

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # besa run's own setting wins
    environ = stepexec.step_environ(2)  # computed in besa run's process
    assert environ == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "3"}
    assert stepexec.step_environ(None) == {"MALLOC_TRIM_THRESHOLD_": None}  # an external cluster: the workers' threads
    seen = {}

    def run(cmd, stdout, stderr, env, preexec_fn):
        seen.update(env)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(stepexec.subprocess, "run", run)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # now on the worker, as its nanny left it
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert stepexec.execute(["--version"], tmp_path / "log", environ)["rc"] == 0
    assert "MALLOC_TRIM_THRESHOLD_" not in seen and seen["OMP_NUM_THREADS"] == "2" and seen["MKL_NUM_THREADS"] == "3"


def test_a_local_cluster_leaves_besa_runs_environment_alone(monkeypatch):
    # distributed's nannies write their workers' settings into the parent's os.environ; before the fix every step
    # child then ran with MALLOC_TRIM_THRESHOLD_=65536 (BESA blocks 2.4x slower) and one OpenMP thread.
    from besa.experiment.cluster import open_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(os.environ)
    client, cluster, _ = open_client(None, 1)
    try:
        assert dict(os.environ) == before
    finally:
        client.close()
        cluster.close()
