"""One TABLE-DRIVEN bad-input test per command: nonexistent, empty, truncated, wrong-type and
out-of-range inputs, and output-path problems.  Every case must give exit status 2, ONE line on
stderr, no traceback, and write nothing.  The torch commands (prune, eval, export) must fail
BEFORE the model load: ``pruning.models.load_model`` is replaced by a function that fails the
test, which also keeps these cases fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from besa.cli import main
from besa_common.masks import FORMAT, VERSION, write_masks

FIXTURE_RUN = Path(__file__).resolve().parent / "reports" / "fixtures" / "default" / "besa-s50"
LAYER = "model.layers.0.mlp.up_proj"


def _craft(path: Path, tensors: dict, manifest) -> Path:
    """A masks file with an arbitrary manifest (text or object): the corruptions a writer never makes."""
    from safetensors.numpy import save

    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    path.write_bytes(save(tensors, metadata={"format": FORMAT, "version": VERSION, "manifest": text}))
    return path


@pytest.fixture
def P(tmp_path):
    """Prepared inputs: a valid run directory and broken variants of each input file."""
    rng = np.random.default_rng(0)
    keep = rng.random((16, 12)) < 0.5
    run = tmp_path / "run"
    run.mkdir()
    write_masks(run / "masks.safetensors", {LAYER: keep}, {"method": "magnitude", "target": 0.5, "model": "x"})
    good = (run / "masks.safetensors").read_bytes()
    packed = np.packbits(keep, axis=1, bitorder="little")
    kept = int(keep.sum())
    entry = {"shape": [16, 12], "kept": kept, "density": kept / 192}
    bad = tmp_path / "bad"
    bad.mkdir()
    pad = packed.copy()
    pad[0, -1] |= 0x80  # bit 15 of a 12-wide row: a pad bit
    p = SimpleNamespace(
        tmp=tmp_path,
        run=run,
        masks=run / "masks.safetensors",
        nonexistent=tmp_path / "nope" / "masks.safetensors",
        empty=bad / "empty.safetensors",
        trunc=bad / "trunc.safetensors",
        wrongtype=_craft(bad / "wrongtype.safetensors", {LAYER: packed}, {"layers": {LAYER: {"shape": "abc", "density": 0.5}}}),
        notjson=_craft(bad / "notjson.safetensors", {LAYER: packed}, "{not json"),
        nan=_craft(bad / "nan.safetensors", {LAYER: packed}, '{"layers": {"%s": {"shape": [16, 12], "density": NaN}}}' % LAYER),
        lie=_craft(bad / "lie.safetensors", {LAYER: packed}, {"layers": {LAYER: {**entry, "kept": kept - 1}}}),
        lie_old=_craft(bad / "lie_old.safetensors", {LAYER: packed}, {"layers": {LAYER: {"shape": [16, 12], "density": 0.9}}}),
        pad=_craft(bad / "pad.safetensors", {LAYER: pad}, {"layers": {LAYER: entry}}),
        zero=_craft(bad / "zero.safetensors", {LAYER: np.zeros((0, 1), np.uint8)}, {"layers": {LAYER: {"shape": [0, 8], "density": 0.0}}}),
        afile=tmp_path / "afile.txt",
    )
    p.empty.write_bytes(b"")
    p.trunc.write_bytes(good[: len(good) // 2])
    p.afile.write_text("not a directory\n")
    return p


def _w(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root (size, mtime) except the lock siblings a writer may leave."""
    return {
        str(f.relative_to(root)): (f.stat().st_size, f.stat().st_mtime_ns)
        for f in root.rglob("*")
        if f.is_file() and not f.name.endswith((".lock", ".lock.info"))
    } | {str(d.relative_to(root)) + "/": (0, 0) for d in root.rglob("*") if d.is_dir()}


@pytest.fixture
def no_model_load(monkeypatch):
    import pruning.models

    def fail(*a, **k):
        raise AssertionError("the model was loaded before the bad input was noticed")

    monkeypatch.setattr(pruning.models, "load_model", fail)


