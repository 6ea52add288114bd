"""Hardware presets: a frozen :class:`Hardware` read from a versioned TOML file in ``configs/hw/``.

Units: ``lines`` MAC lines of ``macs_per_line`` MACs each (P = lines * macs_per_line MACs per cycle),
clock ``freq_mhz``, DRAM bandwidth ``dram_bytes_per_cycle`` (bytes per clock cycle), buffers in bytes,
data widths in bits, ``pipeline_fill`` (lambda) in cycles per dense tile, tiles in rows (``tile_m``,
output features), columns (``tile_k``, input features) and tokens (``tile_n``); a tile field of 0
means "derive it": the largest tiles that double-buffer in the buffers (see
:func:`simulator.cost.tiles.tilings`).  Energies in picojoules (``e_*``; see docs/simulator.md for
their sources).  ``partition = "optimal"`` searches the dense-column set per layer; ``"tau"`` uses the
fixed threshold ``tau`` (``--set tau=X`` switches to it).  ``gather_factor = 0`` derives the sparse
engine's gather slowdown from the mask's bank conflicts on ``banks`` SRAM banks; a value >= 1 is a
constant override (``--set gather_factor=X``).

Every shipped preset states the published figures it is built from: ``datasheet_tops`` (dense peak,
tera-operations per second, a MAC = 2 operations: TFLOPS for floating point) and
``datasheet_dram_gb_per_s`` (DRAM bandwidth, 10^9 bytes per second), with their source in a comment.
The loader refuses a preset whose ``lines * macs_per_line * freq_mhz`` or ``dram_bytes_per_cycle *
freq_mhz`` misses them by more than :data:`DATASHEET_TOLERANCE` (one line).  0 = not stated (allowed in a
user's file, not in a shipped one); an override of a rate field (``--set lines=32``, a sweep) describes
another machine, so it drops the figure it changes unless the override restates it; so does a preset that
changes a rate of its ``base``.  The systolic mode
(:mod:`simulator.cost.systolic`) reads ``array_rows`` x ``array_cols`` (0 = ``lines`` x ``macs_per_line``) and
``dataflow`` (``ws`` / ``os`` / ``is``).

``load_hardware("vitcod", {"lines": 32})`` loads a preset by name (or a path to a TOML file) and applies
overrides; an impossible machine (0 lines, bandwidth <= 0, a buffer that cannot double-buffer one tile,
n > m ...) raises :class:`~besa_common.errors.UserError` with one line.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from besa_common.errors import UserError
from besa_common.fileio import resolve_path
from besa_common.resources import config_dir
from simulator.units import BANDWIDTH_FIELD, resolve_bandwidth

HW_VERSION = 1
PRESET_DIR = config_dir("hw")  # configs/hw in a checkout, besa_configs/hw in an installed wheel
# The index formats, in the order of their integer codes at the C++ boundary (cpp/model.hpp
# ``IndexFormat``): the one place that order is defined.
INDEX_FORMATS = ("bitmap", "csr", "rle")
SPLITS = ("proportional", "optimal")
# optimal = every top-G column set searched; sparse = G = 0 (every column on the sparse engine);
# dense = G = K (every column on the dense engine, no index); tau = the one set {count > tau * M}
PARTITIONS = ("optimal", "sparse", "dense", "tau")
# What the search minimises (docs/simulator.md, "Objective"): cycles (ties within objective_tol of the
# best cycles decided by energy), energy, or energy x cycles
OBJECTIVES = ("cycles", "energy", "edp")
# objective_tol is stored in parts per million so that both engines compare integers
TOL_SCALE = 1_000_000
ASSIGNS = ("lpt", "round_robin")
# Fixed-point scales: bandwidth and the gather factor are stored as integers so that the Python
# reference and the C++ engine do exactly the same integer arithmetic (no float ceil() drift).
BW_SCALE = 1 << 16
GATHER_SCALE = 256
# The n:m engine's efficiency is stored in 1/NM_EFF_SCALE units for the same reason.
NM_EFF_SCALE = 1000
# Energies are stored as integer femtojoules for the same reason (exact sums in any engine).
FJ_PER_PJ = 1000
# A preset's datasheet_* figures must be reproduced by its fields within this relative tolerance.
DATASHEET_TOLERANCE = 0.01
# The rate fields each datasheet figure is computed from (an override of one drops the figure).
DATASHEET_INPUTS = {"datasheet_tops": ("lines", "macs_per_line", "freq_mhz"), "datasheet_dram_gb_per_s": ("dram_bytes_per_cycle", "freq_mhz")}
DATAFLOWS = ("ws", "os", "is")
ENERGY_FIELDS = (
    "e_dram_pj_per_byte",
    "e_wbuf_pj_per_byte",
    "e_abuf_pj_per_byte",
    "e_obuf_pj_per_byte",
    "e_ibuf_pj_per_byte",
    "e_mac_pj",
    "e_index_pj",
    "e_dequant_pj",
)


@dataclass(frozen=True)
class Hardware:
    """One accelerator.  See the module docstring for units; ``memory = False`` = compute only."""

    name: str
    version: int
    description: str
    lines: int
    macs_per_line: int
    freq_mhz: float
    dram_bytes_per_cycle: float
    memory: bool
    weight_buffer_bytes: int
    act_buffer_bytes: int
    out_buffer_bytes: int
    index_buffer_bytes: int
    weight_bits: int
    act_bits: int
    out_bits: int
    acc_bits: int
    index_format: str
    index_bits: int
    rowptr_bits: int
    rle_bits: int
    kv_bits: int
    pipeline_fill: int
    tile_m: int
    tile_k: int
    tile_n: int
    partition: str
    tau: float
    split: str
    assign: str
    gather_factor: float
    banks: int
    nm_n: int
    nm_m: int
    e_dram_pj_per_byte: float
    e_wbuf_pj_per_byte: float
    e_abuf_pj_per_byte: float
    e_obuf_pj_per_byte: float
    e_ibuf_pj_per_byte: float
    e_mac_pj: float
    e_index_pj: float
    # Fraction of the ideal n:m engine's throughput that its kernels reach, on both the compute and
    # the memory side (1 = the ideal engine; an optional field: a file without it gets 1).
    nm_efficiency: float = 1.0
    # The published figures the preset is built from (0 = not stated; see the module docstring).
    datasheet_tops: float = 0.0
    datasheet_dram_gb_per_s: float = 0.0
    # The systolic mode's array (0 = lines x macs_per_line) and dataflow.
    array_rows: int = 0
    array_cols: int = 0
    dataflow: str = "ws"
    # Optional fields (a file without them gets these defaults; docs/simulator.md sections 3-5):
    # the search objective and its cycle tolerance (fraction of the best cycles decided by energy),
    objective: str = "cycles"
    objective_tol: float = 0.005
    # static power in watts, charged for the layer's time (cycles / freq),
    static_w: float = 0.0
    # quantized weights: group_size input weights share one scale (scale_bits) and one zero point
    # (zero_bits) per output row; 0 = no groups (plain weight_bits values); dequantisation energy per
    # weight read into the MACs (only with groups)
    group_size: int = 0
    scale_bits: int = 16
    zero_bits: int = 0
    e_dequant_pj: float = 0.0
    # weights the dequantisation units turn into MAC operands per cycle (with groups); 0 = they keep
    # pace with any weight stream (no cycles)
    dequant_per_cycle: int = 0

    @property
    def macs(self) -> int:
        """P, MACs per cycle."""
        return self.lines * self.macs_per_line

    @property
    def peak_tops(self) -> float:
        """The dense peak the fields give: 2 operations per MAC, tera-operations per second."""
        return 2 * self.macs * self.freq_mhz * 1e6 / 1e12

    @property
    def dram_gb_per_s(self) -> float:
        """The DRAM bandwidth the fields give, 10^9 bytes per second."""
        return self.dram_bytes_per_cycle * self.freq_mhz * 1e6 / 1e9

    @property
    def systolic_shape(self) -> tuple[int, int]:
        """(rows, cols) of the systolic array: ``array_rows`` x ``array_cols``, 0 = lines x macs_per_line."""
        return (self.array_rows or self.lines, self.array_cols or self.macs_per_line)

    @property
    def bw_bits_scaled(self) -> int:
        """DRAM bandwidth as an integer: bits per ``BW_SCALE`` cycles (memory cycles = ceil(bits*BW_SCALE/this))."""
        return max(1, round(self.dram_bytes_per_cycle * 8 * BW_SCALE))

    @property
    def gather_scaled(self) -> int:
        """The constant gather factor in 1/``GATHER_SCALE`` units; 0 = derive it from the mask."""
        if self.gather_factor == 0:
            return 0
        return max(GATHER_SCALE, round(self.gather_factor * GATHER_SCALE))

    @property
    def nm_eff_scaled(self) -> int:
        """``nm_efficiency`` in 1/``NM_EFF_SCALE`` units (n:m layer cycles = ceil(ideal * SCALE / this))."""
        return max(1, min(NM_EFF_SCALE, round(self.nm_efficiency * NM_EFF_SCALE)))

    @property
    def tol_ppm(self) -> int:
        """``objective_tol`` in 1/``TOL_SCALE`` units."""
        return round(self.objective_tol * TOL_SCALE)

    @property
    def static_fj_per_cycle(self) -> int:
        """Static energy per clock cycle, integer femtojoules: static_w / (freq_mhz * 1e6) J."""
        return round(self.static_w * 1e9 / self.freq_mhz)

    @property
    def group_meta_bits(self) -> int:
        """Bits of one quantization group's metadata (scale + zero point); 0 without groups."""
        return self.scale_bits + self.zero_bits if self.group_size else 0

    def energy_fj(self, key: str) -> int:
        """Energy field ``key`` (pJ) as integer femtojoules."""
        return round(getattr(self, key) * FJ_PER_PJ)

    @property
    def nm_meta_bits(self) -> int:
        """Metadata bits per kept value of the n:m engine: log2(m) rounded up."""
        return max(1, math.ceil(math.log2(self.nm_m))) if self.nm_m > 1 else 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELD_TYPES = {f.name: f.type for f in fields(Hardware)}
