"""Data for the prior-bias experiments: generated stand-ins and real-data loaders (Chapter 5).

Chapter 5 measures what a prior-logit output bias buys on two imbalanced problems from the
sources: a CIFAR-10 subset with a skewed class profile, and the credit-card fraud transactions
(0.17 % positives). Neither data set can be downloaded in CI, so this module provides

* **generated stand-ins** with exactly the same class counts and layout, deterministic for a seed:
  :func:`make_imbalanced_classification` (any class-count profile, by default the CIFAR subset's
  13,850 samples) and :func:`make_rare_positive` (the fraud file's 30 columns and positive rate);
* **loaders for the real files**, for readers who download them (on Colab, say):
  :func:`load_cifar10_subset` reads the official ``cifar-10-python.tar.gz`` (or its extracted
  folder) and :func:`load_credit_card_fraud` reads Kaggle's ``creditcard.csv``. They never touch
  the network; :func:`download_cifar10` and :func:`download_credit_card_fraud` do, and only when
  called;
* the fraud preprocessing of the sources (:class:`FraudScaler`, :func:`preprocess_fraud_features`),
  and :func:`class_counts` / :func:`stratified_split` for splits that keep every rare class.

NumPy, scikit-learn and the standard library only: no framework is imported here, and the
arrays returned feed Keras and torch alike (``float32`` features, ``int64`` labels).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Literal

import numpy as np

from utils.stats import require_int, require_nonnegative, require_positive, require_seed

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR_SUBSET_COUNTS",
    "CIFAR10_URL",
    "CIFAR10_MD5",
    "FRAUD_COLUMNS",
    "FraudShape",
    "FRAUD_SHAPE",
    "FRAUD_POSITIVE_RATE",
    "FRAUD_KAGGLE_URL",
    "FRAUD_CSV_URL",
    "class_counts",
    "make_imbalanced_classification",
    "make_rare_positive",
    "FraudScaler",
    "preprocess_fraud_features",
    "stratified_split",
    "load_cifar10_subset",
    "load_credit_card_fraud",
    "download_cifar10",
    "download_credit_card_fraud",
]

# --------------------------------------------------------------------------------------------
# Facts about the two real data sets
# --------------------------------------------------------------------------------------------

#: CIFAR-10's class names, in label order (the ``label_names`` of the archive's ``batches.meta``).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

#: The imbalanced CIFAR-10 subset of the source experiment, as images per class label (13,850
#: in total). Read-only, so a notebook cannot change it for the chapters after it.
CIFAR_SUBSET_COUNTS: Mapping[int, int] = MappingProxyType(
    {0: 4000, 1: 3700, 2: 100, 3: 4000, 4: 400, 5: 100, 6: 50, 7: 700, 8: 700, 9: 100}
)

#: The official Python-pickle version of CIFAR-10.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: The published MD5 checksum of that archive; :func:`download_cifar10` checks it.
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCHES = ("test_batch",)
_CIFAR_PIXELS = 32 * 32 * 3

#: The feature columns of ``creditcard.csv``, in file order (the label ``Class`` follows them).
FRAUD_COLUMNS: tuple[str, ...] = ("Time", *(f"V{i}" for i in range(1, 29)), "Amount")
_FRAUD_HEADER: tuple[str, ...] = (*FRAUD_COLUMNS, "Class")


@dataclass(frozen=True)
class FraudShape:
    """Size and class balance of the credit-card fraud data set (Chapter 5).

    Attributes
    ----------
    n_rows
        Transactions in the file.
    n_positive
        Fraudulent transactions (``Class == 1``).
    columns
        The feature columns, in file order.
    """

    n_rows: int
    n_positive: int
    columns: tuple[str, ...]

    @property
    def n_negative(self) -> int:
        """Legitimate transactions, ``n_rows - n_positive``."""
        return self.n_rows - self.n_positive

    @property
    def n_features(self) -> int:
        """Number of feature columns, 30 (``Time``, ``V1``..``V28``, ``Amount``)."""
        return len(self.columns)

    @property
    def positive_rate(self) -> float:
        """Fraction of positives, ``n_positive / n_rows`` (about 0.17 %)."""
        return self.n_positive / self.n_rows


#: The fraud data set as the sources describe it, 284,807 transactions, 492 of them fraud.
FRAUD_SHAPE = FraudShape(n_rows=284_807, n_positive=492, columns=FRAUD_COLUMNS)
FRAUD_POSITIVE_RATE: float = FRAUD_SHAPE.positive_rate

#: Where the fraud data set is published (a free Kaggle account is needed to download it there).
FRAUD_KAGGLE_URL = "https://www.kaggle.com/datasets/mlg-ulb/creditcardfraud"
#: The copy of ``creditcard.csv`` that TensorFlow's "Classification on imbalanced data" tutorial
#: reads, downloadable without an account. :func:`download_credit_card_fraud` checks its shape.
FRAUD_CSV_URL = "https://storage.googleapis.com/download.tensorflow.org/data/creditcard.csv"

_CIFAR_HELP = (
    f"Download the Python version of CIFAR-10 ({CIFAR10_URL}, about 163 MB), for example with "
    "utils.data.download_cifar10('data'), and pass the .tar.gz or its extracted "
    f"'{_CIFAR_FOLDER}' folder."
)
_FRAUD_HELP = (
    f"Download creditcard.csv from Kaggle ({FRAUD_KAGGLE_URL}; sign in, press Download, unzip), "
    "or call utils.data.download_credit_card_fraud('data'), which fetches the copy used by "
    f"TensorFlow's imbalanced-data tutorial ({FRAUD_CSV_URL}) and checks its shape."
)

# --------------------------------------------------------------------------------------------
# Argument checks shared by the public functions
# --------------------------------------------------------------------------------------------


def _check_counts(counts: Any, argument: str = "class_counts") -> dict[int, int]:
    """A ``{label: count}`` mapping (or a sequence of counts for labels 0, 1, ...), validated."""
    if isinstance(counts, Mapping):
        items = list(counts.items())
    elif isinstance(counts, (Sequence, np.ndarray)) and not isinstance(counts, (str, bytes)):
        items = list(enumerate(counts))
    else:
        raise ValueError(
            f"{argument} must map class labels to sample counts, e.g. {{0: 4000, 1: 100}}, "
            f"or list the counts of classes 0, 1, ...; got {type(counts).__name__}"
        )
    if not items:
        raise ValueError(f"{argument} must name at least one class, got an empty {argument}")
    checked: dict[int, int] = {}
    for label, count in items:
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
            raise ValueError(
                f"{argument} keys must be non-negative integer class labels, got {label!r}"
            )
        checked[int(label)] = require_int(count, f"{argument}[{label}]")
    return dict(sorted(checked.items()))


def _check_labels(labels: Any, argument: str = "labels") -> np.ndarray:
    """Labels as a 1-D int64 array; integral floats (Keras-style ``float32`` targets) are fine."""
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]  # a (n, 1) column of binary targets
    if array.ndim != 1:
        raise ValueError(
            f"{argument} must be a 1-D array of class labels, got shape {array.shape}"
        )
    if array.dtype == bool:
        array = array.astype(np.int64)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.mod(array, 1) == 0):
            raise ValueError(
                f"{argument} must hold integer class labels, got dtype {array.dtype} "
                "with non-integer values"
            )
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{argument} must be non-negative class labels, found {array.min()}")
    return array


def _take_exact(
    labels: np.ndarray, counts: Mapping[int, int], rng: np.random.Generator, where: str
) -> np.ndarray:
    """Indices of exactly ``counts[c]`` random samples of each class ``c``, in random order."""
    chosen = []
    for label, count in counts.items():
        available = np.flatnonzero(labels == label)
        if count > available.size:
            raise ValueError(
                f"class_counts asks for {count} samples of class {label} but {where} holds "
                f"{available.size}"
            )
        chosen.append(rng.choice(available, size=count, replace=False))
    return rng.permutation(np.concatenate(chosen))


# --------------------------------------------------------------------------------------------
# Counting and splitting
# --------------------------------------------------------------------------------------------


def class_counts(labels: Any, n_classes: int | None = None) -> np.ndarray:
    """Count the samples of each class (Chapter 5).

    Parameters
    ----------
    labels
        Class labels 0, 1, ...: a 1-D array (or an ``(n, 1)`` column, as binary Keras targets
        often are). Integer-valued floats are accepted.
    n_classes
        Length of the result. ``None`` means ``max(labels) + 1``; give it when a class may be
        absent (a validation split, a batch) so the result still has one entry per class.

    Returns
    -------
    numpy.ndarray
        ``int64`` array; entry ``k`` is the number of samples with label ``k``. Divide by its
        sum for the class frequencies that set a prior bias (Chapter 4).

    Raises
    ------
    ValueError
        If ``labels`` is not 1-D, holds negative or non-integer values, or has a label
        ``>= n_classes``; or if ``n_classes`` is not a positive integer.
    """
    array = _check_labels(labels)
    if n_classes is None:
        return np.bincount(array).astype(np.int64)
    n_classes = require_int(n_classes, "n_classes")
    if array.size and array.max() >= n_classes:
        raise ValueError(
            f"n_classes={n_classes} but labels contain class {array.max()}; "
            f"expected labels in [0, {n_classes})"
        )
    return np.bincount(array, minlength=n_classes).astype(np.int64)


def _part_sizes(n: int, fractions: np.ndarray) -> np.ndarray:
    """Cut ``n`` items into parts by largest remainders, leaving no part empty if avoidable."""
    raw = n * fractions
    sizes = np.floor(raw).astype(np.int64)
    leftover = n - int(sizes.sum())
    # Stable sort: ties go to the earlier part, so the sizes do not depend on the seed.
    order = np.argsort(-(raw - sizes), kind="stable")
    sizes[order[:leftover]] += 1
    if n >= len(fractions):
        for part in np.flatnonzero(sizes == 0):
            sizes[np.argmax(sizes)] -= 1  # the largest part has >= 2 items here
            sizes[part] = 1
    return sizes


def stratified_split(
    x: Any, y: Any, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split a data set into parts that keep each class's share, rare classes included (Chapter 5).

    Each class is shuffled and cut into parts of sizes ``fractions`` of its count (rounded by
    largest remainders, so the sizes add up exactly). A class with at least ``len(fractions)``
    samples appears in *every* part, even where rounding would leave a part without it: with
    0.17 % positives, a validation split without a positive would make precision-recall
    meaningless.

    Parameters
    ----------
    x
        Features, any array whose first axis indexes the samples.
    y
        Class labels, 1-D, same length as ``x``.
    fractions
        Share of each part, positive and summing to 1, e.g. ``(0.8, 0.2)`` or
        ``(0.6, 0.2, 0.2)``.
    seed
        Seed of the shuffles; the same seed gives the same parts.

    Returns
    -------
    list of (numpy.ndarray, numpy.ndarray)
        One ``(x_part, y_part)`` pair per fraction, each part in random order.

    Raises
    ------
    ValueError
        If ``x`` and ``y`` differ in length, ``y`` is not a 1-D array of class labels, or
        ``fractions`` has fewer than two entries, a non-positive entry or does not sum to 1.
    """
    x_array = np.asarray(x)
    y_array = _check_labels(y, "y")
    if x_array.ndim == 0 or x_array.shape[0] != y_array.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples, got x with shape {x_array.shape} "
            f"and y with {y_array.shape[0]} labels"
        )
    try:
        parts = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"fractions must be a sequence of numbers, got {fractions!r}") from None
    if parts.ndim != 1 or parts.size < 2:
        raise ValueError(f"fractions must list at least two parts, got {fractions!r}")
    if not np.all(np.isfinite(parts)) or np.any(parts <= 0):
        raise ValueError(f"fractions must all be positive, got {fractions!r}")
    if abs(parts.sum() - 1.0) > 1e-9:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {parts.sum():.6g})")
    rng = np.random.default_rng(require_seed(seed))

    pieces: list[list[np.ndarray]] = [[] for _ in parts]
    for label in np.unique(y_array):
        members = rng.permutation(np.flatnonzero(y_array == label))
        bounds = np.cumsum(_part_sizes(members.size, parts))[:-1]
        for piece, chunk in zip(pieces, np.split(members, bounds)):
            piece.append(chunk)
    result = []
    for piece in pieces:
        index = rng.permutation(np.concatenate(piece)) if piece else np.zeros(0, np.int64)
        result.append((x_array[index], y_array[index]))
    return result


