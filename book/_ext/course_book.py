"""Sphinx extension for the course book (listed in ``_config.yml`` as a local extension).

The chapters are nbgrader-style notebooks: a graded solution sits between ``### BEGIN
SOLUTION`` and ``### END SOLUTION`` lines so that the student edition can replace it with a
stub. Those marker lines mean nothing to a reader, so the book drops them from code cells when
it reads a notebook. The committed notebook, which nbval checks, keeps them.

The book is read offline too, so no page may load anything from the network. MathJax ships in
``book/_static/mathjax``; the one remote script left is sphinx-thebe's live-code bundle, whose
address Jupyter Book writes into every page although the book offers no live-code button
(``launch_buttons.thebe`` is off). The extension leaves those thebe scripts out of the pages.

The TeX macros of the book (``\\Var``, ``\\E``, ``\\R``) are written once, in ``_config.yml``'s
``mathjax3_config``; the extension turns them into LaTeX ``\\newcommand`` lines for the PDF.
The PDF keeps sphinx-jupyterbook-latex's structure (the introduction as front matter, the toc's
captions as parts) on Sphinx's own ``manual`` class: that extension's ``jupyterBook`` class
loads ``bbm``, a font package only Debian's 1.4-GB ``texlive-fonts-extra`` ships, for macros
the book never uses. The two environments that extension wraps code cells in are defined here.
Chapters are numbered in the PDF as on the web: only the chapters of the toc's ``numbered``
parts, from 1 (so Chapter 1's first figure is Fig. 1.1 in both, and the prose's "Chapter 2"
is the PDF's Chapter 2), and theorems and exercises carry the web's numbers too (Proposition
1.1, not 1.3.1: sphinx-jupyterbook-latex deepens ``numfig_secnum_depth`` to 2 for the LaTeX
counters of a book in parts; the extension numbers the documents' items at depth 1 and hands
the writer depth 2).

A *check* cell (tag ``check``) holds the proof of a claim: its first line is
``#@title Check: <the claim in words>`` and its metadata has ``"cellView": "form"``, so Colab
shows only the title and the output. The book does the same: it folds the cell's code
(myst-nb's ``hide-input``) under a button that reads the title, one click from open, and shows
the output (one line per claim). The committed notebook keeps only the ``check`` tag.

Once ``make pdf`` has built the PDF (``_build/latex``), the HTML build copies it to
``_static`` and sets the tag ``pdf_edition``, which shows the introduction's download link.
Without the PDF the link is left out, so the HTML build never links to a missing file.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

# The environments sphinx-jupyterbook-latex wraps a code cell's input and output in (its own
# class defines them; the ``manual`` class does not): the output is indented under its input.
_CELL_ENVIRONMENTS = r"""
\usepackage{changepage}
\newenvironment{sphinxVerbatimInput}{\begin{adjustwidth}{0pt}{}}{\end{adjustwidth}}
\newenvironment{sphinxVerbatimOutput}{\begin{adjustwidth}{1.5em}{}}{\end{adjustwidth}}
"""

_MARKER = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")
_TITLE = re.compile(r"^\s*#@title\s+(.+?)\s*(\{.*\})?\s*$")
_GRADED = re.compile(r"^\s*#\s*(Graded check\b.*?)\s*$")

#: What a folded check cell's button reads when it is open.
CHECK_HIDE_PROMPT = "Hide the check"
#: What a folded graded test cell's button reads when it is open.
GRADED_HIDE_PROMPT = "Hide the graded check"


def check_title(source: str) -> str | None:
    """The claim of a check cell: the text of its ``#@title`` first line (None if it has none).

    Colab's form options after the title (``{display-mode: "form"}``) are not part of it.
    """
    first = source.lstrip("\n").split("\n", 1)[0]
    match = _TITLE.match(first)
    return match.group(1).strip() if match else None


def graded_check_title(source: str) -> str | None:
    """The title of a graded test cell: its leading comment, ``# Graded check: ...`` and the
    comment lines that continue it, without the ``#`` (None if the cell does not start with
    one)."""
    lines = source.lstrip("\n").split("\n")
    match = _GRADED.match(lines[0])
    if not match:
        return None
    words = [match.group(1).strip()]
    for line in lines[1:]:  # the comment may go on over the next lines
        if not line.startswith("#") or "###" in line:
            break
        words.append(line.lstrip("#").strip())
    return " ".join(word for word in words if word)


def _is_graded_test(metadata: dict) -> bool:
    nbgrader = metadata.get("nbgrader", {})
    return bool(nbgrader.get("grade")) and not nbgrader.get("solution")


def fold_check_cells(notebook_json: str) -> str:
    """Return the notebook JSON with every check cell and graded test cell folded.

    Each code cell tagged ``check`` gets myst-nb's ``hide-input`` tag and, as the fold's
    button, its ``#@title`` text (``mystnb.code_prompt_show``). So does each nbgrader test cell
    (``grade`` without ``solution``), under its first line, ``Graded check: ...``: the reader
    sees what an exercise is checked on, the tests one click away, like the solution above
    them. Other cells are unchanged.
    """
    notebook = json.loads(notebook_json)
    for cell in notebook.get("cells", []):
        metadata = cell.get("metadata", {})
        tags = metadata.get("tags", [])
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = source if isinstance(source, str) else "".join(source)
        if "check" in tags:
            title, hide = check_title(source) or "Check", CHECK_HIDE_PROMPT
        elif _is_graded_test(metadata):
            title, hide = graded_check_title(source) or "Graded check", GRADED_HIDE_PROMPT
        else:
            continue
        if "hide-input" not in tags:
            metadata["tags"] = [*tags, "hide-input"]
        mystnb = metadata.setdefault("mystnb", {})
        mystnb.setdefault("code_prompt_show", title)
        mystnb.setdefault("code_prompt_hide", hide)
        cell["metadata"] = metadata
    return json.dumps(notebook)


def strip_solution_markers(notebook_json: str) -> str:
    """Return the notebook JSON with the nbgrader marker lines removed from code cells."""
    notebook = json.loads(notebook_json)
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        lines = source if isinstance(source, list) else source.splitlines(keepends=True)
        kept = [line for line in lines if not _MARKER.match(line.rstrip("\n"))]
        cell["source"] = kept if isinstance(source, list) else "".join(kept)
    return json.dumps(notebook)


def book_figures(notebook_json: str) -> str:
    """Return the notebook JSON with every interactive figure's CDN fallback emptied.

    An interactive figure (``utils.interactive``) loads its JavaScript from a CDN when the page
    has none, as in Colab. The book ships that JavaScript (``book/_static/vega``), so its pages
    keep only the figure and name no other host: the line that lists the CDN addresses
    (:data:`utils.interactive.FALLBACK_LINE`) becomes an empty list.
    """
    from utils.interactive import FALLBACK_LINE

    notebook = json.loads(notebook_json)
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            html = output.get("data", {}).get("text/html")
            if html is None:
                continue
            text = "".join(html) if isinstance(html, list) else html
            if 'class="course-figure"' in text:
                output["data"]["text/html"] = re.sub(FALLBACK_LINE, "var urls = [];", text)
    return json.dumps(notebook)


def _on_source_read(app: Any, docname: str, source: list[str]) -> None:
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    if "### BEGIN SOLUTION" in source[0]:
        source[0] = strip_solution_markers(source[0])
    if '"check"' in source[0]:
        source[0] = fold_check_cells(source[0])
    if "course-figure" in source[0]:
        source[0] = book_figures(source[0])


def latex_macros(mathjax3_config: dict[str, Any] | None) -> str:
    """LaTeX ``\\newcommand`` lines for the macros of a MathJax 3 configuration.

    Parameters
    ----------
    mathjax3_config
        Sphinx's ``mathjax3_config``; its ``tex.macros`` maps a name to a body, or to
        ``[body, number_of_arguments]`` as MathJax accepts.

    Returns
    -------
    str
        One line per macro, for ``latex_elements["preamble"]`` (empty when there are none).

    Raises
    ------
    ValueError
        If ``tex.macros`` is not a mapping, or a macro is neither a string nor a
        ``[body, number_of_arguments]`` pair.
    """
    macros = ((mathjax3_config or {}).get("tex") or {}).get("macros") or {}
    if not isinstance(macros, dict):
        raise ValueError(f"mathjax3_config tex.macros: expected a mapping, got {macros!r}")
    lines = []
    for name, body in macros.items():
        if isinstance(body, str):
            lines.append(f"\\newcommand{{\\{name}}}{{{body}}}")
        elif (isinstance(body, (list, tuple)) and len(body) == 2 and isinstance(body[0], str)
              and isinstance(body[1], int) and not isinstance(body[1], bool)):
            lines.append(f"\\newcommand{{\\{name}}}[{body[1]}]{{{body[0]}}}")
        else:
            raise ValueError(f"mathjax3_config tex.macros[{name!r}]: expected a string or "
                             f"[body, number_of_arguments], got {body!r}")
    return "\n".join(lines)


def part_numbering_latex(numbered: list[bool]) -> str:
    """LaTeX that numbers the chapters of the numbered parts only, as the HTML book does.

    Parameters
    ----------
    numbered
        For each part of the book (each caption of the toc, which sphinx-jupyterbook-latex
        turns into a ``\\part``), in order, whether its chapters are numbered.

    Returns
    -------
    str
        Preamble lines: at each ``\\part`` the section-numbering depth is set to the class's
        own (numbered) or to -1 (chapters unnumbered but listed in the contents), so the
        chapter counter steps only in numbered parts. Empty when every part is numbered.

    Raises
    ------
    ValueError
        If ``numbered`` is empty or holds anything but booleans.
    """
    if not numbered or not all(isinstance(flag, bool) for flag in numbered):
        raise ValueError(f"numbered: expected a non-empty list of booleans, got {numbered!r}")
    if all(numbered):
        return ""
    cases = "".join(
        r"\or\setcounter{secnumdepth}{" + (r"\value{coursesecnumdepth}" if flag else "-1") + "}"
        for flag in numbered)
    return "\n".join([
        r"\newcounter{coursepart}\newcounter{coursesecnumdepth}",
        r"\AtBeginDocument{\setcounter{coursesecnumdepth}{\value{secnumdepth}}}",
        r"\AddToHook{cmd/part/before}{\stepcounter{coursepart}\ifcase\value{coursepart}"
        + cases + r"\fi}",
    ]) + "\n"


def _parts_numbered(config: Any) -> list[bool]:
    site_map = getattr(config, "external_site_map", None)
    if site_map is None or getattr(site_map, "file_format", None) != "jb-book":
        return []
    return [bool(tree.numbered) for tree in site_map.root.subtrees]


def pdf_name(book_root: Path) -> str | None:
    """The PDF's file name: ``latex.latex_documents.targetname`` of the book's ``_config.yml``.

    Jupyter Book hands that name to Sphinx only after the extensions have run their setup, so
    the extension reads it where ``make pdf`` (``tests/pdf_edition.py``) reads it too.

    Parameters
    ----------
    book_root
        The folder holding ``_config.yml``.

    Returns
    -------
    str or None
        ``<targetname without .tex>.pdf``, or None when ``_config.yml`` names no target.
    """
    import yaml

    config = yaml.safe_load((Path(book_root) / "_config.yml").read_text()) or {}
    target = ((config.get("latex") or {}).get("latex_documents") or {}).get("targetname")
    return Path(target).with_suffix(".pdf").name if target else None


def pdf_edition(app: Any) -> Path | None:
    """Where ``make pdf`` leaves the book's PDF, beside the build folder of ``app``."""
    name = pdf_name(Path(app.srcdir))
    return Path(app.outdir).parent / "latex" / name if name else None


