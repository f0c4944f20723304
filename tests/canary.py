"""The canary: every chapter's asserts on the newest TensorFlow, Keras and torch (``make test-canary``).

Colab moves to new framework releases without warning, so CI also runs the chapters on the newest
releases PyPI has, taken the way Colab takes them: the default wheels (torch's CUDA build, with
Triton), not this machine's ``+cpu`` build, and on Colab's Python (``tests/colab_runtime.txt``).
It *reports* and never fails the build: a red canary is news about the next Colab image, for the
maintainers to act on before students meet it.

``python -m tests.canary [--venv DIR] [--report FILE]``
    Make a fresh environment, install the newest ``tensorflow``, ``keras`` and ``torch`` with the
    unpinned rest of Colab's list, install ``utils`` the way the bootstrap cell does, run every
    chapter with its asserts (``--nbval-lax``), and write a short report (printed too).

The install reads no pip configuration file (``PIP_CONFIG_FILE=/dev/null``): a machine-wide
constraint or a local mirror would otherwise decide which release "newest" is.
Standard library only: it runs before the environment it builds exists.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.colab_runtime import RUNTIME, find_python, read_runtime  # noqa: E402

#: The releases the canary follows: always the newest that installs.
NEWEST = ("tensorflow", "keras", "torch")
#: Kept at the course's pins: what runs the notebooks, not what they teach.
TOOLS = ("pytest", "nbval")
#: What the report lists, in this order.
REPORTED = ("tensorflow", "keras", "torch", "triton", "numpy", "scipy", "scikit-learn",
            "matplotlib")


def requirements(runtime: str | Path = RUNTIME) -> list[str]:
    """The canary's package list: Colab's list with every pin dropped but the test tools'."""
    _, pins, unpinned = read_runtime(runtime)
    names = list(NEWEST) + [name for name in [*pins, *unpinned]
                            if name not in NEWEST and name not in TOOLS]
    return names + [f"{name}=={pins[name]}" for name in TOOLS if name in pins]


def _run(command: list[str], log: list[str], env: dict | None = None,
         timeout: float = 3600) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout,
                              cwd=ROOT)
    except subprocess.TimeoutExpired as err:
        done = subprocess.CompletedProcess(command, 124, err.stdout or "", f"timed out: {err}")
    log.append(f"$ {' '.join(command)}  ({time.perf_counter() - start:.0f} s, exit "
               f"{done.returncode})")
    return done


def _versions(python: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys; out = {'python': sys.version.split()[0]}\n"
            f"for name in {list(REPORTED)!r}:\n"
            "    try: out[name] = m.version(name)\n"
            "    except m.PackageNotFoundError: out[name] = '(not installed)'\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if done.returncode:
        return {}
    import json
    return json.loads(done.stdout)


def summary_line(pytest_output: str) -> str:
    """pytest's last "N passed, M failed ..." line, without colours."""
    clean = re.sub(r"\x1b\[[0-9;]*m", "", pytest_output)
    lines = [line.strip("= ").strip() for line in clean.splitlines()
             if re.search(r"\d+ (passed|failed|error)", line)]
    return lines[-1] if lines else "(no pytest summary)"


def failures(pytest_output: str) -> list[str]:
    """The failed items pytest names in its short summary."""
    clean = re.sub(r"\x1b\[[0-9;]*m", "", pytest_output)
    return [line.split(" ", 1)[1] for line in clean.splitlines()
            if line.startswith(("FAILED ", "ERROR "))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=str(ROOT / ".venv-canary"))
    parser.add_argument("--report", default=str(ROOT / "_build" / "canary.md"))
    args = parser.parse_args(argv)
    venv, report = Path(args.venv), Path(args.report)
    log: list[str] = []
    start = time.perf_counter()
    python_version, _, _ = read_runtime(RUNTIME)
    interpreter = find_python(python_version)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    outcome, output = "could not be set up", ""
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [interpreter, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade",
         *requirements()],
    ]
    course = venv / "course"
    for step in steps:
        done = _run(step, log, env=env)
        if done.returncode:
            output = done.stdout + done.stderr
            break
    else:
        course.mkdir(parents=True)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, course / name)
        shutil.copytree(ROOT / "utils", course / "utils",
                        ignore=shutil.ignore_patterns("__pycache__"))
        done = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                     f"initialization-matters @ file://{course}"], log, env=env)
        if done.returncode:
            output = done.stdout + done.stderr
        else:
            notebooks_env = {**os.environ, "COURSE_FLOAT_PATH": "native"}
            done = _run([str(venv / "bin" / "python"), "-m", "pytest", "notebooks",
                         "--nbval-lax", "-q", "-p", "no:cacheprovider"], log, env=notebooks_env)
            output = done.stdout + done.stderr
            outcome = "passed" if done.returncode == 0 else "FAILED"
    versions = _versions(venv / "bin" / "python")
    lines = [f"# Canary: the chapters on the newest releases ({time.strftime('%Y-%m-%d')})", "",
             f"Outcome: **{outcome}**, {summary_line(output)} "
             f"({time.perf_counter() - start:.0f} s in all).", "",
             "| package | version |", "|---|---|"]
    lines += [f"| {name} | {version} |" for name, version in versions.items()]
    failed = failures(output)
    if failed:
        lines += ["", "Failed:", *[f"- {item}" for item in failed]]
    if outcome == "could not be set up":
        lines += ["", "Last output:", "```", *output.strip().splitlines()[-20:], "```"]
    lines += ["", "Steps:", *[f"- `{entry}`" for entry in log]]
    text = "\n".join(lines) + "\n"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(text)
    print(text)
    return 0  # the canary reports; it never fails the build


if __name__ == "__main__":
    raise SystemExit(main())