# --------------------------------------------------------------------------------------------
# Generated data
# --------------------------------------------------------------------------------------------


def make_imbalanced_classification(
    class_counts: Mapping[int, int] | Sequence[int] = CIFAR_SUBSET_COUNTS,
    *,
    n_features: int = 20,
    n_informative: int = 10,
    class_sep: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A generated multi-class problem with exactly the given samples per class (Chapter 5).

    The offline stand-in for the CIFAR-10 subset: by default 13,850 samples in 10 classes with
    the subset's counts, so the prior bias, the initial losses (log 10 vs the entropy of the
    class frequencies) and the batches seen in one epoch are those of the real experiment.

    scikit-learn's ``make_classification`` with ``weights`` only matches class shares
    approximately, so here it generates ``max(counts)`` samples of every class (two Gaussian
    clusters per class on the corners of a hypercube, no label noise) and keeps a random subset
    of exactly ``class_counts[k]`` of class ``k``.

    Parameters
    ----------
    class_counts
        Samples per class: a mapping whose keys are exactly ``0, 1, ..., K-1`` (``K >= 2``), or
        the sequence of counts of classes ``0 .. K-1``.
    n_features
        Number of features; ``n_informative`` carry the class, the rest are noise.
    n_informative
        Informative features; ``2 ** n_informative`` must be at least ``2 * K`` (the clusters
        sit on the corners of an ``n_informative``-dimensional hypercube).
    class_sep
        Distance scale between the clusters: larger is easier. The default is learnable by a
        linear model well above the majority-class baseline without being separable
        (``tests/test_data.py`` checks both).
    seed
        Seed of the generator and of the subsampling; the same seed gives the same arrays.

    Returns
    -------
    x : numpy.ndarray
        ``float32`` features, shape ``(N, n_features)`` with ``N = sum(class_counts)``.
    y : numpy.ndarray
        ``int64`` labels, shape ``(N,)``, shuffled.

    Raises
    ------
    ValueError
        If ``class_counts`` is not a mapping of labels ``0 .. K-1`` to positive counts (or a
        sequence of positive counts) with ``K >= 2``, or a size argument is out of range.
    """
    from sklearn.datasets import make_classification

    counts = _check_counts(class_counts)
    n_classes = len(counts)
    if n_classes < 2:
        raise ValueError(f"class_counts must name at least two classes, got {dict(counts)}")
    missing = sorted(set(range(n_classes)) - set(counts))
    if missing:
        raise ValueError(
            f"class_counts keys must be the labels 0..{n_classes - 1} without gaps, "
            f"got {sorted(counts)} (missing {missing})"
        )
    n_features = require_int(n_features, "n_features")
    n_informative = require_int(n_informative, "n_informative")
    if n_informative > n_features:
        raise ValueError(
            f"n_informative must be at most n_features={n_features}, got {n_informative}"
        )
    clusters_per_class = 2
    if 2**n_informative < clusters_per_class * n_classes:
        raise ValueError(
            f"n_informative={n_informative} is too small for {n_classes} classes: "
            f"expected 2**n_informative >= {clusters_per_class * n_classes}"
        )
    class_sep = require_positive(class_sep, "class_sep")
    seed = require_seed(seed)

    per_class = max(counts.values())
    x, y = make_classification(
        n_samples=per_class * n_classes,
        n_features=n_features,
        n_informative=n_informative,
        n_redundant=0,
        n_classes=n_classes,
        n_clusters_per_class=clusters_per_class,
        class_sep=class_sep,
        flip_y=0.0,  # label noise would move samples between classes and break exact counts
        random_state=seed,
    )
    keep = _take_exact(y, counts, np.random.default_rng(seed), "the generated pool")
    return x[keep].astype(np.float32), y[keep].astype(np.int64)


def make_rare_positive(
    n_samples: int = FRAUD_SHAPE.n_rows,
    *,
    positive_rate: float | None = None,
    n_positive: int | None = None,
    class_sep: float = 1.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A generated binary problem shaped like the credit-card fraud file (Chapter 5).

    The offline stand-in for ``creditcard.csv``: 30 raw columns in the file's order
    (:data:`FRAUD_COLUMNS`), so :func:`preprocess_fraud_features` treats it exactly like the
    real data, and by default 284,807 rows with exactly 492 positives.

    How it is made: ``Time`` is uniform over two days (seconds, rows sorted by it as in the
    file) and carries no signal. ``V1..V28`` are independent Gaussians whose spreads fall from
    2.0 to 0.3 across the columns, like principal components; for positives, 10 of them are
    shifted by ``class_sep`` of their spread (alternating signs) and have 1.5 times the spread.
    ``Amount`` is log-normal, rounded to cents, with a few exact zeros (which is why the
    preprocessing adds an offset before the log); positives' amounts are typically smaller and
    more dispersed. A linear model separates the classes well but not perfectly
    (``tests/test_data.py`` checks both); nothing here is fitted to the real data.

    Parameters
    ----------
    n_samples
        Number of rows.
    positive_rate
        Fraction of positives; the number of positives is ``n_samples * positive_rate``
        rounded to the nearest integer (halves up). Default: the fraud file's
        ``492 / 284807``.
    n_positive
        The exact number of positives instead of a rate (give one of the two, not both).
    class_sep
        Shift of the positives in the informative columns, in units of each column's spread.
    seed
        Seed; the same seed gives the same arrays.

    Returns
    -------
    x : numpy.ndarray
        ``float64`` raw features, shape ``(n_samples, 30)``, columns :data:`FRAUD_COLUMNS`.
    y : numpy.ndarray
        ``int64`` labels, 1 for the positives.

    Raises
    ------
    ValueError
        If both ``positive_rate`` and ``n_positive`` are given, the rate is not in ``(0, 1)``,
        or the sizes leave no positive or no negative.
    """
    n_samples = require_int(n_samples, "n_samples")
    if positive_rate is not None and n_positive is not None:
        raise ValueError(
            f"give positive_rate or n_positive, not both (got positive_rate={positive_rate!r}, "
            f"n_positive={n_positive!r})"
        )
    if n_positive is None:
        rate = FRAUD_POSITIVE_RATE if positive_rate is None else positive_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or not (
            0 < rate < 1
        ):
            raise ValueError(f"positive_rate must be a number in (0, 1), got {positive_rate!r}")
        n_pos = int(np.floor(n_samples * float(rate) + 0.5))
        if not 1 <= n_pos < n_samples:
            raise ValueError(
                f"n_samples={n_samples} with positive_rate={rate:.6g} gives {n_pos} positives; "
                "expected at least one positive and one negative (raise n_samples or pass "
                "n_positive)"
            )
    else:
        n_pos = require_int(n_positive, "n_positive")
        if n_pos >= n_samples:
            raise ValueError(
                f"n_positive must be smaller than n_samples={n_samples}, got {n_pos}"
            )
    class_sep = require_nonnegative(class_sep, "class_sep")
    rng = np.random.default_rng(require_seed(seed))

    y = np.zeros(n_samples, dtype=np.int64)
    y[rng.choice(n_samples, size=n_pos, replace=False)] = 1
    positive = y == 1

    n_pca = 28
    spread = np.linspace(2.0, 0.3, n_pca)
    informative = np.array([1, 2, 3, 4, 9, 10, 11, 13, 15, 16])  # V2-V5, V10-V12, V14, V16, V17
    signs = np.where(np.arange(informative.size) % 2 == 0, -1.0, 1.0)
    v = rng.standard_normal((n_samples, n_pca)) * spread
    v_pos = v[positive]
    v_pos[:, informative] = (
        1.5 * v_pos[:, informative] + class_sep * signs * spread[informative]
    )
    v[positive] = v_pos

    time = np.sort(rng.uniform(0.0, 2 * 24 * 3600.0, n_samples))
    amount = np.where(
        positive,
        rng.lognormal(mean=np.log(9.0), sigma=1.8, size=n_samples),
        rng.lognormal(mean=np.log(22.0), sigma=1.3, size=n_samples),
    )
    amount[rng.random(n_samples) < 0.005] = 0.0
    amount = np.round(amount, 2)
    x = np.column_stack([time, v, amount])
    return x, y


