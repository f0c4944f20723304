"""Google Colab's runtime, for ``make test-colab`` (standard library only).

``tests/colab_runtime.txt`` lists the versions of Colab's image that matter (Python, NumPy and
the frameworks pinned with ``==``, the rest left to pip). ``make test-colab`` installs them in
``.venv-colab``, installs the course's ``utils`` the way the bootstrap cell does, and runs
every chapter there with its asserts. This module does the two checks around that install:

``python -m tests.colab_runtime python [RUNTIME]``
    Print the interpreter ``make test-colab`` should use: pyenv's or ``PATH``'s
    ``pythonX.Y`` for the ``# python==X.Y`` line, else ``python3`` (the Makefile prints which).
``python -m tests.colab_runtime check [RUNTIME]``
    Run by the environment's own Python after ``utils`` is installed: fail unless every ``==``
    pin is the installed version (so installing ``utils`` changed none of them) and a chapter's
    ``import utils`` finds the installed package; print the versions of the unpinned packages
    pip chose.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent / "colab_runtime.txt"


def read_runtime(path: str | Path = RUNTIME) -> tuple[str | None, dict[str, str], list[str]]:
    """``(python, pins, unpinned)`` from a runtime file.

    ``python`` is the ``X.Y`` of a ``# python==X.Y`` comment (or None), ``pins`` maps each
    ``name==version`` line's name (lower case) to its version, and ``unpinned`` lists the bare
    names.

    Raises
    ------
    ValueError
        If a line is neither a comment, ``name==version`` nor a bare name.
    """
    python, pins, unpinned = None, {}, []
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        comment = re.fullmatch(r"#\s*python==(\d+\.\d+)\s*", raw.strip())
        if comment:
            python = comment.group(1)
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        pinned = re.fullmatch(r"([A-Za-z0-9][\w.-]*)==([\w.+-]+)", line)
        if pinned:
            pins[pinned.group(1).lower()] = pinned.group(2)
        elif re.fullmatch(r"[A-Za-z0-9][\w.-]*", line):
            unpinned.append(line.lower())
        else:
            raise ValueError(f"path {path}, line {number}: expected `name==version` or a bare "
                             f"name, got {line!r}")
    return python, pins, unpinned


def find_python(version: str | None) -> str:
    """pyenv's ``pythonX.Y`` (newest patch release), else ``PATH``'s, else ``python3``."""
    if version:
        pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
        candidates = sorted(pyenv.glob(f"{version}.*/bin/python{version}"),
                            key=lambda p: [int(x) for x in re.findall(r"\d+", p.parts[-3])])
        if candidates:
            return str(candidates[-1])
        on_path = shutil.which(f"python{version}")
        if on_path:
            return on_path
    return shutil.which("python3") or sys.executable


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name).split("+")[0]  # torch's "+cu130" local tag
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def check(path: str | Path = RUNTIME) -> int:
    python, pins, unpinned = read_runtime(path)
    here = ".".join(platform.python_version_tuple()[:2])
    note = "" if python in (None, here) else f" (Colab has {python}; not found on this machine)"
    print(f"Colab parity environment: Python {platform.python_version()} at {sys.executable}"
          f"{note}")
    wrong = {name: (pin, _installed(name)) for name, pin in pins.items()
             if _installed(name) != pin}
    print("  pinned:   " + ", ".join(f"{name}=={pin}" for name, pin in pins.items()))
    print("  unpinned: " + ", ".join(f"{name} {_installed(name)}" for name in unpinned))
    course = _installed("initialization-matters")
    print(f"  course:   initialization-matters {course}")
    if wrong:
        print(f"pins changed (pinned, installed): {wrong}", file=sys.stderr)
        return 1
    if course == "not installed":
        print("the course's utils is not installed", file=sys.stderr)
        return 1
    # What a chapter's kernel imports (it starts in notebooks/): the installed copy, not the
    # checkout's utils/ folder.
    probe = subprocess.run([sys.executable, "-c", "import utils; print(utils.__file__)"],
                           cwd=RUNTIME.parent.parent / "notebooks", capture_output=True,
                           text=True)
    imported = probe.stdout.strip()
    print(f"  a chapter's `import utils` finds {imported or probe.stderr.strip()}")
    if probe.returncode != 0 or not imported.startswith(sys.prefix):
        print(f"`import utils` does not find the package installed in {sys.prefix}",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.colab_runtime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["python", "check"])
    parser.add_argument("runtime", nargs="?", default=str(RUNTIME))
    args = parser.parse_args(argv)
    if args.command == "python":
        print(find_python(read_runtime(args.runtime)[0]))
        return 0
    return check(args.runtime)


if __name__ == "__main__":
    raise SystemExit(main())
