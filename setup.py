"""Build and install the toolkit: the Python packages and the simulator's C++ core (pybind11).

The C++ sources live in ``cpp/`` (pure C++17, no Python) plus ONE bindings file,
``cpp/bindings.cpp``, which builds the private module ``simulator._core``.

Dependencies: ``install_requires`` is what the simulator, the reports and the sweep files need
(no torch).  Each other job is an extra, named in the one-line message a command prints when its
extra is missing (``besa prune needs: pip install 'besa-toolkit[prune]'``; the map lives in
``besa/cli.py``).  Bounds here are loose; the exact versions CI and ``scripts/setup.sh`` install
are pinned in ``requirements.txt`` (a lock file; ``scripts/lock.sh`` regenerates it).
"""

from glob import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import find_packages, setup

sources = sorted(glob("cpp/*.cpp"))
ext_modules = []
if sources:
    ext_modules.append(
        Pybind11Extension(
            "simulator._core",
            sources,
            include_dirs=["cpp"],
            cxx_std=17,
            extra_compile_args=["-O3"],
        )
    )

# The top-level packages (tests/ and bench/ are not installed).
STAGES = ("besa", "besa_common", "pruning", "simulator", "reports")

CORE = [
    "numpy>=1.26",
    "safetensors>=0.4",
    "numba>=0.59",
    "pandas>=2.1",
    "matplotlib>=3.8",
    "scipy>=1.11",
    "tqdm>=4.66",
    "pyarrow>=14",
    "filelock>=4.3.1",  # retries when a held lock file is unlinked (fileio.dir_lock removes it)
    "gguf>=0.10",  # numpy-only GGUF reader: model shapes from .gguf metadata (simulator.modelcfg)
]
EXTRAS = {
    # torch: install the build you want FIRST (scripts/setup.sh: torch==2.13.0, the CPU build); a bare
    # requirement resolved by pip alone may pull a multi-GB CUDA build.
    "prune": [
        "torch>=2.2",
        "transformers>=4.45",
        "tokenizers>=0.19",
        "huggingface_hub>=0.23",
        "datasets>=2.18",
        "accelerate>=0.30",
        "prodigyopt>=1.0",
        "gensim>=4.3",
    ],
    "zeroshot": ["lm_eval>=0.4.5"],
    "export": ["compressed-tensors>=0.9"],
    "sweep": ["dask>=2024.1", "distributed>=2024.1", "bokeh>=3.1"],
    "notebooks": ["nbformat>=5.9", "nbclient>=0.10", "ipykernel>=6.29"],
    # selenium drives Debian's chromium (apt-get install chromium chromium-driver) in the report's browser test
    "dev": ["pytest>=8.0", "hypothesis>=6.100", "nbformat>=5.9", "nbclient>=0.10", "ipykernel>=6.29", "ruff>=0.6", "selenium>=4.20"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="besa-toolkit",
    version="0.1.0",
    description="Prune LLaMA-family models with BESA and baselines; simulate them on a sparse accelerator.",
    packages=find_packages(include=[f"{top}{sub}" for top in STAGES for sub in ("", ".*")]) + ["besa_configs"],
    # configs/ (hardware presets, experiments, sweeps) is installed as the package besa_configs;
    # besa_common.resources is the one place that finds it.
    package_dir={"besa_configs": "configs"},
    package_data={
        "besa_configs": ["hw/*.toml", "experiments/*.toml", "sweeps/*.toml"],
        "simulator": ["_core.pyi", "models/*.json"],
        "pruning": ["tasks/fixtures/*.md", "tasks/fixtures/*/*", "tasks/hellaswag/*"],
    },
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.11",
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["besa=besa.cli:main"]},
)
