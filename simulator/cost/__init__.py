"""The cost library: the integer formulas of the machine model, in ONE place.

Both :mod:`simulator.reference` (the readable per-mode specifications, on bool masks) and the fast
path (:mod:`simulator.fast`, the C++ core in ``cpp/model.cpp``) compute a layer's cycles, bits and
energy with these functions; ``cpp/model.cpp`` mirrors them function by function (each C++ function
names its Python twin).  Nothing here reads a mask: the inputs are counts taken from it (kept
entries per column or per row, run-length padding, the gather factor).

* :mod:`~simulator.cost.tiles` — tiles, DRAM traffic per loop order, index bits, memory cycles;
* :mod:`~simulator.cost.partition` — one dense-column set on the dense + sparse engines (lane
  splits, line assignment, the best tiling), the candidate sets, the lower bound;
* :mod:`~simulator.cost.dense` — work that needs no partition: the dense baseline, the n:m engine,
  attention + KV cache, the embedding lookup;
* :mod:`~simulator.cost.energy` — energy by class;
* :mod:`~simulator.cost.compat` — the compute-only models (``besa-compat``'s threshold tries and
  retry loop over column patches, ``corrected``'s lane split).
"""
