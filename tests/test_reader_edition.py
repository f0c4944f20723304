"""The reader's edition: the HTML book loads nothing from the network, and the PDF's LaTeX.

MathJax ships in ``book/_static/mathjax`` (vendored from the npm package by ``make
vendor-mathjax``); ``book/_ext/course_book.py`` drops the one remote script Jupyter Book adds on
its own and writes the LaTeX side of the book (macros, part numbering).
"""
from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from tests.book import build

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "book" / "_static"
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import course_book  # noqa: E402

# Hosts that serve JavaScript, CSS or fonts to web pages: none may be named in a built page.
CDN_HOSTS = re.compile(
    r"cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|ajax\.googleapis\.com|"
    r"fonts\.googleapis\.com|fonts\.gstatic\.com|polyfill\.io|code\.jquery\.com|"
    r"cdn\.plot\.ly|requirejs\.org"
)


def _sphinx_config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]["config"]


def _makefile_pin(name: str) -> str:
    match = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1)


def test_mathjax_is_the_vendored_pinned_package():
    config = _sphinx_config()
    path = config["mathjax_path"]
    assert "://" not in path and not path.startswith("//"), path
    script = STATIC / path
    assert script.is_file(), script
    package = json.loads((script.parent / "package.json").read_text())
    assert package["name"] == "mathjax"
    assert package["version"] == _makefile_pin("MATHJAX_VERSION")
    assert (script.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
    # The CommonHTML output loads its fonts from beside the script: they must be there.
    fonts = sorted((script.parent / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) >= 20, fonts
    # Jupyter Book adds every .js file of a `_static` folder at the book's root to every page;
    # the vendored copy must not sit there (it would load twice, the second time broken).
    assert not (ROOT / "_static").exists()


def test_latex_macros_are_the_mathjax_macros():
    config = _sphinx_config()
    lines = course_book.latex_macros(config["mathjax3_config"]).splitlines()
    macros = config["mathjax3_config"]["tex"]["macros"]
    assert lines == [f"\\newcommand{{\\{name}}}{{{body}}}" for name, body in macros.items()]
    assert course_book.latex_macros({"tex": {"macros": {"pair": ["(#1, #2)", 2]}}}) == (
        "\\newcommand{\\pair}[2]{(#1, #2)}")
    assert course_book.latex_macros({}) == ""
    with pytest.raises(ValueError, match="tex.macros"):
        course_book.latex_macros({"tex": {"macros": ["Var"]}})
    with pytest.raises(ValueError, match="Var"):
        course_book.latex_macros({"tex": {"macros": {"Var": ["x", "1"]}}})


def test_part_numbering_follows_the_numbered_flags():
    latex = course_book.part_numbering_latex([False, True, False])
    cases = re.search(r"\\ifcase\\value\{coursepart\}(.*)\\fi\}", latex).group(1)
    depths = re.findall(r"\\or\\setcounter\{secnumdepth\}\{([^{}]*(?:\{[^{}]*\})?)\}", cases)
    assert depths == ["-1", r"\value{coursesecnumdepth}", "-1"]
    assert course_book.part_numbering_latex([True, True]) == ""
    for bad in ([], [1, 0], None):
        with pytest.raises(ValueError, match="numbered"):
            course_book.part_numbering_latex(bad)


def test_thebe_scripts_are_recognised():
    assert course_book.is_thebe_script("sphinx-thebe.js", "")
    assert course_book.is_thebe_script(None, 'const THEBE_JS_URL = "x"')
    assert not course_book.is_thebe_script("mathjax/tex-chtml-full.js", "")
    assert not course_book.is_thebe_script(None, "const DOCUMENTATION_OPTIONS = {}")


class _Assets(HTMLParser):
    """Every address a page loads by itself (scripts, styles, images, frames, media)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])
            self.loaded.append(attrs["src"])
        elif tag == "link" and attrs.get("href") and set((attrs.get("rel") or "").split()) & {
                "stylesheet", "preload", "icon", "modulepreload", "prefetch"}:
            self.loaded.append(attrs["href"])
        elif tag in {"img", "iframe", "source", "audio", "video", "embed"} and attrs.get("src"):
            self.loaded.append(attrs["src"])


@pytest.mark.slow
def test_built_pages_load_nothing_from_the_network(tmp_path):
    result = build(tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    html = tmp_path / "_build" / "html"
    # The pages (the theme also copies Jinja macro files named *.html into _static).
    pages = sorted(page for page in html.rglob("*.html") if "_static" not in page.parts)
    assert len(pages) >= 12, pages
    mathjax = _sphinx_config()["mathjax_path"]
    math_pages = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not CDN_HOSTS.search(text), (page, CDN_HOSTS.search(text).group(0))
        assets = _Assets()
        assets.feed(text)
        for address in assets.loaded:
            parts = urlsplit(address)
            assert not parts.scheme and not parts.netloc, (page, address)
            if parts.path:
                target = (page.parent / unquote(parts.path)).resolve()
                assert target.is_file(), (page, address)
        if 'class="math' in text:
            math_pages += 1
            loads = [s for s in assets.scripts if urlsplit(s).path.endswith(mathjax)]
            assert len(loads) == 1, (page, assets.scripts)
    assert math_pages >= 7, math_pages  # the seven chapters at least have formulas


def test_the_introduction_links_the_pdf_that_make_pdf_builds():
    intro = (ROOT / "book" / "intro.md").read_text()
    block = re.search(r"```\{only\} html and pdf_edition\n(.*?)```", intro, re.S)
    assert block, "the introduction has no download link for the PDF"
    name = course_book.pdf_name(ROOT)
    assert name and re.search(rf'href="\.\./_static/{re.escape(name)}"', block.group(1))


def test_the_book_empties_a_figure_s_cdn_fallback():
    # The figure's one line of CDN addresses becomes an empty list in the book; the rest of
    # the figure (its data, its loader) is kept as the notebook stored it.
    from utils.interactive import Control, line_explorer

    figure = line_explorer([{"x": 1, "y": 1.0, "k": "a"}], "x", "y", [Control("k", "k", ("a",), "a")])
    html = figure.html()
    notebook = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}]}]}
    assert CDN_HOSTS.search(html)
    booked = json.loads(course_book.book_figures(json.dumps(notebook)))
    shown = booked["cells"][0]["outputs"][0]["data"]["text/html"]
    assert not CDN_HOSTS.search(shown) and "var urls = [];" in shown
    assert shown.replace("var urls = [];", "") == re.sub(r"var urls = \[[^\]\n]*\];", "", html)


def test_the_book_folds_check_cells_and_graded_tests_under_their_titles():
    # A check cell folds under its #@title, a graded test cell under its "# Graded check" line;
    # a solution cell and a plain lesson cell stay open.
    def cell(source, tags=(), nbgrader=None):
        metadata = {"tags": list(tags)}
        if nbgrader is not None:
            metadata["nbgrader"] = nbgrader
        return {"cell_type": "code", "source": source, "metadata": metadata, "outputs": []}

    notebook = {"cells": [
        cell("#@title Check: the bound holds { display-mode: \"form\" }\nx = 1", ["check"]),
        cell(["# Graded check: a 5 -> 4 layer,\n", "# to float32 rounding.\n",
              "assert f(3) == 6\n"],
             nbgrader={"grade": True, "solution": False, "points": 2}),
        cell("def f(x):\n    return 2 * x", nbgrader={"grade": False, "solution": True}),
        cell("print(1)"),
        cell("assert g()", nbgrader={"grade": True, "solution": False}),
    ]}
    folded = json.loads(course_book.fold_check_cells(json.dumps(notebook)))["cells"]
    prompts = [(c["metadata"].get("mystnb", {}).get("code_prompt_show"),
                "hide-input" in c["metadata"]["tags"]) for c in folded]
    assert prompts == [("Check: the bound holds", True), ("Graded check: a 5 -> 4 layer, to float32 rounding.", True),
                       (None, False), (None, False), ("Graded check", True)]
    assert folded[1]["metadata"]["mystnb"]["code_prompt_hide"] == course_book.GRADED_HIDE_PROMPT
    assert folded[0]["metadata"]["mystnb"]["code_prompt_hide"] == course_book.CHECK_HIDE_PROMPT
