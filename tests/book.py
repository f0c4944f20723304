"""Build the Jupyter Book with warnings as errors: ``python -m tests.book build [--out DIR]``.

The book renders the outputs committed in the notebooks (``execute_notebooks: "off"`` in
``_config.yml``), so it builds in seconds and shows exactly what nbval verified.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_command(out: Path | None = None) -> list[str]:
    """The ``jupyter-book build`` command: nitpicky, warnings are errors, report them all."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going"]
    if out is not None:
        cmd += ["--path-output", str(out)]
    return cmd


def build(out: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the build and return the finished process (output captured as text)."""
    return subprocess.run(build_command(out), cwd=ROOT, text=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.book")
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--out", type=Path, default=None,
                        help="write _build/ under this folder instead of the repository root")
    args = parser.parse_args(argv)
    return subprocess.run(build_command(args.out), cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
