"""The course's pytest plugin (loaded with ``-p tests.pytest_course`` from pyproject.toml).

A plugin rather than a conftest.py so that it applies to the whole session, including the
notebooks under ``notebooks/``: it blocks the network, sets the kernels' environment, and
times every notebook, failing the run when one exceeds its 60 s budget.
"""
from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.offline import block_network  # noqa: E402

from tests.layout import budget_seconds  # noqa: E402  (sections 30 s, whole chapters 60 s)

# Notebook kernels get the course's IPython profile (offline, no fd-level log noise) even when
# pytest is started directly rather than through `make test`.
os.environ.setdefault("IPYTHONDIR", str(ROOT / "tests" / "kernel_profile"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")
block_network()

# The floating-point path the notebooks are checked on. Their outputs are stored on the native
# path (`make execute`: the CPU's widest SIMD kernels, oneDNN in TensorFlow), and by default
# checked on a different one, so that a printed digit that another CPU would change fails here
# too, not first on a reader's machine: torch's portable kernels, TensorFlow without oneDNN,
# one OpenMP thread. COURSE_FLOAT_PATH=native checks on the path the outputs were stored on.
PORTABLE_FLOAT_PATH = {"ATEN_CPU_CAPABILITY": "default", "TF_ENABLE_ONEDNN_OPTS": "0",
                       "OMP_NUM_THREADS": "1"}
FLOAT_PATH = os.environ.get("COURSE_FLOAT_PATH", "portable")
if FLOAT_PATH not in ("portable", "native"):
    raise ValueError(f"COURSE_FLOAT_PATH must be 'portable' or 'native', got {FLOAT_PATH!r}")
if FLOAT_PATH == "portable":
    for _name, _value in PORTABLE_FLOAT_PATH.items():
        os.environ.setdefault(_name, _value)

# (notebook, proof as a dict of tests.graded_proof.ExerciseProof's fields). Filled from the
# reports, so that it also works when the notebooks run in pytest-xdist workers (make test).
_proofs: list[tuple[str, dict]] = []
_proof_seconds: dict[str, float] = {}


class GradedProofItem(pytest.Item):
    """After a chapter's last nbval cell, in the same kernel: every graded test fails on the
    student edition's stub and on wrong answers, and passes on the solution
    (``tests/graded_proof.py``)."""

    def runtest(self) -> None:
        import nbformat

        from tests.classroom import graded_exercises, student_edition
        from tests.graded_proof import prove_exercise

        kernel = self.parent.kernel
        if kernel is None or not kernel.is_alive():
            raise RuntimeError(f"{self.path.name}: nbval's kernel is gone; run the whole "
                               "notebook, not single cells, to prove its graded tests")
        start = time.perf_counter()
        nb = nbformat.read(self.path, as_version=4)
        student = student_edition(nb)
        stubs = {g.grade_id: student.cells[g.solution_cell].source
                 for g in graded_exercises(student, self.path.name)}
        problems = []
        for exercise in graded_exercises(nb, self.path.name):
            proof = prove_exercise(kernel, nb.cells[exercise.solution_cell].source,
                                   stubs[exercise.grade_id], nb.cells[exercise.test_cell].source,
                                   exercise.grade_id, exercise.points)
            self.user_properties.append(("graded_proof", (self.path.name, {
                "grade_id": proof.grade_id, "points": proof.points,
                "stub_error": proof.stub_error, "killed": len(proof.killed),
                "survived": len(proof.survived), "problems": list(proof.problems),
                "seconds": proof.seconds})))
            problems += [f"{exercise.grade_id}: {problem}" for problem in proof.problems]
        _proof_seconds[self.path.name] = time.perf_counter() - start
        assert not problems, "\n".join(problems)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::graded tests on the student edition"


def pytest_collection_modifyitems(session, config, items) -> None:
    """Put a :class:`GradedProofItem` after the last cell of every chapter with graded tests."""
    try:
        import nbgrader  # noqa: F401  (the student edition is nbgrader's)
    except ModuleNotFoundError:  # e.g. the Colab-parity environment: nothing to prove there
        return
    from tests.classroom import graded_exercises
    import nbformat

    last: dict[object, int] = {}
    for index, item in enumerate(items):
        if type(item).__name__ == "IPyNbCell":
            last[item.parent] = index
    for parent, index in sorted(last.items(), key=lambda kv: kv[1], reverse=True):
        nb = nbformat.read(parent.path, as_version=4)
        if graded_exercises(nb, parent.path.name):
            items.insert(index + 1, GradedProofItem.from_parent(
                parent, name="graded tests on the student edition"))


_started: dict[str, float] = {}
_finished: dict[str, float] = {}
_cells: dict[str, int] = defaultdict(int)


def _notebook_of(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") else None


_part_seconds: dict[str, float] = defaultdict(float)
_session_start = time.perf_counter()
PARTS = ("unit tests", "chapters (nbval)", "graded-test proofs", "book build")


def part_of(nodeid: str) -> str:
    """Which part of the run a test belongs to, for the time table printed at the end."""
    if nodeid.endswith("::graded tests on the student edition"):
        return "graded-test proofs"
    if _notebook_of(nodeid) is not None:
        return "chapters (nbval)"
    if nodeid.startswith("tests/test_book.py"):
        return "book build"
    return "unit tests"


def pytest_runtest_logreport(report) -> None:
    _part_seconds[part_of(report.nodeid)] += report.duration  # setup, call and teardown
    if report.when == "call":
        _proofs.extend(value for name, value in report.user_properties if name == "graded_proof")


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    if nodeid.endswith("::graded tests on the student edition"):
        return  # timed on its own: it is not part of the chapter
    notebook = _notebook_of(nodeid)
    if notebook is not None:
        _started.setdefault(notebook, time.perf_counter())


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    if nodeid.endswith("::graded tests on the student edition"):
        return
    notebook = _notebook_of(nodeid)
    if notebook is not None:
        _finished[notebook] = time.perf_counter()
        _cells[notebook] += 1


def notebook_times() -> list[tuple[str, float, int]]:
    """(notebook, seconds from its first cell's start to its last cell's end, cells), slowest first."""
    rows = [(nb, _finished[nb] - _started[nb], _cells[nb]) for nb in _started if nb in _finished]
    return sorted(rows, key=lambda row: row[1], reverse=True)


_summaries: dict[str, list[str]] = defaultdict(list)


def add_summary(title: str, line: str) -> None:
    """Print ``line`` under the section ``title`` at the end of the run (the zoo tests report
    their timings this way: output written during a test is captured)."""
    _summaries[title].append(line)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:
    tr = terminalreporter
    for title, lines in _summaries.items():
        tr.section(title)
        for line in lines:
            tr.write_line(line)
    if _proofs:
        tr.section("graded tests: pass on the solution, fail on the stub and on wrong answers")
        for notebook, proof in _proofs:
            verdict = "ok" if not proof["problems"] else "FAILED"
            wrong = proof["killed"] + proof["survived"]
            tr.write_line(f"{verdict:6s} {notebook:30s} {proof['grade_id']:30s} "
                          f"{proof['points']:3g} pt  stub: {proof['stub_error'] or 'PASSED'}; "
                          f"wrong answers failed: {proof['killed']} of {wrong}  "
                          f"({proof['seconds']:.1f} s)")
    _notebook_summary(tr)
    if _part_seconds:  # last: the time table closes the run
        tr.section("time by part (seconds)")
        for part in PARTS:
            tr.write_line(f"{_part_seconds.get(part, 0.0):7.1f}  {part}")
        tr.write_line(f"{time.perf_counter() - _session_start:7.1f}  the whole run "
                      "(collection and kernel start-ups included)")


def _notebook_summary(tr) -> None:
    rows = notebook_times()
    if not rows:
        return
    from tests.portability import strict_share

    share = strict_share([ROOT / notebook for notebook, _, _ in rows])
    tr.section("notebook outputs: strictly compared vs exempt")
    settings = ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in PORTABLE_FLOAT_PATH)
    tr.write_line(f"float path: {FLOAT_PATH} ({settings})")
    tr.write_line(f"{share.strict} of {share.with_outputs} code cells with outputs compared "
                  f"strictly ({share.strict_fraction:.1%}); exempt (nbval-ignore-output): "
                  f"{share.exempt}, at most {share.limit:.0%} allowed")
    tr.section("notebook execution times (budget: 30 s a section, 60 s a whole chapter)")
    for notebook, seconds, cells in rows:
        budget = budget_seconds(ROOT / notebook)
        verdict = "ok" if seconds <= budget else "OVER BUDGET"
        tr.write_line(f"{seconds:6.1f} s  {cells:3d} cells  {verdict:11s}  {notebook} "
                      f"({budget:.0f} s)")
    tr.write_line(f"{sum(r[1] for r in rows):6.1f} s  total")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    over = [row for row in notebook_times() if row[1] > budget_seconds(ROOT / row[0])]
    if over and session.exitstatus == 0:
        # A notebook over budget fails the run: the budget is a requirement, not a hope.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
