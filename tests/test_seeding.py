"""utils.seeding: same seed, same draws, in every library; clear errors for bad seeds."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from utils.seeding import seed_everything

ROOT = Path(__file__).resolve().parent.parent


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


def test_threads_are_fixed_in_every_library():
    import torch
    from threadpoolctl import threadpool_info

    from utils.seeding import COURSE_THREADS

    seed_everything(0)
    assert torch.get_num_threads() == COURSE_THREADS
    assert all(pool["num_threads"] == COURSE_THREADS for pool in threadpool_info())
    code = ("import tensorflow as tf; from utils.seeding import seed_everything;"
            "seed_everything(0, frameworks=('keras',), threads=1);"
            "print(tf.config.threading.get_intra_op_parallelism_threads(),"
            " tf.config.threading.get_inter_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_threads_none_leaves_the_pools_alone():
    import torch

    seed_everything(0, frameworks=("torch",))
    torch.set_num_threads(2)
    seed_everything(0, frameworks=("torch",), threads=None)
    assert torch.get_num_threads() == 2
    seed_everything(0, frameworks=("torch",))
    assert torch.get_num_threads() == 1


def test_fixed_tensorflow_pools_warn_instead_of_failing():
    code = ("import warnings, tensorflow as tf; from utils.seeding import set_threads;"
            "tf.constant(1.0) + 1;"  # the first op fixes TensorFlow's pools at 0 (per core)
            "warnings.simplefilter('error');"
            "set_threads(1, frameworks=('keras',))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "Call seed_everything before building a model" in out.stderr


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_thread_count_names_the_argument(threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        seed_everything(0, frameworks=(), threads=threads)


def test_tensor_float_32_is_switched_off():
    # On a CPU the switches change nothing, but they must be set for a GPU runtime (Colab),
    # where TF32 would multiply float32 rounding errors by about 2**13.
    import tensorflow as tf
    import torch

    seed_everything(0)
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    assert not torch.backends.cuda.matmul.allow_tf32
    assert not torch.backends.cudnn.allow_tf32


def test_utils_imports_triton_before_tensorflow(tmp_path):
    # torch's CUDA wheels ship Triton, which crashes when imported after TensorFlow; importing
    # utils (every chapter's first cell) imports it first when it is installed. A stand-in
    # package records whether it was imported.
    (tmp_path / "triton").mkdir()
    (tmp_path / "triton" / "__init__.py").write_text("")
    code = "import sys; import utils; print('triton' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert ran.stdout.strip() == "True"
    # with TensorFlow already loaded it must not import Triton (that order is the crash)
    code = ("import sys, types; sys.modules['tensorflow'] = types.ModuleType('tensorflow');"
            "import utils; print('triton' in sys.modules)")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert ran.stdout.strip() == "False"


def test_deterministic_torch_avoids_importing_triton_after_tensorflow(monkeypatch):
    import importlib.util
    import types

    import torch

    from utils import seeding

    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "triton" else None)
    assert seeding._triton_would_crash()
    called = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda mode: called.append(mode))
    torch._C._set_deterministic_algorithms(False)
    seeding._deterministic_torch(torch)
    assert called == [] and torch.are_deterministic_algorithms_enabled()
    # without TensorFlow loaded, torch's own switch is used
    monkeypatch.delitem(sys.modules, "tensorflow")
    assert not seeding._triton_would_crash()
    seeding._deterministic_torch(torch)
    assert called == [True]
