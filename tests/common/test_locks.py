"""The per-directory writer lock, temp-file ownership and the shared output-path check.

The lock tests use two REAL processes: a holder child (python -c) that takes the lock and then
sleeps, and the test process (or a second child) as the contender.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from besa_common.errors import UserError
from besa_common.fileio import (
    atomic_write_text,
    check_output_path,
    dir_lock,
    lock_paths,
    temp_prefix,
)

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys, time
from besa_common.fileio import dir_lock
with dir_lock(sys.argv[1], command="holder-test"):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", flush=True)
"""


def _holder(directory: Path, seconds: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), str(seconds)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    d = tmp_path / "run"
    proc = _holder(d, 30)
    try:
        t0 = time.perf_counter()
        with pytest.raises(UserError) as exc:
            with dir_lock(d):
                pytest.fail("took a lock another process holds")
        msg = str(exc.value)
        assert time.perf_counter() - t0 < 5
        assert "\n" not in msg
        assert f"pid {proc.pid}" in msg and socket.gethostname() in msg and "holder-test" in msg and "--wait" in msg
        # the holder's start time, ISO UTC
        info = json.loads(lock_paths(d)[1].read_text())
        assert info["started"] in msg and info["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_wait_blocks_until_the_holder_releases(tmp_path):
    d = tmp_path / "run"
    proc = _holder(d, 1.5)
    try:
        t0 = time.perf_counter()
        with dir_lock(d, wait=True):
            waited = time.perf_counter() - t0
            assert proc.poll() is not None or proc.stdout.readline().strip() == "released"
        assert waited > 0.5
    finally:
        proc.kill()
        proc.wait()


def test_killed_holder_does_not_block_the_next_writer(tmp_path):
    """Stale lock: SIGKILL the holder (its info file stays behind); the next writer gets the lock at once."""
    d = tmp_path / "run"
    proc = _holder(d, 60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    info_path = lock_paths(d)[1]
    assert json.loads(info_path.read_text())["pid"] == proc.pid  # left behind by the killed holder
    with dir_lock(d) as lk:
        assert json.loads(info_path.read_text())["pid"] == os.getpid()
        assert lk.directory == d
    assert not info_path.exists()


def test_two_cli_processes_one_directory(tmp_path):
    """Two real `besa`-style writers started together: exactly one gets the lock, the other exits 2 with one line."""
    d = tmp_path / "run"
    code = (
        "import sys, time\nfrom besa_common.errors import UserError\nfrom besa_common.fileio import dir_lock\n"
        "try:\n    with dir_lock(sys.argv[1]):\n        time.sleep(2)\nexcept UserError as e:\n"
        "    print(e, file=sys.stderr); sys.exit(2)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(d)], stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = sorted((p.wait(timeout=60), p.stderr.read()) for p in procs)
    assert [rc for rc, _ in results] == [0, 2]
    assert len(results[1][1].strip().splitlines()) == 1 and "is being written by pid" in results[1][1]


def test_readers_are_not_blocked(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "a.json").write_text("{}")
    proc = _holder(d, 30)
    try:
        assert json.loads((d / "a.json").read_text()) == {}  # plain reads: no lock involved
        assert sorted(p.name for p in d.iterdir()) == ["a.json"]  # the lock lives beside, not inside
    finally:
        proc.kill()
        proc.wait()


def test_temp_files_carry_the_pid_and_only_dead_writers_temps_are_cleaned(tmp_path):
    d = tmp_path / "run"
    (d / "sub").mkdir(parents=True)
    atomic_write_text(d / "x.txt", "x")
    assert temp_prefix("x.txt") == f".x.txt.pid{os.getpid()}."
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (d / f".layers.csv.pid{dead_pid}.abc.tmp").write_text("partial")
    (d / "sub" / f".summary.json.pid{dead_pid}.def.tmp").write_text("partial")
    (d / f".export.pid{dead_pid}.ghi.tmp").mkdir()
    live = d / f".layers.csv.pid{os.getpid()}.jkl.tmp"  # a live writer's work in progress
    live.write_text("in progress")
    (d / ".notours.tmp").write_text("no pid: never touched")
    with dir_lock(d) as lk:
        removed = lk.clean_temps()
    assert sorted(p.name for p in removed) == sorted(
        [f".layers.csv.pid{dead_pid}.abc.tmp", f".summary.json.pid{dead_pid}.def.tmp", f".export.pid{dead_pid}.ghi.tmp"]
    )
    assert live.exists() and (d / ".notours.tmp").exists() and (d / "x.txt").read_text() == "x"


# ----------------------------------------------------------------------------- check_output_path
def test_output_path_checks(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    run = tmp_path / "run"
    run.mkdir()
    (run / "masks.safetensors").write_text("m")
    cases = [
        (dict(path=f), "exists and is not a directory"),
        (dict(path=f / "sub"), "is a file, not a directory"),
        (dict(path=f / "a" / "b"), "is a file, not a directory"),
        (dict(path=run, inputs=[run / "masks.safetensors"]), "contains the input"),
        (dict(path=run, inputs=[run]), "is the input"),
        (dict(path=tmp_path / "d.json", kind="file", inputs=[]), None),
        (dict(path=run, kind="file"), "is a directory"),
        (dict(path=tmp_path / "new" / "deeper"), None),
        (dict(path=run / "export", inputs=[run / "masks.safetensors"]), None),  # output beside the input: fine
    ]
    for kw, want in cases:
        if want is None:
            assert check_output_path(**kw) == Path(kw["path"])
        else:
            with pytest.raises(UserError, match=want) as exc:
                check_output_path(**kw)
            assert "\n" not in str(exc.value)


def test_output_path_symlinked_to_input_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "alias").symlink_to(run)
    with pytest.raises(UserError, match="is the input"):
        check_output_path(tmp_path / "alias", inputs=[run])


def test_output_path_not_writable(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o500)
    else:  # root may write anywhere: pretend the kernel said no
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == ro else real(p, m, **k))
    try:
        with pytest.raises(UserError, match="is not writable"):
            check_output_path(ro / "out")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_replace_dir_swaps_whole_directories(tmp_path, monkeypatch, exchange):
    import besa_common.fileio as fio

    if not exchange:
        monkeypatch.setattr(fio, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    fio.write_dir_unit(out, {"a.txt": "old a", "b.txt": "old b"})
    fio.write_dir_unit(out, {"a.txt": "new a", "b.txt": b"new b"})
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    assert (out / "a.txt").read_text() == "new a" and (out / "b.txt").read_text() == "new b"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith("tmp")] == []  # no temp dir left behind


def test_lock_paths_are_siblings_except_at_the_root(tmp_path):
    assert lock_paths(tmp_path / "run") == (tmp_path / ".run.lock", tmp_path / ".run.lock.info")
    assert lock_paths("/")[0] == Path("/.besa.lock")


def test_clean_temps_removes_a_dead_writers_temporary_sibling(tmp_path):
    """A killed whole-directory writer (export, simulate) leaves `.NAME.pidPID.XXXX.tmp/` beside NAME."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.pid{int(dead.stdout)}.abc.tmp"
    (stale / "sub").mkdir(parents=True)
    live = tmp_path / f".out.pid{os.getpid()}.def.tmp"
    live.mkdir()
    other = tmp_path / f".other.pid{int(dead.stdout)}.ghi.tmp"  # another directory's leftovers: not ours
    other.mkdir()
    with dir_lock(tmp_path / "out") as lk:
        assert lk.clean_temps(recursive=False) == [stale]
    assert live.exists() and other.exists() and not stale.exists()
