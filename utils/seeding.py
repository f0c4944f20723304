"""Seeding and determinism for Python, NumPy, Keras/TensorFlow and torch (Chapter 0).

Every notebook in the course calls :func:`seed_everything` in its setup cell, so re-running a
chapter reproduces its committed outputs exactly (nbval checks this in CI).
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterable
from typing import Literal

import numpy as np

__all__ = ["seed_everything", "KNOWN_FRAMEWORKS"]

Framework = Literal["keras", "torch"]
KNOWN_FRAMEWORKS: tuple[Framework, ...] = ("keras", "torch")


def seed_everything(
    seed: int,
    frameworks: Iterable[str] = KNOWN_FRAMEWORKS,
    deterministic: bool = True,
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

    Returns
    -------
    int
        The seed, so a cell can write ``SEED = seed_everything(0)``.

    Raises
    ------
    ValueError
        If ``seed`` is not an integer in ``[0, 2**32)`` or ``frameworks`` names an unknown
        framework.

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
    if "torch" in names:
        import torch

        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True)
    return seed
