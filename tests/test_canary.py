"""tests/canary.py: what the canary installs, and how it reads pytest's verdict."""
from __future__ import annotations

from tests.canary import NEWEST, TOOLS, failures, requirements, summary_line
from tests.colab_runtime import RUNTIME, read_runtime


def test_the_canary_takes_the_newest_frameworks_and_keeps_the_test_tools_pinned():
    _, pins, unpinned = read_runtime(RUNTIME)
    wanted = requirements()
    assert wanted[:len(NEWEST)] == list(NEWEST)  # unpinned: pip takes the newest
    assert not any(w.startswith(tuple(f"{name}==" for name in NEWEST)) for w in wanted)
    for tool in TOOLS:
        assert f"{tool}=={pins[tool]}" in wanted
    assert set(unpinned) <= set(wanted)
    assert not any("==" in w for w in wanted if w.split("==")[0] not in TOOLS)


def test_the_report_reads_pytest_s_summary_and_failures():
    output = ("notebooks/a.ipynb ..F\n"
              "FAILED notebooks/a.ipynb::Cell 3 - Notebook cell execution failed\n"
              "\x1b[31m===== 1 failed, 2 passed in 3.10s =====\x1b[0m\n")
    assert summary_line(output) == "1 failed, 2 passed in 3.10s"
    assert failures(output) == ["notebooks/a.ipynb::Cell 3 - Notebook cell execution failed"]
    assert summary_line("") == "(no pytest summary)"
