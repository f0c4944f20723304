"""The bootstrap every chapter starts with, and the environment report (Chapter 0).

Standard library only: this module must import before anything else is installed.

Google Colab fetches one notebook, not the repository, so each notebook's first code cell must
make ``utils`` importable on its own. That cell is generated here, from the repository URL in
``_config.yml`` (the one place it is written) and the package version, so every chapter carries
the same text; ``make execute`` rewrites it and ``tests/test_environment.py`` checks it.
"""
from __future__ import annotations

import importlib.metadata
import platform
import re
import sys
from pathlib import Path

__all__ = [
    "PACKAGE_NAME",
    "bootstrap_cell_source",
    "repository_url",
    "course_ref",
    "in_colab",
    "environment_report",
]

PACKAGE_NAME = "initialization-matters"

_BOOTSTRAP_TEMPLATE = '''\
# Bootstrap, the same first cell in every chapter. On Google Colab it installs the course's
# `utils` package at the version this notebook was written for; TensorFlow, Keras and torch
# stay Colab's own (never reinstalled). In a clone of the course it does nothing.
import importlib.util, os, sys
COURSE_REPOSITORY = "{url}"
COURSE_PACKAGE = f"{package} @ git+{{COURSE_REPOSITORY}}@{ref}"
HAS_UTILS = importlib.util.find_spec("utils") is not None
if "google.colab" in sys.modules and not HAS_UTILS:
    import subprocess
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run(pip + [COURSE_PACKAGE], check=True)
elif not HAS_UTILS and os.path.isdir("../utils"):
    sys.path.insert(0, os.path.abspath(".."))  # a clone opened without `make`'''


def repository_url(config_path: str | Path) -> str:
    """Read ``repository: url:`` from a Jupyter Book ``_config.yml`` (no YAML library needed).

    Raises
    ------
    ValueError
        If the file has no ``repository`` section with a ``url``.
    """
    text = Path(config_path).read_text(encoding="utf-8")
    match = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    url = re.search(r"^\s+url:\s*(\S+)", match.group(1), re.M) if match else None
    if url is None:
        raise ValueError(f"config_path {config_path} has no `repository: url:` entry")
    return url.group(1).strip("'\"").rstrip("/")


def course_ref(version: str | None = None) -> str:
    """The git tag a notebook pins: ``v`` followed by the ``utils`` version."""
    if version is None:
        from utils import __version__ as version
    return f"v{version}"


def bootstrap_cell_source(url: str, ref: str) -> str:
    """The source of the first code cell of every chapter.

    Parameters
    ----------
    url
        The course repository (``https://github.com/OWNER/NAME``), from ``_config.yml``.
    ref
        The tag or commit Colab installs, e.g. ``"v0.1.0"``.

    Raises
    ------
    ValueError
        If ``url`` is not an https URL or ``ref`` is empty or contains whitespace.
    """
    if not re.fullmatch(r"https://\S+", url):
        raise ValueError(f"url must be an https:// repository URL, got {url!r}")
    if not ref or re.search(r"\s", ref):
        raise ValueError(f"ref must be a non-empty tag or commit without spaces, got {ref!r}")
    return _BOOTSTRAP_TEMPLATE.format(package=PACKAGE_NAME, url=url, ref=ref)


def in_colab() -> bool:
    """True when running inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def environment_report() -> dict[str, str]:
    """Versions of Python and the course's main packages, read without importing them.

    Returns
    -------
    dict
        Keys ``python``, ``platform``, ``numpy``, ``scipy``, ``matplotlib``, ``scikit-learn``,
        ``tensorflow``, ``keras``, ``torch`` and ``colab`` (``"yes"``/``"no"``).
    """
    report = {"python": platform.python_version(), "platform": platform.machine()}
    for name in ("numpy", "scipy", "matplotlib", "scikit-learn", "tensorflow", "keras", "torch"):
        report[name] = _version(name)
    report["colab"] = "yes" if in_colab() else "no"
    return report