def check_bad(argv: list[str], want: str, root: Path, capsys) -> None:
    before = _snapshot(root)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    assert rc == 2, f"{argv}: exit {rc}, stderr {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, f"{argv}: {err!r}"
    assert want.lower() in err.lower(), f"{argv}: expected {want!r} in {err!r}"
    assert _snapshot(root) == before, f"{argv}: something was written"


# ----------------------------------------------------------------------------- simulate
SIM = ["simulate", "--hw", "vitcod"]
SIMULATE_CASES = {
    "masks nonexistent": (lambda P: [*SIM, "--masks", P.nonexistent, "--out", P.tmp / "o"], "not found"),
    "masks empty": (lambda P: [*SIM, "--masks", P.empty, "--out", P.tmp / "o"], "corrupt"),
    "masks truncated": (lambda P: [*SIM, "--masks", P.trunc, "--out", P.tmp / "o"], "corrupt"),
    "masks manifest wrong type": (lambda P: [*SIM, "--masks", P.wrongtype, "--out", P.tmp / "o"], "manifest"),
    "masks manifest not JSON": (lambda P: [*SIM, "--masks", P.notjson, "--out", P.tmp / "o"], "manifest"),
    "masks manifest NaN": (lambda P: [*SIM, "--masks", P.nan, "--out", P.tmp / "o"], "non-finite"),
    "masks kept count lie": (lambda P: [*SIM, "--masks", P.lie, "--out", P.tmp / "o"], "kept weights but its manifest"),
    "masks density lie (old file)": (lambda P: [*SIM, "--masks", P.lie_old, "--out", P.tmp / "o"], "disagrees"),
    "masks pad bits": (lambda P: [*SIM, "--masks", P.pad, "--out", P.tmp / "o"], "pad bits"),
    "masks [0, 8] layer": (lambda P: [*SIM, "--masks", P.zero, "--out", P.tmp / "o"], "[0, 8]"),
    "tokens 0": (lambda P: [*SIM, "--masks", P.masks, "--tokens", "0", "--out", P.tmp / "o"], "--tokens"),
    "tokens 2**62": (lambda P: [*SIM, "--masks", P.masks, "--tokens", "4611686018427387904", "--out", P.tmp / "o"], "--tokens"),
    "tokens wrong type": (lambda P: [*SIM, "--masks", P.masks, "--tokens", "abc", "--out", P.tmp / "o"], "--tokens"),
    "--set lines=1e19": (lambda P: [*SIM, "--masks", P.masks, "--set", "lines=1e19", "--out", P.tmp / "o"], "lines"),
    "--set dram 1e300": (lambda P: [*SIM, "--masks", P.masks, "--set", "dram_bytes_per_cycle=1e300", "--out", P.tmp / "o"], "dram_bytes_per_cycle"),
    "--set dram 1e-300 (no silent clamp)": (
        lambda P: [*SIM, "--masks", P.masks, "--set", "dram_bytes_per_cycle=1e-300", "--out", P.tmp / "o"],
        "dram_bytes_per_cycle",
    ),
    "--set freq 1e-320": (lambda P: [*SIM, "--masks", P.masks, "--set", "freq_mhz=1e-320", "--out", P.tmp / "o"], "freq_mhz"),
    "--set wrong type": (lambda P: [*SIM, "--masks", P.masks, "--set", "lines=abc", "--out", P.tmp / "o"], "lines"),
    "--seed -1": (lambda P: ["simulate", "--synthetic", "64x64", "--seed", "-1", "--out", P.tmp / "o"], "--seed"),
    "synthetic 99999999999^2": (lambda P: ["simulate", "--synthetic", "99999999999x99999999999", "--out", P.tmp / "o"], "outside the supported range"),
    "int64 overflow at the engine": (
        lambda P: ["simulate", "--synthetic", "1048576x4096", "--tokens", "16777216", "--set", "dram_bytes_per_cycle=0.001", "--out", P.tmp / "o"],
        "overflow",
    ),
    "hw preset nonexistent": (lambda P: [*SIM[:1], "--hw", P.tmp / "nope.toml", "--masks", P.masks, "--out", P.tmp / "o"], "not found"),
    "out is a file": (lambda P: [*SIM, "--masks", P.masks, "--out", P.afile], "not a directory"),
    "out under a file": (lambda P: [*SIM, "--masks", P.masks, "--out", P.afile / "sub"], "is a file"),
    "out is the run directory (holds the input)": (lambda P: [*SIM, "--masks", P.masks, "--out", P.run], "input"),
    "out holds other files": (lambda P: [*SIM, "--synthetic", "64x64", "--out", P.tmp / "bad"], "holds other files"),
}


