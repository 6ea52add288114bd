"""The names of the pruning methods and the module that defines each, WITHOUT importing them.

Importing a method imports torch; validating an experiment file (``besa run``) must not, and must
still know every method name.  This dict is that light registry: :mod:`pruning.methods` imports
the modules listed here (each registers its class in :data:`pruning.methods.base.METHODS` with
``@register(name)``), and the entry layer reads the names.  A test checks that the two agree.

Adding a method = its module in ``pruning/methods/`` + one line here.
"""

from __future__ import annotations

# name -> module that registers it, in the order the CLI and the reports list them.
METHOD_MODULES: dict[str, str] = {
    "magnitude": "pruning.methods.magnitude",
    "wanda": "pruning.methods.wanda",
    "sparsegpt": "pruning.methods.sparsegpt",
    "owl": "pruning.methods.owl",
    "besa": "pruning.methods.besa.method",  # a package: the method with its helpers (core, nm)
}
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_MODULES)
