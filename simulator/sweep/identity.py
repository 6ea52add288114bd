"""What a sweep point IS: digests of everything that determines its result, never of names.

A point's id (:func:`point_id`) is the digest of

* its machine: the fully RESOLVED :class:`~simulator.hardware.Hardware` (the preset file's contents,
  its ``base`` chain, the grid's overrides, every default) — :func:`machine_id`;
* its workload's CONTENTS — :func:`workload_id`: a masks file's bytes (SHA-256), or a synthetic
  spec with the layer shapes it expands to (so an edited ``config.json`` counts), the SHA-256 of a
  ``like=`` source and the seed;
* the workload's name (the label its rows carry), the mode, the token count, the context and batch
  of the decoder step, and the simulator version (:data:`simulator.run.SIMULATOR_VERSION`).

So a rerun into the same folder recomputes exactly the points whose inputs changed: an edited
preset file, masks file or ``like=`` source gives new ids, everything else is skipped.  File digests
are memoised per process by (path, size, modification time): a LLaMA-7B masks file (~0.8 GB) is
read once per sweep, not once per point.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from besa_common.digest import file_sha256, json_digest
from besa_common.fileio import resolve_path
from simulator.hardware import Hardware
from simulator.run import SIMULATOR_VERSION
from simulator.workload import synthetic_shapes

# Hardware fields that label a machine but do not change a result (left out of its digest).
LABEL_FIELDS = ("name", "description")
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}


def digest(obj: Any, n: int = 16) -> str:
    """sha1 of the canonical JSON of ``obj``, ``n`` hex digits (besa_common.digest; the recorded format)."""
    return json_digest(obj, algorithm="sha1", length=n)


def machine_fields(hw: Hardware) -> dict[str, Any]:
    """The fields of ``hw`` that determine results (all but :data:`LABEL_FIELDS`)."""
    return {k: v for k, v in vars(hw).items() if k not in LABEL_FIELDS}  # every field is a scalar: no deep copy


def machine_id(hw: Hardware) -> str:
    """Digest of the resolved machine: equal for equal machines however they were spelled."""
    return digest(machine_fields(hw))


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (a directory means its ``masks.safetensors``), memoised by
    (path, size, mtime): a file rewritten in place gets a new digest."""
    p = Path(path)
    if p.is_dir():
        p = p / "masks.safetensors"
    st = p.stat()
    key = (str(resolve_path(p)), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        _FILE_DIGESTS[key] = file_sha256(p)
    return _FILE_DIGESTS[key]


_LIKE = re.compile(r"^\s*like\s*=\s*(.*?)(@[^@]*)?\s*$", re.IGNORECASE)


def like_source(synthetic: str) -> str | None:
    """The ``like=`` source path of a synthetic spec, or None."""
    _, _, pattern = synthetic.strip().partition(":")
    m = _LIKE.match(pattern)
    return m.group(1) if m else None


def workload_id(masks: str | None, synthetic: str | None, seed: int) -> str:
    """Digest of a workload's contents (also the key of its shared cache in ``OUT/.workloads``)."""
    if masks is not None:
        return digest({"masks_sha256": file_digest(masks)})
    like = like_source(synthetic)
    ident = {
        "synthetic": synthetic.strip(),
        "shapes": digest(synthetic_shapes(synthetic)),  # what a model name / config.json / .gguf expands to
        "like_sha256": file_digest(like) if like else None,
        "seed": seed,
    }
    return digest(ident)


def point_id(machine: str, workload: str, name: str, mode: str, tokens: int, context: int | None, batch: int) -> str:
    """The definition of a point's id (see the module docstring)."""
    return digest(
        {
            "machine": machine,
            "workload": workload,
            "name": name,
            "mode": mode,
            "tokens": tokens,
            "context": context,
            "batch": batch,
            "simulator": SIMULATOR_VERSION,
        }
    )


def fast_ids(machine: str, workload: str, name: str, mode: str, tokens: tuple[int, ...], context: int | None, batch: int) -> list[str]:
    """:func:`point_id` for every token count, the shared parts serialised once (a test checks it
    equals the definition)."""
    head = (
        f'{{"batch": {json.dumps(batch)}, "context": {json.dumps(context)}, "machine": {json.dumps(machine)}, '
        f'"mode": {json.dumps(mode)}, "name": {json.dumps(name)}, "simulator": {json.dumps(SIMULATOR_VERSION)}, "tokens": '
    )
    tail = f', "workload": {json.dumps(workload)}}}'
    return [hashlib.sha1(f"{head}{json.dumps(t)}{tail}".encode()).hexdigest()[:16] for t in tokens]
