"""Every seed a chapter uses is reached by COURSE_SEED_SHIFT (utils.seeding).

The held-out-seed runs (`make test-seeds`) move every seed by a shift and re-run the chapters with
their asserts. That only tests the chapters' claims if no seed escapes the shift, so this file
reads every code cell of every notebook (Python's own parser, not regular expressions) and
fails on:

* a seed written as a number: a literal passed as ``seed=``/``random_state=``, or to
  ``manual_seed``, ``default_rng``, ``set_random_seed``, ``seed_everything``, ``RandomState``,
  ``random.seed`` or ``np.random.seed``, or assigned to a name with "seed" in it, unless it goes
  through ``course_seed`` or ``seeds``;
* a loop ``for seed in range(...)`` or ``for seed, ... in enumerate(...)``, which indexes results
  by numbers that are not the seeds once they move;
* a call of a ``utils`` function that takes a ``seed`` without passing one: its default would
  stay put when the seeds move;
* a NumPy generator made with no seed (``np.random.default_rng()``), whose draws no seed reaches.
"""
from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import json
from pathlib import Path

import pytest

from utils.seeding import SEED_SHIFT_VARIABLE, course_seed, seed_shift, seeds

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)

SEED_FUNCTIONS = {"manual_seed", "default_rng", "set_random_seed", "seed_everything",
                  "RandomState", "seed", "Generator"}
SEED_KEYWORDS = {"seed", "random_state"}
SHIFTERS = {"course_seed", "seeds"}
BUILTINS = set(dir(builtins))