@pytest.mark.parametrize("case", SIMULATE_CASES)
def test_simulate_bad_input(case, P, capsys):
    make, want = SIMULATE_CASES[case]
    check_bad(make(P), want, P.tmp, capsys)


HW_TOML_CASES = {
    "empty": ("", "missing"),
    "truncated": ('name = "x"\nlines = ', "not valid TOML"),
    "wrong type": ("lines = 'abc'", "lines"),
    "out of range": ("lines = 1e30", "lines"),
    "binary": ("\x00\xff\xfe", "TOML"),
}


@pytest.mark.parametrize("case", HW_TOML_CASES)
def test_simulate_bad_hardware_preset(case, P, capsys):
    text, want = HW_TOML_CASES[case]
    from simulator.hardware import PRESET_DIR

    f = P.tmp / "hw.toml"
    if case in ("wrong type", "out of range"):
        base = (PRESET_DIR / "vitcod.toml").read_text().splitlines()
        text = "\n".join([ln for ln in base if not ln.startswith("lines")] + [text]) + "\n"
    f.write_bytes(text.encode("latin-1"))
    check_bad(["simulate", "--hw", f, "--synthetic", "64x64", "--out", P.tmp / "o"], want, P.tmp, capsys)


# ----------------------------------------------------------------------------- report
def _report_run(P, mutate=None, filename="manifest.json", raw: bytes | None = None) -> Path:
    d = P.tmp / "runs" / "besa-s50"
    shutil.copytree(FIXTURE_RUN, d)
    if raw is not None:
        (d / filename).write_bytes(raw)
    elif mutate is not None:
        obj = json.loads((d / filename).read_text())
        mutate(obj)
        (d / filename).write_text(json.dumps(obj))
    return d


REPORT_CASES = {
    "dir nonexistent": (lambda P: ["report", P.tmp / "nope"], "not a directory"),
    "dir empty": (lambda P: (P.tmp / "emptydir").mkdir() or ["report", P.tmp / "emptydir"], "nothing to report"),
    "manifest truncated": (lambda P: ["report", _report_run(P, raw=b'{"method": "be')], "not valid JSON"),
    "manifest empty file": (lambda P: ["report", _report_run(P, raw=b"")], "not valid JSON"),
    "manifest.target wrong type": (lambda P: ["report", _report_run(P, lambda o: o.update(target="abc"))], "target"),
    "manifest not an object": (lambda P: ["report", _report_run(P, raw=b"[1, 2]")], "JSON object"),
    "allocation.layers wrong type": (lambda P: ["report", _report_run(P, lambda o: o.update(layers=[]), "allocation.json")], "layers"),
    "allocation layer shape wrong type": (
        lambda P: ["report", _report_run(P, lambda o: next(iter(o["layers"].values())).update(shape="x"), "allocation.json")],
        "shape",
    ),
    "manifest.target out of range (Infinity)": (lambda P: ["report", _report_run(P, raw=b'{"method": "besa", "target": Infinity}')], "target"),
    "summary.json wrong type": (lambda P: ["report", _report_run(P, lambda o: o.update(hardware=[1]), "sim/vitcod-cycle/summary.json")], "hardware"),
    "summary.json totals wrong type": (lambda P: ["report", _report_run(P, lambda o: o.update(totals=[1]), "sim/vitcod-cycle/summary.json")], "totals"),
    "sibling.json sibling wrong type": (lambda P: ["report", _report_run(P, lambda o: o.update(sibling=3), "sibling.json")], "'sibling' must be a string"),
    "out is a file": (lambda P: ["report", _report_run(P), "--out", P.afile], "not a directory"),
    "out under a file": (lambda P: ["report", _report_run(P), "--out", P.afile / "x"], "is a file"),
}


