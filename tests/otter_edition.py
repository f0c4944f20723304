"""The Otter-Grader edition of the exercises, for classes that work in Google Colab.

``python -m tests.otter_edition build [--out DIR]`` (``make otter``)
    Write, for every chapter, ``DIR/<chapter>/student/<chapter>.ipynb`` (the notebook students
    open in Colab, with the public checks in ``student/tests/``), ``DIR/<chapter>/solution/``
    (the same notebook with the solutions, for the instructor) and
    ``DIR/<chapter>/<chapter>-autograder.zip`` (public and hidden checks, for Gradescope or
    ``otter run``). ``DIR`` is ``_build/otter/`` (not committed).
``python -m tests.otter_edition check [--partial CHAPTER[:QUESTION] ...]`` (``make otter-check``)
    Grade with ``otter run`` (locally, no containers): every solution notebook must get full
    points for every graded exercise, every student notebook zero, and a notebook with exactly
    one exercise solved exactly that exercise's points (by default Chapter 4 with only
    ``ch4-focal`` solved; ``--partial CHAPTER`` solves each exercise of CHAPTER in turn).

Nothing is written twice: the Otter edition is generated from the chapters, as the nbgrader
student edition is (``tests/classroom.py``). A graded exercise (an nbgrader solution cell and its
locked test cell, see ``tests.classroom``) becomes one Otter question named after the test
cell's ``grade_id`` without ``-test``, worth the test cell's points:

* the student notebook starts from the nbgrader student edition (stubs, written solutions
  removed); each graded test cell is replaced by ``grader.check("<question>")``, keeping the
  test cell's leading comment, which says what the check compares;
* the test cell's code outside ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` is the
  question's public test case, the code between those lines its hidden one (nbgrader's own
  convention, which the nbgrader student edition also honours). Both run in the notebook's
  namespace, exactly as the test cell does in the chapter, and the question is graded all or
  nothing, as nbgrader grades a test cell;
* a setup cell after the bootstrap cell installs ``otter-grader`` (pinned in
  ``requirements-otter.txt``) where it is missing, writes the public test files next to the
  notebook where they are missing (Colab has no ``tests/`` folder; Otter needs one on Colab)
  and creates ``grader``. When Otter grades, its own ``tests/`` (with the hidden cases) already
  exist and are left alone;
* at the end, ``grader.check_all()`` and how to hand the notebook in (Otter's ``export`` does
  not work on Colab: students submit the ``.ipynb``).

The tests are written in Otter's exception-based format rather than its OK (doctest) format:
doctests compare printed output, and the course's checks print numbers whose last digits
depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

from tests.classroom import check_notebook, graded_exercises, student_edition
from tests.layout import by_id, notebook_id, notebooks

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OTTER_DIR = ROOT / "_build" / "otter"
OTTER_REQUIREMENTS = ROOT / "requirements-otter.txt"
COURSE_REQUIREMENTS = ROOT / "requirements.txt"

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
# nbgrader's ClearHiddenTests treats any line containing these words as a marker; so do we.
_HIDDEN_BEGIN_WORDS = "BEGIN HIDDEN TESTS"
_HIDDEN_END_WORDS = "END HIDDEN TESTS"
# What a chapter needs at run time, taken with its pin from requirements.txt for the
# autograder's environment (Gradescope builds it; `otter run` uses the current one).
RUNTIME_PACKAGES = ("tensorflow", "keras", "torch", "numpy", "scipy", "matplotlib",
                    "scikit-learn")
# The partial case: Chapter 4's third section with only its second exercise solved (0 + 2 of
# 5 points).
PARTIAL_DEFAULT = ("04_prior_bias-03_checking_the_start:ch4-focal",)

_OTTER_PIN = re.compile(r"^otter-grader==(\S+)\s*$", re.M)


@dataclass(frozen=True)
class Question:
    """One graded exercise as an Otter question."""

    name: str
    points: float
    public: str
    hidden: str | None
    solution_grade_id: str


def otter_version() -> str:
    """The pinned ``otter-grader`` version, from ``requirements-otter.txt``."""
    found = _OTTER_PIN.findall(OTTER_REQUIREMENTS.read_text())
    if len(found) != 1:
        raise ValueError(f"{OTTER_REQUIREMENTS.name}: expected one 'otter-grader==VERSION' line, "
                         f"found {len(found)}")
    return found[0]


def question_name(grade_id: str) -> str:
    """The Otter question name of a graded test cell: its ``grade_id`` without ``-test``."""
    if not isinstance(grade_id, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", grade_id):
        raise ValueError(f"grade_id must be letters, digits, '-' or '_', got {grade_id!r}")
    return grade_id[:-len("-test")] if grade_id.endswith("-test") else grade_id


def split_hidden(source: str) -> tuple[str, str | None]:
    """Split a graded test cell into its public code and its hidden code (or ``None``).

    The hidden code is every line between ``### BEGIN HIDDEN TESTS`` and
    ``### END HIDDEN TESTS`` (which must be balanced and not nested); the public code is every
    other line, the marker lines excepted: the code nbgrader's ``ClearHiddenTests`` leaves.
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be a str, got {type(source).__name__}")
    public, hidden, inside, seen = [], [], False, False
    for number, line in enumerate(source.splitlines(), start=1):
        if _HIDDEN_BEGIN_WORDS in line:
            if inside:
                raise ValueError(f"source line {number}: {HIDDEN_BEGIN} inside hidden tests")
            inside = seen = True
        elif _HIDDEN_END_WORDS in line:
            if not inside:
                raise ValueError(f"source line {number}: {HIDDEN_END} without {HIDDEN_BEGIN}")
            inside = False
        else:
            (hidden if inside else public).append(line)
    if inside:
        raise ValueError(f"source: {HIDDEN_BEGIN} is never closed with {HIDDEN_END}")
    hidden_code = "\n".join(hidden).strip("\n")
    return "\n".join(public).strip("\n"), (hidden_code if seen and hidden_code.strip() else None)


