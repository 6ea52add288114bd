"""Digests: ONE definition of "the same inputs" for resume checks, point ids and file identity.

* :func:`json_digest` — hex digest of a JSON-able value, canonicalised (keys sorted, anything not
  JSON-native written with ``str``).  ``besa run`` keys a finished step on it, ``besa sweep`` its
  point ids, the block driver its checkpoints.  The algorithm and length are each caller's recorded
  format: changing them would make every finished step or point look new, so they are parameters.
* :func:`file_sha256` — hex SHA-256 of a file's bytes (the updated-weights file is tied to its masks
  file by it).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def canonical_json(obj: Any) -> str:
    """The one serialisation digests are taken of: ``json.dumps(obj, sort_keys=True, default=str)``."""
    return json.dumps(obj, sort_keys=True, default=str)


def json_digest(obj: Any, algorithm: str = "sha256", length: int | None = None) -> str:
    """Hex digest (``algorithm`` of :mod:`hashlib`) of :func:`canonical_json` of ``obj``, cut to ``length`` characters."""
    h = hashlib.new(algorithm, canonical_json(obj).encode())
    return h.hexdigest()[:length] if length else h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