@pytest.mark.parametrize("case", REPORT_CASES)
def test_report_bad_input(case, P, capsys):
    make, want = REPORT_CASES[case]
    argv = make(P)
    check_bad(argv, want, P.tmp, capsys)


# ----------------------------------------------------------------------------- prune (before the model load)
PR = ["prune", "--method", "magnitude", "--no-progress"]
PRUNE_CASES = {
    "layer-sparsity nonexistent": (lambda P: [*PR, "--layer-sparsity", P.tmp / "nope.json", "--out", P.tmp / "o"], "not found"),
    "layer-sparsity empty": (lambda P: [*PR, "--layer-sparsity", _w(P.tmp / "e.json", ""), "--out", P.tmp / "o"], "not valid JSON"),
    "layer-sparsity truncated": (lambda P: [*PR, "--layer-sparsity", _w(P.tmp / "t.json", '{"a": 0.'), "--out", P.tmp / "o"], "not valid JSON"),
    "layer-sparsity wrong type": (lambda P: [*PR, "--layer-sparsity", _w(P.tmp / "w.json", '["a"]'), "--out", P.tmp / "o"], "JSON object"),
    "layer-sparsity out of range": (lambda P: [*PR, "--layer-sparsity", _w(P.tmp / "r.json", '{"a": 1.5}'), "--out", P.tmp / "o"], "[0, 1)"),
    "sparsity out of range": (lambda P: [*PR, "--sparsity", "1.5", "--out", P.tmp / "o"], "(0, 1)"),
    "sparsity wrong type": (lambda P: [*PR, "--sparsity", "abc", "--out", P.tmp / "o"], "invalid float"),
    "nsamples out of range": (lambda P: [*PR, "--nsamples", "0", "--out", P.tmp / "o"], "--nsamples"),
    "model nonexistent": (lambda P: [*PR, "--model", P.tmp / "nope" / "m.gguf", "--out", P.tmp / "o"], "not found"),
    "model dir without config": (lambda P: [*PR, "--model", P.run, "--out", P.tmp / "o"], "no config.json"),
    "nsamples too large": (lambda P: [*PR, "--nsamples", str(10**12), "--out", P.tmp / "o"], "--nsamples"),
    "seed out of range": (lambda P: [*PR, "--seed", "-1", "--out", P.tmp / "o"], "--seed"),
    "wbits out of range": (lambda P: [*PR, "--wbits", "99", "--out", P.tmp / "o"], "--wbits"),
    "group-size out of range": (lambda P: [*PR, "--wbits", "4", "--group-size", "0", "--out", P.tmp / "o"], "--group-size"),
    "out is a file": (lambda P: [*PR, "--out", P.afile], "not a directory"),
    "out under a file": (lambda P: [*PR, "--out", P.afile / "run"], "is a file"),
    "save-model under a file": (lambda P: [*PR, "--out", P.tmp / "o", "--save-model", P.afile / "m"], "is a file"),
    "save-model is the output": (lambda P: [*PR, "--out", P.tmp / "o", "--save-model", P.tmp / "o"], "input"),
    "save-model not a model dir": (lambda P: [*PR, "--out", P.tmp / "o", "--save-model", P.run], "not a model directory"),
}


@pytest.mark.parametrize("case", PRUNE_CASES)
def test_prune_bad_input(case, P, capsys, no_model_load):
    make, want = PRUNE_CASES[case]
    check_bad(make(P), want, P.tmp, capsys)