def questions(nb: nbformat.NotebookNode, name: str) -> list[Question]:
    """The Otter questions of a chapter, one per graded exercise, in order."""
    found = []
    for exercise in graded_exercises(nb, name):
        public, hidden = split_hidden(nb.cells[exercise.test_cell].source)
        solution_id = nb.cells[exercise.solution_cell].metadata["nbgrader"]["grade_id"]
        found.append(Question(question_name(exercise.grade_id), float(exercise.points),
                              public, hidden, solution_id))
    names = [q.name for q in found]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: two graded exercises have the same question name: {names}")
    return found


def _literal(code: str) -> str:
    """A Python string literal for ``code`` that keeps its lines (raw triple quotes if they
    round-trip, else ``repr``)."""
    for quote in ('"""', "'''"):
        if quote not in code and not code.endswith("\\") and not code.endswith(quote[0]):
            literal = f"r{quote}{code}{quote}"
            if eval(literal) == code:  # noqa: S307 - our own literal, checked to round-trip
                return literal
    return repr(code)


_TEST_FILE_HEAD = '''\
"""The checks of the graded exercise {name!r} ({chapter}) for Otter-Grader.

The code is that of the exercise's locked test cell in the chapter; it runs in the notebook's
own namespace, exactly as that cell does.
"""
import linecache
import traceback

from otter.test_files import test_case

OK_FORMAT = False

name = {name!r}
points = {points!r}
all_or_nothing = True


def _run(code, label, env):
    """Execute one part of the test cell in ``env``; on failure, say which line failed."""
    filename = f"<{{name}}: {{label}}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        exec(compile(code, filename, "exec"), env)
    except Exception as error:
        lines = [frame for frame in traceback.extract_tb(error.__traceback__)
                 if frame.filename == filename]
        where = f" at line {{lines[-1].lineno}} of the check: {{lines[-1].line}}" if lines else ""
        what = f"{{type(error).__name__}}: {{error}}" if str(error) else type(error).__name__
        raise AssertionError(f"{{what}}{{where}}") from None
'''

