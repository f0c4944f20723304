"""The Otter-Grader edition (tests/otter_edition.py), on a small synthetic chapter and on the
real chapters' structure. The grading proof itself (otter run on every chapter: full, zero and
partial points) is `make otter-check`; the tests marked `otter` need otter-grader installed
(requirements-otter.txt, `make otter`) and are skipped without it."""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import nbformat
import pytest

from tests.layout import is_reference, notebook_id, notebooks

from tests.otter_edition import (autograder_requirements, check, otter_notebook, otter_version,
                                 otter_test_file, question_name, questions, splice_solution,
                                 split_hidden)

ROOT = Path(__file__).resolve().parent.parent
# the notebooks with graded exercises (a chapter's reference page has none)
CHAPTERS = [p for p in notebooks() if not is_reference(p)]
HAS_OTTER = importlib.util.find_spec("otter") is not None
needs_otter = pytest.mark.skipif(not HAS_OTTER, reason="otter-grader is not installed "
                                 "(make otter installs requirements-otter.txt)")

BOOTSTRAP = ('import sys\nCOURSE, COURSE_VERSION = "initialization-matters", "0.2.0"\n'
             'COURSE_REPOSITORY = "https://example.org/course"\n'
             'COURSE_PACKAGE = f"{COURSE} @ git+{COURSE_REPOSITORY}@abc123"')
TEST_SOURCE = ("# Graded check: compare with 2 x.\nassert double(3) == 6\n"
               "### BEGIN HIDDEN TESTS\nassert double(-2.5) == -5.0\n### END HIDDEN TESTS")


def _chapter(test_source: str = TEST_SOURCE) -> nbformat.NotebookNode:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        md("# A chapter"),
        code(BOOTSTRAP),
        md(":::{exercise}\n:label: ex-a\nDouble it.\n:::\n\n:::{solution-start} ex-a\n"
           ":class: dropdown\n:::"),
        code("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
             metadata={"nbgrader": {"grade": False, "grade_id": "ex-a-solution",
                                    "locked": False, "schema_version": 3, "solution": True}}),
        md("Twice x.\n\n:::{solution-end}\n:::"),
        code(test_source,
             metadata={"nbgrader": {"grade": True, "grade_id": "ex-a-test", "locked": True,
                                    "points": 3, "schema_version": 3, "solution": False}}),
        md("## References"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    return nb


# ---- the pieces ----------------------------------------------------------------------------

def test_split_hidden_separates_public_and_hidden_code():
    assert split_hidden(TEST_SOURCE) == (
        "# Graded check: compare with 2 x.\nassert double(3) == 6", "assert double(-2.5) == -5.0")
    assert split_hidden("assert f(1) == 2") == ("assert f(1) == 2", None)


@pytest.mark.parametrize("source, message", [
    ("a\n### END HIDDEN TESTS", "without"),
    ("### BEGIN HIDDEN TESTS\nb", "never closed"),
    ("### BEGIN HIDDEN TESTS\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS", "inside hidden"),
])
def test_split_hidden_rejects_unbalanced_markers(source, message):
    with pytest.raises(ValueError, match=message):
        split_hidden(source)


def test_question_names_and_bad_grade_ids():
    assert question_name("ch1-conv-bounds-test") == "ch1-conv-bounds"
    assert question_name("q1") == "q1"
    with pytest.raises(ValueError, match="grade_id must be"):
        question_name("a b")


def test_otter_is_pinned_once():
    assert otter_version().startswith("7.")


def test_autograder_requirements_pin_the_runtime_and_the_course_package():
    lines = autograder_requirements(BOOTSTRAP)
    assert lines[-1] == "initialization-matters @ git+https://example.org/course@abc123"
    pins = dict(line.split("==") for line in lines[:-1])
    requirements = (ROOT / "requirements.txt").read_text()
    for package, version in pins.items():
        assert f"{package}=={version}" in requirements
    assert {"tensorflow", "keras", "torch", "numpy"} <= set(pins)
    with pytest.raises(ValueError, match="COURSE_PACKAGE"):
        autograder_requirements("import sys")


# ---- one synthetic chapter -----------------------------------------------------------------

def test_student_notebook_of_a_small_chapter():
    nb = _chapter()
    student, found = otter_notebook(nb, "x.ipynb", solutions=False)
    assert [(q.name, q.points) for q in found] == [("ex-a", 3.0)]
    sources = [c.source for c in student.cells]
    text = "\n".join(sources)
    # the bootstrap cell stays first, the Otter setup cell follows it
    assert sources[1] == BOOTSTRAP and "grader = otter.Notebook()" in sources[2]
    assert f'"otter-grader=={otter_version()}"' in sources[2]
    # the stub, not the solution; the test cell became a check, its comment kept
    assert "raise NotImplementedError()" in text and "return 2 * x" not in text
    assert '# Graded check: compare with 2 x.\ngrader.check("ex-a")' in sources
    assert "assert double(3)" not in "\n".join(s for s in sources if "OTTER_CHECKS" not in s)
    # the public test is embedded for Colab, the hidden one nowhere
    assert "double(3) == 6" in sources[2] and "double(-2.5)" not in text
    assert sources[-1] == "grader.check_all()"
    assert "otter_ignore" in student.cells[-1].metadata["tags"]
    assert "Download .ipynb" in sources[-2]
    assert nb.cells[3].source.count("return 2 * x") == 1  # the input is not modified


def test_solution_notebook_keeps_the_solution_and_the_prose():
    solution, _ = otter_notebook(_chapter(), "x.ipynb", solutions=True)
    text = "\n".join(c.source for c in solution.cells)
    assert "return 2 * x" in text and "Twice x." in text
    assert 'grader.check("ex-a")' in text and "double(-2.5)" not in text


def test_a_chapter_without_graded_exercises_is_refused():
    nb = _chapter()
    del nb.cells[5].metadata["nbgrader"]
    nb.cells[3].metadata["nbgrader"]["solution"] = False
    with pytest.raises(ValueError, match="0 graded exercises"):
        otter_notebook(nb, "x.ipynb", solutions=False)


def test_splice_solution_solves_exactly_one_stub():
    nb = _chapter()
    student, found = otter_notebook(nb, "x.ipynb", solutions=False)
    spliced = splice_solution(student, nb, found[0])
    text = "\n".join(c.source for c in spliced.cells)
    assert "return 2 * x" in text and "raise NotImplementedError()" not in text
    assert "raise NotImplementedError()" in "\n".join(c.source for c in student.cells)


def test_the_test_file_keeps_every_line_of_the_test_cell():
    question = questions(_chapter(), "x.ipynb")[0]
    public_only = otter_test_file(question, "x.ipynb", include_hidden=False)
    full = otter_test_file(question, "x.ipynb", include_hidden=True)
    assert "hidden=True" not in public_only and "double(-2.5)" not in public_only
    assert "hidden=True" in full and "double(-2.5)" in full
    tricky = questions(_chapter('s = """a\\\\b"""\nassert s == "a" + "\\\\" + "b"'), "x.ipynb")[0]
    tree = ast.parse(otter_test_file(tricky, "x.ipynb", include_hidden=True))
    literal = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                   and node.targets[0].id == "PUBLIC")
    assert ast.literal_eval(literal) == tricky.public
    exec(tricky.public, {})  # the code itself is intact: its own assert holds


