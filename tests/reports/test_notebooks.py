"""Execute the notebooks with nbclient on small settings (they are stored output-free)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

NB = Path(__file__).resolve().parents[2] / "notebooks"


def _execute(name: str, env: dict[str, str], cwd: Path, timeout: int = 600):
    from nbclient import NotebookClient

    nb = nbformat.read(NB / name, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


@pytest.mark.parametrize("name", ["quickstart.ipynb", "whatif.ipynb"])
def test_notebooks_are_stored_without_outputs(name):
    nb = nbformat.read(NB / name, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_whatif_notebook_runs(tmp_path):
    pytest.importorskip("simulator.run", reason="the simulator's run API is not in this checkout yet")
    nb = _execute("whatif.ipynb", {"BESA_NB_OUT": str(tmp_path / "sweep"), "BESA_NB_SHAPE": "smollm2-135m[2]", "BESA_NB_WORKERS": "1"}, tmp_path)
    assert (tmp_path / "sweep" / "results.parquet").is_file()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the heatmaps were not drawn"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    pytest.importorskip("simulator.run", reason="the simulator's run API is not in this checkout yet")
    out = tmp_path / "qs"
    nb = _execute(
        "quickstart.ipynb", {"BESA_NB_OUT": str(out), "BESA_NB_NSAMPLES": "4", "BESA_NB_SEQLEN": "64", "BESA_NB_EVAL_WINDOWS": "2"}, tmp_path, timeout=900
    )
    assert (out / "report.html").is_file() and (out / "besa-s50" / "sim" / "vitcod-cycle" / "layers.csv").is_file()
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images