# ----------------------------------------------------------------------------- eval (before the model load)
EV = ["eval", "--no-progress"]
EVAL_CASES = {
    "masks nonexistent": (lambda P: [*EV, "--masks", P.nonexistent], "not found"),
    "masks empty": (lambda P: [*EV, "--masks", P.empty], "corrupt"),
    "masks truncated": (lambda P: [*EV, "--masks", P.trunc], "corrupt"),
    "masks manifest wrong type": (lambda P: [*EV, "--masks", P.wrongtype], "manifest"),
    "masks manifest NaN": (lambda P: [*EV, "--masks", P.nan], "non-finite"),
    "masks kept count lie": (lambda P: [*EV, "--masks", P.lie], "kept weights"),
    "masks pad bits": (lambda P: [*EV, "--masks", P.pad], "pad bits"),
    "seqlen out of range": (lambda P: [*EV, "--seqlen", "1"], "--seqlen"),
    "model unknown name": (lambda P: [*EV, "--model", "no-such-model"], "unknown model"),
    "max-windows out of range": (lambda P: [*EV, "--max-windows", "0"], "--max-windows"),
    "seqlen wrong type": (lambda P: [*EV, "--seqlen", "x"], "invalid int"),
    "out is a file": (lambda P: [*EV, "--masks", P.masks, "--out", P.afile], "not a directory"),
    "out under a file": (lambda P: [*EV, "--masks", P.masks, "--out", P.afile / "e.json"], "is a file"),
    "out FILE.json is a directory": (lambda P: (P.tmp / "d.json").mkdir() or [*EV, "--masks", P.masks, "--out", P.tmp / "d.json"], "is a directory"),
}


@pytest.mark.parametrize("case", EVAL_CASES)
def test_eval_bad_input(case, P, capsys, no_model_load):
    make, want = EVAL_CASES[case]
    check_bad(make(P), want, P.tmp, capsys)


# ----------------------------------------------------------------------------- export (before the model load)
EX = ["export", "--model", "smollm2-135m", "--format", "compressed"]
EXPORT_CASES = {
    "masks nonexistent": (lambda P: [*EX, "--masks", P.nonexistent, "--out", P.tmp / "o"], "not found"),
    "masks empty": (lambda P: [*EX, "--masks", P.empty, "--out", P.tmp / "o"], "corrupt"),
    "masks truncated": (lambda P: [*EX, "--masks", P.trunc, "--out", P.tmp / "o"], "corrupt"),
    "masks manifest wrong type": (lambda P: [*EX, "--masks", P.wrongtype, "--out", P.tmp / "o"], "manifest"),
    "masks kept count lie": (lambda P: [*EX, "--masks", P.lie, "--out", P.tmp / "o"], "kept weights"),
    "masks [0, 8] layer": (lambda P: [*EX, "--masks", P.zero, "--out", P.tmp / "o"], "[0, 8]"),
    "model wrong type (a plain file)": (
        lambda P: [*EX[:1], "--model", P.afile, *EX[3:], "--masks", P.masks, "--out", P.tmp / "o"],
        "expected a Hugging Face directory",
    ),
    "dtype out of range": (lambda P: [*EX, "--masks", P.masks, "--dtype", "int3", "--out", P.tmp / "o"], "invalid choice"),
    "out is a file": (lambda P: [*EX, "--masks", P.masks, "--out", P.afile], "not a directory"),
    "out under a file": (lambda P: [*EX, "--masks", P.masks, "--out", P.afile / "x"], "is a file"),
    "out is the run dir, --overwrite (would delete the input)": (lambda P: [*EX, "--masks", P.run, "--out", P.run, "--overwrite"], "input"),
    "out contains the run dir": (lambda P: [*EX, "--masks", P.masks, "--out", P.tmp, "--overwrite"], "input"),
    "out not empty without --overwrite": (lambda P: [*EX, "--masks", P.masks, "--out", P.tmp / "bad"], "not empty"),
}


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_export_bad_input(case, P, capsys, no_model_load):
    make, want = EXPORT_CASES[case]
    check_bad(make(P), want, P.tmp, capsys)


