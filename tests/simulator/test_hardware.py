import pytest

from besa_common.errors import UserError
from simulator.hardware import load_hardware, parse_overrides, preset_names


def test_presets_load_and_paper_numbers():
    assert {"vitcod", "besa", "hbm-4k"} <= set(preset_names())
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