_TEST_CASE = '''

{variable} = {literal}


@test_case(hidden={hidden!r})
def {function}(env):
    _run({variable}, {label!r}, env)  # the exercise's check; what failed, and where, follows
'''


def otter_test_file(question: Question, chapter: str, include_hidden: bool) -> str:
    """The exception-based Otter test file of ``question`` (hidden case only if asked)."""
    text = _TEST_FILE_HEAD.format(name=question.name, chapter=chapter, points=question.points)
    text += _TEST_CASE.format(variable="PUBLIC", literal=_literal(question.public), hidden=False,
                              function="public_check", label="public check")
    if include_hidden and question.hidden is not None:
        text += _TEST_CASE.format(variable="HIDDEN", literal=_literal(question.hidden),
                                  hidden=True, function="hidden_check", label="hidden check")
    return text


def _leading_comment(source: str) -> list[str]:
    lines = []
    for line in source.splitlines():
        if not line.startswith("#") or "HIDDEN TESTS" in line:
            break
        lines.append(line)
    return lines


def _setup_cell(tests: dict[str, str], version: str) -> nbformat.NotebookNode:
    checks = "{\n" + "".join(f"    {name!r}: {_literal(text)},\n"
                              for name, text in tests.items()) + "}"
    source = "\n".join([
        "# @title Checks for the graded exercises (run this cell once)",
        "# Installs Otter-Grader if it is missing (on Colab), writes the public checks of this",
        "# chapter to tests/ next to the notebook if they are not there yet, and creates",
        "# `grader`: each graded exercise is followed by a `grader.check(...)` cell.",
        "import importlib.util, os, subprocess, sys",
        'if importlib.util.find_spec("otter") is None:',
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"--quiet\",",
        f'                    "otter-grader=={version}"], check=True)',
        f"OTTER_CHECKS = {checks}",
        'os.makedirs("tests", exist_ok=True)',
        "for _name, _text in OTTER_CHECKS.items():",
        '    _path = os.path.join("tests", _name + ".py")',
        "    if not os.path.exists(_path):",
        '        with open(_path, "w", encoding="utf-8") as _file:',
        "            _file.write(_text)",
        "import otter",
        "grader = otter.Notebook()",
    ])
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata.update({"cellView": "form", "deletable": False, "editable": False,
                          "otter_edition": "setup"})
    return cell


def _check_cell(question: Question, comment: list[str]) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("\n".join(comment + [f'grader.check("{question.name}")']))
    cell.metadata.update({"deletable": False, "editable": False,
                          "otter_edition": "check"})
    return cell


def _closing_cells(total: float) -> list[nbformat.NotebookNode]:
    text = nbformat.v4.new_markdown_cell(
        "## Checking and handing in\n\n"
        f"The graded exercises of this chapter are worth {total:g} points. The cell below runs "
        "every check again. Checks you can see are not the whole grade: some exercises have "
        "further checks that only the grader runs, so make your answer correct in general, not "
        "just for the cases shown.\n\n"
        "To hand in, run the whole notebook from the top (Colab: *Runtime → Restart and run "
        "all*), save it, and download it (*File → Download → Download .ipynb*). Submit the "
        "`.ipynb` file where your instructor asks for it.")
    check_all = nbformat.v4.new_code_cell("grader.check_all()")
    # Otter's grading skips cells tagged otter_ignore: the checks are run once, not twice.
    check_all.metadata.update({"tags": ["otter_ignore"], "deletable": False,
                               "editable": False, "otter_edition": "check-all"})
    text.metadata.update({"deletable": False, "editable": False})
    return [text, check_all]