# ----------------------------------------------------------------------------- run (experiment TOML)
GOOD_EXPERIMENT = """
[experiment]
name = "t"
[[runs]]
methods = ["magnitude"]
sparsities = [0.5]
[[simulate]]
preset = "vitcod"
tokens = [1]
"""
RUN_CASES = {
    "experiment nonexistent": (None, "not found"),
    "experiment empty": ("", "[[runs]]"),
    "experiment truncated": (GOOD_EXPERIMENT[:40], "not valid TOML"),
    "wrong type": (GOOD_EXPERIMENT.replace('methods = ["magnitude"]', "methods = 3"), "methods"),
    "sparsity out of range": (GOOD_EXPERIMENT.replace("[0.5]", "[1.5]"), "sparsities"),
    "tokens out of range": (GOOD_EXPERIMENT.replace("tokens = [1]", "tokens = [0]"), "tokens"),
    "unknown key": (GOOD_EXPERIMENT + "\n[bogus]\n", "unknown key"),
    "seed out of range": (GOOD_EXPERIMENT.replace('name = "t"', 'name = "t"\nseed = -1'), "seed"),
    "nsamples out of range": (GOOD_EXPERIMENT + "\n[calibration]\nnsamples = 100000000\n", "nsamples"),
    "out is a file": (GOOD_EXPERIMENT, "not a directory"),
    "out under a file": (GOOD_EXPERIMENT, "is a file"),
}


@pytest.mark.parametrize("case", RUN_CASES)
@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
def test_run_bad_input(case, dry, P, capsys, no_model_load):
    text, want = RUN_CASES[case]
    f = P.tmp / "exp.toml"
    if text is not None:
        f.write_text(text)
    out = {"out is a file": P.afile, "out under a file": P.afile / "x"}.get(case, P.tmp / "o")
    check_bad(["run", f, "--out", out, *(["--dry-run"] if dry else [])], want, P.tmp, capsys)


# ----------------------------------------------------------------------------- sweep
GOOD_SWEEP = """
[sweep]
preset = "vitcod"
mode = "cycle"
tokens = [1]
[grid]
lines = [16, 32]
[[workload]]
name = "w"
synthetic = "64x64:sparsity=0.5"
"""
SWEEP_CASES = {
    "sweep nonexistent": (None, "not found"),
    "sweep empty": ("", "workload"),
    "sweep truncated": (GOOD_SWEEP[:30], "TOML"),
    "wrong type": (GOOD_SWEEP.replace("lines = [16, 32]", 'lines = "many"'), "lines"),
    "grid out of range": (GOOD_SWEEP.replace("lines = [16, 32]", "lines = [1e30]"), "lines"),
    "tokens out of range": (GOOD_SWEEP.replace("tokens = [1]", "tokens = [0]"), "tokens"),
    "out is a file": (GOOD_SWEEP, "not a directory"),
    "out under a file": (GOOD_SWEEP, "is a file"),
}


@pytest.mark.parametrize("case", SWEEP_CASES)
def test_sweep_bad_input(case, P, capsys):
    text, want = SWEEP_CASES[case]
    f = P.tmp / "sweep.toml"
    if text is not None:
        f.write_text(text)
    out = {"out is a file": P.afile, "out under a file": P.afile / "x"}.get(case, P.tmp / "o")
    check_bad(["sweep", f, "--out", out, "--workers", "0", "--no-progress", "--no-report"], want, P.tmp, capsys)


# ----------------------------------------------------------------------------- data
def test_data_bad_input(P, capsys, monkeypatch):
    cases = [
        (["data", "unpack"], "invalid choice"),
        (["data", "prepare", "--only", "klingon"], "invalid choice"),
    ]
    for argv, want in cases:
        check_bad(argv, want, P.tmp, capsys)
    monkeypatch.setenv("BESA_CACHE", str(P.afile / "cache"))  # the cache under a file
    check_bad(["data", "prepare", "--only", "wiki"], "is a file", P.tmp, capsys)
    monkeypatch.setenv("BESA_CACHE", str(P.afile))  # the cache IS a file
    check_bad(["data", "prepare", "--only", "wiki"], "not a directory", P.tmp, capsys)
