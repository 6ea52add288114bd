"""Pruning methods.  Importing this package fills the registry :data:`pruning.methods.base.METHODS`.

Adding a method = one module with a ``@register("name")`` class + one line in
:data:`pruning.method_names.METHOD_MODULES`; the driver and the CLI never change.
"""

import importlib

from pruning.method_names import METHOD_MODULES

for _module in dict.fromkeys(METHOD_MODULES.values()):
    importlib.import_module(_module)  # registration side effect
