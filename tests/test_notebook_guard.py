"""nbval, configured as `make test` configures it, catches a stale or edited notebook.

A small notebook is executed, committed to a temporary folder, then tampered with in the two
ways the foundation issue names: a printed number changed, an output removed. nbval must pass
the untouched copy and fail both tampered ones. The options are the project's own (read from
pyproject.toml), so this checks the configuration CI actually uses.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    "import numpy as np\nrng = np.random.default_rng(0)\nprint(f'mean = {rng.normal(size=1000).mean():.4f}')",
    "print('class counts:', [4000, 3700, 100])",
]


def _nbval(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-c", str(ROOT / "pyproject.toml"),
         "--rootdir", str(ROOT), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def _write(nb: nbformat.NotebookNode, folder: Path, name: str) -> Path:
    path = folder / name
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_untouched_notebook_passes(executed, tmp_path):
    result = _nbval(_write(executed, tmp_path, "pristine.ipynb"))
    assert result.returncode == 0, result.stdout[-2000:]
    assert "2 passed" in result.stdout


@pytest.mark.slow
def test_changed_number_fails(executed, tmp_path):
    nb = nbformat.from_dict(executed)
    stream = nb.cells[0].outputs[0]
    assert stream.text.startswith("mean = ")
    digits = stream.text.strip()[-1]
    stream.text = stream.text.strip()[:-1] + str((int(digits) + 1) % 10) + "\n"
    result = _nbval(_write(nb, tmp_path, "edited.ipynb"))
    assert result.returncode != 0
    assert "1 failed" in result.stdout


@pytest.mark.slow
def test_removed_output_fails(executed, tmp_path):
    nb = nbformat.from_dict(executed)
    nb.cells[1].outputs = []
    result = _nbval(_write(nb, tmp_path, "stripped.ipynb"))
    assert result.returncode != 0
    assert "1 failed" in result.stdout
