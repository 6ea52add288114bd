"""The small base every stage imports (and nothing else): errors, atomic file writes and locks,
the masks file format (the contract between pruning and simulator, owned by neither) and the
typed-TOML validator.  No torch, no stage imports.
"""
