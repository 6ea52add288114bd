"""What the search minimises (cost library): ``hw.objective`` over the options the search enumerated.

Every option (a dense-column set, a tiling and the fastest lane split of that tiling) is a point
with its cycles and its energy (:func:`simulator.cost.energy.energy_fj`, integer fJ).  The answer is
the first point in the enumeration order with the smallest key:

* ``cycles`` — among the points within ``objective_tol`` of the fewest cycles (cycles <= limit =
  C* + floor(C* * tol_ppm / 10^6)), the least energy, then the fewest cycles: a near-tie in time is
  decided by energy, so one column cannot flip the energy of an otherwise equal mapping;
* ``energy`` — the least energy, then the fewest cycles;
* ``edp`` — the least energy x cycles, then the fewest cycles.

Each key is monotone in (cycles, energy), which is what lets the fast path skip an option whose
lower bounds of both are already beaten (:mod:`simulator.fast`).
"""

from __future__ import annotations

from simulator.cost.energy import energy_fj
from simulator.hardware import TOL_SCALE, Hardware


def cycle_limit(best_cycles: int, hw: Hardware) -> int:
    """Most cycles a point may take and still count as a tie with ``best_cycles`` (objective cycles)."""
    return best_cycles + best_cycles * hw.tol_ppm // TOL_SCALE


def with_energy(r: dict, hw: Hardware) -> dict:
    """``r`` with its energy by class (``energy``, fJ) added."""
    r["energy"] = energy_fj(r, hw)
    return r


def key(r: dict, hw: Hardware) -> tuple:
    """The point's sort key under ``hw.objective`` (cycles objective: among the points within the limit)."""
    e, c = r["energy"]["total"], r["cycles"]
    return (e * c, c) if hw.objective == "edp" else (e, c)


def select(points: list[dict], hw: Hardware) -> dict:
    """The answer among ``points`` (each with ``cycles`` and ``energy``), in enumeration order: the
    first with the smallest :func:`key` (objective cycles: among those within :func:`cycle_limit`)."""
    if hw.objective == "cycles":
        limit = cycle_limit(min(p["cycles"] for p in points), hw)
        points = [p for p in points if p["cycles"] <= limit]
    return min(points, key=lambda p: key(p, hw))