def otter_notebook(nb: nbformat.NotebookNode, name: str, *, solutions: bool
                   ) -> tuple[nbformat.NotebookNode, list[Question]]:
    """The Otter edition of one chapter: the student notebook (``solutions=False``) or the
    solution notebook; and its questions. The argument is not modified."""
    problems = check_notebook(nb, name, min_exercises=0)
    if problems:
        raise ValueError("malformed exercises:\n" + "\n".join(problems))
    found = questions(nb, name)
    if not found:
        raise ValueError(f"{name}: no graded exercise, nothing for Otter to grade")
    base = nbformat.from_dict(nb) if solutions else student_edition(nb)
    tests = {q.name: otter_test_file(q, name, include_hidden=False) for q in found}
    by_name = {q.name: q for q in found}
    cells, setup_done = [], False
    for cell in base.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            question = by_name[question_name(meta["grade_id"])]
            cells.append(_check_cell(question, _leading_comment(cell.source)))
            continue
        cells.append(cell)
        if cell.cell_type == "code" and not setup_done:  # after the bootstrap cell
            cells.append(_setup_cell(tests, otter_version()))
            setup_done = True
    cells.extend(_closing_cells(sum(q.points for q in found)))
    edition = nbformat.from_dict(base)
    edition.cells = cells
    edition.metadata["otter"] = {"assignment_name": Path(name).stem}
    nbformat.validate(edition)
    return edition, found


def splice_solution(student: nbformat.NotebookNode, chapter: nbformat.NotebookNode,
                    question: Question) -> nbformat.NotebookNode:
    """A copy of the student notebook with one exercise's stub replaced by its solution."""
    solution = [c for c in chapter.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == question.solution_grade_id]
    spliced = nbformat.from_dict(student)
    stubs = [c for c in spliced.cells
             if c.metadata.get("nbgrader", {}).get("grade_id") == question.solution_grade_id]
    if len(solution) != 1 or len(stubs) != 1:
        raise ValueError(f"question {question.name!r}: expected one solution cell and one stub, "
                         f"found {len(solution)} and {len(stubs)}")
    stubs[0].source = solution[0].source
    return spliced


def autograder_requirements(bootstrap: str) -> list[str]:
    """The autograder's requirements: the runtime pins of requirements.txt and the course's
    ``utils`` package at the version the chapter's bootstrap cell installs."""
    pins = {}
    for line in COURSE_REQUIREMENTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            package, version = line.split("==")
            pins[package.strip().lower()] = version.strip()
    missing = [p for p in RUNTIME_PACKAGES if p not in pins]
    if missing:
        raise ValueError(f"{COURSE_REQUIREMENTS.name}: no pin for {missing}")
    names: dict = {}
    for line in bootstrap.splitlines():
        if re.match(r"^COURSE[\w, ]* = ", line):  # COURSE, COURSE_REPOSITORY, COURSE_PACKAGE...
            exec(line, {}, names)  # noqa: S102 - string assignments of our own bootstrap cell
    if "COURSE_PACKAGE" not in names:
        raise ValueError("bootstrap cell: no COURSE_PACKAGE line")
    return [f"{p}=={pins[p]}" for p in RUNTIME_PACKAGES] + [names["COURSE_PACKAGE"]]


def _otter(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otter", *args], text=True,
                          capture_output=True, **kwargs)


