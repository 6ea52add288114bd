"""Workloads shared by every worker: masks generated (or read) ONCE per sweep, not per worker or point.

A LLaMA-7B mask set is ~0.8 GB packed and a synthetic one takes tens of seconds to generate, so
it must not be rebuilt by each worker.  Before the points run, the driver materialises each
workload into one flat file, ``OUT/.workloads/<key>.bin`` (the packed masks of every layer, each at
a 64-byte aligned offset) with its index ``<key>.json`` (written last: the completion marker).
Synthetic layers are generated in parallel by the workers themselves, each writing its layers at
their offsets.  Workers then map the file read-only: every worker process shares the same page
cache pages, so N workers cost one copy of the masks in memory and no generation at all.

A worker that cannot see the file (a remote ``--scheduler`` on another machine) builds the workload
itself, once per process (:mod:`simulator.sweep.worker`).  The folder is removed at the end of the
sweep; a killed sweep leaves it for the next run to reuse.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from besa_common.errors import UserError
from besa_common.fileio import atomic_write_json, temp_prefix
from simulator import workload as simwl

CACHE_DIR = ".workloads"
_ALIGN = 64
_FORMAT = "besa-sweep-workload"


def cache_dir(out: str | os.PathLike) -> Path:
    return Path(out) / CACHE_DIR


def build_layers(synthetic: str | None, masks_path: str | None, seed: int) -> list:
    """The simulator workload (list of LayerWorkload) of one sweep workload, masks not yet loaded."""
    return simwl.from_masks(masks_path) if masks_path else simwl.synthetic(synthetic, seed)


def _layout(layers) -> tuple[list[dict[str, Any]], int]:
    index, offset = [], 0
    for lw in layers:
        nbytes = lw.rows * ((lw.cols + 7) // 8)
        index.append({"name": lw.name, "rows": lw.rows, "cols": lw.cols, "proj": lw.proj, "block": lw.block, "offset": offset})
        offset += -(-nbytes // _ALIGN) * _ALIGN
    return index, offset


def fill_layers(path: str, synthetic: str | None, masks_path: str | None, seed: int, which: list[int]) -> int:
    """Generate / read layers ``which`` of a workload and write them at their offsets in ``path``
    (runs on a worker for synthetic workloads; several workers fill disjoint layers).  Returns bytes."""
    layers = build_layers(synthetic, masks_path, seed)
    index, total = _layout(layers)
    mm = np.memmap(path, dtype=np.uint8, mode="r+", shape=(total,))
    n = 0
    try:
        for i in which:
            packed = layers[i].load()
            e = index[i]
            mm[e["offset"] : e["offset"] + packed.size] = packed.reshape(-1)
            n += packed.size
        mm.flush()
    finally:
        del mm
    return n


def materialize(cache: str | os.PathLike, key: str, synthetic: str | None, masks_path: str | None, seed: int, client=None, parts: int = 1) -> Path:
    """Make ``CACHE/<key>.bin`` + ``.json`` exist (reused when a previous run finished them).

    With a Dask ``client``, synthetic layers are generated on the workers in ``parts`` tasks (in
    this process when they cannot write the file: a remote cluster).  The data file is written
    under a temporary name carrying this process's pid and renamed when complete; the index is
    written last, so a half-made cache is never used.
    """
    d = Path(cache)
    idx_path, bin_path = d / f"{key}.json", d / f"{key}.bin"
    if idx_path.is_file() and bin_path.is_file():
        return idx_path
    d.mkdir(parents=True, exist_ok=True)
    layers = build_layers(synthetic, masks_path, seed)
    index, total = _layout(layers)
    tmp = d / f"{temp_prefix(key + '.bin')}tmp"  # pid-tagged: only a dead writer's is ever cleaned
    with open(tmp, "wb") as fh:
        fh.truncate(max(total, 1))
    filled = False
    if client is not None and synthetic is not None and parts > 1 and len(layers) > 1:
        groups = [list(range(len(layers)))[i::parts] for i in range(parts)]
        try:
            client.gather([client.submit(fill_layers, str(tmp), synthetic, None, seed, g, pure=False) for g in groups if g])
            filled = True
        except (OSError, ValueError):  # workers that cannot see this folder: generate here instead
            pass
    if not filled:
        fill_layers(str(tmp), synthetic, masks_path, seed, list(range(len(layers))))
    os.replace(tmp, bin_path)
    atomic_write_json(idx_path, {"format": _FORMAT, "bytes": total, "layers": index})
    return idx_path


def open_shared(idx_path: str | os.PathLike) -> list | None:
    """The workload of a materialised cache, its masks mapped read-only from the shared file; None
    when the cache is not there (the caller builds the workload itself)."""
    idx_path = Path(idx_path)
    bin_path = idx_path.with_suffix(".bin")
    try:
        index = json.loads(idx_path.read_text())
        fh = open(bin_path, "rb")
    except (OSError, ValueError):
        return None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if index.get("format") != _FORMAT or size < index["bytes"]:
            raise UserError(f"{bin_path}: incomplete shared workload (remove {idx_path.parent} and rerun)")
        buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the file is closed
    out = []
    for e in index["layers"]:
        nb = (e["cols"] + 7) // 8
        arr = np.frombuffer(buf, dtype=np.uint8, count=e["rows"] * nb, offset=e["offset"]).reshape(e["rows"], nb)
        out.append(simwl.LayerWorkload(e["name"], e["rows"], e["cols"], e["proj"], e["block"], (lambda a=arr: a)))
    return out


def remove_cache(out: str | os.PathLike) -> None:
    shutil.rmtree(cache_dir(out), ignore_errors=True)
