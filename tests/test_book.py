"""The book builds with zero warnings (`-W -n --keep-going`), as `make book` builds it."""
from __future__ import annotations

import pytest

from tests.book import build


@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    result = build(tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "WARNING" not in log, log[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    assert (html / "notebooks" / "00_setup" / "index.html").exists()


def test_solution_markers_are_stripped_for_the_book_only():
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
    from course_book import strip_solution_markers

    notebook = {"cells": [
        {"cell_type": "code", "source": ["def f():\n", "    ### BEGIN SOLUTION\n",
                                         "    return 1\n", "    ### END SOLUTION\n"]},
        {"cell_type": "markdown", "source": "### BEGIN SOLUTION\n"},
        {"cell_type": "code", "source": "assert f() == 1\n### BEGIN HIDDEN TESTS\n"
                                        "assert f() > 0\n### END HIDDEN TESTS"},
    ]}
    stripped = json.loads(strip_solution_markers(json.dumps(notebook)))
    assert stripped["cells"][0]["source"] == ["def f():\n", "    return 1\n"]
    assert stripped["cells"][1]["source"] == "### BEGIN SOLUTION\n"  # markdown untouched
    assert stripped["cells"][2]["source"] == "assert f() == 1\nassert f() > 0\n"