def write_chapter(path: Path, out: Path) -> dict:
    """Write one chapter's Otter edition under ``out/<chapter>/``; return what was written."""
    nb = nbformat.read(path, as_version=4)
    student, found = otter_notebook(nb, path.name, solutions=False)
    solution, _ = otter_notebook(nb, path.name, solutions=True)
    name = notebook_id(path)  # unique across the book, sections included
    base = out / name
    written = {"questions": found}
    for kind, notebook, hidden in (("student", student, False), ("solution", solution, True)):
        folder = base / kind
        (folder / "tests").mkdir(parents=True, exist_ok=True)
        for old in (folder / "tests").glob("*.py"):
            old.unlink()
        for question in found:
            (folder / "tests" / f"{question.name}.py").write_text(
                otter_test_file(question, path.name, include_hidden=hidden))
        nbformat.write(notebook, folder / f"{name}.ipynb")
        written[kind] = folder / f"{name}.ipynb"
    bootstrap = next(c.source for c in nb.cells if c.cell_type == "code")
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(autograder_requirements(bootstrap)) + "\n")
        archive = base / f"{name}-autograder.zip"
        archive.unlink(missing_ok=True)
        result = _otter("generate", "--tests-dir", str(base / "solution" / "tests"),
                        "--output-path", str(archive), "--requirements", str(requirements),
                        "--no-config", "--no-environment", "--python-version", "3.11",
                        cwd=tmp)
        if result.returncode != 0 or not archive.is_file():
            raise RuntimeError(f"otter generate failed for {path.name}:\n"
                               f"{result.stdout}\n{result.stderr}")
    written["autograder"] = archive
    return written


def _chapters(names: tuple[str, ...] = ()) -> list[Path]:
    """The notebooks with graded exercises, or the named ones (by :func:`notebook_id`)."""
    paths = [p for p in notebooks()
             if graded_exercises(nbformat.read(p, as_version=4), p.name)]
    ids = [notebook_id(p) for p in paths]
    unknown = sorted(set(names) - set(ids))
    if unknown:
        raise ValueError(f"chapters: unknown {unknown}; notebooks with graded exercises are "
                         f"{ids}")
    return [p for p, ident in zip(paths, ids) if not names or ident in names]


def build(out: Path = OTTER_DIR, chapters: tuple[str, ...] = ()) -> list[dict]:
    """Write the Otter edition of every chapter (or of the named ones) to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    return [write_chapter(path, out) for path in _chapters(chapters)]


def grade(notebook: Path, autograder: Path, workdir: Path) -> dict[str, tuple[float, float]]:
    """Grade one notebook with ``otter run`` (no containers): (score, maximum) per question."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = _otter("run", "--autograder", str(autograder), "--output-dir", str(workdir),
                    "--no-logo", str(notebook), cwd=workdir)
    report = workdir / "results.json"
    if result.returncode != 0 or not report.is_file():
        raise RuntimeError(f"otter run failed on {notebook}:\n{result.stdout}\n{result.stderr}")
    scores: dict[str, tuple[float, float]] = {}
    for test in json.loads(report.read_text())["tests"]:
        if "score" in test:  # one entry per question; "Public Tests" is a summary without one
            scores[test["name"]] = (float(test["score"]), float(test["max_score"]))
    return scores


