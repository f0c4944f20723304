"""Classroom tooling: check the exercise format and write the student edition.

``python -m tests.classroom student [--out DIR]`` (``make student``)
    Write the student edition of every chapter to ``_build/student/`` (not committed).
``python -m tests.classroom check``
    Check every chapter's exercises and print the problems, if any.

The exercise format (one format across the course; see ``notebooks/00_setup/01_environment.ipynb``):

* a markdown cell with ``:::{exercise}`` and a ``:label:``; its solution between
  ``:::{solution-start} LABEL`` and ``:::{solution-end}`` (sphinx-exercise; a dropdown in the
  book, and code inside it is executed, so the solution's output is real);
* a *graded* exercise has, inside its solution, one code cell with nbgrader metadata
  ``solution: true`` whose answer sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``,
  and after it (before the next exercise) a locked test cell (``grade: true``, ``locked: true``,
  ``points``) whose asserts call the student's code.

The student edition is made with nbgrader's own preprocessors (``ClearSolutions`` replaces each
answer with ``raise NotImplementedError()``; ``ClearHiddenTests`` removes the lines between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` of a graded test cell, which only the
autograder runs; ``LockCells``; ``ComputeChecksums`` so nbgrader can autograde submissions),
then the prose and code of every solution block is removed, the nbgrader solution cells
excepted, and solution cells' outputs are cleared. Everything else is intact.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
STUDENT_DIR = ROOT / "_build" / "student"
MIN_EXERCISES = 3
MIN_GRADED = 1

_EXERCISE = re.compile(r"^:{3,}\{exercise\}", re.M)
_LABEL = re.compile(r"^:label:\s*(\S+)", re.M)
_SOLUTION_START = re.compile(r"^:{3,}\{solution-start\}\s*(\S+)", re.M)
_SOLUTION_END = re.compile(r"^:{3,}\{solution-end\}", re.M)


@dataclass(frozen=True)
class GradedExercise:
    """A graded exercise: its solution cell and test cell (indices into the notebook's cells)."""

    notebook: str
    solution_cell: int
    test_cell: int
    grade_id: str
    points: float


def _nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _test_cell_of(nb: nbformat.NotebookNode, solution_index: int) -> int | None:
    """The graded test cell of the solution at ``solution_index``: the first graded code cell
    after it, provided no other exercise or solution cell comes first."""
    for j in range(solution_index + 1, len(nb.cells)):
        cell = nb.cells[j]
        meta = _nbgrader(cell)
        if cell.cell_type == "code" and meta.get("grade"):
            return j
        if meta.get("solution") or (cell.cell_type == "markdown"
                                    and _EXERCISE.search(cell.source)):
            return None
    return None


def minimums(path: Path) -> dict[str, int]:
    """How many exercises and graded exercises a notebook must have: a whole chapter
    :data:`MIN_EXERCISES` and :data:`MIN_GRADED`; a section one of each (its graded exercise
    tests its central idea); a reference page none. For :func:`check_notebook`'s keywords."""
    from tests.layout import is_reference, is_section

    if is_reference(path):
        return {"min_exercises": 0, "min_graded": 0}
    if is_section(path):
        return {"min_exercises": 1, "min_graded": 1}
    return {"min_exercises": MIN_EXERCISES, "min_graded": MIN_GRADED}


def check_notebook(nb: nbformat.NotebookNode, name: str,
                   min_exercises: int = MIN_EXERCISES,
                   min_graded: int = MIN_GRADED) -> list[str]:
    """Return every problem with the notebook's exercises, each naming the notebook and cell."""
    problems: list[str] = []
    labels: list[str] = []
    open_solution: tuple[str, int] | None = None
    grade_ids: dict[str, int] = {}
    graded = 0
    for index, cell in enumerate(nb.cells):
        where = f"{name}, cell {index}"
        source = cell.source
        meta = _nbgrader(cell)
        if cell.cell_type == "markdown":
            for _ in _EXERCISE.finditer(source):
                found = _LABEL.findall(source)
                if not found:
                    problems.append(f"{where}: exercise without a :label:")
                labels.extend(found)
            for match in re.finditer(
                    r"^:{3,}\{solution-(start|end)\}\s*(\S*)", source, re.M):
                kind, label = match.groups()
                if kind == "start":
                    if open_solution is not None:
                        problems.append(f"{where}: solution-start for {label!r} inside the open "
                                        f"solution of {open_solution[0]!r}")
                    if label not in labels:
                        problems.append(f"{where}: solution-start names {label!r}, "
                                        "which no earlier exercise defines")
                    open_solution = (label, index)
                else:
                    if open_solution is None:
                        problems.append(f"{where}: solution-end without a solution-start")
                    open_solution = None
        if meta:
            grade_id = meta.get("grade_id")
            if not grade_id:
                problems.append(f"{where}: nbgrader cell without a grade_id")
            elif grade_id in grade_ids:
                problems.append(f"{where}: duplicate grade_id {grade_id!r} "
                                f"(also cell {grade_ids[grade_id]})")
            else:
                grade_ids[grade_id] = index
        if meta.get("solution"):
            if cell.cell_type == "code" and not (
                    "### BEGIN SOLUTION" in source and "### END SOLUTION" in source):
                problems.append(f"{where}: solution cell without ### BEGIN SOLUTION / "
                                "### END SOLUTION markers")
            if open_solution is None:
                problems.append(f"{where}: nbgrader solution cell outside a "
                                "{solution-start} ... {solution-end} block")
            test = _test_cell_of(nb, index)
            if test is None:
                problems.append(f"{where}: solution cell {meta.get('grade_id')!r} is not "
                                "followed by a graded test cell")
        if meta.get("grade") and cell.cell_type == "code":
            graded += 1
            if not meta.get("locked"):
                problems.append(f"{where}: graded test cell {meta.get('grade_id')!r} "
                                "is not locked")
            if not (isinstance(meta.get("points"), (int, float)) and meta["points"] > 0):
                problems.append(f"{where}: graded test cell {meta.get('grade_id')!r} "
                                "has no positive points")
            if meta.get("solution"):
                problems.append(f"{where}: a cell cannot be both solution and graded test")
    if open_solution is not None:
        problems.append(f"{name}, cell {open_solution[1]}: solution of {open_solution[0]!r} "
                        "is never closed with {solution-end}")
    duplicates = {label for label in labels if labels.count(label) > 1}
    for label in sorted(duplicates):
        problems.append(f"{name}: exercise label {label!r} is used more than once")
    if len(labels) < min_exercises:
        problems.append(f"{name}: {len(labels)} exercises, at least {min_exercises} expected")
    if graded < min_graded:
        problems.append(f"{name}: {graded} graded exercises, at least {min_graded} expected")
    return problems


def graded_exercises(nb: nbformat.NotebookNode, name: str) -> list[GradedExercise]:
    """The graded exercises of a (well-formed) notebook, in order."""
    found = []
    for index, cell in enumerate(nb.cells):
        if _nbgrader(cell).get("solution") and cell.cell_type == "code":
            test = _test_cell_of(nb, index)
            if test is None:
                continue
            meta = _nbgrader(nb.cells[test])
            found.append(GradedExercise(name, index, test, meta["grade_id"], meta["points"]))
    return found


def student_edition(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student edition of one chapter (a new notebook; the argument is not modified)."""
    from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearSolutions,
                                        ComputeChecksums, LockCells)

    student = nbformat.from_dict(nb)
    resources: dict = {}
    for preprocessor in (CheckCellMetadata(), LockCells(), ClearSolutions(), ClearHiddenTests()):
        student, resources = preprocessor.preprocess(student, resources)
    kept = []
    inside_solution = False  # carried across cells: a solution spans several cells
    closing_marker = False   # inside a solution-start/-end directive's own lines
    for cell in student.cells:
        if _nbgrader(cell).get("solution"):
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
            kept.append(cell)
            continue
        if cell.cell_type != "markdown":
            if not inside_solution:
                kept.append(cell)
            continue
        lines = []
        for line in cell.source.splitlines():
            if _SOLUTION_START.match(line) or _SOLUTION_END.match(line):
                inside_solution = bool(_SOLUTION_START.match(line))
                closing_marker = True
                continue
            if closing_marker:
                # The directive's options (":class: dropdown") and its closing colons.
                if re.fullmatch(r"\s*:{3,}\s*", line):
                    closing_marker = False
                continue
            if not inside_solution:
                lines.append(line)
        text = "\n".join(lines).strip()
        if text:
            cell.source = text
            kept.append(cell)
    student.cells = kept
    student, resources = ComputeChecksums().preprocess(student, resources)
    nbformat.validate(student)
    return student


def _chapters() -> list[Path]:
    from tests.layout import notebooks

    return notebooks()


def write_student_editions(out: Path = STUDENT_DIR) -> list[Path]:
    """Write every chapter's student edition to ``out``; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in _chapters():
        nb = nbformat.read(path, as_version=4)
        problems = check_notebook(nb, path.name, **minimums(path))
        if problems:
            raise ValueError("malformed exercises:\n" + "\n".join(problems))
        target = out / path.relative_to(NOTEBOOKS)  # sections keep their chapter folder
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_edition(nb), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.classroom", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["student", "check"])
    parser.add_argument("--out", type=Path, default=STUDENT_DIR)
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = [p for path in _chapters()
                    for p in check_notebook(nbformat.read(path, as_version=4), path.name,
                                            **minimums(path))]
        print("\n".join(problems) or "exercises: no problems")
        return 1 if problems else 0
    try:
        written = write_student_editions(args.out)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    for path in written:
        nb = nbformat.read(path, as_version=4)
        graded = graded_exercises(nb, path.name)
        points = sum(g.points for g in graded)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
              f"{len(graded)} graded exercise(s), {points:g} point(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
