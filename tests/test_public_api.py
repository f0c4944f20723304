"""The public surface of ``utils``: what each module's ``__all__`` lists is documented and is
all that other modules may import.

The rules, checked for every module of the package:

1. A module has an ``__all__``; every name in it exists. The API reference
   (``book/api.md``) shows exactly these names (autodoc follows ``__all__``).
2. Every public function (a function listed in ``__all__``) has a NumPy-style docstring with
   - a **Parameters** section if it takes any argument;
   - a **Returns** section unless its return annotation is ``None``;
   - a **Raises** section if it takes any argument. The course's contract is that bad input
     raises ``ValueError`` naming the argument, so every function that takes one says what it
     raises (and when). A function without arguments may omit Parameters and Raises; a
     function that accepts every value of every argument is listed in ``ACCEPTS_ANY_INPUT``
     with the reason, and may omit Raises.
   Public classes need a docstring.
3. No module imports a name from another ``utils`` module that is not in that module's
   ``__all__`` (a private name, ``_x``, never is): ``from utils.m import name`` and
   ``import utils.m as m`` followed by ``m.name`` are both checked, in the source, with ``ast``.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import utils

UTILS_DIR = Path(utils.__file__).parent
MODULES = sorted(info.name for info in pkgutil.iter_modules([str(UTILS_DIR)]))

# Public functions that accept every value of every argument, so have nothing to put under
# Raises (rule 2's one exception), each with the reason.
ACCEPTS_ANY_INPUT = {
    "utils.distributions.unknown",  # stores a name and a source; any object is a valid label
}


def _module(name: str):
    return importlib.import_module(f"utils.{name}")


def _has_section(doc: str, section: str) -> bool:
    return re.search(rf"^{section}\n-{{{len(section)}}}\s*$", doc, re.MULTILINE) is not None


def _missing_sections(function) -> list[str]:
    doc = inspect.getdoc(function) or ""
    signature = inspect.signature(function)
    takes_arguments = bool(signature.parameters)
    # Annotations are strings under `from __future__ import annotations`.
    returns_none = signature.return_annotation in (None, "None")
    wanted = []
    if takes_arguments:
        wanted.append("Parameters")
        if f"{function.__module__}.{function.__qualname__}" not in ACCEPTS_ANY_INPUT:
            wanted.append("Raises")
    if not returns_none:
        wanted.append("Returns")
    return [section for section in wanted if not _has_section(doc, section)]


def test_the_package_has_modules():
    # Guards the parametrisations below against an empty list (a vacuous pass).
    assert {"frameworks", "priors", "initializers", "plotting"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_what_is_public(name):
    module = _module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"utils.{name} has no __all__"
    missing = [item for item in module.__all__ if not hasattr(module, item)]
    assert not missing, f"utils.{name}.__all__ names what the module lacks: {missing}"
    assert len(set(module.__all__)) == len(module.__all__), f"utils.{name}.__all__ repeats"


@pytest.mark.parametrize("name", MODULES)
def test_public_functions_have_full_docstrings(name):
    module = _module(name)
    problems = []
    for item in module.__all__:
        obj = getattr(module, item)
        if inspect.isclass(obj):
            if not inspect.getdoc(obj):
                problems.append(f"class {item}: no docstring")
        elif inspect.isfunction(obj):
            missing = _missing_sections(obj)
            if missing:
                problems.append(f"{item}: no {', '.join(missing)}")
    assert not problems, f"utils.{name}: " + "; ".join(problems)


def test_the_docstring_rule_catches_what_it_should():
    # The checker itself: a function missing each section is reported, a complete one is not.
    def bare(x):
        """Do something."""

    def complete(x) -> int:
        """Do something.

        Parameters
        ----------
        x
            Input.

        Returns
        -------
        int
            Output.

        Raises
        ------
        ValueError
            Never for good input.
        """

    def quiet() -> None:
        """Take nothing, return nothing."""

    assert _missing_sections(bare) == ["Parameters", "Raises", "Returns"]
    assert _missing_sections(complete) == []
    assert _missing_sections(quiet) == []
    assert all(name.startswith("utils.") for name in ACCEPTS_ANY_INPUT)
    for name in ACCEPTS_ANY_INPUT:  # an exception names a real public function
        module, _, function = name.rpartition(".")
        assert function in importlib.import_module(module).__all__, name


def _imported_names(tree: ast.AST) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` for every name a source takes from another utils module."""
    found = []
    aliases: dict[str, str] = {}  # local name -> utils module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # from .m import x, inside utils
            node = ast.ImportFrom(module=f"utils.{node.module}" if node.module else "utils",
                                  names=node.names, level=0, lineno=node.lineno)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.startswith("utils."):
            for alias in node.names:
                found.append((node.lineno, node.module, alias.name))
        elif isinstance(node, ast.ImportFrom) and node.module == "utils":
            for alias in node.names:
                if f"utils.{alias.name}" in {f"utils.{m}" for m in MODULES}:
                    aliases[alias.asname or alias.name] = f"utils.{alias.name}"
                else:
                    found.append((node.lineno, "utils", alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("utils.") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases:
            found.append((node.lineno, aliases[node.value.id], node.attr))
        # utils.m.name written out in full
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "utils":
            found.append((node.lineno, f"utils.{node.value.attr}", node.attr))
    return found


def _public_names(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    return set(getattr(module, "__all__", ()))


@pytest.mark.parametrize("name", MODULES)
def test_no_module_imports_another_modules_private_name(name):
    tree = ast.parse((UTILS_DIR / f"{name}.py").read_text(encoding="utf-8"))
    bad = [f"line {line}: {module}.{item}" for line, module, item in _imported_names(tree)
           if module != f"utils.{name}" and item not in _public_names(module)]
    assert not bad, f"utils.{name} uses names other modules do not export: {bad}"


def test_the_import_rule_catches_what_it_should():
    source = ("from utils.frameworks import _keras_loss, parameters\n"
              "import utils.training as t\n"
              "t._keras_optimizer('sgd', 0.1)\n"
              "from utils import stats\n"
              "stats.require_int(1, 'n')\n"
              "from .seeding import _threads\n")
    names = _imported_names(ast.parse(source))
    assert sorted(names) == sorted([(1, "utils.frameworks", "_keras_loss"),
                                    (1, "utils.frameworks", "parameters"),
                                    (3, "utils.training", "_keras_optimizer"),
                                    (5, "utils.stats", "require_int"),
                                    (6, "utils.seeding", "_threads")])
    flagged = sorted(item for _, module, item in names if item not in _public_names(module))
    assert flagged == ["_keras_loss", "_keras_optimizer", "_threads"]


# ---------------------------------------------------------------------------------------------
# The API page (book/api.md): it shows every module, and its examples run
# ---------------------------------------------------------------------------------------------

API_PAGE = UTILS_DIR.parent / "book" / "api.md"
# The functions the page presents first, each with its own section and examples.
PRACTITIONER_FUNCTIONS = ["set_prior_bias", "check_initial_loss", "init_report",
                          "torch_default_init_", "weight_histograms", "lsuv_",
                          "default_initializers"]


def _page_sections() -> list[tuple[str, str]]:
    """``(heading, text)`` of each ``##`` section of the API page."""
    parts = re.split(r"^## (.+)$", API_PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2]))


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


EXAMPLES = [(heading, number, code) for heading, text in _page_sections()
            for number, code in enumerate(_python_blocks(text), start=1)]


def test_the_page_shows_every_module_and_every_public_name():
    text = API_PAGE.read_text(encoding="utf-8")
    shown = set(re.findall(r"^\.\. automodule:: utils\.(\w+)$", text, flags=re.MULTILINE))
    assert shown == set(MODULES)
    # A name a module section leaves out is documented elsewhere on the page.
    elsewhere = set(re.findall(r"^\.\. autofunction:: (utils\.\w+\.\w+)$", text, re.MULTILINE))
    elsewhere |= {f"{module}.{name}" for name, module in re.findall(
        r"^\.\. py:data:: (\w+)\n +:module: (utils\.\w+)$", text, flags=re.MULTILINE)}
    for module, excluded in re.findall(
            r"^\.\. automodule:: (utils\.\w+)\n(?: +:\S.*\n)*? +:exclude-members: (.+)$", text,
            flags=re.MULTILINE):
        for name in (n.strip() for n in excluded.split(",")):
            assert name in _public_names(module), f"{module}.{name} is not public"
            assert f"{module}.{name}" in elsewhere, f"{module}.{name} is not on the page"


def test_each_practitioner_function_has_keras_and_torch_examples():
    for function in PRACTITIONER_FUNCTIONS:
        sections = [text for heading, text in _page_sections() if f"`{function}`" in heading]
        assert len(sections) == 1, function
        code = "\n".join(_python_blocks(sections[0]))
        assert f"{function}(" in code, function
        assert "keras" in code and "torch" in code, function


@pytest.mark.parametrize("heading, number, code", EXAMPLES,
                         ids=[f"{h.split(':')[0][:40]}-{n}" for h, n, _ in EXAMPLES])
def test_api_page_example_runs(heading, number, code):
    # Each example is self-contained, as a reader copies it; its asserts are the checks.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        exec(compile(code, f"book/api.md [{heading}, example {number}]", "exec"),
             {"__name__": "__api_example__"})
    finally:
        plt.close("all")