def check(out: Path = OTTER_DIR, partial: tuple[str, ...] = PARTIAL_DEFAULT,
          chapters: tuple[str, ...] = (), workers: int = 1) -> int:
    """Build the edition, grade it (``workers`` notebooks at a time), print the table; return
    the number of wrong scores."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer (notebooks graded at a time), "
                         f"got {workers!r}")
    start = time.perf_counter()
    written = {w["student"].stem: w for w in build(out, chapters)}
    solved: dict[str, set[str] | None] = {}  # chapter -> questions to solve one at a time
    for spec in partial:
        chapter, _, question = spec.partition(":")
        if chapter not in written and chapters:
            continue  # a chapter left out with --chapters
        if chapter not in written:
            raise ValueError(f"partial: unknown chapter {chapter!r}; chapters are "
                             f"{sorted(written)}")
        names = {q.name for q in written[chapter]["questions"]}
        if question and question not in names:
            raise ValueError(f"partial: {chapter} has no question {question!r}; it has "
                             f"{sorted(names)}")
        solved[chapter] = None if not question or solved.get(chapter, set()) is None else (
            solved.get(chapter, set()) | {question})
    planned = []  # (chapter, label, notebook, expected scores, autograder, maxima)
    for chapter, files in written.items():
        found, autograder = files["questions"], files["autograder"]
        maxima = {q.name: q.points for q in found}
        runs = [("solutions", files["solution"], dict(maxima)),
                ("student", files["student"], {q.name: 0.0 for q in found})]
        if chapter in solved:
            chapter_nb = nbformat.read(by_id(chapter), as_version=4)
            student_nb = nbformat.read(files["student"], as_version=4)
            for question in found:
                if solved[chapter] is not None and question.name not in solved[chapter]:
                    continue
                spliced = splice_solution(student_nb, chapter_nb, question)
                target = out / chapter / "partial" / question.name / f"{chapter}.ipynb"
                target.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(spliced, target)
                runs.append((f"only {question.name}", target,
                             {q.name: (q.points if q is question else 0.0) for q in found}))
        planned += [(chapter, label, notebook, expected, autograder, maxima)
                    for label, notebook, expected in runs]

    def run(plan):
        chapter, label, notebook, expected, autograder, maxima = plan
        began = time.perf_counter()
        graded = grade(notebook, autograder, out / chapter / "graded" / label.replace(" ", "-"))
        seconds = time.perf_counter() - began
        print(f"graded {chapter} ({label}) in {seconds:.0f} s", flush=True)
        scores = {name: score for name, (score, _) in graded.items()}
        ok = scores == expected and {n: m for n, (_, m) in graded.items()} == maxima
        return (chapter, label, sum(scores.values()), sum(expected.values()),
                sum(maxima.values()), "ok" if ok else f"WRONG: {graded}", seconds)

    # Each `otter run` executes one notebook, which computes in one thread
    # (utils.seeding.seed_everything): `workers` of them side by side, each in its own folder.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(run, planned))
    wrong = sum(row[5] != "ok" for row in rows)
    total = time.perf_counter() - start
    width = max([len("chapter")] + [len(row[0]) for row in rows])
    print(f"\n{'chapter':<{width}} {'notebook graded':<26} {'points':>6} {'expected':>8} "
          f"{'of':>4}  {'result':<6} {'time':>5}")
    for chapter, label, got, expected, possible, verdict, seconds in rows:
        print(f"{chapter:<{width}} {label:<26} {got:>6g} {expected:>8g} {possible:>4g}  "
              f"{verdict:<6} {seconds:>4.0f}s")
    print(f"\notter run on {len(rows)} notebooks (scores per question compared, not only totals); "
          f"wall time {total:.0f} s ({total / 60:.1f} min), building the edition included")
    print(f"otter-check: {len(rows) - wrong} passed, {wrong} failed")
    return wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.otter_edition", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "check"])
    parser.add_argument("--out", type=Path, default=OTTER_DIR)
    parser.add_argument("--chapters", nargs="*", default=[],
                        help="chapters (file stems) to build or check; default: all")
    parser.add_argument("--partial", nargs="*", default=list(PARTIAL_DEFAULT),
                        help="CHAPTER (file stem: once per exercise, only it solved) or "
                             "CHAPTER:QUESTION (only that exercise solved)")
    parser.add_argument("--workers", type=int, default=1,
                        help="notebooks graded at a time (each computes in one thread)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return 1 if check(args.out, tuple(args.partial), tuple(args.chapters),
                              args.workers) else 0
        for files in build(args.out, tuple(args.chapters)):
            points = sum(q.points for q in files["questions"])
            hidden = sum(q.hidden is not None for q in files["questions"])
            folder = files["student"].parent.parent
            shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
            print(f"wrote {shown}/: {len(files['questions'])} question(s), {points:g} point(s), "
                  f"{hidden} with hidden tests, {files['autograder'].name}")
    except (ValueError, RuntimeError) as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
