"""Disk full, for every command that writes: one line on stderr, exit 2, no traceback, nothing
half-written in the output location, the input untouched.

Two ways to fill the disk, each in a real child process (``python -m besa``):

* ``fsize``: ``RLIMIT_FSIZE`` (``resource.setrlimit``) with SIGXFSZ ignored, so a write past the
  limit fails with EFBIG — works for any user, everywhere;
* ``tmpfs``: the output on a tiny tmpfs (real ENOSPC) — only where this process may mount (root in
  a container that allows it); skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from besa_common.masks import write_masks

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 12 * 1024  # bytes: above every input a command must read back, below every output tested


def _fsize_limit(limit: int = LIMIT):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _small_outputs(full) -> tuple:
    """The same full disk for a command whose outputs are small (< 1 KB): a lower file-size limit,
    or a tmpfs filled up but for less than one 4 KB page."""
    out_root, preexec = full
    if preexec is not None:
        return out_root, lambda: _fsize_limit(256)
    st = os.statvfs(out_root)
    (out_root / ".filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize))
    return full


@pytest.fixture(params=["fsize", "tmpfs"])
def full(request, tmp_path):
    """(output root on a 'full' disk, preexec_fn for the child)."""
    if request.param == "fsize":
        d = tmp_path / "full"
        d.mkdir()
        yield d, _fsize_limit
        return
    d = tmp_path / "tmpfs"
    d.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={LIMIT}", "tmpfs", str(d)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root): the fsize variant covers it")
    try:
        yield d, None
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def besa_full(argv: list, full, inputs: Path, allowed: tuple[str, ...] = (), words=("no space left", "file too large")) -> str:
    """Run ``besa argv`` on a full disk; assert the contract; return stderr."""
    out_root, preexec = full
    before_in, before_out = _tree(inputs), _tree(out_root)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    # caches a first run builds (matplotlib's font list) are built now, not under the limit
    subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], env=env, capture_output=True)
    res = subprocess.run([sys.executable, "-m", "besa", *map(str, argv)], capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=600)
    err = res.stderr.strip()
    assert res.returncode == 2, (argv, res.returncode, err[-2000:])
    ours = [ln for ln in err.splitlines() if ln.startswith("besa")]  # (a library's progress bar may precede it)
    assert "Traceback" not in err and len(ours) == 1 and err.endswith(ours[0]), err[-2000:]
    assert "cannot write" in err and any(w in err for w in words), err
    assert _tree(inputs) == before_in, "the input changed"
    new = {k for k in set(_tree(out_root)) - set(before_out) if not k.endswith(allowed)}
    assert not new, f"left behind on the full disk: {sorted(new)}"
    return err


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(0)
    write_masks(d / "run" / "masks.safetensors", {"model.layers.0.mlp.up_proj": rng.random((64, 96)) < 0.5}, {"method": "magnitude"})
    return d


def test_simulate_disk_full(full, inputs):
    besa_full(["simulate", "--synthetic", "64x64*400", "--out", full[0] / "sim"], full, inputs)


def test_simulate_masks_disk_full(full, inputs):
    besa_full(["simulate", "--masks", inputs / "run", "--tokens", ",".join(str(n) for n in range(1, 300)), "--out", full[0] / "sim"], full, inputs)


def test_masks_extract_disk_full(full, inputs):
    big = inputs / "big.safetensors"
    write_masks(big, {f"model.layers.{i}.mlp.up_proj": np.ones((128, 128), bool) for i in range(8)}, {"method": "x"})
    besa_full(["masks", "extract", big, "--out", full[0] / "sub" / "m.safetensors"], full, inputs)


def test_report_disk_full(full, inputs):
    from besa.cli import main

    run = inputs / "runs" / "r1"
    assert main(["simulate", "--synthetic", "64x64*40", "--out", str(run / "sim" / "vitcod-cycle")]) == 0
    (run / "manifest.json").write_text('{"method": "magnitude", "target": 0.5, "model": "m"}')
    besa_full(["report", inputs / "runs", "--out", full[0] / "report"], full, inputs)


def test_sweep_disk_full(full, inputs):
    """A sweep commits rows as it goes: on a full disk it stops with one line; what is left is a
    valid (possibly empty) results database, never a partial file."""
    (inputs / "s.toml").write_text(
        '[sweep]\npreset = "vitcod"\nmode = "cycle"\ntokens = [1, 2, 4, 8]\n[grid]\nlines = [8, 16, 32, 64, 128]\n'
        'dram_bytes_per_cycle = [8, 16, 32, 64]\n[[workload]]\nname = "w"\nsynthetic = "64x64*4:sparsity=0.5"\n'
    )
    besa_full(
        ["sweep", inputs / "s.toml", "--out", full[0] / "sw", "--workers", "0", "--no-progress"],
        full,
        inputs,
        allowed=("sw", "results.sqlite", "results.sqlite-wal", "results.sqlite-shm"),
        words=("disk is full", "disk I/O error", "no space left", "file too large"),  # SQLite's words for ENOSPC / EFBIG
    )


# ----------------------------------------------------------------------------- the torch commands
@pytest.fixture
def tiny_run(inputs):
    pytest.importorskip("torch")
    from tests.pruning.helpers import save_tiny_hf_dir, tiny_model

    model_dir = save_tiny_hf_dir(tiny_model(), inputs / "tiny")
    np.save(inputs / "ids.npy", np.random.default_rng(0).integers(3, 19, (2, 16), dtype=np.int64))
    return model_dir


@pytest.mark.slow
def test_prune_disk_full(full, inputs, tiny_run):
    besa_full(
        [
            "prune",
            "--model",
            tiny_run,
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "--calib-ids",
            inputs / "ids.npy",
            "--out",
            full[0] / "p",
            "--no-progress",
        ],
        full,
        inputs,
    )


@pytest.mark.slow
def test_export_disk_full(full, inputs, tiny_run):
    from besa.cli import main

    assert (
        main(
            [
                "prune",
                "--model",
                str(tiny_run),
                "--method",
                "magnitude",
                "--sparsity",
                "0.5",
                "--calib-ids",
                str(inputs / "ids.npy"),
                "--out",
                str(inputs / "p"),
                "--no-progress",
            ]
        )
        == 0
    )
    besa_full(["export", "--model", tiny_run, "--masks", inputs / "p", "--format", "hf", "--out", full[0] / "e"], full, inputs)


@pytest.mark.slow
def test_eval_disk_full(full, inputs, tiny_run):
    besa_full(
        ["eval", "--model", tiny_run, "--eval-ids", inputs / "ids.npy", "--out", full[0] / "ev" / "eval.json", "--no-progress"], _small_outputs(full), inputs
    )


def test_read_only_file_system(tmp_path, inputs):
    """EROFS: a read-only mount is refused before any work (or, failing that, at the write), one line."""
    d = tmp_path / "ro"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        for argv in (["simulate", "--synthetic", "64x64", "--out", d / "o"], ["masks", "extract", inputs / "run", "--out", d / "m.safetensors"]):
            res = subprocess.run([sys.executable, "-m", "besa", *map(str, argv)], capture_output=True, text=True, env=env)
            assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
            assert "not writable" in res.stderr or "read-only" in res.stderr, res.stderr
        assert list(d.iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_os_error_line_names_the_class():
    """The one place that words environment errors (also when a library wraps them)."""
    import errno

    from besa_common.fileio import os_error_line

    assert os_error_line(OSError(errno.ENOSPC, "No space left on device", "/x/y")).startswith("cannot write (/x/y): no space left")
    assert "[EFBIG]" in os_error_line(OSError(errno.EFBIG, "File too large"))
    assert os_error_line(PermissionError(errno.EACCES, "Permission denied", "/x")).startswith("cannot access (/x): permission denied")
    assert "[EROFS]" in os_error_line(OSError(errno.EROFS, "Read-only file system"))
    wrapped = RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
    assert "[ENOSPC]" in os_error_line(wrapped)
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as exc:
            raise ValueError("save failed") from exc
    except ValueError as chained:
        assert "[EDQUOT]" in os_error_line(chained)
    assert os_error_line(ValueError("a bug")) is None  # anything else keeps its traceback
    assert os_error_line(OSError(errno.ENOENT, "No such file")) is None
