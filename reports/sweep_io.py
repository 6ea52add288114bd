"""Find and read sweep outputs (``results.parquet`` / ``results.csv`` written by ``besa sweep``)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd


def is_sweep_dir(path: Path) -> bool:
    return (path / "results.parquet").is_file() or (path / "results.csv").is_file()


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


def read_results(path: Path) -> pd.DataFrame:
    if (path / "results.parquet").is_file():
        from simulator.sweep import read_parquet_once

        return read_parquet_once(path / "results.parquet")
    return pd.read_csv(path / "results.csv", keep_default_na=False, na_values=[""])


def load_sweep_results(paths: Iterable[Path]) -> pd.DataFrame:
    frames = []
    for p in paths:
        df = read_results(Path(p))
        df["sweep"] = Path(p).name
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