# Fields a preset file may leave out, with the value it then gets (nm_efficiency = 1: the ideal n:m
# engine; the objective, static power and quantization fields of the energy work).
OPTIONAL_FIELDS = {f.name: f.default for f in fields(Hardware) if f.default is not dataclasses.MISSING}

# Declared range (inclusive) of every numeric field, checked in Python before anything reaches the
# C++ core (int64 arithmetic): values outside are a one-line UserError, never a pybind cast
# traceback, an overflow or a silent clamp.  A numeric field not listed here must still be finite
# and within +-2**53.
RANGES: dict[str, tuple[float, float]] = {
    "lines": (1, 1 << 16),
    "macs_per_line": (1, 1 << 16),
    "freq_mhz": (1e-3, 1e7),  # 1 kHz .. 10 THz
    "dram_bytes_per_cycle": (1e-3, 1e9),  # above 1e-3 the fixed-point bandwidth (BW_SCALE) is exact to 0.1 %
    "weight_buffer_bytes": (1, 1 << 48),
    "act_buffer_bytes": (1, 1 << 48),
    "out_buffer_bytes": (1, 1 << 48),
    "index_buffer_bytes": (1, 1 << 48),
    "weight_bits": (1, 64),
    "act_bits": (1, 64),
    "out_bits": (1, 64),
    "acc_bits": (1, 64),
    "index_bits": (1, 64),
    "rowptr_bits": (1, 64),
    "rle_bits": (1, 64),
    "kv_bits": (1, 64),
    "pipeline_fill": (0, 1 << 24),
    "tile_m": (0, 1 << 20),
    "tile_k": (0, 1 << 20),
    "tile_n": (0, 1 << 20),  # 0 = derived from the buffers
    "tau": (0.0, 1.0),
    "gather_factor": (0.0, 1e3),
    "banks": (1, 1 << 16),  # gather 0 = from the mask
    "nm_n": (1, 1024),
    "nm_m": (1, 1024),
    "nm_efficiency": (1e-3, 1.0),
    "datasheet_tops": (0.0, 1e9),
    "datasheet_dram_gb_per_s": (0.0, 1e9),
    "array_rows": (0, 1 << 16),
    "array_cols": (0, 1 << 16),
    "objective_tol": (0.0, 1.0),
    "static_w": (0.0, 1e6),
    "group_size": (0, 1 << 20),
    "scale_bits": (0, 64),
    "zero_bits": (0, 64),
    "dequant_per_cycle": (0, 1 << 32),
    **{k: (0.0, 1e6) for k in ENERGY_FIELDS},  # pJ
}


