"""Sphinx extension for the course book (listed in ``_config.yml`` as a local extension).

The chapters are nbgrader-style notebooks: a graded solution sits between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` lines so that the student edition can replace it with a
stub. Those marker lines mean nothing to a reader, so the book drops them from code cells when
it reads a notebook. The committed notebook, which nbval checks, keeps them.
"""
from __future__ import annotations

import json
import re
from typing import Any

_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def strip_solution_markers(notebook_json: str) -> str:
    """Return the notebook JSON with the nbgrader marker lines removed from code cells."""
    notebook = json.loads(notebook_json)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        lines = source if isinstance(source, list) else source.splitlines(keepends=True)
        kept = [line for line in lines if not _MARKER.match(line.rstrip("\n"))]
        cell["source"] = kept if isinstance(source, list) else "".join(kept)
    return json.dumps(notebook)


def _on_source_read(app: Any, docname: str, source: list[str]) -> None:
    if str(app.env.doc2path(docname)).endswith(".ipynb") and "### BEGIN SOLUTION" in source[0]:
        source[0] = strip_solution_markers(source[0])


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _on_source_read)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