# ---- with otter-grader: its own loader and checker -----------------------------------------

def _load(text: str, tmp_path: Path):
    from otter.test_files import ExceptionTestFile

    path = tmp_path / "ex-a.py"
    path.write_text(text)
    return ExceptionTestFile.from_file(str(path))


HIDDEN_FAILS = "at line 1 of the check: assert double(-2.5) == -5.0"


@needs_otter
@pytest.mark.parametrize("answer, passed, message", [
    (lambda x: 2 * x, True, None),
    (lambda x: 2 * abs(x), False, HIDDEN_FAILS),  # passes the public case only
    (lambda x: x + 3, False, HIDDEN_FAILS),
])
def test_otter_grades_the_generated_test_file(tmp_path, answer, passed, message):
    question = questions(_chapter(), "x.ipynb")[0]
    graded = _load(otter_test_file(question, "x.ipynb", include_hidden=True), tmp_path)
    assert graded.name == "ex-a" and graded.all_or_nothing
    graded.run({"double": answer})
    assert graded.passed_all == passed
    assert graded.grade == (1.0 if passed else 0.0)  # all or nothing, as nbgrader grades
    if message:
        assert any(message in r.message for r in graded.test_case_results), \
            [r.message for r in graded.test_case_results]


@needs_otter
def test_the_public_file_passes_what_only_the_hidden_case_catches(tmp_path):
    question = questions(_chapter(), "x.ipynb")[0]
    public = _load(otter_test_file(question, "x.ipynb", include_hidden=False), tmp_path)
    public.run({"double": lambda x: 6})
    assert public.passed_all and len(public.test_case_results) == 1


@needs_otter
def test_a_stub_fails_with_its_not_implemented_error(tmp_path):
    def stub(x):
        raise NotImplementedError()

    question = questions(_chapter(), "x.ipynb")[0]
    graded = _load(otter_test_file(question, "x.ipynb", include_hidden=False), tmp_path)
    graded.run({"double": stub})
    assert not graded.passed_all
    assert "NotImplementedError" in graded.test_case_results[0].message
    message = graded.test_case_results[0].message
    assert "NotImplementedError at line 2 of the check: assert double(3) == 6" in message


# ---- the real chapters ---------------------------------------------------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=notebook_id)
def test_every_graded_exercise_of_a_chapter_becomes_a_question(path):
    from tests.classroom import graded_exercises

    nb = nbformat.read(path, as_version=4)
    student, found = otter_notebook(nb, path.name, solutions=False)
    graded = graded_exercises(nb, path.name)
    assert [q.name for q in found] == [question_name(g.grade_id) for g in graded]
    assert [q.points for q in found] == [float(g.points) for g in graded]
    checks = [c.source.splitlines()[-1] for c in student.cells
              if c.metadata.get("otter_edition") == "check"]
    assert checks == [f'grader.check("{q.name}")' for q in found]
    first_code = next(c for c in student.cells if c.cell_type == "code")
    assert first_code.source == next(c for c in nb.cells if c.cell_type == "code").source
    assert not any(c.metadata.get("nbgrader", {}).get("grade") for c in student.cells)


@pytest.mark.parametrize("workers", [0, -1, 1.5, True, "2"])
def test_check_refuses_a_number_of_workers_that_is_not_a_positive_integer(tmp_path, workers):
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        check(tmp_path, (), (), workers)
