"""Build and install the toolkit: the Python packages and the simulator's C++ core (pybind11).

The C++ sources live in ``cpp/`` (pure C++17, no Python) plus ONE bindings file,
``cpp/bindings.cpp``, which builds the private module ``simulator._core``.
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

setup(
    name="besa-toolkit",
    version="0.1.0",
    description="Prune LLaMA-family models with BESA and baselines; simulate them on a sparse accelerator.",
    packages=find_packages(include=["besa", "besa.*", "besa_common", "besa_common.*", "pruning*", "simulator*", "reports*"]),
    package_data={"simulator": ["*.pyi", "py.typed"], "pruning": ["data/*.json", "tasks/**/*"], "reports": ["*.css"]},
    include_package_data=True,
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.10",
    # Torch is NOT listed: a bare requirement would pull a multi-GB CUDA build.  Install
    # torch==2.13.0 first (scripts/setup.sh does); exact pins live in requirements.txt.
    install_requires=["numpy", "safetensors", "numba", "tqdm"],
    entry_points={"console_scripts": ["besa=besa.cli:main"]},
)