def _on_config_inited(app: Any, config: Any) -> None:
    # YAML has no tuples: _config.yml's [type, target] pairs reach Sphinx as lists, which its
    # `(type, target) in nitpick_ignore` test never matches.
    config.nitpick_ignore = [tuple(entry) if isinstance(entry, list) else entry
                             for entry in config.nitpick_ignore]
    # At config-inited, before the builder records the tags: a change rewrites every page.
    pdf = pdf_edition(app)
    if pdf is not None and pdf.is_file():
        app.tags.add("pdf_edition")
    preamble = latex_macros(config.mathjax3_config) + "\n"
    if getattr(config, "latex_theme", None) == "jupyterBook":
        config.latex_theme = "manual"
        preamble += _CELL_ENVIRONMENTS
        parts = _parts_numbered(config)
        if len(parts) > 1:  # sphinx-jupyterbook-latex makes parts of two or more captions
            preamble += part_numbering_latex(parts)
    elements = dict(config.latex_elements)
    elements["preamble"] = elements.get("preamble", "") + "\n" + preamble
    config.latex_elements = elements


def is_thebe_script(filename: str | None, body: str) -> bool:
    """Whether a page script belongs to sphinx-thebe (its loader, or its inline configuration)."""
    return (filename or "").endswith("sphinx-thebe.js") or "THEBE_JS_URL" in body


