"""Where the course's notebooks are, in reading order: the one list every tool uses.

A chapter is either one notebook, ``notebooks/NN_name.ipynb``, or a folder of section notebooks,
``notebooks/NN_name/MM_section.ipynb`` (the second edition's layout, ``../shared/lesson.md``), in
the order ``_toc.yml`` gives. Every tool (nbval's run, ``make bench``, ``make execute``,
``make bootstrap``, the student and Otter editions, the graded proof, the figure and lesson
tests) takes its notebooks from :func:`notebooks` and names them by :func:`notebook_id`, which
is unique across the book.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TOC = ROOT / "_toc.yml"


def toc_files(toc: Path = TOC) -> list[str]:
    """Every ``file:`` (and ``root:``) entry of the table of contents, in reading order."""
    return re.findall(r"^\s*(?:-\s*)?(?:file|root):\s*(\S+)\s*$", toc.read_text(), re.M)


def notebooks(toc: Path = TOC) -> list[Path]:
    """The course's notebooks in reading order: the toc's entries that are ``.ipynb`` files."""
    found = []
    for entry in toc_files(toc):
        path = ROOT / f"{entry}.ipynb"
        if path.is_file() and path.is_relative_to(NOTEBOOKS):
            found.append(path)
    return found


#: Seconds a section notebook may take on the 2-core machine (``../shared/lesson.md``), and the
#: hard cap for a chapter that is still one notebook.
SECTION_BUDGET_S = 30.0
CHAPTER_BUDGET_S = 60.0


def budget_seconds(path: Path) -> float:
    """The time budget of one notebook: :data:`SECTION_BUDGET_S` for a section, else the cap."""
    return SECTION_BUDGET_S if is_section(path) else CHAPTER_BUDGET_S


def all_notebook_files() -> list[Path]:
    """Every ``.ipynb`` under ``notebooks/`` (checkpoints excluded), listed in the toc or not."""
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def notebook_id(path: Path) -> str:
    """A name for the notebook that is unique across the book: its path under ``notebooks/``
    without the suffix, folders joined by ``-`` (``01_defaults-02_bit_for_bit``)."""
    relative = Path(path).resolve().relative_to(NOTEBOOKS).with_suffix("")
    return "-".join(relative.parts)


def chapter_of(path: Path) -> int:
    """The chapter number: the leading digits of the notebook's first path part."""
    first = Path(path).resolve().relative_to(NOTEBOOKS).parts[0]
    match = re.match(r"(\d+)", first)
    if match is None:
        raise ValueError(f"path {path} is not under notebooks/NN_...: no chapter number")
    return int(match.group(1))


def is_section(path: Path) -> bool:
    """Whether the notebook is a section of a chapter folder (the second edition's layout)."""
    return Path(path).resolve().parent != NOTEBOOKS.resolve()


def is_reference(path: Path) -> bool:
    """Whether the notebook is a chapter's reference page (``*reference.ipynb``): consulted, not
    read, so it keeps the check-cell rules but not a lesson's."""
    return Path(path).stem.endswith("reference")


def by_id(identifier: str) -> Path:
    """The notebook with this :func:`notebook_id` (or file stem, for a one-notebook chapter).

    Raises
    ------
    ValueError
        If no notebook of the book has it.
    """
    for path in notebooks():
        if identifier == notebook_id(path) or (identifier == path.stem and not is_section(path)):
            return path
    raise ValueError(f"no notebook {identifier!r}; notebooks are "
                     f"{[notebook_id(p) for p in notebooks()]}")
