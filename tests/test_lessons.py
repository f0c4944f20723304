"""The second edition's lesson rules (``../shared/lesson.md``), measured on every section notebook.

A chapter in the second edition is a folder of section notebooks (``tests/layout.py``). Each
section, read with nbformat (nothing is executed):

- has at most 3,000 words of prose before its exercises (maths, code and directive options do
  not count);
- shows a result (a figure or a table) within its first 40 % of cells, and only then explains;
- keeps its visible cells to two asserts at most; the rest of the proof sits in ``check`` cells,
  each a Colab form (``cellView: form``) whose first line is ``#@title Check: <the claim>``;
- asks the reader to predict before a cell reveals (a paragraph that starts with **Predict**);
- ends its lesson with a summary, and has a graded exercise.

Each chapter folder has at least one interactive figure (``utils.interactive``) and ends with a
"What to do" table. A reference page (``*reference.ipynb``) is consulted, not read: it keeps the
check-cell rules only. The time budget (30 s a section) is enforced by the notebook run
(``tests/pytest_course.py``).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.classroom import graded_exercises
from tests.layout import is_reference, is_section, notebook_id, notebooks

WORDS, VISIBLE_ASSERTS, FIRST_RESULT = 3000, 2, 0.4
SECTIONS = [p for p in notebooks() if is_section(p)]
LESSONS = [p for p in SECTIONS if not is_reference(p)]
CHAPTERS = sorted({p.parent for p in SECTIONS})
_STOP = re.compile(r"^#+\s*([\d.]+\s*)?(Exercises|References)\b", re.M)
_TITLE = re.compile(r"^#@title Check: \S")


def prose_words(cells) -> int:
    """Words of prose before the exercises: markdown without maths, code or directive options."""
    count = 0
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        text = cell.source
        if _STOP.search(text):
            break
        text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
        text = re.sub(r"\$[^$\n]+\$", " ", text)
        text = re.sub(r"```.*?```", " ", text, flags=re.S)
        text = re.sub(r"`[^`]*`", " ", text)
        text = re.sub(r"^:[a-z-]+:.*$", " ", text, flags=re.M)
        count += len(re.findall(r"[A-Za-z][A-Za-z'-]*", text))
    return count


def asserts(source: str) -> int:
    return len(re.findall(r"^\s*assert\b", source, re.M))


def is_check(cell) -> bool:
    return cell.cell_type == "code" and "check" in cell.metadata.get("tags", [])


def is_result(cell) -> bool:
    """A code cell that shows a figure or a table (an image, HTML or an interactive figure)."""
    return cell.cell_type == "code" and any(
        output.get("output_type") in ("display_data", "execute_result")
        and any(kind.startswith("image/") or kind == "text/html" for kind in output.get("data", {}))
        for output in cell.get("outputs", []))


def _read(path: Path):
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("path", LESSONS, ids=notebook_id)
def test_a_section_is_short_and_shows_its_result_early(path):
    cells = _read(path).cells
    words = prose_words(cells)
    assert words <= WORDS, f"{notebook_id(path)}: {words} words of prose (at most {WORDS})"
    first = next((i for i, cell in enumerate(cells) if is_result(cell)), None)
    assert first is not None, f"{notebook_id(path)}: no figure or table"
    assert first <= FIRST_RESULT * len(cells), \
        f"{notebook_id(path)}: first result at cell {first} of {len(cells)} (within 40 %)"


@pytest.mark.parametrize("path", SECTIONS, ids=notebook_id)
def test_visible_cells_carry_at_most_two_asserts_and_checks_are_forms(path):
    cells = _read(path).cells
    heavy = [i for i, c in enumerate(cells) if c.cell_type == "code" and not is_check(c)
             and asserts(c.source) > VISIBLE_ASSERTS
             and not c.metadata.get("nbgrader", {}).get("grade")]  # graded tests are locked
    assert not heavy, f"{notebook_id(path)}: visible cells with > 2 asserts: {heavy}"
    checks = [(i, c) for i, c in enumerate(cells) if is_check(c)]
    assert checks, f"{notebook_id(path)}: no check cell"
    for index, cell in checks:
        first_line = cell.source.split("\n", 1)[0]
        assert _TITLE.match(first_line), \
            f"{notebook_id(path)}, cell {index}: a check starts with '#@title Check: <claim>'"
        assert cell.metadata.get("cellView") == "form", \
            f"{notebook_id(path)}, cell {index}: a check cell is a Colab form (cellView: form)"
        assert asserts(cell.source) or "assert_claims(" in cell.source, \
            f"{notebook_id(path)}, cell {index}: a check cell that checks nothing"


@pytest.mark.parametrize("path", LESSONS, ids=notebook_id)
def test_a_section_asks_to_predict_summarises_and_grades_its_idea(path):
    nb = _read(path)
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert any(re.search(r"^\*\*Predict", text, re.M) for text in markdown), \
        f"{notebook_id(path)}: no **Predict** prompt"
    assert any(re.search(r"^##\s+Summary\b", text, re.M) for text in markdown), \
        f"{notebook_id(path)}: no ## Summary"
    assert graded_exercises(nb, path.name), f"{notebook_id(path)}: no graded exercise"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.name)
def test_every_chapter_has_an_interactive_figure_and_ends_with_what_to_do(chapter):
    sections = [p for p in SECTIONS if p.parent == chapter]
    interactive = [p for p in sections for cell in _read(p).cells if cell.cell_type == "code"
                   for output in cell.get("outputs", [])
                   if 'class="course-figure"' in str(output.get("data", {}).get("text/html", ""))]
    assert interactive, f"{chapter.name}: no interactive figure (utils.interactive)"
    last = [p for p in sections if not is_reference(p)][-1]
    text = "\n".join(c.source for c in _read(last).cells if c.cell_type == "markdown")
    match = re.search(r"^##\s+What to do\b(.*?)(?=^##\s)", text, re.M | re.S)
    assert match and re.search(r"^\|.*\|\s*$", match.group(1), re.M), \
        f"{chapter.name}: its last section has no '## What to do' table"


def test_the_rules_find_what_they_measure():
    # the measures on a small hand-made notebook, so that a rule cannot silently measure nothing
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T\n\nTwo words `code` $x^2$."),
                nbformat.v4.new_code_cell("assert 1\nassert 2\nassert 3"),
                nbformat.v4.new_markdown_cell("## Exercises\n\nNot counted here.")]
    assert prose_words(nb.cells) == 3  # "T", "Two", "words"
    assert asserts(nb.cells[1].source) == 3 and not is_check(nb.cells[1])
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", {"text/html": "<table/>"})]
    assert is_result(nb.cells[1])
