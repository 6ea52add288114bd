"""Bandwidth with units (``--set dram_bandwidth=256GB/s``, ``dram_bandwidth`` in a preset file)."""

from __future__ import annotations

import pytest

from besa_common.errors import UserError
from simulator.hardware import load_hardware, parse_overrides
from simulator.units import gb_per_s, parse_bandwidth


@pytest.mark.parametrize("text, bps", [("256GB/s", 256e9), ("76.8 GiB/s", 76.8 * 2**30), ("1.5e3MB/s", 1.5e9), ("512 b/s", 512.0)])
def test_parse_bandwidth(text, bps):
    assert parse_bandwidth(text) == pytest.approx(bps)


@pytest.mark.parametrize("text", ["256", "256 GB", "fast", "-3GB/s", "0GB/s", "256GB/h"])
def test_bad_bandwidth_is_one_line(text):
    with pytest.raises(UserError) as e:
        load_hardware("vitcod", parse_overrides([f"dram_bandwidth={text}"]))
    assert "dram_bandwidth" in str(e.value) and "\n" not in str(e.value)


def test_bandwidth_is_converted_at_the_final_clock(tmp_path):
    # vitcod's comment: 76.8 GiB/s at 500 MHz = 164.93 bytes/cycle
    assert load_hardware("vitcod", {"dram_bandwidth": "76.8GiB/s"}).dram_bytes_per_cycle == pytest.approx(164.93, rel=1e-4)
    hw = load_hardware("vitcod", {"dram_bandwidth": "256GB/s", "freq_mhz": 1000})
    assert hw.dram_bytes_per_cycle == pytest.approx(256.0) and gb_per_s(hw.dram_bytes_per_cycle, hw.freq_mhz) == pytest.approx(256.0)
    (tmp_path / "mine.toml").write_text('base = "vitcod"\ndram_bandwidth = "128GB/s"\nfreq_mhz = 1000.0\n')
    assert load_hardware(str(tmp_path / "mine.toml")).dram_bytes_per_cycle == pytest.approx(128.0)
    # an override in bytes/cycle beats the file's bandwidth; both as overrides is an error
    assert load_hardware(str(tmp_path / "mine.toml"), {"dram_bytes_per_cycle": 7}).dram_bytes_per_cycle == 7.0
    with pytest.raises(UserError, match="not both"):
        load_hardware("vitcod", {"dram_bandwidth": "1GB/s", "dram_bytes_per_cycle": 7})
