"""Find and read sweep outputs: ``results.sqlite`` written by ``besa sweep`` (readable while the
sweep runs), or the ``results.parquet`` / ``results.csv`` exports (older folders, fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from reports.table import short_names
from simulator.sweep.store import is_sweep_dir, read_results

__all__ = ["find_sweeps", "is_sweep_dir", "load_sweeps", "read_results"]


def find_sweeps(paths: Iterable[Path]) -> list[Path]:
    """Sweep folders among ``paths`` and their direct sub-folders (``besa run`` puts its what-if grid in DIR/whatif)."""
    found = []
    for p in paths:
        p = Path(p)
        if is_sweep_dir(p):
            found.append(p)
        elif p.is_dir():
            found += [c for c in sorted(p.iterdir()) if c.is_dir() and is_sweep_dir(c)]
    return found


def load_sweeps(sweeps: list[Path]) -> pd.DataFrame:
    """All sweep results in one frame; column ``sweep`` names each (``experiment/whatif`` when
    several experiments each bring one, so their points never mix)."""
    names = short_names([Path(s).resolve() for s in sweeps])
    frames = []
    for s in sweeps:
        df = read_results(Path(s))
        df["sweep"] = names[Path(s).resolve()]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
