"""The bootstrap every chapter starts with, and the environment report (Chapter 0).

Standard library only: this module must import before anything else is installed.

Google Colab fetches one notebook, not the repository, so each notebook's first code cell must
make ``utils`` importable on its own. That cell is generated here, from the repository URL in
``_config.yml`` (the one place it is written), the commit that last changed the package
(:func:`course_ref`) and the package version, so every chapter carries the same text;
``make bootstrap`` and ``make execute`` rewrite it and ``tests/test_environment.py`` checks it.
"""
from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess
import sys
from pathlib import Path

from utils import COURSE

__all__ = [
    "PACKAGE_NAME",
    "bootstrap_cell_source",
    "repository_url",
    "PACKAGE_FILES",
    "course_ref",
    "in_colab",
    "environment_report",
]

#: The distribution name, which is also the marker ``utils.COURSE`` the bootstrap checks.
PACKAGE_NAME = COURSE

_BOOTSTRAP_TEMPLATE = '''\
# Bootstrap, the same first cell in every notebook. On Google Colab it installs the course's
# `utils` package at the commit this notebook was executed with; TensorFlow, Keras and torch
# stay Colab's own (never reinstalled). Everywhere, it checks what `import utils` finds.
import importlib.util, os, subprocess, sys
COURSE, COURSE_VERSION = "{package}", "{version}"
COURSE_REPOSITORY = "{url}"
COURSE_PACKAGE = f"{{COURSE}} @ git+{{COURSE_REPOSITORY}}@{ref}"
def fresh_utils():  # import `utils` anew, forgetting earlier imports; None if there is none
    for name in [name for name in sys.modules if name.split(".")[0] == "utils"]:
        del sys.modules[name]
    importlib.invalidate_caches()
    return importlib.import_module("utils") if importlib.util.find_spec("utils") else None
utils = fresh_utils()
if "google.colab" in sys.modules and getattr(utils, "COURSE", None) != COURSE:
    pip = [sys.executable, "-m", "pip", "install", "--quiet", COURSE_PACKAGE]
    subprocess.run(pip, check=True)
    utils = fresh_utils()
elif utils is None:  # a clone opened without `make`: utils/ is one or two folders up
    for up in ("..", os.path.join("..", "..")):
        if os.path.isdir(os.path.join(up, "utils")):
            sys.path.insert(0, os.path.abspath(up))
            utils = fresh_utils()
            break
if utils is None:
    raise ImportError(f"no module named utils: pip install '{{COURSE_PACKAGE}}'")
found = (getattr(utils, "COURSE", None), getattr(utils, "__version__", None))
if found != (COURSE, COURSE_VERSION):
    path = list(utils.__path__)[0] if hasattr(utils, "__path__") else utils.__file__
    what = f"version {{found[1]}} of the course's utils" if found[0] == COURSE else "another module"
    raise ImportError(f"`import utils` finds {{path}}, {{what}}; this chapter needs the course's "
                      f"utils {{COURSE_VERSION}}. Rename or remove it (or pip uninstall the package "
                      "that installed it), restart the runtime and run this cell again.")'''


def repository_url(config_path: str | Path) -> str:
    """Read ``repository: url:`` from a Jupyter Book ``_config.yml`` (no YAML library needed).

    Parameters
    ----------
    config_path
        The book's ``_config.yml``, read as UTF-8.

    Returns
    -------
    str
        The ``url`` of the top-level ``repository`` section, without enclosing quotes or a
        trailing ``/``.

    Raises
    ------
    ValueError
        If the file has no ``repository`` section with a ``url``.
    FileNotFoundError
        If ``config_path`` does not exist (another ``OSError`` if it cannot be read).
    """
    text = Path(config_path).read_text(encoding="utf-8")
    match = re.search(r"^repository:\s*\n((?:[ \t]+.*\n?)+)", text, re.M)
    url = re.search(r"^\s+url:\s*(\S+)", match.group(1), re.M) if match else None
    if url is None:
        raise ValueError(f"config_path {config_path} has no `repository: url:` entry")
    return url.group(1).strip("'\"").rstrip("/")