def _code(cell_source: str) -> str:
    """A cell's Python: IPython magics and shell lines blanked (they are not Python)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in cell_source.splitlines())


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _reached(node: ast.AST) -> bool:
    """Whether an expression can carry the shift: it calls course_seed/seeds, or reads a variable
    (assumed to hold a shifted seed; the variable's own assignment is checked where it is made)."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and _name(sub.func) in SHIFTERS:
            return True
        if isinstance(sub, ast.Name) and sub.id not in BUILTINS:
            return True
    return False


def _seed_target(node: ast.AST) -> bool:
    """A name that holds a seed or seeds (``SEED``, ``train_seeds``), not a count (``N_SEEDS``)."""
    return any(isinstance(sub, ast.Name) and "seed" in sub.id.lower()
               and not sub.id.lower().startswith(("n_", "num_")) for sub in ast.walk(node))


def _numbers(node: ast.AST) -> bool:
    """An integer, or integers in a tuple, list or range(...): what a seed written out looks like."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int) and not isinstance(node.value, bool)
    if isinstance(node, ast.BinOp):
        return _numbers(node.left) and _numbers(node.right)
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_numbers(e) for e in node.elts)
    if isinstance(node, ast.Call) and _name(node.func) == "range":
        return all(_numbers(a) for a in node.args)
    return False


def _utils_functions(tree: ast.AST) -> dict[str, inspect.Signature]:
    """The utils functions a cell imports by name, with their signatures."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if callable(value):
                    try:
                        found[alias.asname or alias.name] = inspect.signature(value)
                    except (TypeError, ValueError):
                        pass
    return found


def seed_problems(cells: list[str]) -> list[str]:
    """Problems in a notebook's code cells (their sources, in order), one string each."""
    problems: list[str] = []
    signatures: dict[str, inspect.Signature] = {}
    for index, source in enumerate(cells):
        try:
            tree = ast.parse(_code(source))
        except SyntaxError as err:
            problems.append(f"code cell {index}: not Python ({err.msg})")
            continue
        signatures.update(_utils_functions(tree))

        def report(node: ast.AST, what: str) -> None:
            problems.append(f"code cell {index}, line {node.lineno}: {what}: "
                            f"{ast.unparse(node)[:80]}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _name(node.func)
                for keyword in node.keywords:
                    if keyword.arg in SEED_KEYWORDS and not _reached(keyword.value):
                        report(node, f"{keyword.arg}= a number the shift cannot reach")
                if name in SEED_FUNCTIONS and node.args and not _reached(node.args[0]):
                    report(node, "a seed written as a number")
                if name == "default_rng" and not node.args and not node.keywords:
                    report(node, "a generator with no seed")
                if isinstance(node.func, ast.Name) and name in signatures \
                        and "seed" in signatures[name].parameters:
                    try:
                        bound = signatures[name].bind_partial(*node.args, **{
                            k.arg: k.value for k in node.keywords if k.arg})
                    except TypeError:
                        continue
                    starred = any(isinstance(a, ast.Starred) for a in node.args) or any(
                        k.arg is None for k in node.keywords)
                    if "seed" not in bound.arguments and not starred:
                        report(node, f"{name} called without seed= (its default stays put)")
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                pairs = [(t, node.value) for t in targets]
                for target, value in list(pairs):  # a, b = 1, 2: pair them up
                    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) \
                            and len(target.elts) == len(value.elts):
                        pairs += list(zip(target.elts, value.elts))
                for target, value in pairs:
                    if value is not None and isinstance(target, ast.Name) \
                            and _seed_target(target) and _numbers(value):
                        report(node, "a seed assigned as a number")
            elif isinstance(node, ast.For) and _seed_target(node.target):
                iterated = node.iter
                if isinstance(iterated, ast.Call) and _name(iterated.func) == "enumerate":
                    report(node.iter, "seeds counted by enumerate, not taken from seeds(n)")
                elif not _reached(iterated):
                    report(node.iter, "a loop over seeds written as numbers")
    return problems


def _code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_seed_is_reached_by_the_shift(path):
    problems = seed_problems(_code_cells(path))
    assert not problems, (f"{path.name}: seeds that {SEED_SHIFT_VARIABLE} cannot move "
                          "(write course_seed(k) or seeds(n)):\n" + "\n".join(problems))


@pytest.mark.parametrize("source", [
    "SEED = seed_everything(0)",
    "x = keras.initializers.HeNormal(seed=3)",
    "g = torch.Generator().manual_seed(7)",
    "rng = np.random.default_rng(12)",
    "rng = np.random.default_rng()",
    "for seed in range(5):\n    pass",
    "for seed, model in enumerate(models):\n    pass",
    "TRAINING_SEEDS = (0, 1, 2)",
    "SEEDS = range(5)",
    "N_SEEDS, DEAD_SEED = 8, 3",
    "split(x, y, random_state=1 + 2)",
    "from utils.variance import apply_rule\napply_rule(net, rule, 'uniform')",
])
def test_the_check_finds_unreached_seeds(source):
    assert seed_problems([source])


@pytest.mark.parametrize("source", [
    "SEED = seed_everything(course_seed(0))",
    "x = keras.initializers.HeNormal(seed=SEED + 3)",
    "g = torch.Generator().manual_seed(course_seed(7))",
    "for seed in seeds(5):\n    pass",
    "TRAINING_SEEDS = seeds(10)",
    "N_SEEDS = 8\nseed_rows = {}",
    "from utils.variance import apply_rule\napply_rule(net, rule, 'uniform', seed=SEED)",
    "from utils.variance import apply_rule\napply_rule(net, rule, 'uniform', SEED)",
    "%matplotlib inline\nrng = np.random.default_rng(SEED)",
    "from utils.initializers import orthogonal_\nnn.init.orthogonal_(w, generator=g)",
])
def test_the_check_accepts_shifted_seeds(source):
    assert seed_problems([source]) == []


def test_the_shift_moves_every_seed(monkeypatch):
    monkeypatch.delenv(SEED_SHIFT_VARIABLE, raising=False)
    assert seed_shift() == 0 and course_seed(3) == 3 and seeds(3) == (0, 1, 2)
    monkeypatch.setenv(SEED_SHIFT_VARIABLE, "1000")
    assert seed_shift() == 1000 and course_seed(3) == 1003
    assert seeds(3, start=5) == (1005, 1006, 1007)


@pytest.mark.parametrize("value", ["-1", "1.5", "ten", str(2**31)])
def test_a_malformed_shift_says_what_to_set(monkeypatch, value):
    monkeypatch.setenv(SEED_SHIFT_VARIABLE, value)
    with pytest.raises(ValueError, match=f"{SEED_SHIFT_VARIABLE} must be a non-negative integer"):
        course_seed(0)


@pytest.mark.parametrize("call, message", [
    (lambda: course_seed(-1), "k must be"), (lambda: course_seed(True), "k must be"),
    (lambda: seeds(0), "n must be a positive integer"), (lambda: seeds(2, start=-1), "k must be"),
])
def test_bad_arguments_name_themselves(monkeypatch, call, message):
    monkeypatch.delenv(SEED_SHIFT_VARIABLE, raising=False)
    with pytest.raises(ValueError, match=message):
        call()