def _thebe_enabled(app: Any) -> bool:
    launch = app.config.html_theme_options.get("launch_buttons", {}) or {}
    thebe_config = getattr(app.config, "thebe_config", None)
    always_load = isinstance(thebe_config, dict) and thebe_config.get("always_load") is True
    return bool(launch.get("thebe")) or always_load


def _on_html_page_context(app: Any, pagename: str, templatename: str, context: dict[str, Any],
                          doctree: Any) -> None:
    if _thebe_enabled(app) or "script_files" not in context:
        return
    context["script_files"] = [
        script for script in context["script_files"]
        if not is_thebe_script(getattr(script, "filename", str(script)),
                               getattr(script, "attributes", {}).get("body", ""))
    ]


def _on_builder_inited(app: Any) -> None:
    # sphinx-jupyterbook-latex (builder-inited, priority 500) sets depth 2 for a book in parts.
    if (app.builder.name == "latex" and getattr(app.env, "jblatex_captions_to_parts", False)
            and app.config.numfig_secnum_depth == 2):
        app.config.numfig_secnum_depth = 1
        app.env.course_writer_secnum_depth = 2


def _on_doctree_resolved(app: Any, doctree: Any, docname: str) -> None:
    # The LaTeX builder resolves the one assembled doctree after the numbers are assigned and
    # before its writer reads the depth (it emits no write-started).
    depth = getattr(app.env, "course_writer_secnum_depth", None)
    if depth is not None:
        app.config.numfig_secnum_depth = depth


def _on_build_finished(app: Any, exception: Exception | None) -> None:
    if exception is None and app.builder.format == "html" and app.tags.has("pdf_edition"):
        pdf = pdf_edition(app)
        shutil.copy2(pdf, Path(app.outdir) / "_static" / pdf.name)


def setup(app: Any) -> dict[str, Any]:
    # After sphinx-jupyterbook-latex's config-inited handler (priority 500) and
    # sphinx-external-toc's (900), which reads _toc.yml.
    app.connect("config-inited", _on_config_inited, priority=950)
    app.connect("builder-inited", _on_builder_inited, priority=600)
    app.connect("doctree-resolved", _on_doctree_resolved)
    app.connect("source-read", _on_source_read)
    app.connect("html-page-context", _on_html_page_context)
    app.connect("build-finished", _on_build_finished)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
