"""Synthetic keep masks (1 = kept) that hit their sparsity: the generators behind ``--synthetic``.

Every generator returns the mask bit-packed (``uint8 [rows, ceil(cols/8)]``, little bit order, pad
bits 0 — :mod:`besa_common.masks`) and keeps EXACTLY ``round((1 - sparsity) * rows * cols)`` weights
(``nm`` keeps exactly N of every full group of M).  Sparsity = fraction PRUNED; N:M = N KEPT of M.

Patterns (the part after ``SHAPE:`` in a spec, see :func:`parse_pattern`):

* ``sparsity=S`` — every weight equally likely to be kept (i.i.d. Bernoulli, then corrected to the
  exact count by flipping uniformly chosen weights);
* ``nm=N:M`` — exactly N kept in every group of M consecutive input features (a ragged last group
  of width w keeps round(N*w/M));
* ``skewed=S[/SIGMA]`` — column j kept with probability ``min(1, t * w_j)``, ``w_j ~ LogNormal(0,
  SIGMA)``, ``t`` solved so the expected density is exactly 1-S (then corrected to the exact count).
  SIGMA is the log-normal shape of the column weights; before clipping the column-density
  coefficient of variation (std / mean over columns) is ``sqrt(exp(SIGMA^2) - 1)`` — 0.22 for
  SIGMA = 0.22, about what real 50 % masks show (Wanda on SmolLM2-135M: 0.22), and the default.
  Large SIGMA (1 and up) gives a few near-dense columns and many near-empty ones;
* ``like=MASKS_FILE[@S]`` — per-projection row and column density profiles drawn from a real masks
  file (see :class:`LikeProfiles`): each layer keeps its source layer's density (or, with ``@S``,
  every density scaled by one factor so the whole workload is S sparse);
* ``dense``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from besa_common.errors import UserError
from besa_common.masks import read_masks_packed
from besa_common.sparsity import check_measured, parse_nm
from simulator import stats
from simulator.cpp import core

# (rows, cols, rng) -> packed keep mask
Generator = Callable[[int, int, np.random.Generator], np.ndarray]
DEFAULT_SIGMA = 0.22
PATTERN_HELP = "sparsity=S, nm=N:M, skewed=S[/SIGMA], like=MASKS_FILE[@S], dense (S = fraction pruned, N:M = N kept of every M)"


# ---------------------------------------------------------------------------- exact counts
def _clear_pad(packed: np.ndarray, cols: int) -> np.ndarray:
    if cols % 8:
        packed[:, -1] &= np.uint8((1 << (cols % 8)) - 1)
    return packed


def target_kept(rows: int, cols: int, density: float) -> int:
    """Weights a ``rows x cols`` mask of ``density`` keeps: the nearest integer (ties to even)."""
    return int(round(density * rows * cols))


def popcount(packed: np.ndarray) -> int:
    """Kept weights of a packed mask (pad bits are 0)."""
    if packed.flags.c_contiguous and packed.nbytes % 8 == 0:
        packed = packed.reshape(-1).view(np.uint64)  # 8x fewer elements to count and sum
    return int(np.bitwise_count(packed).sum(dtype=np.int64))


def _pcg64_fill():
    """The C++ core's PCG64 stream (cpp/random.cpp), or None without the core."""
    return getattr(core, "pcg64_fill", None)


USE_CORE_RNG = True  # tests set False to check the numpy-only path


