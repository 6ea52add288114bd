"""Every example of the reliability report (issue 21), through the real entry point (``python -m
besa`` in a child process): exit 2, ONE line on stderr naming the flag/field and its allowed range,
no traceback, nothing written and the input untouched.  The CLASS behind each example is fixed at
its root (see docs/reliability.md); the property tests in tests/test_fuzz_readers.py cover the
classes with random values.  Disk full: tests/test_disk_full.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from besa_common.errors import UserError
from besa_common.masks import write_masks

ROOT = Path(__file__).resolve().parents[1]
W = "model.layers.0.mlp.up_proj.weight"


def besa(argv, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    res = subprocess.run([sys.executable, "-m", "besa", *map(str, argv)], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    return res.returncode, res.stdout, res.stderr


def tree(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "link" if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def refused(argv, words, root: Path, cwd=None) -> str:
    before = tree(root)
    rc, _, err = besa(argv, cwd=cwd)
    assert rc == 2, (argv, rc, err[-1500:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-1500:]
    for w in [words] if isinstance(words, str) else words:
        assert w in err, (w, err)
    assert tree(root) == before, "a refused command wrote something (or changed its input)"
    return err


def safetensors_bytes(header: dict, data: bytes = b"") -> bytes:
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


@pytest.fixture
def P(tmp_path):
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    write_masks(run / "masks.safetensors", {"model.layers.0.mlp.up_proj": rng.random((16, 24)) < 0.5}, {"method": "magnitude"})
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "loopa").symlink_to("loopb")
    (tmp_path / "loopb").symlink_to("loopa")
    return tmp_path


# ----------------------------------------------------------------------------- 1. path resolution
@pytest.mark.parametrize(
    "argv, words",
    [
        (["simulate", "--synthetic", "64x64", "--out", "loop"], ["--out loop", "symbolic link loop"]),
        (["simulate", "--synthetic", "64x64", "--out", "loopa/sub"], ["--out loopa/sub", "symbolic link loop"]),
        (["simulate", "--masks", "loop", "--out", "o"], "symbolic link loop"),
        (["simulate", "--masks", "run", "--out", "loop"], "symbolic link loop"),
        (["masks", "extract", "loop", "--out", "m.safetensors"], "symbolic link loop"),
        (["masks", "extract", "run", "--out", "loop"], ["--out loop", "symbolic link loop"]),
        (["report", "run", "--out", "loop"], "symbolic link loop"),
        (["sweep", "--export", "loop"], "loop"),
    ],
)
def test_symlink_loops_are_one_line(argv, words, P):
    refused(argv, words, P, cwd=P)


def test_export_symlink_loop_out(P):
    pytest.importorskip("torch")
    refused(["export", "--model", "smollm2-135m", "--masks", "run", "--format", "hf", "--out", "loop"], "symbolic link loop", P, cwd=P)


# ----------------------------------------------------------------------------- 2. malformed checkpoints
def _gguf_without_head_count(path: Path) -> Path:
    gguf = pytest.importorskip("gguf")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("blk.0.attn_q.weight", np.ones((8, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


CHECKPOINTS = {
    "shape of strings": ({W: {"dtype": "F32", "shape": ["a", "b"], "data_offsets": [0, 16]}}, ["shape", "integers >= 0"]),
    "negative data_offsets": ({W: {"dtype": "F32", "shape": [2, 2], "data_offsets": [-100, 16]}}, ["data_offsets", "0 <= begin <= end <= 16"]),
    "1e9 x 1e9 shape": ({W: {"dtype": "F32", "shape": [10**9, 10**9], "data_offsets": [0, 16]}}, ["16 bytes stored", "needs"]),
    "offsets past the file": ({W: {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1 << 40]}}, "data_offsets"),
    "unknown dtype": ({W: {"dtype": "F128", "shape": [2, 2], "data_offsets": [0, 16]}}, ["dtype", "must be one of"]),
    "entry not an object": ({W: [1, 2]}, "entry must be an object"),
    "3-D linear weight": ({W: {"dtype": "F32", "shape": [1, 2, 2], "data_offsets": [0, 16]}}, "must be 2-D"),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
@pytest.mark.parametrize("cmd", ["masks", "simulate"])
def test_malformed_safetensors_checkpoint(case, cmd, P):
    header, words = CHECKPOINTS[case]
    (P / "ck.safetensors").write_bytes(safetensors_bytes(header, b"\0" * 16))
    argv = ["masks", "extract", "ck.safetensors", "--out", "m.safetensors"] if cmd == "masks" else ["simulate", "--masks", "ck.safetensors", "--out", "o"]
    refused(argv, words, P, cwd=P)


def test_gguf_without_head_count(P):
    _gguf_without_head_count(P / "m.gguf")
    refused(["masks", "extract", "m.gguf", "--out", "x.safetensors"], ["llama.attention.head_count", "missing", "[1, "], P, cwd=P)
    refused(["simulate", "--masks", "m.gguf", "--out", "o"], ["llama.attention.head_count", "missing"], P, cwd=P)
    refused(["simulate", "--synthetic", "m.gguf", "--out", "o"], ["m.gguf: hidden_size is missing (an integer in [1, "], P, cwd=P)


# ----------------------------------------------------------------------------- 3. masks extract --out is a FILE
def test_masks_extract_out_is_a_file(P):
    assert besa(["masks", "extract", "run", "--out", "m.safetensors"], cwd=P)[0] == 0
    first = (P / "m.safetensors").read_bytes()
    rc, _, err = besa(["masks", "extract", "run", "--out", "m.safetensors"], cwd=P)  # rerun onto its own output: fine
    assert rc == 0, err
    assert (P / "m.safetensors").read_bytes() == first  # deterministic
    (P / "adir").mkdir()
    refused(["masks", "extract", "run", "--out", "adir"], ["--out adir", "is a directory, expected a file"], P, cwd=P)
    refused(["masks", "extract", "run", "--out", "run/masks.safetensors"], ["is the input", "destroy"], P, cwd=P)
    refused(["masks", "extract", "m.safetensors", "--out", "m.safetensors"], ["is the input", "destroy"], P, cwd=P)
    refused(["masks", "extract", "run", "--out", "adir/"], "directory", P, cwd=P)


# ----------------------------------------------------------------------------- 4. model configs
BASE_CFG = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("head_dim", "abc", ["head_dim must be an integer in [1, 1048576]", "'abc'"]),
        ("head_dim", [1, 2], ["head_dim must be an integer in [1, "]),
        ("num_hidden_layers", 10**9, ["num_hidden_layers must be an integer in [1, 4096]"]),
        ("num_hidden_layers", 1e9, ["num_hidden_layers must be an integer in [1, 4096]"]),
        ("num_key_value_heads", "4", ["num_key_value_heads must be an integer in [1, ", "'4'"]),
        ("num_key_value_heads", 3, ["num_key_value_heads 3 must divide num_attention_heads 4"]),
        ("hidden_size", True, ["hidden_size must be an integer"]),
        ("vocab_size", -1, ["vocab_size must be an integer in [1, "]),
        ("tie_word_embeddings", "yes", ["tie_word_embeddings must be true or false"]),
        ("intermediate_size", 1 << 20, ["linear weights", "at most"]),
    ],
)
@pytest.mark.parametrize("how", ["synthetic", "model"])
def test_model_config_typed_and_ranged(field, value, words, how, P):
    cfg = dict(BASE_CFG, **{field: value})
    if field == "intermediate_size":
        cfg.update(num_hidden_layers=4096, hidden_size=1 << 20, num_attention_heads=1 << 14, num_key_value_heads=1 << 14)
    (P / "cfg.json").write_text(json.dumps(cfg))
    if how == "synthetic":
        argv = ["simulate", "--synthetic", "cfg.json", "--out", "o"]
    else:
        (P / "ok.json").write_text(json.dumps(BASE_CFG))
        argv = ["simulate", "--synthetic", "ok.json[1]", "--context", "8", "--model", "cfg.json", "--out", "o"]
    refused(argv, words, P, cwd=P)


# ----------------------------------------------------------------------------- 5. --context / --batch / --tokens
@pytest.mark.parametrize(
    "extra, words",
    [
        (["--context", "1000000000000000"], "--context must be an integer in [0, 16777216]"),
        (["--context", "9000000000000000000"], "--context must be an integer in [0, 16777216]"),
        (["--context", "1e15"], "--context"),
        (["--context", "8", "--batch", "99999999999"], "--batch must be an integer in [1, 16777216]"),
        (["--batch", "4"], "--batch needs --context"),
        (["--model", "smollm2-135m"], "--model needs --context"),
        (["--context", "16777216", "--tokens", "16777216"], "overflow 64-bit"),
    ],
)
def test_context_overflow_is_refused(extra, words, P):
    refused(["simulate", "--synthetic", "smollm2-135m[1]:sparsity=0.5", *extra, "--out", "o"], words, P, cwd=P)


def test_decoder_overflow_proof_names_the_flags(P):
    """Inside the flag ranges, a combination whose counts would pass int64 is still refused, before C++."""
    refused(
        ["simulate", "--synthetic", "llama-2-70b:dense", "--mode", "dense", "--context", "16777216", "--tokens", "1024", "--out", "o"],
        ["--context 16777216", "--tokens 1024", "overflow 64-bit"],
        P,
        cwd=P,
    )


def test_decoder_rows_stay_non_negative_at_the_range_limit(P):
    """The largest accepted context gives a valid decoder.csv: no wrapped (negative) count anywhere."""
    import pandas as pd

    rc, _, err = besa(["simulate", "--synthetic", "smollm2-135m[1]:sparsity=0.5", "--context", "16777216", "--out", "o"], cwd=P)
    assert rc == 0, err
    dec = pd.read_csv(P / "o" / "decoder.csv")
    num = dec.select_dtypes("number").drop(columns=["block"])  # block -1 = not a transformer block
    assert (num >= 0).all().all() and np.isfinite(num.to_numpy(float)).all()


# ----------------------------------------------------------------------------- 7. the results database
SWEEP = '[sweep]\npreset = "vitcod"\nmode = "cycle"\ntokens = [1]\n[grid]\nlines = [16, 32]\n[[workload]]\nname = "w"\nsynthetic = "8x16:sparsity=0.5"\n'


def test_foreign_sqlite_is_refused_untouched(P):
    (P / "s.toml").write_text(SWEEP)
    (P / "sw").mkdir()
    con = sqlite3.connect(P / "sw" / "results.sqlite")
    con.execute("CREATE TABLE invoices (id INTEGER, amount REAL)")
    con.execute("INSERT INTO invoices VALUES (1, 2.5)")
    con.commit()
    con.close()
    refused(["sweep", "s.toml", "--out", "sw", "--workers", "0", "--no-progress"], ["results.sqlite", "other tables (invoices)", "untouched"], P, cwd=P)
    # another application's id (a file marked by someone else) is refused too
    con = sqlite3.connect(P / "other.sqlite")
    con.execute("PRAGMA application_id = 1234")
    con.execute("CREATE TABLE results (point_id TEXT)")
    con.commit()
    con.close()
    (P / "sw2").mkdir()
    os.replace(P / "other.sqlite", P / "sw2" / "results.sqlite")
    refused(["sweep", "s.toml", "--out", "sw2", "--workers", "0", "--no-progress"], "another application", P, cwd=P)


def test_our_database_is_marked_and_reused(P):
    (P / "s.toml").write_text(SWEEP)
    rc, _, err = besa(["sweep", "s.toml", "--out", "sw", "--workers", "0", "--no-progress", "--no-report"], cwd=P)
    assert rc == 0, err
    con = sqlite3.connect(P / "sw" / "results.sqlite")
    from simulator.sweep.store import APPLICATION_ID, USER_VERSION

    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA user_version").fetchone()[0] == USER_VERSION
    con.close()
    rc, out, err = besa(["sweep", "s.toml", "--out", "sw", "--workers", "0", "--no-progress", "--no-report"], cwd=P)
    assert rc == 0 and "2 already done" in out, err


def test_lock_held_at_start_is_a_wait_then_one_line(P):
    """Another process holds the write lock: wait --db-timeout, then one line that does NOT call
    a valid database foreign; the database is unchanged."""
    (P / "s.toml").write_text(SWEEP)
    assert besa(["sweep", "s.toml", "--out", "sw", "--workers", "0", "--no-progress", "--no-report"], cwd=P)[0] == 0
    (P / "s.toml").write_text(SWEEP.replace("[16, 32]", "[16, 32, 64]"))
    holder = sqlite3.connect(P / "sw" / "results.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        rc, _, err = besa(["sweep", "s.toml", "--out", "sw", "--workers", "0", "--no-progress", "--db-timeout", "0.5"], cwd=P)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "locked by another process (waited 0.5 s)" in err and "--db-timeout" in err and "not a sweep results" not in err
    con = sqlite3.connect(P / "sw" / "results.sqlite")
    assert con.execute("SELECT COUNT(*) FROM results WHERE status = 'ok'").fetchone()[0] == 2
    con.close()


def test_lock_held_mid_sweep_keeps_committed_rows(tmp_path):
    """A writer whose lock is taken by someone else past the timeout: one UserError, earlier rows kept."""
    from simulator.sweep.store import ResultStore

    store = ResultStore(tmp_path, timeout=0.2)
    store.add([{"point_id": "a", "status": "ok", "cycles": 1}])
    other = sqlite3.connect(tmp_path / "results.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(UserError, match=r"locked by another process \(waited 0.2 s\)"):
        store.add([{"point_id": "b", "status": "ok", "cycles": 2}])
    other.execute("ROLLBACK")
    other.close()
    assert store.finished_ids() == {"a"}
    store.add([{"point_id": "b", "status": "ok", "cycles": 2}])  # usable again once the lock is gone
    assert store.finished_ids() == {"a", "b"}
    store.close()


# ----------------------------------------------------------------------------- 8. NaN / Infinity in summary.json
@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_report_refuses_non_finite_summary(bad, P):
    assert besa(["simulate", "--masks", "run", "--out", "run/sim/vitcod-cycle"], cwd=P)[0] == 0
    p = P / "run" / "sim" / "vitcod-cycle" / "summary.json"
    s = json.loads(p.read_text())
    first = next(iter(s["totals"]))
    text = json.dumps(s).replace(f'"cycles": {s["totals"][first]["cycles"]}', f'"cycles": {bad}', 1)
    assert bad in text
    p.write_text(text)
    refused(["report", "run", "--out", "rep"], ["summary.json", bad, "not a finite number"], P, cwd=P)


# ----------------------------------------------------------------------------- 9. contradicting flags
def test_contradicting_flags_refused_alike(P):
    refused(["simulate", "--synthetic", "64x64", "--batch", "2", "--out", "o"], "--batch needs --context", P, cwd=P)
    refused(["simulate", "--masks", "run", "--seed", "3", "--out", "o"], "--seed needs --synthetic", P, cwd=P)
    refused(["simulate", "--synthetic", "64x64", "--sensitivity-threshold", "0.1", "--out", "o"], "--sensitivity-threshold needs --sensitivity", P, cwd=P)


@pytest.mark.slow
def test_eval_ids_with_dataset_is_refused(P):
    pytest.importorskip("torch")
    np.save(P / "ids.npy", np.zeros((2, 16), np.int64))
    refused(["eval", "--eval-ids", "ids.npy", "--dataset", "wiki"], "--eval-ids and --dataset exclude each other", P, cwd=P)
    refused(["eval", "--eval-ids", "ids.npy", "--split", "validation"], "--eval-ids and --split exclude each other", P, cwd=P)  # was ignored
    refused(
        ["prune", "--method", "magnitude", "--calib-ids", "ids.npy", "--calib-dataset", "wiki", "--out", "p"],
        "--calib-ids and --calib-dataset exclude each other",
        P,
        cwd=P,
    )


# ----------------------------------------------------------------------------- 10. smaller items
def test_quoted_number_in_a_preset_is_refused(P):
    from simulator.hardware import PRESET_DIR

    text = (PRESET_DIR / "vitcod.toml").read_text()
    lines = ['freq_mhz = "2.8"' if ln.startswith("freq_mhz") else ln for ln in text.splitlines()]  # in place: later [tables] follow
    (P / "hw.toml").write_text("\n".join(lines) + "\n")
    refused(["simulate", "--hw", "hw.toml", "--synthetic", "64x64", "--out", "o"], ["freq_mhz", "must be a TOML float", "'2.8'"], P, cwd=P)
    # on the command line a value is text by nature, so --set still converts it
    rc, _, err = besa(["simulate", "--synthetic", "64x64", "--set", "freq_mhz=2.8", "--out", "o"], cwd=P)
    assert rc == 0, err


def test_no_lock_files_left_behind(P):
    """Neither a failed command (before doing anything) nor a finished one leaves .NAME.lock files."""
    besa(["simulate", "--synthetic", "64x64", "--tokens", "0", "--out", "new/o"], cwd=P)
    assert not (P / "new").exists()
    assert besa(["simulate", "--synthetic", "64x64", "--out", "o"], cwd=P)[0] == 0
    (P / "s.toml").write_text(SWEEP)
    assert besa(["sweep", "s.toml", "--out", "sw", "--workers", "0", "--no-progress", "--no-report"], cwd=P)[0] == 0
    assert not [p.name for p in P.rglob(".*.lock*")]


# ----------------------------------------------------------------------------- the roots stay roots
def test_paths_are_resolved_in_one_place():
    """``Path.resolve()`` raises RuntimeError on a symlink loop: every package resolves paths through
    ``besa_common.fileio.resolve_path`` instead (the root of class 1)."""
    import re

    offenders = []
    for pkg in ("besa", "besa_common", "pruning", "simulator", "reports"):
        for f in (ROOT / pkg).rglob("*.py"):
            for i, line in enumerate(f.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"\.resolve\(\)", code) and "__file__" not in code and "``" not in code:
                    offenders.append(f"{f.relative_to(ROOT)}:{i}")
    assert not offenders, offenders