# --------------------------------------------------------------------------------------------
# Fraud preprocessing (log amount, standardise with training statistics, clip)
# --------------------------------------------------------------------------------------------


def _check_fraud_features(x: Any, argument: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != len(FRAUD_COLUMNS):
        raise ValueError(
            f"{argument} must be a 2-D array with the {len(FRAUD_COLUMNS)} raw columns "
            f"Time, V1..V28, Amount of creditcard.csv, got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must be finite, found NaN or infinity")
    if array.size and array[:, -1].min() < 0:
        raise ValueError(
            f"{argument} column Amount (the last) must be >= 0 to take its log, "
            f"found {array[:, -1].min()}"
        )
    return array


@dataclass(frozen=True, eq=False)  # eq on array fields would be ambiguous
class FraudScaler:
    """The fraud preprocessing of the sources, fitted on a training split (Chapter 5).

    ``transform`` drops ``Time`` (by default), replaces ``Amount`` by
    ``log(Amount + amount_offset)``, standardises every column with the *training* mean and
    standard deviation, and clips to ``[-clip, clip]``: the brief's recipe, with the ``Time``
    and offset choices of TensorFlow's "Classification on imbalanced data" tutorial, the source
    of the fraud experiment. Fitting on the training split only keeps validation and test data
    unseen; clipping bounds the rare extreme values. Create one with :meth:`fit`.

    Attributes
    ----------
    mean, scale
        Per-column training mean and standard deviation of the transformed columns (a
        constant column gets scale 1, as in scikit-learn's ``StandardScaler``).
    drop_time
        Whether ``Time`` is dropped (the tutorial drops it).
    amount_offset
        Added to ``Amount`` before the log, since some amounts are 0. Default 0.001, the
        tutorial's.
    clip
        Bound of the clipping, or ``None`` for none. Default 5.
    """

    mean: np.ndarray
    scale: np.ndarray
    drop_time: bool = True
    amount_offset: float = 1e-3
    clip: float | None = 5.0

    @classmethod
    def fit(
        cls,
        x_train: Any,
        *,
        drop_time: bool = True,
        amount_offset: float = 1e-3,
        clip: float | None = 5.0,
    ) -> FraudScaler:
        """Learn the standardisation from the training features.

        Parameters
        ----------
        x_train
            Raw training features, shape ``(n, 30)``, columns :data:`FRAUD_COLUMNS` (the output
            of :func:`load_credit_card_fraud` or :func:`make_rare_positive`).
        drop_time, amount_offset, clip
            See the class attributes.

        Raises
        ------
        ValueError
            If ``x_train`` does not have the 30 raw columns, is empty, holds NaN or a negative
            amount, or ``amount_offset`` / ``clip`` is not positive.
        """
        amount_offset = require_positive(amount_offset, "amount_offset")
        clip = None if clip is None else require_positive(clip, "clip")
        raw = _check_fraud_features(x_train, "x_train")
        if raw.shape[0] == 0:
            raise ValueError("x_train must hold at least one row to fit the standardisation")
        columns = cls._log_amount(raw, drop_time, amount_offset)
        scale = columns.std(axis=0)
        scale[scale == 0] = 1.0
        return cls(
            mean=columns.mean(axis=0),
            scale=scale,
            drop_time=bool(drop_time),
            amount_offset=amount_offset,
            clip=clip,
        )

    @staticmethod
    def _log_amount(raw: np.ndarray, drop_time: bool, amount_offset: float) -> np.ndarray:
        columns = (raw[:, 1:] if drop_time else raw).copy()  # never write into the caller's array
        columns[:, -1] = np.log(raw[:, -1] + amount_offset)
        return columns

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the output columns (``log_Amount`` last)."""
        kept = FRAUD_COLUMNS[1:] if self.drop_time else FRAUD_COLUMNS
        return (*kept[:-1], "log_Amount")

    def transform(self, x: Any, argument: str = "x") -> np.ndarray:
        """Apply the fitted preprocessing.

        Parameters
        ----------
        x
            Raw features, shape ``(n, 30)``, columns :data:`FRAUD_COLUMNS`.
        argument
            The caller's name for ``x``, used in error messages.

        Returns
        -------
        numpy.ndarray
            ``float32``, shape ``(n, 29)`` (``(n, 30)`` with ``drop_time=False``), columns
            :attr:`columns`.
        """
        columns = self._log_amount(_check_fraud_features(x, argument), self.drop_time,
                                   self.amount_offset)
        standard = (columns - self.mean) / self.scale
        if self.clip is not None:
            standard = np.clip(standard, -self.clip, self.clip)
        return standard.astype(np.float32)


def preprocess_fraud_features(
    x_train: Any,
    *x_others: Any,
    drop_time: bool = True,
    amount_offset: float = 1e-3,
    clip: float | None = 5.0,
) -> tuple[np.ndarray, ...]:
    """Preprocess fraud features as the sources do, with training-split statistics (Chapter 5).

    Shorthand for ``FraudScaler.fit(x_train, ...)`` followed by ``transform`` of every array:
    drop ``Time``, take ``log(Amount + 0.001)``, standardise with the training mean and standard
    deviation, clip to ±5. Works the same on :func:`make_rare_positive` and on
    :func:`load_credit_card_fraud` output.

    Parameters
    ----------
    x_train
        Raw training features, shape ``(n, 30)``; the only array the statistics come from.
    *x_others
        Further raw splits (validation, test) transformed with the training statistics.
    drop_time, amount_offset, clip
        See :class:`FraudScaler`.

    Returns
    -------
    tuple of numpy.ndarray
        ``float32`` arrays, the training split first, then the others in order.

    Raises
    ------
    ValueError
        If an array does not have the 30 raw columns, holds NaN or a negative amount, or an
        option is out of range.

    Examples
    --------
    >>> (x_tr, y_tr), (x_va, y_va) = stratified_split(*make_rare_positive(20_000, n_positive=40),
    ...                                               (0.8, 0.2))
    >>> x_tr, x_va = preprocess_fraud_features(x_tr, x_va)
    >>> x_tr.shape[1], float(abs(x_va).max()) <= 5
    (29, True)
    """
    scaler = FraudScaler.fit(x_train, drop_time=drop_time, amount_offset=amount_offset, clip=clip)
    transformed = [scaler.transform(x_train, "x_train")]
    transformed += [scaler.transform(x, f"x_others[{i}]") for i, x in enumerate(x_others)]
    return tuple(transformed)


# --------------------------------------------------------------------------------------------
# CIFAR-10 (the official python-pickle batches)
# --------------------------------------------------------------------------------------------

# The CIFAR batches are pickles, and unpickling can run arbitrary code. The official files hold
# only dicts, lists, strings and NumPy arrays, so only NumPy's array-rebuilding functions are
# allowed (under their NumPy 1 and NumPy 2 module names), plus the codec Python 3 uses to
# pickle bytes; anything else is refused before it runs.
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch holds only NumPy arrays"
            )
        return super().find_class(module, name)


def _read_cifar_batch(stream: IO[bytes], where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        # The batches were pickled by Python 2: its str objects come back as bytes.
        batch = _ArrayUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{where} is not a CIFAR-10 python batch: {error}") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{where} is not a CIFAR-10 python batch: expected a dict")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(
            f"{where} is not a CIFAR-10 python batch: expected keys b'data' and b'labels', "
            f"found {sorted(map(repr, batch))}"
        )
    data = np.asarray(data)
    labels = np.asarray(labels)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        raise ValueError(
            f"{where}: b'data' must be a uint8 array of shape (N, {_CIFAR_PIXELS}), "
            f"got {data.dtype} {data.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(
            f"{where}: b'labels' must list one label per image ({data.shape[0]}), "
            f"got shape {labels.shape}"
        )
    if labels.size and (
        not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9
    ):
        raise ValueError(f"{where}: b'labels' must be integers in 0..9")
    return data, labels.astype(np.int64)


def _cifar_batches(path: Path, names: tuple[str, ...]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(data, labels)`` of each named batch from a .tar.gz or a folder."""
    if path.is_dir():
        for candidate in (path, path / _CIFAR_FOLDER):
            if (candidate / names[0]).is_file():
                for name in names:
                    file = candidate / name
                    if not file.is_file():
                        raise FileNotFoundError(
                            f"path: {file} is missing from the CIFAR-10 folder. {_CIFAR_HELP}"
                        )
                    with file.open("rb") as stream:
                        yield _read_cifar_batch(stream, str(file))
                return
        archive = path / "cifar-10-python.tar.gz"
        if archive.is_file():
            yield from _cifar_batches(archive, names)
            return
        raise FileNotFoundError(
            f"path: no CIFAR-10 batches in {path} (looked for {names[0]}, "
            f"{_CIFAR_FOLDER}/{names[0]} and cifar-10-python.tar.gz). {_CIFAR_HELP}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"path: {path} does not exist. {_CIFAR_HELP}")
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        # Stream mode reads the compressed archive once, front to back, without seeking.
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                # Match by file name so the top folder (cifar-10-batches-py/) need not match.
                name = Path(member.name).name
                if member.isfile() and name in names and name not in found:
                    stream = archive.extractfile(member)
                    if stream is not None:
                        found[name] = _read_cifar_batch(stream, f"{path}:{member.name}")
    except tarfile.TarError as error:
        raise ValueError(
            f"path: {path} is not a folder or a complete, readable .tar.gz archive ({error}). "
            f"{_CIFAR_HELP}"
        ) from None
    for name in names:
        if name not in found:
            raise FileNotFoundError(
                f"path: the archive {path} has no {_CIFAR_FOLDER}/{name}. {_CIFAR_HELP}"
            )
        yield found[name]


def load_cifar10_subset(
    path: str | os.PathLike[str],
    class_counts: Mapping[int, int] | Sequence[int] | None = CIFAR_SUBSET_COUNTS,
    *,
    split: Literal["train", "test"] = "train",
    seed: int = 0,
    channels_last: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an exact-count subset of CIFAR-10 from the official python batches (Chapter 5).

    Reads the Python version of CIFAR-10 as distributed in ``cifar-10-python.tar.gz``
    (:data:`CIFAR10_URL`): pickled dicts whose ``b"data"`` is an ``N x 3072`` ``uint8`` array
    (1024 red, then 1024 green, then 1024 blue values, each a 32x32 image row by row) and whose
    ``b"labels"`` lists ``N`` labels 0..9. Nothing is downloaded here; see
    :func:`download_cifar10`.

    Parameters
    ----------
    path
        The ``.tar.gz`` archive (read in place, not extracted), the extracted
        ``cifar-10-batches-py`` folder, or a folder containing either.
    class_counts
        Images to keep per class label, by default the source's subset
        (:data:`CIFAR_SUBSET_COUNTS`, 13,850 images). Classes left out are excluded and the
        labels keep CIFAR-10's numbering. ``None`` keeps every image of the split.
    split
        ``"train"`` (``data_batch_1`` .. ``data_batch_5``, 5,000 images per class) or
        ``"test"`` (``test_batch``, 1,000 per class).
    seed
        Seed of the random choice of images and of their order.
    channels_last
        Shape ``(N, 32, 32, 3)`` as Keras expects (default) or ``(N, 3, 32, 32)`` as torch does.

    Returns
    -------
    x : numpy.ndarray
        ``float32`` images scaled to ``[0, 1]``.
    y : numpy.ndarray
        ``int64`` labels, shuffled.

    Raises
    ------
    FileNotFoundError
        If ``path`` or a batch is missing; the message says where to get the data.
    ValueError
        If ``class_counts`` names a class outside 0..9, a non-positive count, or more images of
        a class than the split holds; if ``split`` is unknown; or if a file is not a CIFAR-10
        python batch.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    counts = None if class_counts is None else _check_counts(class_counts)
    if counts is not None:
        unknown = sorted(label for label in counts if label >= len(CIFAR10_CLASSES))
        if unknown:
            raise ValueError(
                f"class_counts names unknown class {unknown}: CIFAR-10 labels are 0..9 "
                f"({', '.join(CIFAR10_CLASSES)})"
            )
    rng = np.random.default_rng(require_seed(seed))
    names = _CIFAR_TRAIN_BATCHES if split == "train" else _CIFAR_TEST_BATCHES

    batches = list(_cifar_batches(Path(path), names))
    data = np.concatenate([batch[0] for batch in batches])
    labels = np.concatenate([batch[1] for batch in batches])
    if counts is None:
        keep = rng.permutation(labels.size)
    else:
        keep = _take_exact(labels, counts, rng, f"the {split} split of {path}")
    images = data[keep].reshape(-1, 3, 32, 32)
    if channels_last:
        images = images.transpose(0, 2, 3, 1)
    x = np.ascontiguousarray(images, dtype=np.float32) / np.float32(255.0)
    return x, labels[keep]


# --------------------------------------------------------------------------------------------
# Credit-card fraud (Kaggle's creditcard.csv)
# --------------------------------------------------------------------------------------------


def _open_fraud_text(path: Path) -> IO[str]:
    """A text stream of the CSV, from a plain, gzipped or zipped (Kaggle download) file."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    if name.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        csv_members = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if len(csv_members) != 1:
            archive.close()
            raise ValueError(
                f"csv_path: expected exactly one .csv inside {path}, found {csv_members}"
            )
        member = archive.open(csv_members[0])
        archive.close()  # the open member keeps the file until it is closed itself
        return io.TextIOWrapper(member, encoding="utf-8-sig", newline="")
    return path.open("r", newline="", encoding="utf-8-sig")


def _read_fraud_table(path: Path) -> np.ndarray:
    """Check the header of a creditcard.csv-format file and parse its rows as floats."""
    with _open_fraud_text(path) as stream:
        header_line = stream.readline()
        header = tuple(field.strip() for field in next(csv.reader([header_line]), []))
        if header != _FRAUD_HEADER:
            differing = next(
                (i for i, (a, b) in enumerate(zip(header, _FRAUD_HEADER)) if a != b),
                min(len(header), len(_FRAUD_HEADER)),
            )
            found = header[differing] if differing < len(header) else "(end of header)"
            expected = _FRAUD_HEADER[differing] if differing < len(_FRAUD_HEADER) else "(end)"
            raise ValueError(
                f"csv_path: {path} does not have the creditcard.csv header "
                f"Time,V1..V28,Amount,Class ({len(_FRAUD_HEADER)} columns); column "
                f"{differing + 1} is {found!r}, expected {expected!r}"
            )
        try:
            with warnings.catch_warnings():
                # a header-only file is reported by the caller, as an error, not a warning
                warnings.filterwarnings("ignore", "loadtxt: input contained no data")
                return np.loadtxt(stream, delimiter=",", quotechar='"', dtype=np.float64,
                                  ndmin=2)
        except UnicodeDecodeError:
            raise
        except ValueError as error:
            raise ValueError(f"csv_path: {path} has a malformed row: {error}") from None


def load_credit_card_fraud(csv_path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Load Kaggle's credit-card fraud file ``creditcard.csv`` (Chapter 5).

    The file has the header ``Time,V1,...,V28,Amount,Class`` (names may be quoted, as in the
    Kaggle download) and one transaction per row; ``Class`` is 1 for fraud, written ``1`` or
    ``"1"``. Rows are kept in file order (by ``Time``). Nothing is downloaded here; see
    :data:`FRAUD_KAGGLE_URL` and :func:`download_credit_card_fraud`.

    Parameters
    ----------
    csv_path
        The CSV, optionally gzipped (``.csv.gz``) or inside the ``.zip`` Kaggle serves.

    Returns
    -------
    x : numpy.ndarray
        ``float64`` raw features, shape ``(n, 30)``, columns :data:`FRAUD_COLUMNS`; feed them to
        :func:`preprocess_fraud_features` after splitting.
    y : numpy.ndarray
        ``int64`` labels, 1 for fraud.

    Raises
    ------
    FileNotFoundError
        If ``csv_path`` does not exist; the message says where to get the file.
    ValueError
        If the header is not the expected one, a row is malformed, there are no rows, or a
        ``Class`` value is not 0 or 1.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"csv_path: {path} does not exist. {_FRAUD_HELP}")
    try:
        table = _read_fraud_table(path)
    except UnicodeDecodeError as error:
        raise ValueError(f"csv_path: {path} is not UTF-8 text ({error})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"csv_path: {path} could not be read as a CSV, .csv.gz or .zip ({error})"
        ) from None
    if table.shape[0] == 0:
        raise ValueError(f"csv_path: {path} has a header but no rows")
    if table.shape[1] != len(_FRAUD_HEADER):
        raise ValueError(
            f"csv_path: {path} rows must have {len(_FRAUD_HEADER)} values, got {table.shape[1]}"
        )
    labels = table[:, -1]
    if not np.all((labels == 0) | (labels == 1)):
        bad = labels[(labels != 0) & (labels != 1)][0]
        raise ValueError(f"csv_path: {path} column Class must be 0 or 1, found {bad:g}")
    return np.ascontiguousarray(table[:, :-1]), labels.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Downloads (only when a reader asks; never in tests or CI)
# --------------------------------------------------------------------------------------------


def _fetch(url: str, destination: Path) -> None:
    """Stream ``url`` to ``destination``: the one place in the course that opens the network."""
    import shutil
    import urllib.request

    with urllib.request.urlopen(url, timeout=60) as response, destination.open("wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_cifar10(dest_dir: str | os.PathLike[str] = "data") -> Path:
    """Download ``cifar-10-python.tar.gz`` (about 163 MB) once and check its MD5 (Chapter 5).

    For readers running Chapter 5 on the real data (on Colab, say); CI never calls it. If the
    archive is already in ``dest_dir`` it is checked, not downloaded again. The archive need not
    be extracted: pass it, or ``dest_dir``, to :func:`load_cifar10_subset`.

    Parameters
    ----------
    dest_dir
        Folder to put the archive in (created if needed).

    Returns
    -------
    pathlib.Path
        The archive's path.

    Raises
    ------
    ValueError
        If the file's MD5 is not :data:`CIFAR10_MD5` (a truncated or different download); a
        fresh download that fails the check is deleted.
    OSError
        If the download fails (no network, for instance).
    """
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "cifar-10-python.tar.gz"
    if not archive.is_file():
        partial = archive.with_name(archive.name + ".part")
        try:
            _fetch(CIFAR10_URL, partial)
            if _md5(partial) != CIFAR10_MD5:
                raise ValueError(
                    f"the download of {CIFAR10_URL} has MD5 {_md5(partial)}, expected "
                    f"{CIFAR10_MD5}; try again"
                )
            partial.replace(archive)
        finally:
            partial.unlink(missing_ok=True)
    elif _md5(archive) != CIFAR10_MD5:
        raise ValueError(
            f"dest_dir: {archive} has MD5 {_md5(archive)}, expected {CIFAR10_MD5}; delete it "
            "and download again"
        )
    return archive


def download_credit_card_fraud(dest_dir: str | os.PathLike[str] = "data") -> Path:
    """Download ``creditcard.csv`` once and check its shape (Chapter 5).

    For readers running Chapter 5 on the real data; CI never calls it. The data set is
    published on Kaggle (:data:`FRAUD_KAGGLE_URL`), which needs a free account: sign in, press
    *Download*, unzip, and pass the CSV (or the zip) to :func:`load_credit_card_fraud`. This
    function instead fetches the copy that TensorFlow's "Classification on imbalanced data"
    tutorial reads (:data:`FRAUD_CSV_URL`, no account needed). This module knows no checksum
    for that copy, so the file is accepted only if it has the expected header, 284,807 rows and
    492 positives. An existing ``dest_dir/creditcard.csv`` is checked, not downloaded again.

    Parameters
    ----------
    dest_dir
        Folder to put ``creditcard.csv`` in (created if needed).

    Returns
    -------
    pathlib.Path
        The CSV's path.

    Raises
    ------
    ValueError
        If the file does not have the fraud data set's header, size or number of positives; a
        fresh download that fails the check is deleted.
    OSError
        If the download fails (no network, for instance).
    """
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "creditcard.csv"
    fresh = not target.is_file()
    checked = target.with_name(target.name + ".part") if fresh else target
    try:
        if fresh:
            _fetch(FRAUD_CSV_URL, checked)
        _, labels = load_credit_card_fraud(checked)
        if labels.size != FRAUD_SHAPE.n_rows or int(labels.sum()) != FRAUD_SHAPE.n_positive:
            raise ValueError(
                f"dest_dir: {checked} has {labels.size} rows and {int(labels.sum())} positives, "
                f"expected {FRAUD_SHAPE.n_rows} and {FRAUD_SHAPE.n_positive}. {_FRAUD_HELP}"
            )
        if fresh:
            checked.replace(target)
    finally:
        if fresh:
            checked.unlink(missing_ok=True)
    return target