def check_ranges(hw: "Hardware") -> None:
    """Every numeric field finite and inside :data:`RANGES` (one-line UserError naming the field)."""
    src = f"hardware {hw.name!r}"
    for f in fields(hw):
        v = getattr(hw, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{src}: {f.name} must be a finite number, got {v}")
        lo, hi = RANGES.get(f.name, (-(2.0**53), 2.0**53))
        if not lo <= v <= hi:
            raise UserError(f"{src}: {f.name}={v:g} is outside its range [{lo:g}, {hi:g}]")


_TOML_TYPES = {"bool": (bool,), "int": (int,), "float": (int, float), "str": (str,)}


def _check_toml_type(key: str, value: Any, source: str) -> None:
    """A preset file's value has the field's own TOML type: ``"2.8"`` (a string) is not a number, and
    only ``--set`` strings are coerced (:func:`_coerce`)."""
    kind = _FIELD_TYPES[key]
    ok = isinstance(value, _TOML_TYPES.get(kind, (str,))) and (kind == "bool" or not isinstance(value, bool))
    if not ok:
        raise UserError(f"{source}: hardware field {key!r} must be a TOML {kind}, got {type(value).__name__} {value!r}"[:200])


def _coerce(key: str, value: Any, source: str) -> Any:
    kind = _FIELD_TYPES[key]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError(value)
            f = float(value)
            if not f.is_integer():
                raise ValueError(value)
            return int(f)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"{source}: hardware field {key!r} must be {kind}, got {value!r}") from None


