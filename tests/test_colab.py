"""utils.colab: the bootstrap cell, the repository URL, the environment report.

The slow test installs the course the way the bootstrap does on Colab, offline: in a clean
virtual environment that already has the scientific stack (as Colab does), with the install
pointed at this checkout instead of GitHub and pip forbidden to reach any index. It proves
that the bootstrap installs only the course's own package and reinstalls nothing Colab has.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest

from utils.colab import (bootstrap_cell_source, course_ref, environment_report, in_colab,
                         repository_url)

ROOT = Path(__file__).resolve().parent.parent


def test_repository_url_is_read_from_config():
    assert repository_url(ROOT / "_config.yml").startswith("https://github.com/")


def test_repository_url_missing(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("title: x\n")
    with pytest.raises(ValueError, match="config_path .* has no `repository: url:`"):
        repository_url(config)


def test_bootstrap_cell_pins_the_version():
    import utils

    source = bootstrap_cell_source("https://github.com/o/n", course_ref())
    namespace: dict = {}
    exec(compile(source, "<bootstrap>", "exec"), namespace)  # valid Python, no IPython magics
    assert namespace["COURSE_PACKAGE"] == \
        f"initialization-matters @ git+https://github.com/o/n@v{utils.__version__}"
    assert max(len(line) for line in source.splitlines()) <= 99


@pytest.mark.parametrize("url, ref, message", [
    ("http://insecure", "v1", "url must be an https://"),
    ("https://github.com/o/n", "", "ref must be"),
    ("https://github.com/o/n", "v 1", "ref must be"),
])
def test_bootstrap_cell_rejects_bad_arguments(url, ref, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_cell_source(url, ref)


def test_bootstrap_cell_outside_colab_changes_nothing(tmp_path):
    # Run the cell in a fresh interpreter, not in Colab, from a folder with no ../utils:
    # it must neither install anything nor touch sys.path.
    source = bootstrap_cell_source("https://github.com/o/n", "v0")
    probe = source + "\nprint(len(sys.path))"
    before = subprocess.run([sys.executable, "-c", "import sys; print(len(sys.path))"],
                            cwd=tmp_path, capture_output=True, text=True, check=True)
    after = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                           text=True, check=True)
    assert after.stdout == before.stdout and after.stderr == ""


def test_environment_report_reads_versions_without_importing():
    report = environment_report()
    assert set(report) == {"python", "platform", "numpy", "scipy", "matplotlib", "scikit-learn",
                           "tensorflow", "keras", "torch", "colab"}
    assert report["keras"].startswith("3.")
    assert report["colab"] == "no" and not in_colab()


@pytest.mark.slow
def test_bootstrap_installs_only_the_course_offline(tmp_path):
    colab = tmp_path / "colab-venv"
    venv.EnvBuilder(with_pip=True).create(colab)
    python = colab / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    # "Colab already has the scientific stack": expose this environment's packages by path
    # (a .pth line, so this environment's own editable install of `utils` stays invisible).
    (site / "preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    before = set(os.listdir(site))

    # The notebook's own cell, pointed at a copy of this checkout (pip builds a local project in
    # place, and its build/ folder must not land in the working tree); a fake google.colab.
    source = tmp_path / "course"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "utils", source / "utils",
                    ignore=shutil.ignore_patterns("__pycache__"))
    package = f'COURSE_PACKAGE = "initialization-matters @ {source.as_uri()}"'
    cell = re.sub(r"^COURSE_PACKAGE = .*$", package,
                  bootstrap_cell_source("https://github.com/o/n", "v0"), flags=re.M)
    assert source.as_uri() in cell
    fake_colab = tmp_path / "fake" / "google"
    (fake_colab / "colab").mkdir(parents=True)
    (fake_colab / "__init__.py").write_text("")
    (fake_colab / "colab" / "__init__.py").write_text("")
    script = textwrap.dedent("""
        import importlib.util, sys
        sys.path.insert(0, sys.argv[1]); import google.colab
        assert importlib.util.find_spec("utils") is None, "utils visible before the bootstrap"
    """) + cell + textwrap.dedent("""
        import importlib, utils, utils.colab
        print(utils.__file__)
        print(utils.colab.environment_report()["colab"])
    """)
    workdir = tmp_path / "content"
    workdir.mkdir()
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run([python, "-c", script, str(tmp_path / "fake")], cwd=workdir,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    utils_file, colab_flag = result.stdout.strip().splitlines()[-2:]
    assert utils_file.startswith(str(site)), utils_file
    assert colab_flag == "yes"
    added = set(os.listdir(site)) - before
    added = {name for name in added if name != "__pycache__"}
    assert added == {"utils", "initialization_matters-0.1.0.dist-info"}, added
