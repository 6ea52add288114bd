"""Every path in a sweep or an experiment file is relative to THAT file, never to the working directory."""

from __future__ import annotations

from pathlib import Path

from besa.experiment.spec import load_experiment, sim_label
from simulator.hardware import PRESET_DIR, load_hardware
from simulator.sweep import expand, load_sweep

EXPERIMENT = """
[experiment]
name = "rel"
model = "smollm2-135m"

[[runs]]
methods = ["wanda"]
sparsities = [0.5]

[[simulate]]
preset = "hw/mine.toml"
modes = ["cycle"]
tokens = [1]

[whatif]
run = "wanda-s50"
preset = "hw/mine.toml"
tokens = [1]
workers = 0
grid = { lines = [16, 32] }
"""


def _preset(d: Path) -> Path:
    (d / "hw").mkdir(parents=True)
    p = d / "hw" / "mine.toml"
    p.write_text(f'base = "{PRESET_DIR / "vitcod.toml"}"\nname = "mine"\nlines = 48\n')
    return p


def test_experiment_preset_files_are_relative_to_the_experiment(tmp_path, monkeypatch):
    d = tmp_path / "exp"
    preset = _preset(d)
    (d / "e.toml").write_text(EXPERIMENT)
    monkeypatch.chdir(tmp_path)  # not the experiment's folder
    exp = load_experiment(d / "e.toml")
    assert Path(exp.simulate[0].preset) == preset.resolve() and Path(exp.whatif.preset) == preset.resolve()
    assert sim_label(exp.simulate[0].preset) == "mine" and sim_label("vitcod") == "vitcod"
    assert load_hardware(exp.simulate[0].preset).lines == 48


def test_sweep_paths_are_relative_to_the_sweep_file(tmp_path, monkeypatch):
    d = tmp_path / "sw"
    _preset(d)
    (d / "cfg").mkdir()
    (d / "cfg" / "config.json").write_text(
        '{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, '
        '"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}'
    )
    (d / "s.toml").write_text('[sweep]\npreset = "hw/mine.toml"\ntokens = [1]\n[[workload]]\nname = "w"\nsynthetic = "cfg/config.json:sparsity=0.5"\n')
    monkeypatch.chdir(tmp_path)
    pts = expand(load_sweep(d / "s.toml"))
    assert pts[0].hardware.lines == 48 and pts[0].preset == "hw/mine.toml"  # the row shows the file as written
    assert str((d / "cfg" / "config.json").resolve()) in pts[0].workload.synthetic
