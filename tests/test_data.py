"""utils.data: exact class counts, determinism, learnable-but-not-trivial generated data, the fraud
preprocessing, and the real-format loaders on small files written here in the real formats.

Nothing here touches the network (tests/offline.py blocks it); the download functions are
exercised with their single network call, ``utils.data._fetch``, replaced by a local fake.
"""
from __future__ import annotations

import doctest
import gzip
import hashlib
import io
import pickle
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import utils.data as data
from utils.data import (
    CIFAR_SUBSET_COUNTS,
    FRAUD_COLUMNS,
    FRAUD_SHAPE,
    FraudScaler,
    class_counts,
    load_cifar10_subset,
    load_credit_card_fraud,
    make_imbalanced_classification,
    make_rare_positive,
    preprocess_fraud_features,
    stratified_split,
)

# ------------------------------------------------------------------------------------------
# Constants
# ------------------------------------------------------------------------------------------


def test_cifar_subset_profile_is_the_briefs_and_read_only():
    assert dict(CIFAR_SUBSET_COUNTS) == {
        0: 4000, 1: 3700, 2: 100, 3: 4000, 4: 400, 5: 100, 6: 50, 7: 700, 8: 700, 9: 100
    }
    assert sum(CIFAR_SUBSET_COUNTS.values()) == 13_850
    with pytest.raises(TypeError):
        CIFAR_SUBSET_COUNTS[0] = 1  # type: ignore[index]
    assert len(data.CIFAR10_CLASSES) == 10


def test_fraud_shape_facts():
    assert (FRAUD_SHAPE.n_rows, FRAUD_SHAPE.n_positive) == (284_807, 492)
    assert FRAUD_SHAPE.n_negative == 284_315
    assert FRAUD_SHAPE.n_features == 30 == len(FRAUD_COLUMNS)
    assert FRAUD_COLUMNS[0] == "Time" and FRAUD_COLUMNS[-1] == "Amount"
    assert FRAUD_COLUMNS[1:-1] == tuple(f"V{i}" for i in range(1, 29))
    # 0.17 % as the brief states, to the two decimals it gives
    assert round(100 * data.FRAUD_POSITIVE_RATE, 2) == 0.17


