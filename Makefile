# The two commands of the README:  make run  (set up + main job)   make test  (set up + tests)
OUT ?= runs/default

.PHONY: setup run test test-fast bench docs
setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/besa run --out $(OUT)

test: setup
	.venv/bin/python -m pytest -q --durations=25

test-fast: setup
	.venv/bin/python -m pytest -q -m "not slow"

bench: setup
	.venv/bin/python bench/sim_speed.py
	.venv/bin/python bench/besa_block.py

# docs/cli.md is generated from the real parsers (tests/test_cli_reference.py fails when it is stale)
docs:
	.venv/bin/python -m besa.clidoc --out docs/cli.md
