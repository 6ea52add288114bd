"""Bandwidth with units: ``dram_bandwidth = "256GB/s"`` in a preset, ``--set dram_bandwidth=76.8GiB/s`` on
the command line.  The machine itself keeps ``dram_bytes_per_cycle`` (the engines' unit); the bandwidth
is converted at the machine's own clock (after every override, so ``--set freq_mhz=1000`` with a
bandwidth in GB/s keeps the GB/s).  Shown in ONE unit everywhere: GB/s (10^9 bytes per second,
:func:`gb_per_s`), as the report's axes are.
"""

from __future__ import annotations

import re
from typing import Any

from besa_common.errors import UserError

BANDWIDTH_FIELD = "dram_bandwidth"
_UNITS = {
    "b/s": 1.0,
    "kb/s": 1e3,
    "mb/s": 1e6,
    "gb/s": 1e9,
    "tb/s": 1e12,
    "kib/s": 2.0**10,
    "mib/s": 2.0**20,
    "gib/s": 2.0**30,
    "tib/s": 2.0**40,
}
_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]+/s)\s*$")


def parse_bandwidth(text: Any) -> float:
    """``"256GB/s"``, ``"76.8 GiB/s"`` ... -> bytes per second (one-line UserError otherwise)."""
    m = _RE.match(str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise UserError(f"{BANDWIDTH_FIELD}: expected a number with a unit ({', '.join(u.replace('b/', 'B/') for u in _UNITS)}), got {text!r}")
    value = float(m.group(1)) * _UNITS[unit]
    if not value > 0:
        raise UserError(f"{BANDWIDTH_FIELD} must be > 0, got {text!r}")
    return value


def gb_per_s(bytes_per_cycle: float, freq_mhz: float) -> float:
    """DRAM bandwidth in GB/s (10^9 bytes per second)."""
    return bytes_per_cycle * freq_mhz * 1e6 / 1e9


def resolve_bandwidth(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A preset's merged ``values`` with ``dram_bandwidth`` (if any) turned into
    ``dram_bytes_per_cycle`` at the final clock.  A ``dram_bytes_per_cycle`` override beats a
    preset's ``dram_bandwidth``; both as overrides is an error."""
    if BANDWIDTH_FIELD not in values:
        return values
    if BANDWIDTH_FIELD in overrides and "dram_bytes_per_cycle" in overrides:
        raise UserError(f"give {BANDWIDTH_FIELD} or dram_bytes_per_cycle, not both")
    text = values.pop(BANDWIDTH_FIELD)
    if "dram_bytes_per_cycle" in overrides:
        return values
    try:
        freq = float(values.get("freq_mhz"))
    except (TypeError, ValueError):
        raise UserError(f"{BANDWIDTH_FIELD} needs a numeric freq_mhz, got {values.get('freq_mhz')!r}") from None
    if not freq > 0:
        raise UserError(f"freq_mhz must be > 0, got {freq}")
    values["dram_bytes_per_cycle"] = parse_bandwidth(text) / (freq * 1e6)
    return values
