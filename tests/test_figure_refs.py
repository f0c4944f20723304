"""The prose refers to every figure by number: each figure's name appears in a {numref} of its
own chapter's markdown (the book and the PDF then print "Fig. 2.3" with a link).

To be committed as tests/test_figure_refs.py once /work/notes/apply_numrefs.py has been run on
the notebooks (before that, it fails: no figure is referenced).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.layout import notebook_id, notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebooks()
NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`<>]+)>?`")


def _figures_and_refs(path: Path) -> tuple[list[str], set[str]]:
    nb = nbformat.read(path, as_version=4)
    names = [cell.metadata["mystnb"]["figure"]["name"] for cell in nb.cells
             if cell.cell_type == "code"
             and "name" in cell.metadata.get("mystnb", {}).get("figure", {})]
    refs = {match.group(1) for cell in nb.cells if cell.cell_type == "markdown"
            for match in NUMREF.finditer(cell.source)}
    return names, refs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_every_figure_is_referenced_by_number_in_its_chapter(path):
    names, refs = _figures_and_refs(path)
    missing = [name for name in names if name not in refs]
    assert not missing, f"{path.name}: figures no {{numref}} points to: {missing}"


def test_the_book_has_figures_to_refer_to():
    assert sum(len(_figures_and_refs(path)[0]) for path in NOTEBOOKS) >= 1
