"""utils.seeding: same seed, same draws, in every library; clear errors for bad seeds."""
from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest

from utils.seeding import seed_everything


def _draws() -> tuple:
    import keras
    import torch

    return (random.random(), np.random.rand(4), keras.random.normal((4,)).numpy(),
            torch.randn(4).numpy())


def test_same_seed_repeats_every_library():
    seed_everything(123)
    first = _draws()
    seed_everything(123)
    second = _draws()
    assert first[0] == second[0]
    for a, b in zip(first[1:], second[1:]):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_differ():
    seed_everything(1)
    first = _draws()
    seed_everything(2)
    second = _draws()
    for a, b in zip(first[1:], second[1:]):
        assert not np.array_equal(a, b)


def test_returns_the_seed():
    assert seed_everything(7, frameworks=()) == 7
    assert seed_everything(np.int64(8), frameworks=()) == 8


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "3", True, None])
def test_bad_seed_names_the_argument(seed):
    with pytest.raises(ValueError, match="seed must"):
        seed_everything(seed, frameworks=())


def test_unknown_framework_is_rejected():
    with pytest.raises(ValueError, match=r"frameworks must contain only .*'jax'"):
        seed_everything(0, frameworks=("jax",))


def test_numpy_only_session_imports_no_framework():
    code = (
        "import sys; from utils.seeding import seed_everything; seed_everything(0, frameworks=());"
        "import utils, utils.frameworks, utils.colab;"
        "print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_deterministic_switches_are_on():
    import torch

    seed_everything(0, frameworks=("torch",), deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
