"""The repository's own promises: pins agree, notebooks are committed executed and bootstrapped,
the table of contents lists every chapter, and CI runs only the README's test command."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from tests.layout import all_notebook_files, notebook_id, notebooks, toc_files

import utils
from tests.nbtools import bootstrap_ref
from utils.colab import bootstrap_cell_source, repository_url

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = notebooks()


def _requirements(file: str = "requirements.txt") -> dict[str, str]:
    pins = {}
    for line in (ROOT / file).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep == "==", f"{file}: {line!r} is not pinned with =="
        pins[name.strip().lower()] = version.strip()
    return pins


def test_every_requirement_is_pinned_and_the_frameworks_are_the_promised_ones():
    pins = _requirements()
    assert pins["tensorflow"].startswith("2.21.")
    assert pins["keras"].startswith("3.")
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"] == "1.0.4.post1"


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    mismatched = {name: (pin, version(name)) for name, pin in _requirements().items()
                  if version(name).split("+")[0] != pin}
    assert not mismatched, f"installed != requirements.txt: {mismatched}; run `make install`"


def test_the_zoo_environment_is_requirements_txt_with_a_torchvision_pair():
    # .venv-zoo (make test-zoo) must test the same stack as .venv but for torch, which
    # torchvision's release pins: every other pin is requirements.txt's, so pip resolves the
    # file in one pass (no second, conflicting torch pin from `-r requirements.txt`).
    zoo, main = _requirements("requirements-zoo.txt"), _requirements()
    assert {name: pin for name, pin in zoo.items() if name not in ("torch", "torchvision")} == \
        {name: pin for name, pin in main.items() if name != "torch"}
    assert (zoo["torch"], zoo["torchvision"]) == ("2.14.1", "0.29.1")
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements-zoo.txt" in makefile and ".venv-zoo/" in \
        (ROOT / ".gitignore").read_text().splitlines()


def test_environment_yml_installs_exactly_requirements_txt():
    text = (ROOT / "environment.yml").read_text()
    pip_lines = re.findall(r"^\s+-\s+(.+)$", text.split("- pip:", 1)[1], re.M)
    assert pip_lines == ["-r requirements.txt", "-e ."], pip_lines
    python = re.search(r"-\s+python=(\d+\.\d+)", text).group(1)
    assert tuple(map(int, python.split("."))) >= (3, 11)
    # Nothing else is installed by conda besides python and pip, so the sets cannot drift.
    conda_deps = re.findall(r"^  -\s+([A-Za-z][\w.-]*)", text.split("dependencies:", 1)[1], re.M)
    assert conda_deps == ["python", "pip", "pip"], conda_deps  # "pip" the package, "pip:" the list


def test_package_version_is_single_sourced():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == utils.__version__
    frameworks = {"tensorflow", "keras", "torch"}
    assert not frameworks & {re.split(r"[<>=!~ ]", d)[0] for d in project["dependencies"]}, \
        "the Colab bootstrap must never reinstall the frameworks"


def test_ci_runs_the_readme_test_command_first_then_the_documented_checks():
    # `make test` (the pinned environment) first, then every check the README documents:
    # the chapters with their seeds moved, the tools on torchvision's architectures, the
    # chapters on Colab's versions, the Otter-Grader proof, the PDF, the browser check, and
    # last the canary (which reports and never fails).
    ci = (ROOT / ".ci" / "run").read_text()
    steps = re.findall(r"^step make (\S+)$", ci, flags=re.M)
    assert steps == ["test", "test-seeds", "test-zoo", "test-colab", "otter-check", "pdf",
                     "browser-check", "test-canary"], steps
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in steps + ["book"]:
        assert f"make {target}" in readme, target
        assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), target


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_is_committed_executed_in_order(path):
    nb = json.loads(path.read_text())
    counts = [c["execution_count"] for c in nb["cells"]
              if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), \
        f"{path.name}: run `make execute NB={path.relative_to(ROOT)}` (counts {counts[:10]})"
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name} has error outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_starts_with_the_bootstrap(path):
    nb = json.loads(path.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    source = "".join(first["source"])
    # The cell is the template with the notebook's ref; tests/test_colab.py checks that the
    # ref is a commit holding the package HEAD holds (that needs git, this does not).
    ref = bootstrap_ref(source)
    assert ref and source == bootstrap_cell_source(repository_url(ROOT / "_config.yml"), ref), \
        f"{path.name}: first code cell is not the bootstrap; `make bootstrap` rewrites it"
    assert "hide-input" in first["metadata"].get("tags", []), f"{path.name}: bootstrap not folded"


@pytest.mark.parametrize("path", all_notebook_files(), ids=notebook_id)
def test_notebook_is_in_the_table_of_contents(path):
    entry = path.relative_to(ROOT).with_suffix("").as_posix()
    assert entry in toc_files(), f"{entry} is not in _toc.yml"


def test_toc_files_exist():
    toc = (ROOT / "_toc.yml").read_text()
    for entry in re.findall(r"(?:file|root):\s*(\S+)", toc):
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


MAX_LINE = 99  # what fits the book's code column on a 1280-pixel screen (book/_static/course.css)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_lines_fit_the_page(path):
    nb = json.loads(path.read_text())
    long_lines = []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        texts = ["".join(cell["source"])] + ["".join(o.get("text", "")) for o in cell["outputs"]
                                             if o["output_type"] == "stream"]
        long_lines += [(index, len(line)) for text in texts for line in text.splitlines()
                       if len(line) > MAX_LINE]
    assert not long_lines, f"{path.name}: lines over {MAX_LINE} characters (cell, length): {long_lines}"


def _numbered_chapters() -> list[str]:
    """Notebook stems in the parts of _toc.yml marked `numbered: true`."""
    stems, numbered = [], False
    for line in (ROOT / "_toc.yml").read_text().splitlines():
        if line.strip().startswith("- caption:"):
            numbered = False
        elif line.strip() == "numbered: true":
            numbered = True
        elif numbered and (match := re.search(r"file:\s*notebooks/(\S+)", line)):
            stems.append(match.group(1))
    return stems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_numbered_chapter_titles_carry_no_hand_written_number(path):
    first = json.loads(path.read_text())["cells"][0]
    title = "".join(first["source"]).splitlines()[0]
    assert title.startswith("# "), f"{path.name}: the first cell must be the chapter title"
    if path.relative_to(ROOT / "notebooks").with_suffix("").as_posix() in _numbered_chapters():
        assert not re.match(r"#\s*\d", title), \
            f"{path.name}: the book numbers this chapter; drop the number from {title!r}"
