"""Pruning methods.  Importing this package fills the registry :data:`pruning.methods.base.METHODS`.

Adding a method = one module with a ``@register("name")`` class + one import line below; the
driver and the CLI never change.
"""

from pruning.methods import besa, magnitude, owl, sparsegpt, wanda  # noqa: F401  (registration side effects)
