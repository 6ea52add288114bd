import dataclasses
from pathlib import Path

import pytest

from besa_common.errors import UserError
from simulator.hardware import PRESET_DIR, list_presets, load_hardware, parse_overrides


def test_presets_load_and_paper_numbers():
    assert {"vitcod", "besa-paper-array", "besa", "hbm-4k"} <= set(list_presets())
    v = load_hardware("vitcod")
    assert (v.lines, v.macs_per_line, v.macs, v.freq_mhz) == (64, 8, 512, 500.0)
    # 76.8 GiB/s at 500 MHz
    assert abs(v.dram_bytes_per_cycle - 76.8 * 2**30 / 500e6) < 0.01
    assert v.weight_bits == 8 and v.memory
    b = load_hardware("besa")
    assert (b.lines, b.macs_per_line, b.memory) == (64, 64, False)
    h = load_hardware("hbm-4k")
    assert h.macs == 4096


def test_overrides_are_typed():
    hw = load_hardware("vitcod", parse_overrides(["lines=32", "dram_bytes_per_cycle=100", "index_format=csr", "memory=false"]))
    assert (hw.lines, hw.dram_bytes_per_cycle, hw.index_format, hw.memory) == (32, 100.0, "csr", False)


def test_preset_from_file(tmp_path):
    text = (load_hardware.__globals__["PRESET_DIR"] / "vitcod.toml").read_text().replace('name = "vitcod"', 'name = "mine"')
    p = tmp_path / "mine.toml"
    p.write_text(text)
    assert load_hardware(str(p)).name == "mine"


@pytest.mark.parametrize(
    "over, words",
    [
        ({"lines": 0}, "lines"),
        ({"dram_bytes_per_cycle": 0}, "dram_bytes_per_cycle"),
        ({"dram_bytes_per_cycle": -3}, "dram_bytes_per_cycle"),
        ({"weight_buffer_bytes": 4}, "weight_buffer_bytes"),
        ({"index_buffer_bytes": 0}, "index_buffer_bytes"),
        ({"nm_n": 5, "nm_m": 4}, "n > m"),
        ({"tau": 1.0}, "tau"),
        ({"index_format": "zip"}, "index_format"),
        ({"version": 7}, "version"),
        ({"lines": "many"}, "lines"),
        ({"nm_efficiency": 0}, "nm_efficiency"),
        ({"nm_efficiency": 1.5}, "nm_efficiency"),
    ],
)
def test_impossible_hardware(over, words):
    with pytest.raises(UserError, match=words) as exc:
        load_hardware("vitcod", over)
    assert "\n" not in str(exc.value)


def test_nm_efficiency_is_optional_in_a_file(tmp_path):
    """A file written before nm_efficiency existed means the ideal n:m engine; gpu-h100 sets its own."""
    text = (load_hardware.__globals__["PRESET_DIR"] / "vitcod.toml").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("nm_efficiency"))
    p = tmp_path / "old.toml"
    p.write_text(text)
    assert load_hardware(str(p)).nm_efficiency == 1.0
    assert 0 < load_hardware("gpu-h100").nm_efficiency < 1


def test_unknown_preset_and_field(tmp_path):
    with pytest.raises(UserError, match="unknown hardware preset"):
        load_hardware("nope")
    with pytest.raises(UserError, match="unknown hardware field"):
        parse_overrides(["bogus=1"])
    with pytest.raises(UserError, match="FIELD=VALUE"):
        parse_overrides(["lines"])
    bad = tmp_path / "bad.toml"
    bad.write_text("lines = [")
    with pytest.raises(UserError, match="TOML"):
        load_hardware(str(bad))


FLAT = Path(__file__).parent / "fixtures" / "hw_flat"


def test_besa_is_an_alias_of_the_paper_array():
    """The old preset name still loads, field for field the renamed preset (whose name it carries)."""
    old, new = load_hardware("besa"), load_hardware("besa-paper-array")
    assert old == new and new.name == "besa-paper-array"
    assert (new.lines, new.macs_per_line, new.memory, new.split) == (64, 64, False, "proportional")
    assert load_hardware("besa", {"lines": 8}) == load_hardware("besa-paper-array", {"lines": 8})


@pytest.mark.parametrize("name", ["vitcod-fp16", "vitcod-bf16"])
def test_inheriting_presets_equal_their_flat_files(name):
    """vitcod-fp16/-bf16 say `base = "vitcod"` plus what differs; they load exactly as the flat files
    they replaced (kept as fixtures), every field."""
    assert "base" in (PRESET_DIR / f"{name}.toml").read_text()
    got, flat = load_hardware(name), load_hardware(str(FLAT / f"{name}.toml"))
    assert dataclasses.asdict(got) == dataclasses.asdict(flat)
    assert got.name == name and got.weight_bits == 16 and got.lines == load_hardware("vitcod").lines


def test_base_chain_and_own_name(tmp_path):
    (tmp_path / "a.toml").write_text('base = "vitcod-fp16"\nname = "a"\nlines = 32\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\nmacs_per_line = 4\n')
    b = load_hardware(str(tmp_path / "b.toml"))
    # name and description are a file's own: b is named after its file, its description is empty
    assert (b.name, b.description, b.lines, b.macs_per_line, b.weight_bits) == ("b", "", 32, 4, 16)
    assert load_hardware(str(tmp_path / "b.toml"), {"lines": 16}).lines == 16  # overrides still win


