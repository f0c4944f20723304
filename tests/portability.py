"""Which notebook outputs nbval compares strictly, and which are exempt (tagged).

A code cell whose output carries digits that another CPU, BLAS kernel or thread count changes
(a trained loss, a long float32 reduction) either prints what its asserts guarantee, or is
tagged ``nbval-ignore-output``: nbval still executes it, so its asserts still run, but its
printed digits are not compared. The exempt cells stay few (``EXEMPT_LIMIT``) and every one of
them must assert something (``tests/test_portability.py``).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import nbformat

EXEMPT_TAGS = frozenset({"nbval-ignore-output", "nbval-skip"})
EXEMPT_LIMIT = 0.10  # at most this share of the code cells with outputs may be exempt


@dataclass(frozen=True)
class StrictShare:
    with_outputs: int
    exempt: int
    limit: float = EXEMPT_LIMIT

    @property
    def strict(self) -> int:
        return self.with_outputs - self.exempt

    @property
    def strict_fraction(self) -> float:
        return self.strict / self.with_outputs if self.with_outputs else 1.0


def is_exempt(cell: nbformat.NotebookNode) -> bool:
    return bool(EXEMPT_TAGS & set(cell.metadata.get("tags", [])))


def asserts_something(source: str) -> bool:
    """True when the cell's code asserts: an ``assert`` statement, or a call of
    ``utils.stats.assert_claims``, which raises ``AssertionError`` when a claim does not hold
    (comments do not count)."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    tree = ast.parse("\n".join(lines))
    return any(isinstance(node, ast.Assert) or (
        isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None))
        == "assert_claims") for node in ast.walk(tree))


def code_cells_with_outputs(path: Path) -> list[tuple[int, nbformat.NotebookNode]]:
    nb = nbformat.read(path, as_version=4)
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]


def strict_share(paths: list[Path]) -> StrictShare:
    cells = [cell for path in paths for _, cell in code_cells_with_outputs(path)]
    return StrictShare(len(cells), sum(is_exempt(cell) for cell in cells))
