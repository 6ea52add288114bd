"""Which examples ``--limit N`` evaluates: a fixed, seeded subset, nested across N.

The subset of N rows is the first N entries of ``numpy.random.default_rng(seed).permutation(
n_total)``, returned in ascending row order.  Same ``(n_total, N, seed)`` -> same rows on every
machine (NumPy's PCG64 stream is stable), and the subset of N lies inside the subset of N' > N, so
runs at growing N stay comparable.  Torch-free.
"""

from __future__ import annotations

import numpy as np

from besa_common.errors import UserError

SUBSET_SEED = 0  # default seed of --limit subsets (besa eval --zs-seed)


def subset_ids(n_total: int, limit: int | None, seed: int = SUBSET_SEED) -> list[int]:
    """Row indices (ascending) of the seeded ``limit``-subset of ``range(n_total)``; every row when
    ``limit`` is None or >= ``n_total``."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    if limit < 1:
        raise UserError(f"--limit must be >= 1, got {limit}")
    perm = np.random.default_rng(seed).permutation(n_total)
    return sorted(int(i) for i in perm[:limit])
