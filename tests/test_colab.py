"""utils.colab: the bootstrap cell, its ref, the repository URL, the environment report.

The slow tests run the bootstrap the way Colab does, offline: in a clean virtual environment
that already has the scientific stack (as Colab does), with a fake ``google.colab``, the install
pointed at a copy of this checkout instead of GitHub and pip forbidden to reach any index. They
prove that the bootstrap installs only the course's own package and reinstalls nothing Colab
has, that it refreshes an earlier import of ``utils``, and that it stops with a message naming
the file when another ``utils`` is found instead (a ``utils.py`` or ``utils/`` beside the
notebook) or when the course's ``utils`` is another version.
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

from tests.layout import notebook_id, notebooks

import utils
from tests.nbtools import bootstrap_ref
from utils.colab import (PACKAGE_FILES, bootstrap_cell_source, course_ref, environment_report,
                         in_colab, repository_url)

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _full_git_checkout() -> bool:
    inside = _git("rev-parse", "--is-inside-work-tree")
    return inside.returncode == 0 and _git("rev-parse", "--is-shallow-repository").stdout.strip() \
        == "false"


needs_git = pytest.mark.skipif(not _full_git_checkout(),
                               reason="the ref is a commit: needs a full (not shallow) git clone")


def test_repository_url_is_read_from_config():
    assert repository_url(ROOT / "_config.yml").startswith("https://github.com/")


def test_repository_url_missing(tmp_path):
    config = tmp_path / "_config.yml"
    config.write_text("title: x\n")
    with pytest.raises(ValueError, match="config_path .* has no `repository: url:`"):
        repository_url(config)


def _run_cell(source: str, cwd: Path, python: str | Path = sys.executable,
              before: str = "", after: str = "", env: dict | None = None,
              args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run a bootstrap cell in a fresh interpreter (never in this one: it purges `utils`)."""
    script = textwrap.dedent(before) + source + "\n" + textwrap.dedent(after)
    return subprocess.run([str(python), "-c", script, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


SHA = "0123456789abcdef0123456789abcdef01234567"  # a full commit id: the longest line


def test_bootstrap_cell_pins_commit_and_version(tmp_path):
    source = bootstrap_cell_source("https://github.com/o/n", SHA)
    compile(source, "<bootstrap>", "exec")  # valid Python, no IPython magics
    assert max(len(line) for line in source.splitlines()) <= 99
    # Outside Colab, with the course's utils importable (this environment): no error, no change.
    result = _run_cell(source, tmp_path, after="print(COURSE_PACKAGE, COURSE_VERSION)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["initialization-matters", "@",
                                     f"git+https://github.com/o/n@{SHA}", utils.__version__]


def test_utils_carries_the_marker():
    assert utils.COURSE == "initialization-matters"
    assert re.fullmatch(r"\d+\.\d+\.\d+", utils.__version__)


@pytest.mark.parametrize("url, ref, version, message", [
    ("http://insecure", "v1", None, "url must be an https://"),
    ("https://github.com/o/n", "", None, "ref must be"),
    ("https://github.com/o/n", "v 1", None, "ref must be"),
    # a quote or a brace would end the string literal or open an f-string field in the cell
    ("https://github.com/o/n\"; import os", "v1", None, "url must be"),
    ("https://github.com/o/n", "{__import__('os')}", None, "ref must be"),
    ("https://github.com/o/n", "v1\"", None, "ref must be"),
    ("https://github.com/o/n", "abc", "latest", "version must be dotted numbers"),
])
def test_bootstrap_cell_rejects_bad_arguments(url, ref, version, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_cell_source(url, ref, version)


def test_bootstrap_cell_outside_colab_changes_nothing(tmp_path):
    # Run the cell in a fresh interpreter, not in Colab, from a folder with no ../utils:
    # it must neither install anything nor touch sys.path.
    source = bootstrap_cell_source("https://github.com/o/n", "v0")
    before = subprocess.run([sys.executable, "-c", "import sys; print(len(sys.path))"],
                            cwd=tmp_path, capture_output=True, text=True, check=True)
    after = _run_cell(source, tmp_path, after="print(len(sys.path))")
    assert after.returncode == 0 and after.stdout == before.stdout and after.stderr == ""


def test_bootstrap_cell_outside_colab_names_a_shadowing_utils(tmp_path):
    (tmp_path / "utils.py").write_text("def helper():\n    pass\n")
    result = _run_cell(bootstrap_cell_source("https://github.com/o/n", "v0"), tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("ImportError: `import utils` finds ")
    assert str(tmp_path / "utils.py") in message and "Rename or remove it" in message


# ------------------------------------------------------------------------ the ref is real

def test_course_ref_is_the_last_commit_of_the_package(tmp_path):
    with pytest.raises(ValueError, match="root .* failed"):
        course_ref(tmp_path)  # not a git checkout
    if not _full_git_checkout():
        pytest.skip("the ref is a commit: needs a full (not shallow) git clone")
    ref = course_ref(ROOT)
    assert re.fullmatch(r"[0-9a-f]{40}", ref)
    # an independent route: every commit after the ref leaves the package files unchanged
    touching = _git("rev-list", f"{ref}..HEAD", "--", *PACKAGE_FILES).stdout.split()
    assert touching == [], f"commits after {ref} change the package: {touching}"
    # ... and the ref itself changes it (or is the first commit)
    parents = _git("rev-list", "--parents", "-n", "1", ref).stdout.split()[1:]
    changed = _git("diff", "--name-only", parents[0] if parents else
                   _git("hash-object", "-t", "tree", "/dev/null").stdout.strip(), ref, "--",
                   *PACKAGE_FILES).stdout.split()
    assert changed, f"{ref} does not change {PACKAGE_FILES}"


@needs_git
@pytest.mark.parametrize("path", notebooks(),
                         ids=notebook_id)
def test_notebook_ref_resolves_and_installs_what_head_has(path):
    """The commit a notebook's bootstrap installs exists and holds the package HEAD holds."""
    import json

    nb = json.loads(path.read_text())
    first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
    ref = bootstrap_ref(first)
    assert ref, f"{path.name}: no COURSE_PACKAGE line in the bootstrap"
    resolved = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    assert resolved.returncode == 0, \
        f"{path.name}: ref {ref} is not a commit of this repository; run `make bootstrap`"
    diff = _git("diff", "--stat", ref, "HEAD", "--", *PACKAGE_FILES)
    assert diff.returncode == 0 and diff.stdout == "", \
        f"{path.name}: utils/ or pyproject.toml differ between {ref} and HEAD; " \
        f"commit them, then `make bootstrap`:\n{diff.stdout}"


def test_environment_report_reads_versions_without_importing():
    report = environment_report()
    assert set(report) == {"python", "platform", "numpy", "scipy", "matplotlib", "scikit-learn",
                           "tensorflow", "keras", "torch", "colab"}
    assert report["keras"].startswith("3.")
    assert report["colab"] == "no" and not in_colab()


# ------------------------------------------------------------------- on (fake) Colab

@pytest.fixture
def colab(tmp_path):
    """A clean virtual environment that "already has the scientific stack", a fake
    `google.colab`, a copy of the course to install from, and the notebook's cell pointed at it.
    Returns a function running the cell there: run(before="", workdir_files={}) -> result."""
    env_dir = tmp_path / "colab-venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # pip comes with the exposed stack
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    # Expose this environment's packages by path (a .pth line, so this environment's own
    # editable install of `utils` stays invisible: .pth files are not read in that folder).
    (site / "preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    # The install points at a copy of this checkout (pip builds a local project in place, and
    # its build/ folder must not land in the working tree).
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
    fake = tmp_path / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    workdir = tmp_path / "content"
    workdir.mkdir()
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
               PIP_DISABLE_PIP_VERSION_CHECK="1")

    def run(before: str = "") -> subprocess.CompletedProcess:
        setup = ("import sys; sys.path.insert(1, sys.argv[1]); import google.colab\n"
                 + textwrap.dedent(before))
        check = """
            import utils, utils.colab
            print(utils.__file__)
            print(utils.colab.environment_report()["colab"])
        """
        return _run_cell(cell, workdir, python, setup, check, env, (str(fake),))

    run.site, run.workdir, run.tmp = site, workdir, tmp_path
    return run


def _added(site: Path, before: set[str]) -> set[str]:
    return {name for name in set(os.listdir(site)) - before if name != "__pycache__"}


@pytest.mark.slow
def test_bootstrap_installs_only_the_course_and_refreshes_utils(colab):
    # A namespace package `utils` (a folder without __init__.py elsewhere on sys.path) is
    # imported before the bootstrap; the install must not leave that stale module in use.
    stale = colab.tmp / "elsewhere"
    (stale / "utils").mkdir(parents=True)
    before = set(os.listdir(colab.site))
    result = colab(before=f"""
        sys.path.append({str(stale)!r}); import utils
        assert not hasattr(utils, "COURSE"), "the course's utils visible before the bootstrap"
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    utils_file, colab_flag = result.stdout.strip().splitlines()[-2:]
    assert utils_file.startswith(str(colab.site)), utils_file
    assert colab_flag == "yes"
    assert _added(colab.site, before) == {
        "utils", f"initialization_matters-{utils.__version__}.dist-info"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["utils.py", "utils"])
def test_bootstrap_names_a_utils_beside_the_notebook(colab, name):
    # A student's own utils.py (or utils/ package) in the working folder comes first on
    # sys.path: the install cannot help, and the cell says which file to rename.
    shadow = colab.workdir / name
    if name == "utils.py":
        shadow.write_text("def helper():\n    pass\n")
    else:
        shadow.mkdir()
        (shadow / "__init__.py").write_text("")
    result = colab()
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"ImportError: `import utils` finds {shadow}, another module;")
    assert "Rename or remove it" in message and "restart the runtime" in message


@pytest.mark.slow
def test_bootstrap_replaces_an_unrelated_utils_distribution(colab):
    # PyPI has an unrelated distribution `utils` whose package is also called `utils`. Where pip
    # installed it (site-packages), the course's install writes its own package in its place.
    foreign = colab.site / "utils"
    foreign.mkdir()
    (foreign / "__init__.py").write_text('__version__ = "1.0.2"\n')
    (colab.site / "utils-1.0.2.dist-info").mkdir()
    result = colab(before="""
        import utils
        assert not hasattr(utils, "COURSE"), "the course's utils visible before the bootstrap"
    """)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-2] == str(foreign / "__init__.py")


@pytest.mark.slow
def test_bootstrap_reports_another_version_of_the_course(colab):
    # The course's utils at another version is already installed (an older chapter's
    # bootstrap, or a stale environment): the cell installs nothing and names the version.
    old = colab.site / "utils"
    old.mkdir()
    (old / "__init__.py").write_text('COURSE = "initialization-matters"\n__version__ = "0.0.1"\n')
    before = set(os.listdir(colab.site))
    result = colab()
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"ImportError: `import utils` finds {old}, version 0.0.1 of the "
                              f"course's utils; this chapter needs the course's utils "
                              f"{utils.__version__}.")
    assert _added(colab.site, before) == set()
