"""Optional dependencies: which extra of ``besa-toolkit`` provides which import, and the one-line
message a command gives when its extra is missing.

``pip install besa-toolkit`` installs only what the simulator, the reports and the sweep files
need (no torch).  Every other job is an extra (declared in ``setup.py``, same names):

    prune     torch, transformers, gensim ...         besa data / prune / eval / export / run
    zeroshot  lm-eval                                 besa eval --tasks
    export    compressed-tensors                      besa export --format compressed
    sweep     dask, distributed (+ bokeh)             besa sweep on a Dask cluster (--workers 0 runs without)

A command checks with :func:`require` BEFORE it imports anything heavy (``find_spec`` only locates
a module, it does not import it); ``besa/cli.py`` also maps a ``ModuleNotFoundError`` raised later
through :func:`extra_for_module`, so a missing optional package is never a traceback.
"""

from __future__ import annotations

import importlib.util

from besa_common.errors import UserError

DIST = "besa-toolkit"

# extra -> the top-level modules it provides (import names, not distribution names).
EXTRAS: dict[str, tuple[str, ...]] = {
    "prune": ("torch", "transformers", "tokenizers", "huggingface_hub", "datasets", "accelerate", "prodigyopt", "gensim"),
    "zeroshot": ("lm_eval",),
    "export": ("compressed_tensors",),
    "sweep": ("dask", "distributed"),
    "notebooks": ("nbformat", "nbclient", "ipykernel"),
}


class MissingExtra(UserError):
    """An optional dependency is not installed; the message is the whole one-line answer."""


def install_hint(extra: str) -> str:
    return f"pip install '{DIST}[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be found in this environment (nothing is imported)."""
    out = []
    for mod in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):  # a broken half-installed package
            found = False
        if not found:
            out.append(mod)
    return out


def require(command: str, *extras: str) -> None:
    """Raise :class:`MissingExtra` (``besa prune needs: pip install 'besa-toolkit[prune]'``) when a
    module of one of ``extras`` is not installed."""
    for extra in extras:
        if missing_modules(extra):
            raise MissingExtra(f"besa {command} needs: {install_hint(extra)}")


def extra_for_module(name: str | None) -> str | None:
    """The extra that provides module ``name`` (``"torch.nn"`` -> ``"prune"``), or None."""
    top = (name or "").split(".")[0]
    return next((extra for extra, mods in EXTRAS.items() if top in mods), None)