def validate(hw: Hardware) -> Hardware:
    """Reject an impossible machine with a one-line :class:`UserError`; return ``hw`` unchanged."""
    src = f"hardware {hw.name!r}"
    if hw.version != HW_VERSION:
        raise UserError(f"{src}: unknown hardware preset version {hw.version} (this build reads {HW_VERSION})")
    for key in ("lines", "macs_per_line", "banks"):
        if getattr(hw, key) < 1:
            raise UserError(f"{src}: {key} must be >= 1, got {getattr(hw, key)}")
    for key in ("tile_m", "tile_k", "tile_n"):
        if getattr(hw, key) < 0:
            raise UserError(f"{src}: {key} must be >= 0 (0 = derived from the buffers), got {getattr(hw, key)}")
    for key in ENERGY_FIELDS:
        v = getattr(hw, key)
        if not (v >= 0 and math.isfinite(v)):
            raise UserError(f"{src}: {key} must be a finite energy >= 0 pJ, got {v}")
    if not (hw.freq_mhz > 0 and math.isfinite(hw.freq_mhz)):
        raise UserError(f"{src}: freq_mhz must be > 0, got {hw.freq_mhz}")
    if not (hw.dram_bytes_per_cycle > 0 and math.isfinite(hw.dram_bytes_per_cycle)):
        raise UserError(f"{src}: dram_bytes_per_cycle must be > 0, got {hw.dram_bytes_per_cycle}")
    for key in ("weight_bits", "act_bits", "out_bits", "acc_bits", "index_bits", "rowptr_bits", "rle_bits", "kv_bits"):
        if not 1 <= getattr(hw, key) <= 64:
            raise UserError(f"{src}: {key} must be in 1..64, got {getattr(hw, key)}")
    if hw.pipeline_fill < 0:
        raise UserError(f"{src}: pipeline_fill must be >= 0, got {hw.pipeline_fill}")
    if not 0.0 <= hw.tau < 1.0:
        raise UserError(f"{src}: tau must be in [0, 1), got {hw.tau}")
    if hw.index_format not in INDEX_FORMATS:
        raise UserError(f"{src}: index_format must be one of {', '.join(INDEX_FORMATS)}, got {hw.index_format!r}")
    if hw.partition not in PARTITIONS:
        raise UserError(f"{src}: partition must be one of {', '.join(PARTITIONS)}, got {hw.partition!r}")
    if hw.objective not in OBJECTIVES:
        raise UserError(f"{src}: objective must be one of {', '.join(OBJECTIVES)}, got {hw.objective!r}")
    if hw.split not in SPLITS:
        raise UserError(f"{src}: split must be one of {', '.join(SPLITS)}, got {hw.split!r}")
    if hw.assign not in ASSIGNS:
        raise UserError(f"{src}: assign must be one of {', '.join(ASSIGNS)}, got {hw.assign!r}")
    if not ((hw.gather_factor >= 1.0 or hw.gather_factor == 0.0) and math.isfinite(hw.gather_factor)):
        raise UserError(f"{src}: gather_factor must be >= 1 (or 0 = from the mask's bank conflicts), got {hw.gather_factor}")
    if hw.nm_m < 1 or hw.nm_n < 1:
        raise UserError(f"{src}: n:m needs n >= 1 and m >= 1, got {hw.nm_n}:{hw.nm_m}")
    if hw.nm_n > hw.nm_m:
        raise UserError(f"{src}: n:m engine with n > m ({hw.nm_n}:{hw.nm_m}) is impossible")
    if hw.dataflow not in DATAFLOWS:
        raise UserError(f"{src}: dataflow must be one of {', '.join(DATAFLOWS)}, got {hw.dataflow!r}")
    check_ranges(hw)
    check_datasheet(hw)
    # Each operand buffer must double-buffer one tile (load tile i+1 while tile i computes); a
    # derived tile dimension (0) is checked at its smallest: 1 row, 1 token, one beat of columns.
    tm, tn = hw.tile_m or 1, hw.tile_n or 1
    tk = hw.tile_k or hw.macs_per_line
    need = {
        "weight_buffer_bytes": tm * tk * hw.weight_bits,
        "act_buffer_bytes": tk * tn * hw.act_bits,
        "out_buffer_bytes": tm * tn * hw.acc_bits,
        "index_buffer_bytes": tm * tk,  # one bitmap bit per weight position
    }
    for key, bits in need.items():
        tile_bytes = -(-bits // 8)
        have = getattr(hw, key)
        if have < 2 * tile_bytes:
            raise UserError(f"{src}: {key}={have} is smaller than two tiles of {tile_bytes} bytes (tile {tm}x{tk}x{tn}; double buffering needs 2)")
    return hw


def check_datasheet(hw: Hardware) -> None:
    """The stated datasheet figures (those not 0) reproduced by the fields within 1 %, or a one-line UserError."""
    for key, got, how in (
        ("datasheet_tops", hw.peak_tops, "2 x lines x macs_per_line x freq_mhz"),
        ("datasheet_dram_gb_per_s", hw.dram_gb_per_s, "dram_bytes_per_cycle x freq_mhz"),
    ):
        stated = getattr(hw, key)
        if stated and abs(got / stated - 1) > DATASHEET_TOLERANCE:
            raise UserError(
                f"hardware {hw.name!r}: {how} = {got:.4g} but {key} = {stated:g} ({got / stated - 1:+.1%}, more than "
                f"{DATASHEET_TOLERANCE:.0%}): the fields do not reproduce the datasheet figure"
            )


# Older preset names, still accepted everywhere a preset name is (the name a preset is loaded under
# is its file's ``name``).  ``besa`` was the BESA paper's array, whose name also meant the method,
# the package and two modes.
PRESET_ALIASES = {"besa": "besa-paper-array"}


def list_presets() -> list[str]:
    """Every name of a shipped preset: the files of ``configs/hw`` and the older names of
    :data:`PRESET_ALIASES` (the one place that lists them)."""
    return sorted({p.stem for p in PRESET_DIR.glob("*.toml")} | set(PRESET_ALIASES))


def _preset_file(name: str) -> Path | None:
    """The shipped preset file of ``name`` (an alias included), or None."""
    path = PRESET_DIR / f"{PRESET_ALIASES.get(name, name)}.toml"
    return path if path.is_file() else None


def _implied(overrides: dict[str, Any]) -> dict[str, Any]:
    """An override of ``tau`` means "use this threshold" and one of ``gather_factor`` "use this
    constant": switch the matching mode unless the caller set it too."""
    out = dict(overrides)
    if "tau" in out and "partition" not in out:
        out["partition"] = "tau"
    for figure, inputs in DATASHEET_INPUTS.items():  # another machine than the datasheet's: not stated
        if figure not in out and any(k in out for k in inputs):
            out[figure] = 0.0
    return out


# ``banks = 0`` derives the activation SRAM banks from the MACs of a line: BANKS_PER_MAC banks per MAC,
# so the chance that a beat's reads collide on a bank stays the same when a line gets wider (the ratio
# of every shipped preset with guessed banks: vitcod 32 / 8, besa-paper-array and hbm-4k 256 / 64).
BANKS_PER_MAC = 4
GUESSES_TABLE = "guesses"


def _derive_banks(values: dict[str, Any]) -> dict[str, Any]:
    """``banks = 0`` -> BANKS_PER_MAC x macs_per_line (after every override)."""
    try:
        derive = int(float(values.get("banks", 1))) == 0
        if derive:
            values["banks"] = BANKS_PER_MAC * int(float(values["macs_per_line"]))
    except (TypeError, ValueError, KeyError):
        pass  # a malformed value: _coerce names it
    return values


def _read_preset(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The fields a preset file sets, its base's included: ``base = "vitcod"`` (a shipped preset) or
    ``base = "other.toml"`` (beside this file) takes every field of that preset but its ``name``
    and ``description``, and this file's fields replace them.  Errors name the file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    base = raw.pop("base", None)
    guessed = raw.pop(GUESSES_TABLE, {})  # the plausible ranges of the guessed fields: simulator.sensitivity reads them
    bad = sorted(set(guessed) - set(_FIELD_TYPES)) if isinstance(guessed, dict) else [GUESSES_TABLE]
    if bad:  # also catches a field written below the table (TOML puts it INTO the table)
        raise UserError(f"{path.name}: [{GUESSES_TABLE}]: unknown hardware field {bad[0]!r} (fields go above the [{GUESSES_TABLE}] table)")
    unknown = sorted(set(raw) - set(_FIELD_TYPES) - {BANDWIDTH_FIELD})
    if unknown:
        raise UserError(f"{path.name}: unknown hardware field {unknown[0]!r} (fields: base, {', '.join(_FIELD_TYPES)})")
    for key, value in raw.items():
        if key != BANDWIDTH_FIELD:  # "256GB/s": a string with a unit, checked by resolve_bandwidth
            _check_toml_type(key, value, path.name)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise UserError(f"{path}: base must be a preset name or a .toml file, got {base!r}")
    base_path = path.parent / base if base.endswith(".toml") else _preset_file(base)
    if base_path is None or not base_path.is_file():
        raise UserError(f"{path}: unknown base preset {base!r} (presets: {', '.join(list_presets())}; or a .toml file beside it)")
    seen = (*chain, resolve_path(path))
    if resolve_path(base_path) in seen:
        cycle = " -> ".join(p.name for p in (*seen, resolve_path(base_path)))
        raise UserError(f"{path}: base presets form a cycle ({cycle})")
    values = _read_preset(base_path, seen)
    values.pop("name", None)
    values.pop("description", None)
    for figure, inputs in DATASHEET_INPUTS.items():  # a file that changes a rate describes another machine
        if figure not in raw and any(k in raw for k in inputs):
            values.pop(figure, None)
    values.update(raw)
    return values


def load_hardware(name_or_path: str, overrides: dict[str, Any] | None = None) -> Hardware:
    """Load a preset (``vitcod``, ``besa-paper-array``, ``hbm-4k`` ..., an alias of
    :data:`PRESET_ALIASES`, or a path to a TOML file) and apply ``overrides``.

    ``overrides`` maps field names to values (strings from the CLI are coerced to the field's type).
    """
    return hardware_builder(name_or_path)(overrides)


def preset_path(name_or_path: str) -> Path:
    """The TOML file of a preset name (an alias included) or path; one-line UserError when there is none."""
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.is_file()):
        path = _preset_file(str(name_or_path))
        if path is None:
            raise UserError(f"unknown hardware preset {name_or_path!r} (presets: {', '.join(list_presets())}; or give a .toml path)")
    if not path.is_file():
        raise UserError(f"hardware file not found: {path}")
    return path


def hardware_builder(name_or_path: str) -> Callable[[dict[str, Any] | None], Hardware]:
    """``build(overrides)`` = :func:`load_hardware` ``(name_or_path, overrides)``, the preset file
    read ONCE (a sweep's grid: one machine per combination)."""
    path = preset_path(name_or_path)
    preset = _read_preset(path)
    return lambda overrides=None: _build(path, dict(preset), overrides)


def _build(path: Path, values: dict[str, Any], overrides: dict[str, Any] | None) -> Hardware:
    """The machine of a preset file's ``values`` with ``overrides`` applied, validated."""
    raw_values = dict(values)
    values.update(_implied(overrides or {}))
    values = resolve_bandwidth(values, overrides or {})  # dram_bandwidth = "256GB/s" -> bytes per cycle
    values = _derive_banks(values)
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise UserError(f"{path.name}: unknown hardware field {unknown[0]!r} (fields: {', '.join(_FIELD_TYPES)})")
    values.setdefault("description", "")
    for key, default in OPTIONAL_FIELDS.items():  # optional: files written before they existed get the default
        values.setdefault(key, default)
    values.setdefault("name", path.stem)
    if resolve_path(path).parent == resolve_path(PRESET_DIR):
        for key in DATASHEET_INPUTS:
            if not raw_values.get(key):
                raise UserError(f"{path.name}: a shipped preset must state {key} (the published figure it is built from)")
    missing = [k for k in _FIELD_TYPES if k not in values]
    if missing:
        raise UserError(f"{path.name}: hardware field {missing[0]!r} is missing")
    src = path.name if not overrides else f"{path.name} + overrides"
    hw = Hardware(**{k: _coerce(k, values[k], src) for k in _FIELD_TYPES})
    return validate(hw)


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["lines=32", "dram_bytes_per_cycle=100"]`` -> dict (values stay strings; load_hardware coerces)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects FIELD=VALUE, got {item!r}")
        if key not in _FIELD_TYPES and key != BANDWIDTH_FIELD:
            raise UserError(f"--set: unknown hardware field {key!r} (fields: {', '.join(_FIELD_TYPES)}; {BANDWIDTH_FIELD}=256GB/s)")
        out[key] = value.strip()
    return out