def uniform_ints(rng: np.random.Generator, shape: tuple[int, ...], nbytes: int) -> np.ndarray:
    """Exactly ``rng.integers(0, 2**(8*nbytes), size=shape, dtype=uint8 / uint16)`` (``nbytes`` 1 or
    2), leaving ``rng`` in the same state, 5-10x faster.

    numpy fills full-range uint8 / uint16 draws from 32-bit words (4 / 2 per word, low bits first,
    a fresh word per call), and PCG64 serves 32-bit words as the low then the high half of its
    64-bit outputs (keeping an unused high half for the next 32-bit request).  So the draws are the
    little-endian bytes of consecutive 64-bit outputs: the C++ core computes them four streams at a
    time (:func:`_pcg64_fill`), else a full-range uint64 draw returns them.  Another bit generator
    (or a big-endian host) takes the plain call.
    """
    dtype = np.uint8 if nbytes == 1 else np.uint16
    n = int(np.prod(shape, dtype=np.int64))
    bg = rng.bit_generator
    if n == 0 or not isinstance(bg, np.random.PCG64) or sys.byteorder != "little":
        return rng.integers(0, 1 << (8 * nbytes), size=shape, dtype=dtype)
    words = -(-n * nbytes // 4)  # the 32-bit words numpy's fill would take
    fill = _pcg64_fill() if USE_CORE_RNG else None
    if fill is not None:
        return _uniform_core(fill, bg, words, n * nbytes).view(dtype).reshape(shape)
    parts = []
    if bg.state["has_uint32"]:  # the buffered high half comes first
        parts.append(rng.integers(0, 1 << 32, size=1, dtype=np.uint32))
        words -= 1
    parts.append(rng.integers(0, 1 << 64, size=words // 2, dtype=np.uint64))
    if words % 2:
        parts.append(rng.integers(0, 1 << 32, size=1, dtype=np.uint32))
    raw = parts[0].view(np.uint8) if len(parts) == 1 else np.concatenate([p.view(np.uint8) for p in parts])
    return raw[: n * nbytes].view(dtype).reshape(shape)


def _uniform_core(fill, bg, words: int, size: int) -> np.ndarray:
    """``words`` 32-bit words of ``bg`` (a PCG64) as ``size`` bytes, from the C++ stream; the
    generator's state (including a buffered half word) is updated as numpy would."""
    st = bg.state
    state, inc = st["state"]["state"], st["state"]["inc"]
    buf = np.empty(4 * words + 8, np.uint8)
    off = 0
    if st["has_uint32"]:  # the buffered high half comes first
        buf[:4] = np.array([st["uinteger"]], "<u4").view(np.uint8)
        words, off = words - 1, 4
    outputs = -(-words // 2)  # an odd count takes the low half of one more output
    lo64 = (1 << 64) - 1
    hi, lo = fill(buf, off, outputs, state >> 64, state & lo64, inc >> 64, inc & lo64)
    new = dict(st, state={"state": (hi << 64) | lo, "inc": inc}, has_uint32=0)
    if words % 2:  # its high half stays buffered for the next 32-bit request
        new.update(has_uint32=1, uinteger=int(buf[off + 8 * outputs - 4 : off + 8 * outputs].view("<u4")[0]))
    bg.state = new
    return buf[:size]


def fix_count(packed: np.ndarray, cols: int, target: int, rng: np.random.Generator) -> np.ndarray:
    """Flip uniformly chosen weights of ``packed`` (in place) until exactly ``target`` are kept.

    Clears kept weights when there are too many, sets pruned ones when too few; the positions are a
    uniform random subset of the eligible weights (rejection sampling on flat indices — the
    correction is ~sqrt(rows*cols) flips for a Bernoulli mask — with an exact fallback).
    """
    rows = packed.shape[0]
    total = rows * cols
    flat = packed.reshape(-1)
    nb = packed.shape[1]
    kept = popcount(packed)  # kept up to date below: every flip changes it by exactly one
    need = target - kept
    want_bit = 0 if need > 0 else 1  # the value of the weights eligible for a flip
    need = abs(need)
    for _ in range(64):
        if need == 0:
            return packed
        eligible = total - kept if want_bit == 0 else kept
        if eligible < need:
            raise AssertionError("fix_count: not enough eligible weights")  # cannot happen: 0 <= target <= total
        if eligible < 4 * need or eligible < 4096:
            break  # scarce: exact fallback below
        draw = rng.integers(0, total, size=min(total, int(need * total / eligible * 1.3) + 64))
        idx = np.sort(draw)
        idx = idx[np.concatenate(([True], idx[1:] != idx[:-1]))]  # = np.unique(draw), without its hash table
        byte = (idx // cols) * nb + (idx % cols) // 8
        bit = (idx % cols) % 8
        ok = ((flat[byte] >> bit.astype(np.uint8)) & 1) == want_bit
        idx, byte, bit = idx[ok], byte[ok], bit[ok]
        if len(idx) > need:
            pick = np.sort(rng.choice(len(idx), size=need, replace=False))
            byte, bit = byte[pick], bit[pick]
        _flip(flat, byte, bit, want_bit)  # distinct weights (idx is unique), each of value want_bit
        need -= len(byte)
        kept += len(byte) if want_bit == 0 else -len(byte)
    if need:
        keep = np.unpackbits(packed, axis=1, count=cols, bitorder="little").reshape(-1)
        cand = np.flatnonzero(keep == want_bit)
        idx = np.sort(rng.choice(len(cand), size=need, replace=False))
        keep[cand[idx]] = 1 - want_bit
        packed[:] = np.packbits(keep.reshape(rows, cols), axis=1, bitorder="little")
    return packed


def _flip(flat: np.ndarray, byte: np.ndarray, bit: np.ndarray, was: int) -> None:
    values = (np.uint8(1) << bit.astype(np.uint8)).astype(np.uint8)
    if was == 0:
        np.bitwise_or.at(flat, byte, values)
    else:
        np.bitwise_and.at(flat, byte, ~values)


# ---------------------------------------------------------------------------- generators
def gen_unstructured(rows: int, cols: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """I.i.d. keep mask with exactly ``target_kept(rows, cols, density)`` kept weights.

    Bernoulli(q/256), q = round(256*density), by the binary expansion of q (walking q's bits from
    least to most significant, x := x | r for a 1 bit and x := x & r for a 0 bit, r fresh uniform
    bytes: one random byte per 8 weights for density 0.5), then :func:`fix_count`.
    """
    nb = (cols + 7) // 8
    if density >= 1.0:
        return _clear_pad(np.full((rows, nb), 0xFF, np.uint8), cols)
    if density <= 0.0:
        return np.zeros((rows, nb), np.uint8)
    q = min(255, max(1, int(round(density * 256))))
    low = (q & -q).bit_length() - 1  # trailing zero bits leave x = 0: skip them
    x = uniform_ints(rng, (rows, nb), 1)  # bit `low` of q is 1: x = 0 | r
    for bit in range(low + 1, 8):
        r = uniform_ints(rng, (rows, nb), 1)
        if (q >> bit) & 1:
            np.bitwise_or(x, r, out=x)
        else:
            np.bitwise_and(x, r, out=x)
    return fix_count(_clear_pad(x, cols), cols, target_kept(rows, cols, density), rng)


def gen_nm(rows: int, cols: int, n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``n`` kept in every group of ``m`` consecutive input features (N:M = N KEPT of M);
    a ragged last group of width w keeps round(n*w/m), so the sparsity stays 1 - n/m where it can."""
    if not 1 <= n <= m:
        raise UserError(f"n:m pattern needs 1 <= n <= m, got {n}:{m}")
    nb = (cols + 7) // 8
    if 8 % m == 0 and cols % 8 == 0:
        patterns = np.array([sum(1 << i for i in c) for c in combinations(range(m), n)], np.uint8)
        per_byte = 8 // m
        idx = rng.integers(0, len(patterns), size=(rows, nb, per_byte), dtype=np.uint8)
        bits = patterns[idx]  # (rows, nb, per_byte): group g of byte b covers bits g*m..g*m+m-1
        out = np.zeros((rows, nb), np.uint8)
        for g in range(per_byte):
            out |= bits[:, :, g] << np.uint8(g * m)
        return out
    # generic path (odd m or ragged width): one random permutation rank per group
    groups = -(-cols // m)
    keys = rng.random((rows, groups, m))
    width = np.minimum(m, cols - np.arange(groups) * m)
    quota = np.where(width == m, n, np.round(n * width / m)).astype(np.int64)  # (groups,)
    keys = np.where(np.arange(m)[None, None, :] >= width[None, :, None], np.inf, keys)  # (rows, groups, m)
    rank = keys.argsort(axis=2).argsort(axis=2)
    keep = (rank < quota[None, :, None]).reshape(rows, groups * m)[:, :cols]
    return np.packbits(keep, axis=1, bitorder="little")


def solve_scale(row_w: np.ndarray | None, col_w: np.ndarray, density: float) -> float:
    """``t`` with mean over (i, j) of ``min(1, t * row_w[i] * col_w[j])`` = ``density`` (bisection).

    The mean for one row is exact in O(log cols): with ``col_w`` sorted and prefix-summed, the
    columns below ``1 / (t * row_w[i])`` contribute ``t * row_w[i] * c_j`` and the rest 1.
    ``row_w`` None = all rows weight 1.  Weights are >= 0; if the positive ones cannot reach
    ``density`` even at saturation, the largest useful ``t`` is returned (the count fix-up fills in).
    """
    c = np.sort(np.asarray(col_w, np.float64))
    prefix = np.concatenate([[0.0], np.cumsum(c)])
    r = np.ones(1) if row_w is None else np.asarray(row_w, np.float64)
    cols = len(c)

    def mean(t: float) -> float:
        tr = t * r
        with np.errstate(divide="ignore"):
            j = np.searchsorted(c, np.where(tr > 0, 1.0 / tr, np.inf), side="left")
        return float(np.mean(tr * prefix[j] + (cols - j))) / cols

    if density <= 0.0:
        return 0.0
    lo, hi = 0.0, 1.0
    while mean(hi) < density and hi < 1e12:
        lo, hi = hi, hi * 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean(mid) < density else (lo, mid)
    return hi


def row_quota(row_w: np.ndarray, col_w: np.ndarray, t: float, total: int) -> np.ndarray:
    """Kept weights per row: the expected counts ``sum_j min(1, t * row_w[i] * col_w[j])`` rounded
    by largest remainders so they sum to exactly ``total`` (each within [0, cols])."""
    c = np.sort(np.asarray(col_w, np.float64))
    prefix = np.concatenate([[0.0], np.cumsum(c)])
    tr = t * np.asarray(row_w, np.float64)
    with np.errstate(divide="ignore"):
        j = np.searchsorted(c, np.where(tr > 0, 1.0 / tr, np.inf), side="left")
    expect = np.clip(tr * prefix[j] + (len(c) - j), 0.0, len(c))
    quota = np.floor(expect).astype(np.int64)
    short = total - int(quota.sum())
    room = quota < len(c)
    order = np.argsort(-(expect - quota) + np.where(room, 0.0, 2.0), kind="stable")  # rows with room first
    if short > 0:
        quota[order[:short]] += 1
    elif short < 0:
        quota[np.argsort(expect - quota, kind="stable")[:-short]] -= 1
    return np.clip(quota, 0, len(c))


def _fix_rows(keep: np.ndarray, quota: np.ndarray, rng: np.random.Generator) -> None:
    """Make row i of the bool ``keep`` hold exactly ``quota[i]`` kept weights (uniform flips)."""
    diff = quota - keep.sum(1)
    for i in np.flatnonzero(diff):
        d = int(diff[i])
        cand = np.flatnonzero(~keep[i] if d > 0 else keep[i])
        keep[i, cand[rng.choice(len(cand), size=abs(d), replace=False)]] = d > 0


def gen_profile(rows: int, cols: int, density: float, row_w: np.ndarray | None, col_w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Weight (i, j) kept with probability ``min(1, t * row_w[i] * col_w[j])`` (``t`` from
    :func:`solve_scale`, so the expected density is ``density``), then exactly
    ``target_kept(rows, cols, density)`` kept: with ``row_w`` every row is corrected to its
    :func:`row_quota` (so a source with equal rows, like Wanda's, stays equal), without it the
    whole mask by :func:`fix_count`."""
    t = solve_scale(row_w, col_w, density)
    # probabilities as thresholds on 16-bit uniform draws (p resolution 2^-16; the exact count is
    # restored below): 2 random bytes per weight instead of an 8-byte double, ~10x faster
    c = (t * 65536.0 * np.asarray(col_w, np.float64)).astype(np.float32)
    r = None if row_w is None else np.asarray(row_w, np.float32)
    quota = None if row_w is None else row_quota(r, col_w, t, target_kept(rows, cols, density))
    out = np.empty((rows, (cols + 7) // 8), np.uint8)
    step = max(1, (1 << 22) // max(cols, 1))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        thr = c[None, :] if r is None else r[r0:r1, None] * c[None, :]  # (chunk | 1, cols): P(keep) * 65536
        keep = uniform_ints(rng, (r1 - r0, cols), 2) < thr
        if quota is not None:
            _fix_rows(keep, quota[r0:r1], rng)
        out[r0:r1] = np.packbits(keep, axis=1, bitorder="little")
    return out if quota is not None else fix_count(out, cols, target_kept(rows, cols, density), rng)


def gen_skewed(rows: int, cols: int, density: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Column j kept with probability ``min(1, t * w_j)``, ``w_j ~ LogNormal(0, sigma)``: see the
    module docstring for what ``sigma`` means; exactly ``target_kept`` kept."""
    w = rng.lognormal(0.0, sigma, size=cols)
    return gen_profile(rows, cols, density, None, w, rng)


# ---------------------------------------------------------------------------- like=MASKS_FILE
@dataclass(frozen=True)
class SourceLayer:
    """Row and column keep densities of one layer of a real masks file (``rows`` / ``cols`` long)."""

    name: str
    proj: str
    block: int
    density: float
    row_density: np.ndarray  # (rows,) kept fraction of each output row
    col_density: np.ndarray  # (cols,) kept fraction of each input column


def resample(profile: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` values with the empirical distribution of ``profile`` in random order: stratified
    quantiles ``(perm(length) + U) / length`` of the sorted profile (linear interpolation), so a
    profile keeps its shape (mean, spread, a few near-dense columns) at any width."""
    src = np.sort(np.asarray(profile, np.float64))
    u = (rng.permutation(length) + rng.random(length)) / length
    return np.interp(u * (len(src) - 1), np.arange(len(src)), src) if len(src) > 1 else np.full(length, src[0])


class LikeProfiles:
    """Per-projection profiles of a real masks file, to imitate it at any model shape.

    A target layer (projection p, the k-th of K layers of p) takes the source layer of p at the same
    relative depth (index ``floor(k * K_src / K)`` of the source's p layers in block order; a
    projection the source lacks, e.g. an ``MxK`` matrix, uses all source layers); its row and
    column density profiles are :func:`resample`-d to the target's rows and columns and used as the
    weights of :func:`gen_profile` at the source layer's density (times ``scale``).
    """

    def __init__(self, path: str | Path):
        p = Path(path)
        if p.is_dir():
            p = p / "masks.safetensors"
        if not p.is_file():
            raise UserError(f"like={path}: masks file not found")
        packed, shapes, _ = read_masks_packed(p)
        layers = []
        for name, (rows, cols) in shapes.items():
            proj, block = _proj_and_block(name)
            rc = np.asarray(stats.row_counts(packed[name]), np.float64)
            cc = np.asarray(stats.col_counts(packed[name], cols), np.float64)
            layers.append(SourceLayer(name, proj, block, float(rc.sum()) / (rows * cols), rc / cols, cc / rows))
        if not layers:
            raise UserError(f"like={path}: the masks file holds no layers")
        self.path = str(path)
        self.layers = sorted(layers, key=lambda l: (l.block, l.name))
        n = sum(len(l.row_density) * len(l.col_density) for l in self.layers)
        self.sparsity = 1.0 - sum(l.density * len(l.row_density) * len(l.col_density) for l in self.layers) / n

    def source_for(self, proj: str, k: int, count: int) -> SourceLayer:
        cands = [l for l in self.layers if l.proj == proj] or self.layers
        return cands[min(len(cands) - 1, k * len(cands) // max(count, 1))]


def _proj_and_block(name: str) -> tuple[str, int]:
    proj = name.rsplit(".", 1)[-1]
    m = re.search(r"layers\.(\d+)\.", name)
    return proj, int(m.group(1)) if m else -1


def like_generators(profiles: LikeProfiles, shapes: Sequence[tuple[str, int, int, str, int]], sparsity: float | None) -> list[Generator]:
    """One generator per ``(name, rows, cols, proj, block)`` of ``shapes`` imitating ``profiles``.

    ``sparsity`` None: each layer takes its source layer's density.  Otherwise every density is
    multiplied by one factor (bisection, densities capped at 1) so the parameter-weighted sparsity
    of ``shapes`` is ``sparsity``."""
    counts: dict[str, int] = {}
    slots = []
    for _name, rows, cols, proj, _block in shapes:
        slots.append((rows, cols, proj, counts.get(proj, 0)))
        counts[proj] = counts.get(proj, 0) + 1
    srcs = [profiles.source_for(proj, k, counts[proj]) for _r, _c, proj, k in slots]
    dens = np.array([s.density for s in srcs])
    if sparsity is not None:
        sizes = np.array([r * c for r, c, _p, _k in slots], np.float64)
        goal = 1.0 - sparsity
        lo, hi = 0.0, 1.0 / max(dens[dens > 0].min(initial=1.0), 1e-12)  # hi: every layer saturated
        if goal > 0 and (dens > 0).any():
            for _ in range(100):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if (np.minimum(1.0, dens * mid) * sizes).sum() / sizes.sum() < goal else (lo, mid)
            dens = np.minimum(1.0, dens * hi)
        else:
            dens = np.full_like(dens, goal)

    def make(src: SourceLayer, d: float) -> Generator:
        def gen(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
            rw = resample(src.row_density, rows, rng)
            cw = resample(src.col_density, cols, rng)
            return gen_profile(rows, cols, float(d), rw, cw, rng)

        return gen

    return [make(s, d) for s, d in zip(srcs, dens)]


# ---------------------------------------------------------------------------- spec parsing
def _refuse_old(kind: str, arg: str) -> None:
    """The pre-convention spelling ``unstructured=D`` / ``random=D`` gave the DENSITY kept: refuse it
    (no silent reinterpretation) and name the new spelling."""
    try:
        hint = f"sparsity={1.0 - float(arg):g}"
    except ValueError:
        hint = "sparsity=S"
    raise UserError(f"synthetic pattern {kind}={arg}: the density spelling was removed; write {hint} (S = fraction of weights pruned)")


def _fraction(text: str) -> float:
    try:
        return check_measured(float(text))
    except UserError:
        raise ValueError from None  # the caller names the whole pattern


def _p_sparsity(arg: str):
    s = _fraction(arg)
    return lambda r, c, g: gen_unstructured(r, c, 1.0 - s, g)


def _p_nm(arg: str):
    n, m = parse_nm(arg, f"synthetic pattern nm={arg}")
    if m > 1024:  # the generic generator draws rows x groups x M floats: bound M like the hardware's nm_m
        raise UserError(f"synthetic pattern nm={arg}: M must be <= 1024")
    return lambda r, c, g: gen_nm(r, c, n, m, g)


def _p_skewed(arg: str):
    sp_s, _, sg_s = arg.partition("/")
    sp, sg = _fraction(sp_s), float(sg_s) if sg_s else DEFAULT_SIGMA
    if not 0.0 <= sg <= 16.0:  # beyond ~16 exp(sigma * z) overflows float64 and the weights become NaN
        raise ValueError
    return lambda r, c, g: gen_skewed(r, c, 1.0 - sp, sg, g)


def _p_dense(arg: str):
    if arg:
        raise ValueError
    return lambda r, c, g: gen_unstructured(r, c, 1.0, g)


# kind -> parser of the argument: returns one generator for every layer
PATTERNS: dict[str, Callable[[str], Generator]] = {
    "sparsity": _p_sparsity,
    "nm": _p_nm,
    "skewed": _p_skewed,
    "dense": _p_dense,
}


def parse_pattern(text: str, shapes: Sequence[tuple[str, int, int, str, int]]) -> list[Generator]:
    """One generator per layer of ``shapes`` for the pattern ``text`` (see the module docstring)."""
    kind, _, arg = text.partition("=")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind in ("unstructured", "random"):
        _refuse_old(kind, arg)
    if kind == "like":
        path, _, s = arg.rpartition("@") if "@" in arg else (arg, "", "")
        try:
            sparsity = _fraction(s) if s else None
        except ValueError:
            raise UserError(f"synthetic pattern {text!r}: like=MASKS_FILE[@S] needs S in [0, 1]") from None
        return like_generators(LikeProfiles(path), shapes, sparsity)
    try:
        gen = PATTERNS[kind](arg)
    except UserError:
        raise
    except (KeyError, ValueError, TypeError):
        raise UserError(f"synthetic pattern {text!r} not understood ({PATTERN_HELP})") from None
    return [gen] * len(shapes)