@pytest.mark.parametrize(
    "files, words",
    [
        ({"x.toml": 'base = "y.toml"\n', "y.toml": 'base = "x.toml"\n'}, "cycle (x.toml -> y.toml -> x.toml)"),
        ({"x.toml": 'base = "x.toml"\n'}, "cycle (x.toml -> x.toml)"),
        ({"x.toml": 'base = "nope"\n'}, "unknown base preset 'nope'"),
        ({"x.toml": 'base = "missing.toml"\n'}, "unknown base preset 'missing.toml'"),
        ({"x.toml": "base = 3\n"}, "base must be a preset name"),
        ({"x.toml": 'base = "y.toml"\n', "y.toml": 'base = "vitcod"\nbogus = 1\n'}, "y.toml: unknown hardware field 'bogus'"),
    ],
)
def test_bad_base_is_one_line_naming_the_file(tmp_path, files, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(UserError) as e:
        load_hardware(str(tmp_path / "x.toml"))
    msg = str(e.value)
    assert words in msg and "\n" not in msg
    assert "x.toml" in msg or "y.toml" in msg


# --- datasheet figures (issue 19: gpu-h100 computed at half its datasheet rate) ---------------------


@pytest.mark.parametrize("name", [n for n in list_presets() if n != "besa"])
def test_every_shipped_preset_states_and_reproduces_its_datasheet(name):
    hw = load_hardware(name)
    assert hw.datasheet_tops > 0 and hw.datasheet_dram_gb_per_s > 0
    assert abs(hw.peak_tops / hw.datasheet_tops - 1) <= 0.01
    assert abs(hw.dram_gb_per_s / hw.datasheet_dram_gb_per_s - 1) <= 0.01


def test_gpu_presets_reproduce_the_datasheets_by_hand():
    """H100 SXM5: 989.4 dense fp16 TFLOPS, 3.35 TB/s; A100 SXM4 80 GB: 312 TFLOPS, 2039 GB/s."""
    h = load_hardware("gpu-h100")
    assert h.macs == 528 * 512 and abs(2 * 528 * 512 * 1.83e9 / 1e12 - 989.4) < 0.1
    assert abs(h.peak_tops - 989.4) / 989.4 < 1e-3 and abs(h.dram_gb_per_s - 3350) / 3350 < 1e-3
    a = load_hardware("gpu-a100")
    assert (a.lines, a.macs_per_line, a.freq_mhz) == (432, 256, 1410.0)
    assert abs(a.peak_tops - 312) / 312 < 1e-3 and abs(a.dram_gb_per_s - 2039) / 2039 < 1e-3
    assert a.weight_bits == 16 and a.index_format == h.index_format  # the rest from its base


def test_a_preset_that_misses_its_datasheet_is_refused(tmp_path):
    """The slip of issue 19: 256 MACs per tensor core with the H100's 989.4 TFLOPS stated."""
    text = (PRESET_DIR / "gpu-h100.toml").read_text()
    assert "macs_per_line = 512\n" in text and "dram_bytes_per_cycle = 1830.6\n" in text
    p = tmp_path / "h.toml"
    p.write_text(text.replace("macs_per_line = 512\n", "macs_per_line = 256\n"))
    with pytest.raises(UserError, match=r"datasheet_tops = 989.4 \(-50.0%") as e:
        load_hardware(str(p))
    assert "\n" not in str(e.value)
    p.write_text(text.replace("dram_bytes_per_cycle = 1830.6\n", "dram_bytes_per_cycle = 1800\n"))  # -1.7 %
    with pytest.raises(UserError, match="datasheet_dram_gb_per_s"):
        load_hardware(str(p))
    p.write_text(text.replace("dram_bytes_per_cycle = 1830.6\n", "dram_bytes_per_cycle = 1820\n"))  # -0.6 %: inside
    assert load_hardware(str(p)).dram_bytes_per_cycle == 1820
    # a file that changes a rate of its base describes another machine: the inherited figure is dropped
    p.write_text('base = "gpu-h100"\nmacs_per_line = 256\n')
    assert load_hardware(str(p)).datasheet_tops == 0 and load_hardware(str(p)).datasheet_dram_gb_per_s == 3350


def test_overriding_a_rate_drops_the_figure_unless_restated():
    assert load_hardware("gpu-h100", {"lines": 64}).datasheet_tops == 0  # another machine: not stated
    assert load_hardware("gpu-h100", {"lines": 64}).datasheet_dram_gb_per_s == 3350  # untouched
    assert load_hardware("gpu-h100", {"freq_mhz": 1000}).datasheet_dram_gb_per_s == 0
    fp8 = load_hardware("gpu-h100", {"macs_per_line": 1024, "datasheet_tops": 1979})  # restated: checked
    assert abs(fp8.peak_tops - 1979) / 1979 < 1e-3
    with pytest.raises(UserError, match="datasheet_tops"):
        load_hardware("gpu-h100", {"macs_per_line": 256, "datasheet_tops": 989.4})


def test_a_shipped_preset_must_state_its_datasheet(tmp_path, monkeypatch):
    import simulator.hardware as hwmod

    text = (PRESET_DIR / "vitcod.toml").read_text()
    bare = "\n".join(x for x in text.splitlines() if not x.startswith("datasheet_"))
    (tmp_path / "user.toml").write_text(bare)
    assert load_hardware(str(tmp_path / "user.toml")).datasheet_tops == 0  # a user's file may leave it out
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "bare.toml").write_text(bare)
    monkeypatch.setattr(hwmod, "PRESET_DIR", shipped)
    with pytest.raises(UserError, match="must state datasheet_tops"):
        hwmod.load_hardware("bare")


def test_refused_preset_exits_2_with_one_line(tmp_path, capsys):
    from besa.cli import main

    p = tmp_path / "h.toml"
    p.write_text((PRESET_DIR / "gpu-h100.toml").read_text().replace("macs_per_line = 512\n", "macs_per_line = 256\n"))
    code = main(["simulate", "--synthetic", "64x64:sparsity=0.5", "--hw", str(p), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "datasheet_tops" in err and "\n" not in err and not (tmp_path / "o").exists()
