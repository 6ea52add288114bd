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