def test_import_pulls_in_no_framework():
    code = (
        "import sys, utils.data; "
        "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_docstring_examples_run():
    result = doctest.testmod(data, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------------
# class_counts
# ------------------------------------------------------------------------------------------


def test_class_counts_counts_and_pads():
    labels = np.array([0, 2, 2, 1, 2])
    np.testing.assert_array_equal(class_counts(labels), [1, 1, 3])
    np.testing.assert_array_equal(class_counts(labels, n_classes=5), [1, 1, 3, 0, 0])
    # Keras-style binary targets: a float32 (n, 1) column
    column = np.array([[0.0], [1.0], [0.0]], dtype=np.float32)
    np.testing.assert_array_equal(class_counts(column), [2, 1])
    assert class_counts(labels).dtype == np.int64


@pytest.mark.parametrize(
    "labels, n_classes, message",
    [
        ([0, 1, 3], 3, "n_classes=3 but labels contain class 3"),
        ([0, -1], None, "non-negative"),
        ([0.5, 1.0], None, "integer class labels"),
        (np.zeros((2, 2)), None, "1-D"),
        ([0, 1], 0, "n_classes must be an integer >= 1"),
    ],
)
def test_class_counts_rejects_bad_input(labels, n_classes, message):
    with pytest.raises(ValueError, match=message):
        class_counts(labels, n_classes=n_classes)


# ------------------------------------------------------------------------------------------
# make_imbalanced_classification
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cifar_like():
    return make_imbalanced_classification(seed=0)


def test_generated_multiclass_has_exact_counts_and_types(cifar_like):
    x, y = cifar_like
    assert x.shape == (13_850, 20) and x.dtype == np.float32
    assert y.shape == (13_850,) and y.dtype == np.int64
    np.testing.assert_array_equal(class_counts(y), [CIFAR_SUBSET_COUNTS[k] for k in range(10)])
    # shuffled: in sorted order the labels would change value 9 times; shuffled, thousands
    assert np.count_nonzero(np.diff(y)) > 1000


def test_generated_multiclass_is_deterministic(cifar_like):
    x, y = cifar_like
    x_again, y_again = make_imbalanced_classification(seed=0)
    np.testing.assert_array_equal(x, x_again)
    np.testing.assert_array_equal(y, y_again)
    x_other, y_other = make_imbalanced_classification(seed=1)
    assert not np.array_equal(x, x_other)
    np.testing.assert_array_equal(class_counts(y_other), class_counts(y))


def test_generated_multiclass_accepts_a_sequence_and_other_sizes():
    x, y = make_imbalanced_classification([7, 1, 30], n_features=6, n_informative=3, seed=3)
    assert x.shape == (38, 6)
    np.testing.assert_array_equal(class_counts(y), [7, 1, 30])


def test_generated_multiclass_is_learnable_but_not_separable(cifar_like):
    from sklearn.linear_model import LogisticRegression

    x, y = cifar_like
    (x_train, y_train), (x_test, y_test) = stratified_split(x, y, (0.8, 0.2), seed=0)
    accuracy = LogisticRegression(max_iter=300).fit(x_train, y_train).score(x_test, y_test)
    # Baseline: always predict the most frequent training class.
    majority = np.bincount(y_train).argmax()
    baseline = float(np.mean(y_test == majority))
    # An accuracy on n held-out samples has standard error <= sqrt(0.25 / n); require the
    # linear model to beat the baseline by 5 of them (and both estimates share the test set).
    margin = 5 * np.sqrt(0.25 / y_test.size)
    assert accuracy > baseline + margin, (accuracy, baseline, margin)
    # Design target, not a statistic: a linear model must not solve it (the chapter's curves
    # would then only show how fast a trivial problem is solved).
    assert accuracy < 0.95, accuracy


@pytest.mark.parametrize(
    "counts, kwargs, message",
    [
        ({0: 10, 2: 10}, {}, r"without gaps.*missing \[1\]"),
        ({0: 10, 1: 0}, {}, r"class_counts\[1\] must be an integer >= 1"),
        ({0: 10, 1: -5}, {}, r"class_counts\[1\] must be an integer >= 1"),
        ({0: 10, 1: 2.5}, {}, r"class_counts\[1\] must be an integer >= 1"),
        ({0: 10}, {}, "at least two classes"),
        ({}, {}, "at least one class"),
        ({-1: 3, 0: 3}, {}, "non-negative integer class labels"),
        ("abc", {}, "must map class labels"),
        ({0: 5, 1: 5}, {"n_informative": 30}, "n_informative must be at most n_features"),
        (CIFAR_SUBSET_COUNTS, {"n_informative": 4}, r"2\*\*n_informative >= 20"),
        ({0: 5, 1: 5}, {"class_sep": 0.0}, "class_sep must be a positive finite number"),
        ({0: 5, 1: 5}, {"class_sep": "far"}, "class_sep must be a positive finite number"),
        ({0: 5, 1: 5}, {"seed": -1}, r"seed must be an integer in \[0, 2\*\*32\)"),
        ({0: 5, 1: 5}, {"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_generated_multiclass_rejects_bad_arguments(counts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_imbalanced_classification(counts, **kwargs)


# ------------------------------------------------------------------------------------------
# make_rare_positive
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fraud_like():
    return make_rare_positive(seed=0)


def test_rare_positive_default_matches_the_fraud_shape(fraud_like):
    x, y = fraud_like
    assert x.shape == (FRAUD_SHAPE.n_rows, FRAUD_SHAPE.n_features) and x.dtype == np.float64
    assert y.dtype == np.int64 and int(y.sum()) == FRAUD_SHAPE.n_positive
    time, amount = x[:, 0], x[:, -1]
    assert np.all(np.diff(time) >= 0), "rows are in time order, as in the file"
    assert time.min() >= 0 and time.max() < 2 * 24 * 3600
    assert amount.min() == 0.0, "a few zero amounts: the reason the log needs an offset"
    np.testing.assert_array_equal(amount, np.round(amount, 2))  # whole cents


@pytest.mark.parametrize(
    "n_samples, kwargs, expected",
    [
        (1000, {"positive_rate": 0.0025}, 3),  # 2.5 rounds half up
        (1000, {"positive_rate": 0.0024}, 2),
        (500, {"n_positive": 7}, 7),
        (50_000, {}, round(50_000 * 492 / 284_807)),
    ],
)
def test_rare_positive_has_exactly_the_requested_positives(n_samples, kwargs, expected):
    x, y = make_rare_positive(n_samples, seed=5, **kwargs)
    assert x.shape == (n_samples, 30)
    assert int(y.sum()) == expected


def test_rare_positive_is_deterministic():
    first = make_rare_positive(3000, n_positive=10, seed=7)
    second = make_rare_positive(3000, n_positive=10, seed=7)
    other = make_rare_positive(3000, n_positive=10, seed=8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_rare_positive_is_learnable_but_not_separable(fraud_like):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score

    x, y = fraud_like
    (x_train, y_train), (x_test, y_test) = stratified_split(x, y, (0.8, 0.2), seed=0)
    x_train, x_test = preprocess_fraud_features(x_train, x_test)
    scores = LogisticRegression(max_iter=500).fit(x_train, y_train).decision_function(x_test)
    n_pos = int(y_test.sum())
    n_neg = y_test.size - n_pos
    # Under "no signal" the ROC AUC (a Mann-Whitney statistic) has mean 1/2 and standard
    # deviation sqrt((n_pos + n_neg + 1) / (12 n_pos n_neg)); require 5 of them above 1/2.
    null_sd = np.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    auc = roc_auc_score(y_test, scores)
    assert auc > 0.5 + 5 * null_sd, (auc, null_sd)
    # Design target, not a statistic: precision-recall must leave room to improve, or the
    # chapter's PR-AUC comparison between arms would be decided by a ceiling.
    assert average_precision_score(y_test, scores) < 0.95


@pytest.mark.parametrize(
    "n_samples, kwargs, message",
    [
        (1000, {"positive_rate": 0.01, "n_positive": 3}, "not both"),
        (1000, {"positive_rate": 1.5}, r"positive_rate must be a number in \(0, 1\)"),
        (1000, {"positive_rate": 0.0}, r"positive_rate must be a number in \(0, 1\)"),
        (100, {}, "gives 0 positives"),
        (10, {"n_positive": 10}, "n_positive must be smaller than n_samples=10"),
        (10, {"n_positive": 0}, "n_positive must be an integer >= 1"),
        (0, {}, "n_samples must be an integer >= 1"),
        (1000, {"class_sep": -1.0}, "class_sep must be a finite number >= 0"),
    ],
)
def test_rare_positive_rejects_bad_arguments(n_samples, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_rare_positive(n_samples, **kwargs)


# ------------------------------------------------------------------------------------------
# Fraud preprocessing
# ------------------------------------------------------------------------------------------


def _raw_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Raw fraud-format rows: Time, 28 Gaussian columns, non-negative amounts."""
    return np.column_stack(
        [np.arange(n, dtype=np.float64), rng.normal(size=(n, 28)), rng.exponential(50.0, n)]
    )


def test_preprocessing_is_log_amount_then_train_standardisation():
    rng = np.random.default_rng(0)
    train, val = _raw_rows(rng, 200), _raw_rows(rng, 50)
    train_copy = train.copy()
    out_train, out_val = preprocess_fraud_features(train, val, clip=None)
    np.testing.assert_array_equal(train, train_copy)  # the caller's array is not modified
    assert out_train.shape == (200, 29) and out_train.dtype == np.float32

    # Independent computation of the recipe: drop Time, log(Amount + 0.001), standardise with
    # the training split's mean and (population) standard deviation.
    def columns(raw):
        return np.column_stack([raw[:, 1:-1], np.log(raw[:, -1] + 1e-3)])

    mean, std = columns(train).mean(axis=0), columns(train).std(axis=0)
    # float32 output: agreement to float32 rounding of values of order 1-10
    np.testing.assert_allclose(out_train, (columns(train) - mean) / std, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(out_val, (columns(val) - mean) / std, rtol=1e-6, atol=1e-5)
    # standardised training columns: mean 0 and std 1 up to float32 rounding
    np.testing.assert_allclose(out_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(out_train.std(axis=0), 1.0, atol=1e-5)


def test_preprocessing_statistics_come_from_the_training_split_only():
    rng = np.random.default_rng(1)
    train, val = _raw_rows(rng, 100), _raw_rows(rng, 40)
    shifted_val = val.copy()
    shifted_val[:, 1:-1] += 100.0  # a wildly different validation split
    train_a, val_a = preprocess_fraud_features(train, val, clip=None)
    train_b, val_b = preprocess_fraud_features(train, shifted_val, clip=None)
    np.testing.assert_array_equal(train_a, train_b)
    scaler = FraudScaler.fit(train, clip=None)
    # the shift of 100 shows up divided by the *training* scale, untouched by the validation data
    expected = np.broadcast_to(100.0 / scaler.scale[:-1], val_a[:, :-1].shape)
    np.testing.assert_allclose(val_b[:, :-1] - val_a[:, :-1], expected, rtol=1e-5)


def test_preprocessing_clips_to_five_and_handles_zero_amounts():
    rng = np.random.default_rng(2)
    train = _raw_rows(rng, 500)
    train[0, 1] = 1e6  # an outlier far beyond 5 standard deviations
    train[1, -1] = 0.0  # a zero amount: log needs the offset
    (out,) = preprocess_fraud_features(train)
    assert np.all(np.isfinite(out))
    assert np.abs(out).max() == 5.0
    assert out[0, 0] == 5.0
    assert out[1, -1] == -5.0  # log(0.001) is far below the other amounts' logs


def test_preprocessing_keeps_time_when_asked():
    rng = np.random.default_rng(3)
    scaler = FraudScaler.fit(_raw_rows(rng, 30), drop_time=False)
    assert scaler.columns[0] == "Time" and scaler.columns[-1] == "log_Amount"
    assert scaler.transform(_raw_rows(rng, 4)).shape == (4, 30)
    assert len(FraudScaler.fit(_raw_rows(rng, 30)).columns) == 29


def test_preprocessing_works_on_the_generated_data(fraud_like):
    x, _ = fraud_like
    (out,) = preprocess_fraud_features(x[:5000])
    assert out.shape == (5000, 29) and np.abs(out).max() <= 5.0


@pytest.mark.parametrize(
    "make_input, kwargs, message",
    [
        (lambda r: r[:, :29], {}, r"30 raw columns.*shape \(20, 29\)"),
        (lambda r: np.where(np.arange(30) == 3, np.nan, r), {}, "must be finite"),
        (lambda r: np.where(np.arange(30) == 29, -1.0, r), {}, "Amount .* must be >= 0"),
        (lambda r: r[:0], {}, "at least one row"),
        (lambda r: r, {"clip": 0.0}, "clip must be a positive finite number"),
        (lambda r: r, {"amount_offset": -1.0}, "amount_offset must be a positive finite"),
    ],
)
def test_preprocessing_rejects_bad_input(make_input, kwargs, message):
    raw = _raw_rows(np.random.default_rng(4), 20)
    with pytest.raises(ValueError, match=message):
        preprocess_fraud_features(make_input(raw), **kwargs)


def test_preprocessing_names_the_bad_other_split():
    raw = _raw_rows(np.random.default_rng(5), 20)
    with pytest.raises(ValueError, match=r"x_others\[1\] must be a 2-D array"):
        preprocess_fraud_features(raw, raw, raw[:, :5])


# ------------------------------------------------------------------------------------------
# stratified_split
# ------------------------------------------------------------------------------------------


def test_stratified_split_keeps_shares_exactly_and_loses_nothing():
    y = np.repeat([0, 1, 2], [1000, 50, 7])
    x = np.arange(y.size)  # the feature is the row's identity
    parts = stratified_split(x, y, (0.6, 0.2, 0.2), seed=0)
    sizes = np.array([class_counts(part_y, 3) for _, part_y in parts])
    # per class, largest remainders: 7 * (0.6, 0.2, 0.2) = (4.2, 1.4, 1.4) -> (4, 2, 1)
    np.testing.assert_array_equal(sizes, [[600, 30, 4], [200, 10, 2], [200, 10, 1]])
    ids = np.concatenate([part_x for part_x, _ in parts])
    np.testing.assert_array_equal(np.sort(ids), x)  # a partition: nothing lost or repeated
    for part_x, part_y in parts:
        np.testing.assert_array_equal(y[part_x], part_y)  # rows keep their labels


def test_stratified_split_puts_a_rare_class_in_every_part():
    y = np.array([0] * 100 + [1] * 3)
    parts = stratified_split(np.zeros((103, 2)), y, (0.9, 0.05, 0.05), seed=1)
    assert [int(part_y.sum()) for _, part_y in parts] == [1, 1, 1]


def test_stratified_split_is_deterministic_and_seeded():
    y = np.repeat([0, 1], [80, 20])
    x = np.arange(100)
    first = stratified_split(x, y, seed=4)
    second = stratified_split(x, y, seed=4)
    other = stratified_split(x, y, seed=5)
    for (a, _), (b, _) in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], other[0][0])


@pytest.mark.parametrize(
    "x, y, fractions, message",
    [
        (np.zeros(5), np.zeros(4, int), (0.5, 0.5), "same number of samples"),
        (np.zeros(4), np.zeros(4, int), (0.5, 0.6), "must sum to 1"),
        (np.zeros(4), np.zeros(4, int), (1.0,), "at least two parts"),
        (np.zeros(4), np.zeros(4, int), (1.2, -0.2), "must all be positive"),
        (np.zeros(4), np.zeros(4, int), ("a", "b"), "sequence of numbers"),
        (np.zeros(4), np.full(4, 0.5), (0.5, 0.5), "integer class labels"),
    ],
)
def test_stratified_split_rejects_bad_arguments(x, y, fractions, message):
    with pytest.raises(ValueError, match=message):
        stratified_split(x, y, fractions)


# ------------------------------------------------------------------------------------------
# CIFAR-10 loader, on small batches written in the official format
# ------------------------------------------------------------------------------------------


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes strings as Python 2 did (``str`` opcodes), like the official CIFAR batches."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    # NumPy 1 (which wrote the official files) lived at numpy.core, NumPy 2 at numpy._core.
    return buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def _image(label: int, image_id: int) -> np.ndarray:
    """One 3072-byte row: red = 10 * label, green = row, blue = column, id in red's last pixel."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    red = np.full((32, 32), 10 * label)
    red[31, 31] = image_id
    return np.concatenate([red.ravel(), rows.ravel(), cols.ravel()]).astype(np.uint8)


# Per training batch, 3 images of each class 0..9 (15 of each in all); the test batch has 2.
_TRAIN_PER_BATCH, _TEST_PER_CLASS = 3, 2


def _batch(labels: list[int], first_id: int) -> dict:
    rows = [_image(label, first_id + i) for i, label in enumerate(labels)]
    return {
        b"batch_label": b"training batch",
        b"labels": labels,
        b"data": np.stack(rows),
        b"filenames": [f"img_{first_id + i}.png".encode() for i in range(len(labels))],
    }


def _write_cifar(folder: Path, dumps=_python2_pickle) -> Path:
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    rng = np.random.default_rng(0)
    image_id = 0
    for i in range(1, 6):
        labels = [int(v) for v in rng.permutation(np.repeat(np.arange(10), _TRAIN_PER_BATCH))]
        (batches / f"data_batch_{i}").write_bytes(dumps(_batch(labels, image_id)))
        image_id += len(labels)
    test_labels = [int(v) for v in np.repeat(np.arange(10), _TEST_PER_CLASS)]
    (batches / "test_batch").write_bytes(dumps(_batch(test_labels, image_id)))
    meta = {b"label_names": [name.encode() for name in data.CIFAR10_CLASSES]}
    (batches / "batches.meta").write_bytes(dumps(meta))
    return batches


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    return _write_cifar(tmp_path / "extracted")


@pytest.fixture
def cifar_tar(cifar_dir: Path, tmp_path: Path) -> Path:
    archive = tmp_path / "download" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(cifar_dir, arcname="cifar-10-batches-py")
    return archive


def _check_images(x: np.ndarray, y: np.ndarray) -> None:
    """Every image's pixels say which label it was written with, and no image repeats."""
    pixels = np.rint(x * 255).astype(np.int64)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    np.testing.assert_array_equal(red[:, 0, 0], 10 * y)
    np.testing.assert_array_equal(green, np.broadcast_to(rows, green.shape))
    np.testing.assert_array_equal(blue, np.broadcast_to(cols, blue.shape))
    ids = red[:, 31, 31]
    assert np.unique(ids).size == ids.size


def test_cifar_loader_reads_the_official_layout(cifar_dir: Path):
    x, y = load_cifar10_subset(cifar_dir, {0: 3, 3: 15, 9: 1}, seed=0)
    assert x.shape == (19, 32, 32, 3) and x.dtype == np.float32
    assert y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(class_counts(y, 10), [3, 0, 0, 15, 0, 0, 0, 0, 0, 1])
    _check_images(x, y)


def test_cifar_loader_reads_every_source_alike(cifar_dir: Path, cifar_tar: Path):
    counts = {k: 4 for k in range(10)}
    reference = load_cifar10_subset(cifar_dir, counts, seed=3)
    for source in (cifar_tar, cifar_tar.parent, cifar_dir.parent, str(cifar_dir)):
        x, y = load_cifar10_subset(source, counts, seed=3)
        np.testing.assert_array_equal(x, reference[0])
        np.testing.assert_array_equal(y, reference[1])


def test_cifar_loader_reads_modern_pickles_too(tmp_path: Path):
    folder = _write_cifar(tmp_path, dumps=lambda obj: pickle.dumps(obj, protocol=5))
    x, y = load_cifar10_subset(folder, {1: 2, 2: 2})
    _check_images(x, y)


def test_cifar_loader_is_deterministic_and_channel_order_is_selectable(cifar_tar: Path):
    counts = {2: 10, 5: 10}
    x, y = load_cifar10_subset(cifar_tar, counts, seed=1)
    x_again, y_again = load_cifar10_subset(cifar_tar, counts, seed=1)
    np.testing.assert_array_equal(x, x_again)
    np.testing.assert_array_equal(y, y_again)
    x_other, _ = load_cifar10_subset(cifar_tar, counts, seed=2)
    assert not np.array_equal(x, x_other)
    x_first, y_first = load_cifar10_subset(cifar_tar, counts, seed=1, channels_last=False)
    assert x_first.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(x_first, x.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(y_first, y)


def test_cifar_loader_whole_split_and_test_split(cifar_dir: Path):
    x, y = load_cifar10_subset(cifar_dir, None)
    assert x.shape[0] == 5 * 10 * _TRAIN_PER_BATCH
    np.testing.assert_array_equal(class_counts(y), [5 * _TRAIN_PER_BATCH] * 10)
    x_test, y_test = load_cifar10_subset(cifar_dir, None, split="test")
    np.testing.assert_array_equal(class_counts(y_test), [_TEST_PER_CLASS] * 10)
    _check_images(x_test, y_test)


@pytest.mark.parametrize(
    "counts, kwargs, message",
    [
        ({10: 1}, {}, r"unknown class \[10\].*0\.\.9"),
        ({0: 0}, {}, r"class_counts\[0\] must be an integer >= 1"),
        ({0: -3}, {}, r"class_counts\[0\] must be an integer >= 1"),
        ({4: 16}, {}, "asks for 16 samples of class 4 but the train split of .* holds 15"),
        ({4: 3}, {"split": "test"}, "asks for 3 samples of class 4 but the test split"),
        (CIFAR_SUBSET_COUNTS, {}, "asks for 4000 samples of class 0"),
        ({0: 1}, {"split": "validation"}, "split must be 'train' or 'test'"),
    ],
)
def test_cifar_loader_rejects_bad_requests(cifar_dir: Path, counts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_cifar10_subset(cifar_dir, counts, **kwargs)


def test_cifar_loader_says_where_to_get_missing_data(tmp_path: Path, cifar_dir: Path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*cs\.toronto\.edu"):
        load_cifar10_subset(tmp_path / "nowhere.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no CIFAR-10 batches.*download_cifar10"):
        load_cifar10_subset(tmp_path / "empty")
    (cifar_dir / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 is missing.*cs\.toronto\.edu"):
        load_cifar10_subset(cifar_dir, {0: 1})


def test_cifar_loader_reports_an_archive_without_batches(tmp_path: Path):
    archive = tmp_path / "other.tar.gz"
    readme = tmp_path / "readme.html"
    readme.write_text("not CIFAR")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(readme, arcname="cifar-10-batches-py/readme.html")
    with pytest.raises(FileNotFoundError, match=r"has no cifar-10-batches-py/data_batch_1"):
        load_cifar10_subset(archive, {0: 1})
    not_an_archive = tmp_path / "broken.tar.gz"
    not_an_archive.write_bytes(b"definitely not gzip")
    with pytest.raises(ValueError, match="not a folder or a complete, readable .tar.gz"):
        load_cifar10_subset(not_an_archive, {0: 1})


class _Sneaky:
    """Unpickling this would call print(); the loader must refuse before it runs."""

    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((2, 3072), np.uint8)}, "expected keys b'data' and b'labels'"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8 array"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "one label per image"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, "integers in 0..9"),
        ([1, 2, 3], "expected a dict"),
        ({b"data": _Sneaky(), b"labels": [0]}, r"refusing to load (builtins|__builtin__)\.print"),
    ],
)
def test_cifar_loader_rejects_files_that_are_not_batches(tmp_path: Path, batch, message,
                                                         capsys):
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=message):
        load_cifar10_subset(folder, {0: 1})
    assert "pwned" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# Credit-card fraud loader, on small files written in creditcard.csv's format
# ------------------------------------------------------------------------------------------


def _fraud_csv_text(x: np.ndarray, y: np.ndarray, quoted: bool = True) -> str:
    """creditcard.csv's format: quoted header, unquoted numbers, ``Class`` quoted like "0"."""
    header = [*FRAUD_COLUMNS, "Class"]
    out = io.StringIO()
    out.write(",".join(f'"{name}"' if quoted else name for name in header) + "\n")
    for row, label in zip(x, y):
        cells = [repr(float(value)) for value in row]  # repr round-trips a float exactly
        cells.append(f'"{label}"' if quoted else str(label))
        out.write(",".join(cells) + "\n")
    return out.getvalue()


@pytest.fixture(scope="module")
def small_fraud():
    return make_rare_positive(60, n_positive=4, seed=11)


@pytest.mark.parametrize("quoted", [True, False])
def test_fraud_loader_reads_the_kaggle_format(tmp_path: Path, small_fraud, quoted):
    x, y = small_fraud
    path = tmp_path / "creditcard.csv"
    path.write_text(_fraud_csv_text(x, y, quoted))
    x_loaded, y_loaded = load_credit_card_fraud(path)
    np.testing.assert_array_equal(x_loaded, x)
    np.testing.assert_array_equal(y_loaded, y)
    assert x_loaded.dtype == np.float64 and y_loaded.dtype == np.int64
    # the loaded file goes through the same preprocessing as the generated data
    np.testing.assert_array_equal(preprocess_fraud_features(x_loaded)[0],
                                  preprocess_fraud_features(x)[0])


def test_fraud_loader_reads_gzip_and_the_kaggle_zip(tmp_path: Path, small_fraud):
    x, y = small_fraud
    text = _fraud_csv_text(x, y)
    gz = tmp_path / "creditcard.csv.gz"
    with gzip.open(gz, "wt") as stream:
        stream.write(text)
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("creditcard.csv", text)
    for source in (gz, archive):
        x_loaded, y_loaded = load_credit_card_fraud(source)
        np.testing.assert_array_equal(x_loaded, x)
        np.testing.assert_array_equal(y_loaded, y)



def test_fraud_loader_reads_windows_line_endings_and_a_bom(tmp_path: Path, small_fraud):
    x, y = small_fraud
    path = tmp_path / "creditcard.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _fraud_csv_text(x, y).replace("\n", "\r\n").encode())
    x_loaded, y_loaded = load_credit_card_fraud(path)
    np.testing.assert_array_equal(x_loaded, x)
    np.testing.assert_array_equal(y_loaded, y)


@pytest.mark.parametrize("name", ["creditcard.csv.gz", "archive.zip"])
def test_fraud_loader_rejects_unreadable_archives(tmp_path: Path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not compressed")
    with pytest.raises(ValueError, match=r"could not be read as a CSV, \.csv\.gz or \.zip"):
        load_credit_card_fraud(path)

def _replace_first_value(text: str, value: str) -> str:
    header, first_row, rest = text.split("\n", 2)
    return "\n".join([header, value + first_row[first_row.index(","):], rest])


def _with_header(text: str, header: list[str]) -> str:
    return ",".join(header) + "\n" + text.split("\n", 1)[1]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: _with_header(t, [*FRAUD_COLUMNS[:2], "V3", "V2", *FRAUD_COLUMNS[4:], "Class"]),
         r"column 3 is 'V3', expected 'V2'"),
        (lambda t: _with_header(t, [*FRAUD_COLUMNS]), r"column 31 is '\(end of header\)'"),
        (lambda t: _with_header(t, ["a", "b"]), "does not have the creditcard.csv header"),
        (lambda t: t.split("\n", 1)[0] + "\n", "has a header but no rows"),
        (lambda t: _replace_first_value(t, "oops"), "malformed row"),
        (lambda t: _replace_first_value(t, ""), "malformed row"),
        (lambda t: t.rsplit('"0"', 1)[0] + '"2"' + t.rsplit('"0"', 1)[1],
         "Class must be 0 or 1, found 2"),
        (lambda t: "", "does not have the creditcard.csv header"),
    ],
)
def test_fraud_loader_rejects_malformed_files(tmp_path: Path, small_fraud, edit, message):
    path = tmp_path / "creditcard.csv"
    path.write_text(edit(_fraud_csv_text(*small_fraud)))
    with pytest.raises(ValueError, match=message):
        load_credit_card_fraud(path)


def test_fraud_loader_rejects_short_rows(tmp_path: Path, small_fraud):
    x, y = small_fraud
    text = _fraud_csv_text(x, y)
    lines = text.splitlines()
    lines[1:] = [line.split(",", 1)[1] for line in lines[1:]]  # every row loses Time
    path = tmp_path / "creditcard.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="rows must have 31 values, got 30"):
        load_credit_card_fraud(path)


def test_fraud_loader_rejects_a_zip_without_one_csv(tmp_path: Path):
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.csv", "x")
        zipped.writestr("b.csv", "y")
    with pytest.raises(ValueError, match="exactly one .csv"):
        load_credit_card_fraud(archive)


def test_fraud_loader_says_where_to_get_missing_data(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*kaggle\.com/datasets/mlg-ulb"):
        load_credit_card_fraud(tmp_path / "creditcard.csv")


# ------------------------------------------------------------------------------------------
# Downloads, with the one network call replaced by a local fake (never the real network)
# ------------------------------------------------------------------------------------------


def _fake_fetch(content: bytes, calls: list):
    def fetch(url: str, destination: Path) -> None:
        calls.append(url)
        destination.write_bytes(content)

    return fetch


def test_download_cifar10_checks_the_checksum(tmp_path: Path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(data, "_fetch", _fake_fetch(b"truncated download", calls))
    with pytest.raises(ValueError, match="has MD5 .* expected c58f30108f718f92721af3b95e74349a"):
        data.download_cifar10(tmp_path)
    assert calls == [data.CIFAR10_URL]
    assert list(tmp_path.iterdir()) == [], "a failed download leaves nothing behind"


def test_download_cifar10_keeps_a_verified_archive(tmp_path: Path, monkeypatch):
    content = b"pretend archive"
    calls: list[str] = []
    monkeypatch.setattr(data, "_fetch", _fake_fetch(content, calls))
    monkeypatch.setattr(data, "CIFAR10_MD5", hashlib.md5(content).hexdigest())
    path = data.download_cifar10(tmp_path / "data")
    assert path == tmp_path / "data" / "cifar-10-python.tar.gz" and path.read_bytes() == content
    assert data.download_cifar10(tmp_path / "data") == path
    assert len(calls) == 1, "an existing, verified archive is not downloaded again"
    path.write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="delete it and download again"):
        data.download_cifar10(tmp_path / "data")


def test_download_credit_card_fraud_checks_the_shape(tmp_path: Path, monkeypatch, small_fraud):
    text = _fraud_csv_text(*small_fraud).encode()
    calls: list[str] = []
    monkeypatch.setattr(data, "_fetch", _fake_fetch(text, calls))
    with pytest.raises(ValueError, match="has 60 rows and 4 positives, expected 284807 and 492"):
        data.download_credit_card_fraud(tmp_path)
    assert calls == [data.FRAUD_CSV_URL]
    assert list(tmp_path.iterdir()) == [], "a failed download leaves nothing behind"

    monkeypatch.setattr(data, "FRAUD_SHAPE", data.FraudShape(60, 4, FRAUD_COLUMNS))
    path = data.download_credit_card_fraud(tmp_path)
    assert path == tmp_path / "creditcard.csv" and path.read_bytes() == text
    assert data.download_credit_card_fraud(tmp_path) == path and len(calls) == 2

