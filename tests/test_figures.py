"""Every figure of the book is a figure: a caption, a name to refer to it by, and alt text.

A chapter's figure is a code cell whose output is a PNG image; myst-nb turns it into a numbered,
captioned figure from the cell's metadata: ``mystnb.figure.caption`` and ``mystnb.figure.name``
(the label ``{numref}`` points to), and ``mystnb.image.alt`` (what a screen reader says). The
notebooks are read with nbformat; nothing is executed.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import nbformat
import pytest

from tests.layout import chapter_of, notebook_id, notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebooks()


@functools.lru_cache(maxsize=None)
def figure_cells(path: Path) -> list[tuple[int, dict]]:
    """(index, cell) of every code cell with a PNG output or figure metadata."""
    nb = nbformat.read(path, as_version=4)
    return [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
            and (any("image/png" in output.get("data", {}) for output in cell.outputs)
                 or "figure" in cell.metadata.get("mystnb", {}))]


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_every_figure_has_caption_name_and_alt_text(path):
    chapter = chapter_of(path)
    problems = []
    for index, cell in figure_cells(path):
        pngs = sum("image/png" in output.get("data", {}) for output in cell.outputs)
        mystnb = cell.metadata.get("mystnb", {})
        figure, image = mystnb.get("figure", {}), mystnb.get("image", {})
        caption, name, alt = (_text(figure.get("caption")), _text(figure.get("name")),
                              _text(image.get("alt")))
        if pngs != 1:
            problems.append(f"cell {index}: {pngs} PNG outputs (a figure has exactly one)")
        if not caption:
            problems.append(f"cell {index}: no mystnb.figure.caption")
        if not re.fullmatch(rf"fig-ch{chapter}-[a-z0-9]+(-[a-z0-9]+)*", name):
            problems.append(f"cell {index}: mystnb.figure.name {name!r} is not "
                            f"fig-ch{chapter}-<words>")
        if not alt:
            problems.append(f"cell {index}: no mystnb.image.alt")
        elif alt == caption:
            problems.append(f"cell {index}: the alt text repeats the caption instead of "
                            "describing the image")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_figure_names_are_unique_across_the_book():
    names = [cell.metadata["mystnb"]["figure"].get("name") for path in NOTEBOOKS
             for _, cell in figure_cells(path)
             if "figure" in cell.metadata.get("mystnb", {})]
    assert names, "no figures found"
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, duplicates
