"""docs/quickstart.ipynb runs from top to bottom against the library as it is, so it cannot rot: executed here
by a real Jupyter kernel (nbclient) in a temporary folder, then what it promised to write is checked."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs():
    """Outputs would hold this machine's paths and numbers no command re-derives; the test below makes them fresh."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_quickstart_notebook_runs(tmp_path):
    shutil.copytree(ROOT / "recipes", tmp_path / "recipes")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env_path = os.pathsep.join(p for p in [str(ROOT), str(ROOT / "plugins"), os.environ.get("PYTHONPATH", "")] if p)
    os.environ["PYTHONPATH"] = env_path.rstrip(os.pathsep)  # the kernel imports this checkout, as the tests do
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    out = tmp_path / "quickstart-out"
    for name in ("sevens.png", "latent.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert (out / "run" / "checkpoint.safetensors").is_file()
    assert sorted(p.name for p in (out / "exported").iterdir()) == ["model.safetensors", "recipe.yaml", "tokenizers"]
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "torch uses" in text and "coherence/image->label/label" in text
