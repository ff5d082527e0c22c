"""Every notebook in notebooks/ executes headless from top to bottom without errors and shows
at least one figure inline: the empirical-NTK tour by default, all six under ``make test-all``
(the others rerun studies that ``ntk-lab verify --quick`` already checks)."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((pathlib.Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


DEFAULT = ("01_empirical_ntk.ipynb",)


@pytest.mark.parametrize("path", [p if p.name in DEFAULT else
                                  pytest.param(p, marks=pytest.mark.slow) for p in NOTEBOOKS],
                         ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no figure"