#: The repository paths a bootstrap installs. The ref it pins, :func:`course_ref`, is the
#: last commit that changed one of them.
PACKAGE_FILES = ("utils", "pyproject.toml")


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(f"root {root}: `git {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def course_ref(root: str | Path) -> str:
    """The commit a notebook's bootstrap installs: the last one that changed the package.

    That is the newest commit touching ``utils/`` or ``pyproject.toml`` (:data:`PACKAGE_FILES`)
    in the git checkout at ``root``. Any later commit (a notebook re-executed, a page edited)
    installs the same package, so the notebooks can cite the commit before they are committed
    themselves; ``make bootstrap`` writes it into every chapter.

    Parameters
    ----------
    root
        The top folder of a git checkout of the course (the folder holding ``utils/`` and
        ``pyproject.toml``).

    Returns
    -------
    str
        The commit's full hexadecimal hash.

    Raises
    ------
    ValueError
        If ``root`` is not a git checkout, is a shallow clone (whose history may not reach the
        commit), or no commit touches the package.
    FileNotFoundError
        If the ``git`` program is not installed.
    """
    root = Path(root)
    if _git(root, "rev-parse", "--is-shallow-repository") == "true":
        raise ValueError(f"root {root} is a shallow clone; the package's last commit may be "
                         "missing (git fetch --unshallow)")
    ref = _git(root, "log", "-1", "--format=%H", "--", *PACKAGE_FILES)
    if not ref:
        raise ValueError(f"root {root}: no commit touches {', '.join(PACKAGE_FILES)}")
    return ref


def bootstrap_cell_source(url: str, ref: str, version: str | None = None) -> str:
    """The source of the first code cell of every chapter.

    The cell installs ``utils`` on Colab when ``import utils`` does not find the course's
    package (``utils.COURSE``), refreshes any earlier import of ``utils``, and raises an
    ``ImportError`` naming the file or folder when another module named ``utils`` (a
    ``utils.py`` beside the notebook, an unrelated ``utils`` distribution) is still found
    instead, or when the course's package is another version than ``version``.

    Parameters
    ----------
    url
        The course repository (``https://github.com/OWNER/NAME``), from ``_config.yml``.
    ref
        The commit (or tag) Colab installs, normally :func:`course_ref`.
    version
        The ``utils.__version__`` the notebook requires; defaults to the installed one.

    Returns
    -------
    str
        The cell's Python source, without a final newline.

    Raises
    ------
    ValueError
        If ``url`` is not an https URL (or holds a space, quote, backslash or brace), ``ref``
        is empty or holds another character than letters, digits and ``. _ / + -``, or
        ``version`` is not dotted numbers (``"0.2.0"``).
    """
    if version is None:
        from utils import __version__ as version
    # Both strings are pasted into string literals of the cell (the ref into an f-string), so
    # quotes, backslashes and braces would change the cell's code: allow only what URLs and git
    # refs need.
    if not re.fullmatch(r"https://[A-Za-z0-9._~:/?#@!$&()*+,;=%-]+", url):
        raise ValueError(
            f"url must be an https:// repository URL without spaces, quotes, backslashes or "
            f"braces, got {url!r}"
        )
    if not re.fullmatch(r"[A-Za-z0-9._/+-]+", ref):
        raise ValueError(
            f"ref must be a non-empty tag or commit of letters, digits and . _ / + -, got {ref!r}"
        )
    if not re.fullmatch(r"\d+(\.\d+)*", str(version)):
        raise ValueError(f"version must be dotted numbers such as '0.2.0', got {version!r}")
    return _BOOTSTRAP_TEMPLATE.format(package=PACKAGE_NAME, url=url, ref=ref, version=version)


def in_colab() -> bool:
    """Whether this Python process is a Google Colab runtime.

    Returns
    -------
    bool
        True if ``google.colab``, the package Colab's runtime provides, has been imported
        (it is in ``sys.modules``); the bootstrap cell decides whether to install by the same
        test.
    """
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
