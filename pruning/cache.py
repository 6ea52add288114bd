"""Where pruning keeps what it makes once per machine: converted models, extracted corpora, downloads."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$BESA_CACHE`` or ``~/.cache/besa``: converted models, extracted corpora, downloads."""
    env = os.environ.get("BESA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "besa"
