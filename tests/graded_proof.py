"""Prove that every graded test fails without a correct answer, in the kernel nbval already ran.

For each chapter with graded exercises, the course's pytest plugin adds one item after the
chapter's last nbval cell. It runs in the same kernel, so nothing is executed a second time
except the graded exercises themselves. For each graded exercise it executes:

1. *control*: the instructor's solution cell, then the graded test cell: both must pass (so the
   end-of-chapter state is one in which the test is meaningful);
2. *student edition*: the stub that nbgrader's ``ClearSolutions`` writes (taken from
   :func:`tests.classroom.student_edition`, not re-created here), then the test: it must fail,
   with ``NotImplementedError`` raised by the stub;
3. *wrong answers*: a few mutants of the solution (an arithmetic operator swapped, a numeric
   constant changed, a comparison reversed), each after the stub so that a mutant that does not
   even define the function leaves the stub behind; each is a plausible slip a student makes,
   and at least one must fail the test (a mutant can be equivalent to the solution, so not
   every one can be required to fail; how many did is printed);
4. *restore*: the solution cell again, leaving the kernel as nbval left it.
"""
from __future__ import annotations

import ast
import copy
import time
from dataclasses import dataclass, field
from queue import Empty

MAX_MUTANTS = 3  # wrong answers tried per exercise (time: one graded test run each)
MUTANT_TIMEOUT_S = 60.0  # a mutant can loop for long (a changed range); it is then interrupted

_SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
          ast.FloorDiv: ast.Mult, ast.Pow: ast.Mult}
_FLIPS = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
          ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


def _solution_lines(source: str) -> range:
    """Line numbers (1-based) strictly between ``### BEGIN SOLUTION`` and ``### END SOLUTION``."""
    lines = source.splitlines()
    begin = next(i for i, line in enumerate(lines, 1) if "### BEGIN SOLUTION" in line)
    end = next(i for i, line in enumerate(lines, 1) if "### END SOLUTION" in line)
    return range(begin + 1, end)


def _mutation_sites(tree: ast.AST, lines: range) -> list[tuple[int, int, str]]:
    """(line, column, kind) of every node inside the answer that a mutation can change."""
    sites = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) not in lines:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in _SWAPS:
            sites.append((node.lineno, node.col_offset, "operator"))
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in _FLIPS:
            sites.append((node.lineno, node.col_offset, "comparison"))
        elif (isinstance(node, ast.Constant) and type(node.value) in (int, float)
              and not isinstance(node.value, bool)):
            sites.append((node.lineno, node.col_offset, "constant"))
    return sorted(set(sites))


class _Mutate(ast.NodeTransformer):
    def __init__(self, site: tuple[int, int, str]):
        self.site = site

    def _here(self, node: ast.AST, kind: str) -> bool:
        return (getattr(node, "lineno", None), getattr(node, "col_offset", None),
                kind) == self.site

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if self._here(node, "operator"):
            node.op = _SWAPS[type(node.op)]()
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if self._here(node, "comparison"):
            node.ops = [_FLIPS[type(node.ops[0])]()] + node.ops[1:]
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if self._here(node, "constant"):
            value = node.value
            node.value = value + 1 if isinstance(value, int) else (value * 1.5 or 0.5)
        return node


def mutants(source: str, limit: int = MAX_MUTANTS) -> list[tuple[str, str]]:
    """Up to ``limit`` wrong answers: ``(description, source)`` with one mutation in the answer.

    The mutation sites are spread evenly over the answer (first, middle, last, ...), so the
    choice is deterministic and does not pile up on one line.

    Raises
    ------
    ValueError
        If ``source`` has no ``### BEGIN SOLUTION`` / ``### END SOLUTION`` pair or ``limit`` is
        not positive.
    """
    if limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    try:
        lines = _solution_lines(source)
    except StopIteration:
        raise ValueError("source must contain ### BEGIN SOLUTION and ### END SOLUTION") from None
    tree = ast.parse(source)
    original = ast.unparse(tree)
    sites = _mutation_sites(tree, lines)
    if len(sites) > limit:
        step = (len(sites) - 1) / (limit - 1) if limit > 1 else 0
        sites = [sites[round(i * step)] for i in range(limit)]
    found: list[tuple[str, str]] = []
    for site in sites:
        mutated = ast.unparse(ast.fix_missing_locations(_Mutate(site).visit(copy.deepcopy(tree))))
        if mutated != original and mutated not in (m for _, m in found):
            line = source.splitlines()[site[0] - 1].strip()
            found.append((f"{site[2]} changed in `{line}`", mutated))
    return found


@dataclass
class ExerciseProof:
    """What the graded test did on the stub and on the wrong answers of one exercise."""

    grade_id: str
    points: float
    stub_error: str | None = None
    killed: list[str] = field(default_factory=list)
    survived: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_in_kernel(kernel, code: str, timeout: float) -> dict:
    """Execute ``code`` in an nbval ``RunningKernel``; return the reply (``status``, ``ename``).

    Output is read and discarded. A run that exceeds ``timeout`` is interrupted and reported
    as an error named ``Timeout``.
    """
    msg_id = kernel.execute_cell_input(code, allow_stdin=False)
    deadline = time.monotonic() + timeout
    interrupted = False
    while True:
        try:
            msg = kernel.get_message("shell", timeout=max(1.0, deadline - time.monotonic()))
        except Empty:
            if interrupted:
                raise RuntimeError("the kernel did not answer after an interrupt") from None
            kernel.interrupt()
            interrupted = True
            deadline = time.monotonic() + 30
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            reply = dict(msg["content"])
            break
    kernel.await_idle(msg_id, timeout=30)
    if interrupted:
        reply = {"status": "error", "ename": "Timeout"}
    return reply


def prove_exercise(kernel, solution: str, stub: str, test: str, grade_id: str,
                   points: float) -> ExerciseProof:
    """Run the control, the stub and the wrong answers of one exercise (see the module doc)."""
    start = time.perf_counter()
    proof = ExerciseProof(grade_id, points)

    def run(code: str, what: str, timeout: float = MUTANT_TIMEOUT_S) -> str | None:
        reply = run_in_kernel(kernel, code, timeout)
        return None if reply.get("status") == "ok" else str(reply.get("ename", what))

    for code, what in ((solution, "solution"), (test, "test")):
        error = run(code, what)
        if error:
            proof.problems.append(f"control: the {what} cell raised {error} after the chapter")
    if proof.problems:
        return proof
    stub_definition_error = run(stub, "stub")
    test_error = run(test, "test")
    proof.stub_error = test_error or None
    if test_error is None:
        proof.problems.append("the graded test passes on the student edition's stub")
    elif "NotImplementedError" not in (test_error, stub_definition_error):
        proof.problems.append(f"the test fails on the stub with {test_error}, not with the "
                              "stub's NotImplementedError")
    for description, wrong in mutants(solution):
        run(stub, "stub")
        run(wrong, "wrong answer")
        (proof.killed if run(test, "test") else proof.survived).append(description)
    if not proof.killed and (proof.survived or not mutants(solution)):
        proof.problems.append("no wrong answer fails the graded test: "
                              + "; ".join(proof.survived or ["no mutation site in the answer"]))
    if run(solution, "solution"):
        proof.problems.append("the solution cell failed when the kernel was restored")
    proof.seconds = time.perf_counter() - start
    return proof
