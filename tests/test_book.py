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
    assert (html / "notebooks" / "00_setup.html").exists()
