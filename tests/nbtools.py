"""Execute, normalise and time the course notebooks.

``python -m tests.nbtools execute [NOTEBOOK ...]``
    Re-execute notebooks in place (all of ``notebooks/`` by default) in the same kernel
    environment as the tests, after rewriting the bootstrap cell from ``_config.yml``. This is
    how committed outputs are produced; nbval then proves in CI that they are still what the
    code prints.
``python -m tests.nbtools bootstrap [NOTEBOOK ...]``
    Rewrite only the bootstrap cell (the first code cell's source, whose outputs are empty)
    of every notebook to the current one, without executing anything: after a commit that
    changes ``utils/`` or ``pyproject.toml``, this points every chapter at that commit.
``python -m tests.nbtools bench``
    Execute every notebook without writing it and print seconds per notebook, slowest first,
    with the total, and each notebook's slowest cells; then run the benchmarks registered in ``tests/benchmarks.py``.

Run through ``make execute`` / ``make bench``, which set the kernel profile (offline, quiet).
"""
from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT_S = 300
PROFILE_CELLS = 6  # `make bench` names this many slowest cells per notebook

sys.path.insert(0, str(ROOT))
from tests.layout import NOTEBOOKS, budget_seconds, notebooks  # noqa: E402
from utils.colab import (PACKAGE_FILES, bootstrap_cell_source, course_ref,  # noqa: E402
                         repository_url)


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The course's notebooks (every section), in reading order, or the ones named."""
    if names:
        return [Path(n).resolve() for n in names]
    return notebooks()


def canonical_bootstrap() -> str:
    """The bootstrap cell text every notebook must start with: it installs the package at the
    last commit that changed it (``utils.colab.course_ref``; needs a full git checkout)."""
    return bootstrap_cell_source(repository_url(ROOT / "_config.yml"), course_ref(ROOT))


def bootstrap_ref(source: str) -> str | None:
    """The ref a bootstrap cell installs (the text after ``@`` on its ``COURSE_PACKAGE`` line)."""
    match = re.search(r'^COURSE_PACKAGE = f".*@(\S+)"$', source, re.M)
    return match.group(1) if match else None


def set_bootstrap(nb: nbformat.NotebookNode) -> bool:
    """Make the first code cell the canonical bootstrap, folded in the book; True if changed."""
    cell = first_code_cell(nb)
    if cell is None:
        return False
    before = (cell.source, list(cell.metadata.get("tags", [])))
    cell.source = canonical_bootstrap()
    # Folded in the book (readers need not see it), visible in Jupyter and Colab.
    cell.metadata["tags"] = sorted(set(cell.metadata.get("tags", [])) | {"hide-input"})
    return (cell.source, cell.metadata["tags"]) != before


def first_code_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def normalise(nb: nbformat.NotebookNode) -> None:
    """Drop metadata that changes from machine to machine, so diffs show only real changes."""
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                                 "name": "python3"}
    nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3",
                                    "codemirror_mode": {"name": "ipython", "version": 3},
                                    "file_extension": ".py", "mimetype": "text/x-python",
                                    "nbconvert_exporter": "python"}
    for cell in nb.cells:
        for key in ("execution", "lines_to_next_cell"):
            cell.metadata.pop(key, None)


def cell_seconds(nb: nbformat.NotebookNode) -> list[tuple[int, float]]:
    """(cell index, seconds) of every executed code cell, from nbclient's timing metadata."""
    from datetime import datetime

    rows = []
    for index, cell in enumerate(nb.cells):
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if cell.cell_type == "code" and start and end:
            parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
            rows.append((index, (parse(end) - parse(start)).total_seconds()))
    return rows


def run(path: Path, write: bool, profile: list | None = None) -> float:
    """Execute one notebook top to bottom in a fresh kernel; return the wall time in seconds.

    With ``profile`` (a list), append ``(cell index, seconds)`` for every code cell to it.
    """
    nb = nbformat.read(path, as_version=4)
    set_bootstrap(nb)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            record_timing=True)
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    if profile is not None:
        profile.extend(cell_seconds(nb))
    if write:
        normalise(nb)
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return elapsed


def execute(names: list[str] | None) -> int:
    for path in notebook_paths(names):
        seconds = run(path, write=True)
        budget = budget_seconds(path)
        flag = "" if seconds <= budget else f"  OVER the {budget:.0f} s budget"
        print(f"executed {path.relative_to(ROOT)} in {seconds:.1f} s{flag}", flush=True)
    return 0


def bootstrap(names: list[str] | None) -> int:
    changed = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                              *PACKAGE_FILES], capture_output=True, text=True, check=True).stdout
    if changed:
        print(f"commit these first; the bootstrap installs committed files only:\n{changed}",
              file=sys.stderr)
        return 1
    for path in notebook_paths(names):
        nb = nbformat.read(path, as_version=4)
        if set_bootstrap(nb):
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"bootstrap rewritten: {path.relative_to(ROOT)}")
    print(f"every bootstrap installs {course_ref(ROOT)}")
    return 0


def bench(names: list[str] | None) -> int:
    rows = []
    for path in notebook_paths(names):
        name = path.relative_to(NOTEBOOKS).as_posix()
        print(f"running {name} ...", flush=True)
        profile: list[tuple[int, float]] = []
        rows.append((name, run(path, write=False, profile=profile), budget_seconds(path)))
        slowest = sorted(profile, key=lambda row: row[1], reverse=True)[:PROFILE_CELLS]
        print(f"  {rows[-1][1]:.1f} s; slowest cells (index in the notebook: seconds): "
              + ", ".join(f"{index}: {seconds:.1f}" for index, seconds in slowest), flush=True)
    rows.sort(key=lambda r: r[1], reverse=True)
    width = max([len(r[0]) for r in rows] + [8])
    print(f"\n{'notebook':<{width}}  seconds  budget")
    for name, seconds, budget in rows:
        verdict = "ok" if seconds <= budget else "OVER"
        print(f"{name:<{width}}  {seconds:7.1f}  {verdict} ({budget:.0f} s)")
    print(f"{'total':<{width}}  {sum(r[1] for r in rows):7.1f}")
    over = [name for name, s, budget in rows if s > budget]
    try:
        benchmarks = importlib.import_module("tests.benchmarks")
    except ModuleNotFoundError:
        benchmarks = None
    if benchmarks is not None:
        print()
        benchmarks.main()
    return 1 if over else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nbtools", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["execute", "bootstrap", "bench"])
    parser.add_argument("notebooks", nargs="*", help="notebook paths (default: all)")
    args = parser.parse_args(argv)
    commands = {"execute": execute, "bootstrap": bootstrap, "bench": bench}
    return commands[args.command](args.notebooks or None)


if __name__ == "__main__":
    raise SystemExit(main())
