"""Type stub of the private C++ core (built from cpp/ by setup.py).  Use simulator.engine instead."""

import numpy as np
import numpy.typing as npt

def cycle_layer(
    rows: int,
    cols: int,
    tokens: int,
    dense_cols: int,
    row_sparse: npt.ArrayLike,
    row_pads: npt.ArrayLike,
    nnz: int,
    hw: dict[str, int | bool],
) -> dict[str, int | str]: ...
def dense_layer(rows: int, cols: int, tokens: int, hw: dict[str, int | bool]) -> dict[str, int | str]: ...
def nm_layer(rows: int, cols: int, tokens: int, group_max: int, hw: dict[str, int | bool]) -> dict[str, int | str]: ...
def max_line_load(costs: npt.NDArray[np.int64], lines: int, lpt: bool) -> int: ...
