"""The entry layer: the ``besa`` command line and the experiment orchestration (``besa run``,
``besa sweep``, experiment TOML).

This is the only package allowed to import every stage (``pruning``, ``simulator``, ``reports``);
the stages import only downward, into :mod:`besa_common`.
"""

from __future__ import annotations


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("besa-toolkit")
    except Exception:  # running from a checkout that was never installed
        return "0+unknown"


__version__ = _version()
