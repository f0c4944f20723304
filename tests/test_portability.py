"""The notebooks' outputs are portable: few cells exempt from strict comparison, each with an
assert, few sanitizer regexes each explained, and the portable float path really differs."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.layout import notebook_id, notebooks

from tests import pytest_course
from tests.portability import (EXEMPT_LIMIT, asserts_something, code_cells_with_outputs,
                               is_exempt, strict_share)

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = notebooks()


def test_at_most_a_tenth_of_the_cells_with_outputs_are_exempt():
    share = strict_share(CHAPTERS)
    assert share.with_outputs > 100  # the chapters are all there
    assert share.exempt <= EXEMPT_LIMIT * share.with_outputs, share


@pytest.mark.parametrize("path", CHAPTERS, ids=notebook_id)
def test_every_exempt_cell_asserts_its_claim(path):
    bare = [i for i, cell in code_cells_with_outputs(path)
            if is_exempt(cell) and not asserts_something(cell.source)]
    assert not bare, f"{path.name}: exempt cells without an assert: {bare}"


def test_asserts_are_found_in_code_not_in_comments():
    assert asserts_something("x = 1\nassert x == 1")
    assert not asserts_something("x = 1  # assert x == 1\nprint(x)")
    assert asserts_something("%matplotlib inline\nfor i in range(2):\n    assert i < 2")


def test_every_sanitizer_is_explained():
    # tests/nbval_sanitize.cfg: each [section] is one regex; it must be preceded by a comment
    # saying what it hides and why that is safe. Few of them: each hides a changed value.
    text = (ROOT / "tests" / "nbval_sanitize.cfg").read_text()
    blocks = re.split(r"^(?=\[)", text, flags=re.M)
    preamble, sections = blocks[0], blocks[1:]
    assert 1 <= len(sections) <= 3
    for previous, section in zip([preamble] + sections, sections):
        assert previous.rstrip().splitlines()[-1].startswith("#"), section


def test_the_portable_float_path_is_the_default():
    if os.environ.get("COURSE_FLOAT_PATH", "portable") != "portable":
        pytest.skip("COURSE_FLOAT_PATH=native: the stored path is being checked")
    for name, value in pytest_course.PORTABLE_FLOAT_PATH.items():
        assert os.environ[name] == value


def test_the_portable_path_switches_torch_to_its_portable_kernels():
    import subprocess
    import sys

    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    env = dict(os.environ, **pytest_course.PORTABLE_FLOAT_PATH)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "DEFAULT"


def test_assert_claims_counts_as_an_assert():
    from tests.portability import asserts_something

    assert asserts_something("x = 1\nassert x")
    assert asserts_something("assert_claims(claim('a', True))")
    assert asserts_something("utils.stats.assert_claims(v)")
    assert not asserts_something("# assert x\nprint(claim('a', True))")
