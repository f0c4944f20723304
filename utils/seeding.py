"""Seeding and determinism for Python, NumPy, Keras/TensorFlow and torch (Chapter 0).

Every notebook in the course calls :func:`seed_everything` in its setup cell, so re-running a
chapter reproduces its committed outputs exactly (nbval checks this in CI).

Every seed a chapter uses comes from :func:`course_seed` or :func:`seeds`, which add the
environment variable ``COURSE_SEED_SHIFT`` (0 when unset) to it. Setting the variable moves
every seed of every chapter at once (the model seeds, the data draws and the splits), so a
claim can be checked on seeds it was not written from ("How this course checks a claim").
"""
from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterable
from typing import Literal

import numpy as np

__all__ = ["seed_everything", "set_threads", "KNOWN_FRAMEWORKS", "COURSE_THREADS",
           "SEED_SHIFT_VARIABLE", "seed_shift", "course_seed", "seeds"]

Framework = Literal["keras", "torch"]
KNOWN_FRAMEWORKS: tuple[Framework, ...] = ("keras", "torch")

#: How many threads every chapter computes with, in torch, TensorFlow and NumPy's BLAS. One
#: thread makes a chapter's float32 sums independent of the reader's core count (a parallel
#: reduction adds in an order that depends on how many threads share it), and on the course's
#: small models it is as fast as two: with both frameworks loaded, their thread pools and
#: OpenBLAS's otherwise compete for the same cores.
COURSE_THREADS = 1

#: The environment variable that moves every seed of the course (see :func:`seed_shift`).
SEED_SHIFT_VARIABLE = "COURSE_SEED_SHIFT"

# The largest shift allowed: a chapter's seeds stay far below NumPy's limit of 2**32 when its
# own seeds are small, as every chapter's are.
_MAX_SHIFT = 2**31


