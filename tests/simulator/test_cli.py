"""``besa simulate`` end to end: outputs, golden layers.csv, bad input -> one line and exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from besa.cli import main
from besa_common.masks import write_masks
from simulator.cpp import have_core
from simulator.schema import LAYER_COLUMNS

GOLDEN = Path(__file__).parent / "golden"
GOLDEN_CASES = {
    # fixed synthetic model: 2 SmolLM2-135M blocks with column-skewed masks, seed 0
    "cycle_vitcod": ["--synthetic", "smollm2-135m[2]:skewed=0.5", "--hw", "vitcod", "--mode", "cycle", "--tokens", "1,64"],
    "besa_compat": ["--synthetic", "smollm2-135m[2]:skewed=0.5", "--hw", "besa-paper-array", "--mode", "besa-compat", "--tokens", "1"],
    "nm_hbm": ["--synthetic", "smollm2-135m[1]:nm=2:4", "--hw", "hbm-4k", "--mode", "nm", "--tokens", "1,2048"],
}


def run_cli(args, capsys):
    code = main(["simulate", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_layers_csv(case, tmp_path, capsys):
    code, out, err = run_cli([*GOLDEN_CASES[case], "--out", str(tmp_path)], capsys)
    assert code == 0, err
    got = (tmp_path / "layers.csv").read_text()
    golden = GOLDEN / f"{case}.csv"
    if os.environ.get("BESA_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(got)
    assert got == golden.read_text(), f"layers.csv changed; if intended, rerun with BESA_UPDATE_GOLDEN=1 ({golden})"


def test_outputs(tmp_path, capsys):
    code, out, _ = run_cli(
        [
            "--synthetic",
            "llama-7b[1]:sparsity=0.5",
            "--hw",
            "vitcod",
            "--mode",
            "cycle",
            "--tokens",
            "1,2048",
            "--set",
            "lines=32",
            "--set",
            "dram_bytes_per_cycle=100",
            "--out",
            str(tmp_path),
        ],
        capsys,
    )
    assert code == 0
    assert "N=1:" in out and "N=2048:" in out
    df = pd.read_csv(tmp_path / "layers.csv")
    assert list(df.columns) == list(LAYER_COLUMNS)
    assert len(df) == 7 * 2
    assert set(df["tokens"]) == {1, 2048}
    assert (df[df.tokens == 1]["bound"] == "memory").all()
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["hardware"]["lines"] == 32 and s["hardware"]["dram_bytes_per_cycle"] == 100.0
    assert s["mode"] == "cycle" and s["version"] == 2 and s["simulator_version"]
    assert set(s["per_projection"]["1"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    t = s["totals"]["2048"]
    assert t["cycles"] == int(df[df.tokens == 2048]["cycles"].sum())
    assert s["overrides"] == {"lines": "32", "dram_bytes_per_cycle": "100"}
    # no temp files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers.csv", "summary.json"]


def test_masks_default_out_dir_and_every_mode(tmp_path, capsys):
    rng = np.random.default_rng(0)
    keep = {f"model.layers.{b}.self_attn.{p}": rng.random((32, 32)) < 0.4 for b in range(2) for p in ("q_proj", "o_proj")}
    keep["model.layers.0.mlp.down_proj"] = rng.random((32, 80)) < 0.4
    write_masks(tmp_path / "masks.safetensors", keep, {"method": "test"})
    for mode in ("besa-compat", "corrected", "cycle", "dense", "nm"):
        code, _, err = run_cli(["--masks", str(tmp_path), "--hw", "besa", "--mode", mode, "--tokens", "1,16"], capsys)
        assert code == 0, err
        df = pd.read_csv(tmp_path / "sim" / f"besa-paper-array-{mode}" / "layers.csv")  # the preset's name, not the alias
        assert len(df) == 5 * 2 and (df["mode"] == mode).all()
        assert (df["speedup_vs_dense"] > 0).all()
    # besa-compat summary: per-projection averages like the BESA table
    s = json.loads((tmp_path / "sim" / "besa-paper-array-besa-compat" / "summary.json").read_text())
    q = s["per_projection"]["1"]["q_proj"]
    df = pd.read_csv(tmp_path / "sim" / "besa-paper-array-besa-compat" / "layers.csv")
    sel = df[(df.proj == "q_proj") & (df.tokens == 1)]
    assert q["avg_cycles"] == sel["cycles"].mean() and q["layers"] == 2
    assert q["speedup_vs_dense"] == pytest.approx(sel["dense_cycles"].mean() / sel["cycles"].mean())


def test_engines_agree_through_simulate(tmp_path):
    from simulator import workload as wl
    from simulator.hardware import load_hardware
    from simulator.run import simulate

    if not have_core():
        pytest.skip("C++ core not built")
    layers = wl.synthetic("40x56*3:skewed=0.5", 3)
    hw = load_hardware("vitcod", {"tile_m": 8, "tile_k": 16, "tile_n": 4, "index_format": "rle"})
    a = simulate(layers, hw, "cycle", [1, 9], engine="cpp")
    b = simulate(layers, hw, "cycle", [1, 9], engine="reference")
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--synthetic", "64x64", "--set", "lines=0"], "lines must be >= 1"),
        (["--synthetic", "64x64", "--set", "dram_bytes_per_cycle=0"], "dram_bytes_per_cycle"),
        (["--synthetic", "64x64", "--set", "weight_buffer_bytes=10"], "smaller than two tiles"),
        (["--synthetic", "64x64", "--set", "nm_n=3", "--set", "nm_m=2"], "n > m"),
        (["--synthetic", "64x64", "--tokens", "0"], "--tokens"),
        (["--synthetic", "64x64", "--tokens", "a,b"], "--tokens"),
        (["--synthetic", "nonsense"], "synthetic shape"),
        (["--synthetic", "64x64", "--hw", "nope"], "unknown hardware preset"),
    ],
)
def test_bad_input_one_line_exit_2(args, words, tmp_path, capsys):
    code, out, err = run_cli([*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert words in err and err.count("\n") == 1


def test_bad_masks_file_exit_2(tmp_path, capsys):
    (tmp_path / "masks.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, _, err = run_cli(["--masks", str(tmp_path / "masks.safetensors"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "corrupt" in err and err.count("\n") == 1


def test_never_imports_torch():
    code = (
        "import sys; from besa.cli import main; "
        "main(['simulate', '--synthetic', '64x64', '--out', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", code, d], check=True, capture_output=True)


def test_whole_decoder_step(tmp_path, capsys):
    """--context: attention + KV per block, LM head, embeddings in decoder.csv; end-to-end totals."""
    code, out, err = run_cli(
        ["--synthetic", "llama-7b[2]:sparsity=0.5", "--hw", "vitcod", "--tokens", "1,64", "--context", "2048", "--out", str(tmp_path)], capsys
    )
    assert code == 0, err
    dec = pd.read_csv(tmp_path / "decoder.csv")
    assert sorted(set(dec["kind"])) == ["attention", "embedding", "lm_head"]
    assert len(dec) == 2 * (2 + 2)  # per token count: 2 blocks' attention, LM head, embeddings
    a = dec[(dec.kind == "attention") & (dec.tokens == 1)].iloc[0]
    # KV cache of 2048 positions + the new one, K and V, 4096 wide, int8: 2 * 4096 * 2049 bytes
    assert a["bytes_kv"] == 2 * 4096 * 2049 and a["macs"] == 2 * 4096 * 2049
    s = json.loads((tmp_path / "summary.json").read_text())
    t = s["totals"]["1"]
    rest = int(dec[dec.tokens == 1]["cycles"].sum())
    assert t["e2e_cycles"] == t["cycles"] + rest and t["e2e_dense_cycles"] == t["dense_cycles"] + rest
    assert 1.0 < t["e2e_speedup_vs_dense"] < t["speedup_vs_dense"]  # Amdahl: the dense rest dilutes it
    assert s["decoder"] == {"model": "llama-7b", "context": 2048, "batch": 1}


def test_gqa_moves_fewer_kv_bytes(tmp_path, capsys):
    for name, kv in (("llama-2-7b", 4096), ("llama-3-8b", 1024)):
        code, _, err = run_cli(
            ["--synthetic", f"{name}[1]:sparsity=0.5", "--tokens", "4", "--batch", "2", "--context", "100", "--out", str(tmp_path / name)], capsys
        )
        assert code == 0, err
        a = pd.read_csv(tmp_path / name / "decoder.csv").query("kind == 'attention'").iloc[0]
        assert a["bytes_kv"] == 2 * kv * (100 + 2) * 2  # batch 2 sequences, 2 new tokens each


def test_energy_columns(tmp_path, capsys):
    code, _, err = run_cli(["--synthetic", "smollm2-135m[1]:sparsity=0.5", "--tokens", "1", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    df = pd.read_csv(tmp_path / "layers.csv")
    parts = df[["energy_dram_pj", "energy_sram_pj", "energy_mac_pj", "energy_index_pj", "energy_static_pj"]].sum(axis=1)
    assert np.allclose(parts, df["energy_pj"], rtol=1e-5)
    assert (df["energy_vs_dense"] > 1).all()  # decode: half the weight bytes from DRAM
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["totals"]["1"]["energy_vs_dense"] > 1


@pytest.mark.parametrize(
    "args, words",
    [
        (["--synthetic", "llama-7b[1]", "--context", "-5"], "--context must be an integer in [0, "),
        (["--synthetic", "llama-7b[1]", "--context", "8", "--batch", "0"], "--batch must be an integer in [1, "),
        (["--synthetic", "llama-7b[1]", "--context", "8", "--tokens", "3", "--batch", "2"], "not a multiple of --batch"),
        (["--synthetic", "64x64", "--context", "8"], "--model"),
        (["--synthetic", "llama-7b[1]", "--context", "8", "--mode", "besa-compat"], "memory model"),
        (["--synthetic", "64x64", "--set", "e_dram_pj_per_byte=-1"], "e_dram_pj_per_byte"),
    ],
)
def test_decoder_and_energy_bad_input(args, words, tmp_path, capsys):
    code, out, err = run_cli([*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert words in err and err.count("\n") == 1


def test_preset_missing_energy_or_unknown_field(tmp_path, capsys):
    from simulator.hardware import PRESET_DIR

    text = (PRESET_DIR / "vitcod.toml").read_text()
    missing = tmp_path / "missing.toml"
    missing.write_text("\n".join(l for l in text.splitlines() if not l.startswith("e_mac_pj")))
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(text + "\ne_laser_pj = 3.0\n")
    for path, words in ((missing, "'e_mac_pj' is missing"), (unknown, "unknown hardware field 'e_laser_pj'")):
        code, _, err = run_cli(["--synthetic", "64x64", "--hw", str(path), "--out", str(tmp_path / "o")], capsys)
        assert code == 2 and words in err and err.count("\n") == 1
