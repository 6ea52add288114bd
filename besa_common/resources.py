"""Where the shipped configuration files are: ONE lookup for every stage.

The files live in the repository's ``configs/`` folder, which ``setup.py`` installs as the package
``besa_configs`` (``package_dir={"besa_configs": "configs"}``), so a wheel carries them.

* Running from a checkout (a source tree or an editable install: ``setup.py`` sits next to this
  package) -> the checkout's own ``configs/``, so edits there take effect without reinstalling.
* An installed wheel -> ``importlib.resources.files("besa_configs")``.

Packages are installed as plain files on disk (no zip imports), so the result is a real directory.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from besa_common.errors import UserError

KINDS = ("hw", "experiments", "sweeps")


def configs_root() -> Path:
    """The folder holding ``hw/``, ``experiments/`` and ``sweeps/``."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "setup.py").is_file() and (checkout / "configs" / "__init__.py").is_file():
        return checkout / "configs"
    try:
        root = importlib.resources.files("besa_configs")
    except ModuleNotFoundError:
        raise UserError("the shipped configs (package besa_configs) are missing: reinstall besa-toolkit") from None
    return Path(str(root))


def config_dir(kind: str) -> Path:
    """``configs/<kind>/`` for ``kind`` in :data:`KINDS`."""
    if kind not in KINDS:
        raise ValueError(f"unknown config kind {kind!r} (known: {', '.join(KINDS)})")
    return configs_root() / kind


def config_names(kind: str) -> list[str]:
    """Names (file stems) of the shipped ``configs/<kind>/*.toml``, sorted."""
    return sorted(p.stem for p in config_dir(kind).glob("*.toml"))


def config_file(kind: str, name: str) -> Path:
    """``configs/<kind>/<name>.toml`` (the path; it may not exist)."""
    return config_dir(kind) / f"{name}.toml"
