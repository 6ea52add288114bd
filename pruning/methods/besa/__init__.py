"""BESA (``--method besa``): importing this package registers the method.

``method.py`` is the lifecycle (statistics, learning, finalise; :class:`Besa`, :class:`BesaConfig`),
``core.py`` BESA's pure tensor functions (ranking, soft masks, candidate sparsities, exact budgets),
``nm.py`` the learned n:m keep patterns.
"""

from pruning.methods.besa.method import (
    EXACT_BUDGETS,
    GRANULARITIES,
    NM_OPTIMISER_DEFAULTS,
    UNSTRUCTURED_OPTIMISER_DEFAULTS,
    Besa,
    BesaConfig,
    kept_per_group,
)

__all__ = ["EXACT_BUDGETS", "GRANULARITIES", "NM_OPTIMISER_DEFAULTS", "UNSTRUCTURED_OPTIMISER_DEFAULTS", "Besa", "BesaConfig", "kept_per_group"]
