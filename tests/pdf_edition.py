"""Build the book as one PDF through LaTeX: ``python -m tests.pdf_edition [--out DIR]``.

Jupyter Book's ``pdflatex`` builder writes ``_build/latex/initialization-matters.tex`` and runs
XeLaTeX on it (``_config.yml``: ``latex.latex_engine``) through latexmk, with warnings as errors
as the HTML build. ``make pdf`` installs the TeX Live packages first and then rebuilds the HTML
book, which copies the PDF into ``_static`` and links it from the introduction.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.book import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
# The extension that links the PDF from the HTML book reads its name the same way.
from course_book import pdf_name  # noqa: E402

PROGRAMS = ("xelatex", "latexmk", "makeindex")


def build_command(out: Path | None = None) -> list[str]:
    """The ``jupyter-book build --builder pdflatex`` command: nitpicky, warnings are errors."""
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jupyter_book), "build", str(ROOT), "--builder", "pdflatex", "-W", "-n",
           "--keep-going"]
    if out is not None:
        cmd += ["--path-output", str(out)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.pdf_edition")
    parser.add_argument("--out", type=Path, default=None,
                        help="write _build/ under this folder instead of the repository root")
    args = parser.parse_args(argv)
    missing = [program for program in PROGRAMS if shutil.which(program) is None]
    if missing:
        print(f"pdf: {', '.join(missing)} not found; `make pdf` installs TeX Live from Debian",
              file=sys.stderr)
        return 1
    start = time.monotonic()
    code = subprocess.run(build_command(args.out), cwd=ROOT).returncode
    pdf = (args.out or ROOT) / "_build" / "latex" / pdf_name(ROOT)
    if code != 0:
        return code
    if not pdf.is_file() or pdf.read_bytes()[:5] != b"%PDF-":
        print(f"pdf: the build finished but {pdf} is missing or not a PDF", file=sys.stderr)
        return 1
    print(f"pdf: {pdf} ({pdf.stat().st_size / 2**20:.1f} MiB) in "
          f"{time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
