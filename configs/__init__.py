"""Shipped configuration files, installed as the package ``besa_configs`` (see setup.py).

    hw/*.toml           hardware presets (``besa simulate --hw NAME``)
    experiments/*.toml  experiments (``besa run`` runs ``default.toml`` when given no file)
    sweeps/*.toml       example what-if sweeps (``besa sweep``)

Code finds these files through :func:`besa_common.resources.config_dir` only.
"""
