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

NOTEBOOK_BUDGET_S = 60.0  # DEVELOPERS.md: each notebook executes in <= 60 s on the CI machine

# Notebook kernels get the course's IPython profile (offline, no fd-level log noise) even when
# pytest is started directly rather than through `make test`.
os.environ.setdefault("IPYTHONDIR", str(ROOT / "tests" / "kernel_profile"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYTHONHASHSEED", "0")
block_network()

_graded: list[tuple[str, str, float, str]] = []


def record_graded(notebook: str, grade_id: str, points: float, student_result: str) -> None:
    """Remember how a graded test cell did on the student edition (for the summary)."""
    _graded.append((notebook, grade_id, points, student_result))


_started: dict[str, float] = {}
_finished: dict[str, float] = {}
_cells: dict[str, int] = defaultdict(int)


def _notebook_of(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") else None


def pytest_runtest_logstart(nodeid: str, location: tuple) -> None:
    notebook = _notebook_of(nodeid)
    if notebook is not None:
        _started.setdefault(notebook, time.perf_counter())


def pytest_runtest_logfinish(nodeid: str, location: tuple) -> None:
    notebook = _notebook_of(nodeid)
    if notebook is not None:
        _finished[notebook] = time.perf_counter()
        _cells[notebook] += 1


def notebook_times() -> list[tuple[str, float, int]]:
    """(notebook, seconds from its first cell's start to its last cell's end, cells), slowest first."""
    rows = [(nb, _finished[nb] - _started[nb], _cells[nb]) for nb in _started if nb in _finished]
    return sorted(rows, key=lambda row: row[1], reverse=True)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config) -> None:
    tr = terminalreporter
    if _graded:
        tr.section("graded exercises: student edition (stub) vs solutions (nbval)")
        for notebook, grade_id, points, result in _graded:
            verdict = "fails as it must" if result != "PASSED" else "PASSES WITHOUT A SOLUTION"
            tr.write_line(f"{notebook:32s} {grade_id:36s} {points:4g} pt  student edition: "
                          f"{result} ({verdict}); solution edition: checked by nbval")
    rows = notebook_times()
    if not rows:
        return
    tr.section("notebook execution times (budget 60 s each)")
    for notebook, seconds, cells in rows:
        verdict = "ok" if seconds <= NOTEBOOK_BUDGET_S else "OVER BUDGET"
        tr.write_line(f"{seconds:6.1f} s  {cells:3d} cells  {verdict:11s}  {notebook}")
    tr.write_line(f"{sum(r[1] for r in rows):6.1f} s  total")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    over = [row for row in notebook_times() if row[1] > NOTEBOOK_BUDGET_S]
    if over and session.exitstatus == 0:
        # A notebook over budget fails the run: the budget is a requirement, not a hope.
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