def seed_shift() -> int:
    """The shift every course seed is moved by: ``COURSE_SEED_SHIFT``, or 0 when it is unset.

    The committed outputs are made with no shift. CI re-runs every chapter with its asserts under
    other shifts, so a claim that holds only for the seeds it was written from fails there
    ("How this course checks a claim", Chapter 0).

    Returns
    -------
    int
        A non-negative integer below ``2**31``.

    Raises
    ------
    ValueError
        If ``COURSE_SEED_SHIFT`` is set to anything but a non-negative integer below ``2**31``.
    """
    text = os.environ.get(SEED_SHIFT_VARIABLE, "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) >= _MAX_SHIFT:
        raise ValueError(f"{SEED_SHIFT_VARIABLE} must be a non-negative integer below 2**31 "
                         f"(for example 1000), got {text!r}; unset it to use the book's seeds")
    return int(text)


def course_seed(k: int = 0) -> int:
    """The course's seed number ``k``: ``k`` moved by :func:`seed_shift` (Chapter 0).

    A chapter never writes a seed as a bare number. It writes ``course_seed(0)``, which is 0 in
    the book and ``0 + COURSE_SEED_SHIFT`` when the seeds are moved.

    Parameters
    ----------
    k
        A non-negative integer below ``2**31``.

    Returns
    -------
    int
        ``k + seed_shift()``.

    Raises
    ------
    ValueError
        If ``k`` is not a non-negative integer below ``2**31``, or the shift is malformed.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < _MAX_SHIFT:
        raise ValueError(f"k must be a non-negative integer below 2**31, got {k!r}")
    return int(k) + seed_shift()


def seeds(n: int, start: int = 0) -> tuple[int, ...]:
    """``n`` consecutive course seeds from ``start``: ``course_seed(start), ...`` (Chapter 0).

    Use it for every list of seeds a chapter averages over (``for seed in seeds(10)``), and
    index results by the seeds it returns, not by ``range(n)``: with the seeds moved they are
    other numbers.

    Parameters
    ----------
    n
        How many seeds, at least 1.
    start
        The first seed's number before the shift, a non-negative integer.

    Returns
    -------
    tuple of int
        ``n`` distinct seeds in increasing order.

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer or ``start`` is not a non-negative integer below
        ``2**31``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (how many seeds), got {n!r}")
    first = course_seed(start)
    return tuple(range(first, first + int(n)))


def seed_everything(
    seed: int,
    frameworks: Iterable[str] = KNOWN_FRAMEWORKS,
    deterministic: bool = True,
    threads: int | None = COURSE_THREADS,
) -> int:
    """Seed Python, NumPy and the chosen frameworks; optionally force deterministic kernels.

    Parameters
    ----------
    seed
        A non-negative integer below ``2**32`` (NumPy's limit).
    frameworks
        Which frameworks to seed, any of ``"keras"`` and ``"torch"``. A framework is imported
        only if it is named here, so ``frameworks=()`` keeps a session NumPy-only.
    deterministic
        Also switch on deterministic kernels: ``tf.config.experimental.enable_op_determinism()``
        for Keras/TensorFlow and ``torch.use_deterministic_algorithms(True)`` for torch.
        On the CPU this costs little; it is what makes the notebooks' printed numbers stable.
        It also switches TensorFloat-32 off in both frameworks: on Ampere and newer GPUs both
        would otherwise compute float32 matrix products with a 10-bit mantissa, whose unit
        roundoff ``2**-11`` is ``2**13`` times the float32 one the chapters' checks are built
        on. On a CPU the switches change nothing.
    threads
        Passed to :func:`set_threads` (``None`` leaves every thread pool as it is).

    Returns
    -------
    int
        The seed, so a cell can write ``SEED = seed_everything(0)``.

    Raises
    ------
    ValueError
        If ``seed`` is not an integer in ``[0, 2**32)``, ``frameworks`` names an unknown
        framework, or ``threads`` is not a positive integer or ``None``.

    Notes
    -----
    ``keras.utils.set_random_seed`` seeds Python, NumPy and the backend together; Keras 3
    initializers created *without* a seed draw from that global state in construction order,
    which Chapter 1 shows is fragile. Seeding is therefore necessary for reproducibility, but
    not sufficient: see Chapter 1 for seeded initializer instances.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    _require_threads(threads)
    names = [frameworks] if isinstance(frameworks, str) else list(frameworks)
    unknown = [name for name in names if name not in KNOWN_FRAMEWORKS]
    if unknown:
        raise ValueError(
            f"frameworks must contain only {KNOWN_FRAMEWORKS}, got unknown {unknown!r}"
        )

    os.environ["PYTHONHASHSEED"] = str(seed)  # affects subprocesses, not this interpreter
    random.seed(seed)
    np.random.seed(seed)

    if "keras" in names:
        import keras

        keras.utils.set_random_seed(seed)  # Python, NumPy and the backend's global seed
        if deterministic and keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
            tf.config.experimental.enable_tensor_float_32_execution(False)
    if "torch" in names:
        import torch

        torch.manual_seed(seed)
        if deterministic:
            _deterministic_torch(torch)
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
    if threads is not None:
        set_threads(threads, frameworks=names)
    return seed


def _triton_would_crash() -> bool:
    """True when importing Triton now would follow TensorFlow into the same process.

    ``torch.use_deterministic_algorithms`` imports ``torch._inductor.config``, which imports
    Triton when torch's CUDA wheel installed it; after TensorFlow that import crashes the
    interpreter (TensorFlow 2.21 with torch 2.14.1 and Triton 3.8: a segmentation fault).
    """
    import importlib.util
    import sys

    if "triton" in sys.modules or "tensorflow" not in sys.modules:
        return False
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def _deterministic_torch(torch) -> None:
    """Switch torch to deterministic kernels without importing Triton after TensorFlow.

    Where that import would crash (:func:`_triton_would_crash`), set the kernels' switch alone,
    ``torch._C._set_deterministic_algorithms``, which is what ``use_deterministic_algorithms``
    sets besides the inductor compiler's flag. The course never compiles a model, so its kernels
    are the same either way.
    """
    if _triton_would_crash():
        torch._C._set_deterministic_algorithms(True)
    else:
        torch.use_deterministic_algorithms(True)


def _require_threads(threads: object) -> None:
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")


def set_threads(threads: int = COURSE_THREADS,
                frameworks: Iterable[str] = KNOWN_FRAMEWORKS) -> dict[str, int]:
    """Fix the number of threads torch, TensorFlow and NumPy's BLAS compute with (Chapter 0).

    Parameters
    ----------
    threads
        A positive integer; the course uses :data:`COURSE_THREADS` (one).
    frameworks
        Which frameworks' thread pools to set, any of ``"keras"`` and ``"torch"``; NumPy's
        BLAS (and any OpenMP pool) is always set, through ``threadpoolctl`` when installed.

    Returns
    -------
    dict
        The thread counts now in force, keyed ``"torch"``, ``"tensorflow"`` and ``"blas"``
        (only for what was set).

    Raises
    ------
    ValueError
        If ``threads`` is not a positive integer or ``frameworks`` names an unknown framework.

    Notes
    -----
    TensorFlow fixes its thread pools when it runs its first operation; after that they cannot
    change. If they already differ from ``threads``, a ``RuntimeWarning`` says so (call
    :func:`seed_everything` before building a model to avoid it).
    """
    if threads is None:
        raise ValueError("threads must be a positive integer, got None")
    _require_threads(threads)
    threads = int(threads)
    names = [frameworks] if isinstance(frameworks, str) else list(frameworks)
    unknown = [name for name in names if name not in KNOWN_FRAMEWORKS]
    if unknown:
        raise ValueError(
            f"frameworks must contain only {KNOWN_FRAMEWORKS}, got unknown {unknown!r}"
        )
    in_force: dict[str, int] = {}
    if "torch" in names:
        import torch

        torch.set_num_threads(threads)
        in_force["torch"] = torch.get_num_threads()
    if "keras" in names:
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            threading = tf.config.threading
            try:
                threading.set_intra_op_parallelism_threads(threads)
                threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:  # the runtime is already initialised: its pools are fixed
                if threading.get_intra_op_parallelism_threads() != threads:
                    warnings.warn(
                        "TensorFlow's thread pools were fixed before seed_everything was "
                        f"called; they stay at {threading.get_intra_op_parallelism_threads()} "
                        f"(0 = one per core), not {threads}. Call seed_everything before "
                        "building a model.", RuntimeWarning, stacklevel=2)
            in_force["tensorflow"] = threading.get_intra_op_parallelism_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError:  # pragma: no cover - scikit-learn installs it
        pass
    else:
        threadpool_limits(limits=threads)  # stays in force: the returned object is not used
        in_force["blas"] = threads
    return in_force
