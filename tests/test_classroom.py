"""The classroom promises: one exercise format, a student edition made by nbgrader, and graded
tests that pass on the solutions (nbval runs them in the committed notebooks) and fail on the
student edition (executed here)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.layout import notebook_id, notebooks

from tests.graded_proof import mutants
from tests.classroom import (check_notebook, graded_exercises, minimums, student_edition,
                             write_student_editions)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = notebooks()


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


# ---- the format ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=notebook_id)
def test_chapter_exercises_are_well_formed(path):
    problems = check_notebook(_read(path), path.name, **minimums(path))
    assert not problems, "\n".join(problems)


def _exercise_notebook(solution_meta=None, test_meta=None, solution_source=None,
                       close=True) -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    solution_meta = solution_meta if solution_meta is not None else {
        "grade": False, "grade_id": "ex-solution", "locked": False, "schema_version": 3,
        "solution": True}
    test_meta = test_meta if test_meta is not None else {
        "grade": True, "grade_id": "ex-test", "locked": True, "points": 1, "schema_version": 3,
        "solution": False}
    cells = [
        md(":::{exercise}\n:label: ex-a\nDouble it.\n:::\n\n:::{solution-start} ex-a\n"
           ":class: dropdown\n:::"),
        code(solution_source or "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n"
             "    ### END SOLUTION", metadata={"nbgrader": solution_meta}),
        md(":::{solution-end}\n:::" if close else "Some prose."),
        code("assert double(3) == 6", metadata={"nbgrader": test_meta}),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    return nb


def test_well_formed_example_passes_the_check():
    assert check_notebook(_exercise_notebook(), "x.ipynb", min_exercises=1) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"solution_source": "def double(x):\n    return 2 * x"},
     "x.ipynb, cell 1: solution cell without ### BEGIN SOLUTION"),
    ({"test_meta": {"grade": True, "grade_id": "ex-test", "locked": False, "points": 1}},
     "x.ipynb, cell 3: graded test cell 'ex-test' is not locked"),
    ({"test_meta": {"grade": True, "grade_id": "ex-solution", "locked": True, "points": 1}},
     "x.ipynb, cell 3: duplicate grade_id 'ex-solution' (also cell 1)"),
    ({"test_meta": {"grade": True, "grade_id": "ex-test", "locked": True, "points": 0}},
     "x.ipynb, cell 3: graded test cell 'ex-test' has no positive points"),
    ({"test_meta": {}}, "x.ipynb, cell 1: solution cell 'ex-solution' is not followed by a "
                        "graded test cell"),
    ({"close": False}, "x.ipynb, cell 0: solution of 'ex-a' is never closed"),
])
def test_malformed_exercises_are_reported_with_notebook_and_cell(kwargs, message):
    problems = check_notebook(_exercise_notebook(**kwargs), "x.ipynb", min_exercises=1)
    assert any(p.startswith(message) for p in problems), problems


def test_too_few_exercises_are_reported():
    problems = check_notebook(_exercise_notebook(), "x.ipynb")
    assert "x.ipynb: 1 exercises, at least 3 expected" in problems


# ---- the student edition -------------------------------------------------------------------

def test_student_edition_of_the_example():
    nb = _exercise_notebook()
    student = student_edition(nb)
    sources = [c.source for c in student.cells]
    assert sources[0] == ":::{exercise}\n:label: ex-a\nDouble it.\n:::"
    assert "raise NotImplementedError()" in sources[1] and "return 2 * x" not in sources[1]
    assert sources[2] == "assert double(3) == 6"
    assert len(student.cells) == 3  # the solution markers' cell is gone
    assert nb.cells[1].source.count("return 2 * x") == 1  # the input is not modified


def _without_hidden_tests(source: str) -> str:
    """The source less its ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS`` lines."""
    kept, inside = [], False
    for line in source.split("\n"):
        if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
            inside = "BEGIN" in line
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def test_student_edition_drops_hidden_tests():
    nb = _exercise_notebook()
    nb.cells[3].source = ("assert double(3) == 6\n### BEGIN HIDDEN TESTS\n"
                          "assert double(-2.5) == -5.0\n### END HIDDEN TESTS")
    test_cell = student_edition(nb).cells[2]
    assert test_cell.source == "assert double(3) == 6"
    assert "double(-2.5)" in nb.cells[3].source  # the input is not modified


@pytest.mark.parametrize("path", CHAPTERS, ids=notebook_id)
def test_student_edition_has_no_solutions_and_keeps_everything_else(path):
    nb = _read(path)
    student = student_edition(nb)
    text = "\n".join(c.source for c in student.cells)
    assert "### BEGIN SOLUTION" not in text and "{solution-start}" not in text
    assert "{solution-end}" not in text
    for cell in student.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source and cell.outputs == []
    # Hidden tests are gone; cells outside solution blocks are carried over unchanged (graded
    # test cells less their hidden tests), outputs included.
    assert "HIDDEN TESTS" not in text
    originals = {_without_hidden_tests(c.source): c for c in nb.cells if c.cell_type == "code"}
    for cell in student.cells:
        if cell.cell_type == "code" and not cell.metadata.get("nbgrader", {}).get("solution"):
            assert cell.source in originals
            assert cell.outputs == originals[cell.source].outputs
    assert len(graded_exercises(student, path.name)) == len(graded_exercises(nb, path.name)) \
        >= minimums(path)["min_graded"]


def test_make_student_writes_every_chapter(tmp_path):
    written = write_student_editions(tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in written) == sorted(
        p.relative_to(ROOT / "notebooks") for p in CHAPTERS)
    for path in written:
        nbformat.validate(_read(path))


# ---- graded tests are real -----------------------------------------------------------------
# nbval runs the solutions; after each chapter's last cell, tests.pytest_course adds an item
# that proves, in the same kernel, that each graded test fails on the student edition's stub
# and on wrong answers (tests/graded_proof.py). Here: that the item is there for every chapter,
# and that the wrong answers are real mutations of the answer.

def test_every_chapter_with_graded_tests_gets_its_proof_item(pytestconfig):
    args = [str(p) for p in CHAPTERS]
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                            cwd=ROOT, capture_output=True, text=True)
    proven = {line.split("::")[0] for line in result.stdout.splitlines()
              if line.endswith("::graded tests on the student edition")}
    expected = {p.relative_to(ROOT).as_posix() for p in CHAPTERS
                if graded_exercises(_read(p), p.name)}
    assert proven == expected and expected, result.stdout[-2000:]


def test_wrong_answers_change_the_answer_only():
    source = ("def f(x, n=3):\n    y = 2 * x  # not mutated\n    ### BEGIN SOLUTION\n"
              "    if x > 0:\n        return x ** n + 1.0\n    return y - 2\n"
              "    ### END SOLUTION\n")
    found = mutants(source, limit=10)
    assert found and all("2 * x" in wrong for _, wrong in found)
    assert {kind.split()[0] for kind, _ in found} == {"operator", "comparison", "constant"}
    for _, wrong in found:
        namespace: dict = {}
        exec(wrong, namespace)
        assert [namespace["f"](v) for v in (2.0, -1.0)] != [9.0, -3.0]  # each one is wrong
    assert len(mutants(source, limit=2)) == 2
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        mutants(source, limit=0)
    with pytest.raises(ValueError, match="BEGIN SOLUTION"):
        mutants("def f():\n    return 1\n")


def test_instructor_guide_lists_every_graded_exercise_with_its_points():
    import re

    guide = (ROOT / "book" / "instructor_guide.md").read_text()
    listed = {grade_id: float(points)
              for grade_id, points in re.findall(r"`([\w-]+-test)` \((\d+(?:\.\d+)?)\)", guide)}
    actual = {g.grade_id: float(g.points) for path in CHAPTERS
              for g in graded_exercises(_read(path), path.name)}
    assert listed == actual
