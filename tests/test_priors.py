"""utils.priors: prior-logit biases, the initial loss, and setting/checking them on models."""
from __future__ import annotations

import doctest
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, logit, logsumexp, softmax

import utils.priors
from utils.frameworks import parameters
from utils.priors import check_initial_loss, initial_loss, prior_bias, set_prior_bias

ROOT = Path(__file__).resolve().parent.parent
FLOAT32_EPS = float(np.finfo(np.float32).eps)
BRIEF_COUNTS = [10, 5, 5, 100, 100]
CIFAR_COUNTS = [4000, 3700, 100, 4000, 400, 100, 50, 700, 700, 100]
FRAUD_POSITIVES, FRAUD_TOTAL = 492, 284_807


def entropy(p):
    p = np.asarray(p, dtype=float)
    p = p[p > 0]
    return float(-(p @ np.log(p)))


def binary_entropy(pi):
    pi = np.asarray(pi, dtype=float)
    return -(pi * np.log(pi) + (1 - pi) * np.log1p(-pi))


def labels_with_counts(counts, seed=0):
    """Integer labels with exactly these class counts, shuffled."""
    labels = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(seed).permutation(labels)


# ---------------------------------------------------------------------------------------------
# Analytic cases (NumPy only)


def test_numpy_only_session():
    """prior_bias and initial_loss work without importing either framework."""
    code = (
        "import sys; from utils.priors import prior_bias, initial_loss; "
        "b = prior_bias([3, 1]); initial_loss([3, 1], b); "
        "prior_bias([1], 'sigmoid', total=4); "
        "bad = [m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_docstring_examples():
    failures, tried = doctest.testmod(utils.priors, extraglobs={"np": np})
    assert tried >= 4 and failures == 0


def test_brief_logit_mistake_numbers():
    counts = np.array(BRIEF_COUNTS, dtype=float)
    p = counts / counts.sum()
    np.testing.assert_allclose(np.exp(prior_bias(counts)), p, rtol=1e-12)
    assert np.round(p, 4).tolist() == [0.0455, 0.0227, 0.0227, 0.4545, 0.4545]
    mistaken = logit(p)
    assert np.round(softmax(mistaken), 4).tolist() == [0.0270, 0.0132, 0.0132, 0.4733, 0.4733]
    assert round(initial_loss(counts, mistaken), 4) == 1.0409
    assert round(initial_loss(counts, prior_bias(counts)), 4) == 1.0293
    assert round(initial_loss(counts), 4) == round(np.log(5), 4) == 1.6094
    # the mistake's cost is KL(p || q) with q proportional to p / (1 - p)
    q = p / (1 - p) / np.sum(p / (1 - p))
    np.testing.assert_allclose(softmax(mistaken), q, rtol=1e-12)
    cost = initial_loss(counts, mistaken) - initial_loss(counts, prior_bias(counts))
    assert cost == pytest.approx(float(p @ np.log(p / q)), rel=1e-10)


def test_brief_cifar_and_fraud_numbers():
    assert round(initial_loss(CIFAR_COUNTS), 4) == 2.3026
    assert round(initial_loss(CIFAR_COUNTS, prior_bias(CIFAR_COUNTS)), 4) == 1.6012
    bias = prior_bias([FRAUD_POSITIVES], "sigmoid", total=FRAUD_TOTAL)
    assert bias.shape == (1,) and round(float(bias[0]), 4) == -6.3594
    assert bias[0] == pytest.approx(np.log(FRAUD_POSITIVES / (FRAUD_TOTAL - FRAUD_POSITIVES)))
    assert round(float(expit(bias[0])), 4) == 0.0017
    loss = initial_loss([FRAUD_POSITIVES], bias, "sigmoid", total=FRAUD_TOTAL)
    assert round(loss, 4) == 0.0127
    assert loss == pytest.approx(binary_entropy(FRAUD_POSITIVES / FRAUD_TOTAL), rel=1e-12)
    zero = initial_loss([FRAUD_POSITIVES], None, "sigmoid", total=FRAUD_TOTAL)
    assert zero == pytest.approx(np.log(2), rel=1e-12)


@pytest.mark.parametrize("counts", [[3, 7], [1, 999], [50, 50], [0.2, 0.8]])
def test_two_class_softmax_equals_sigmoid(counts):
    negatives, positives = counts
    total = negatives + positives
    softmax_bias = prior_bias(counts)
    sigmoid_bias = prior_bias([positives], "sigmoid", total=total)
    assert softmax_bias[1] - softmax_bias[0] == pytest.approx(sigmoid_bias[0], abs=1e-12)
    assert initial_loss(counts, softmax_bias) == pytest.approx(
        initial_loss([positives], sigmoid_bias, "sigmoid", total=total), rel=1e-12
    )
    # for any bias, a 2-way softmax is a sigmoid of the logit difference
    for b0, b1 in [(0.0, 0.0), (1.5, -0.3), (-4.0, 2.0)]:
        assert initial_loss(counts, [b0, b1]) == pytest.approx(
            initial_loss([positives], [b1 - b0], "sigmoid", total=total), rel=1e-12
        )


@pytest.mark.parametrize("k", [2, 3, 10, 1000])
def test_uniform_counts_give_zero_gap(k):
    counts = np.full(k, 17)
    bias = prior_bias(counts)
    np.testing.assert_allclose(bias, -np.log(k), rtol=1e-12)
    assert initial_loss(counts, bias) == pytest.approx(initial_loss(counts), rel=1e-12)
    assert initial_loss(counts) == pytest.approx(np.log(k), rel=1e-12)


def test_softmax_bias_is_invariant_to_a_constant():
    bias = prior_bias(CIFAR_COUNTS)
    assert logsumexp(bias) == pytest.approx(0.0, abs=1e-12)  # the stated convention
    for shift in (-100.0, -1.0, 3.7, 250.0):
        assert initial_loss(CIFAR_COUNTS, bias + shift) == pytest.approx(
            initial_loss(CIFAR_COUNTS, bias), rel=1e-12
        )
    # scaling the counts (frequencies instead of counts) changes nothing
    np.testing.assert_allclose(prior_bias(np.array(CIFAR_COUNTS) / 13850), bias, atol=1e-12)


def test_prior_bias_minimises_the_initial_loss():
    rng = np.random.default_rng(0)
    counts = np.array(CIFAR_COUNTS, dtype=float)
    best = initial_loss(counts, prior_bias(counts))
    assert best == pytest.approx(entropy(counts / counts.sum()), rel=1e-12)
    for _ in range(200):  # Gibbs: H(p) + KL(p || q) >= H(p) for every bias
        assert initial_loss(counts, rng.normal(scale=3, size=counts.size)) >= best
        assert initial_loss(counts, prior_bias(counts) + rng.normal(scale=1e-3, size=10)) >= best
    gradient = softmax(prior_bias(counts)) - counts / counts.sum()
    np.testing.assert_allclose(gradient, 0, atol=1e-15)


def test_multilabel_sigmoid_prior():
    positives, total = np.array([500, 120, 30, 3]), 1000
    bias = prior_bias(positives, "sigmoid", total=total)
    np.testing.assert_allclose(bias, logit(positives / total), rtol=1e-12)
    loss = initial_loss(positives, bias, "sigmoid", total=total)
    assert loss == pytest.approx(np.mean(binary_entropy(positives / total)), rel=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(100):
        assert initial_loss(positives, bias + rng.normal(scale=0.5, size=4), "sigmoid",
                            total=total) >= loss
    # one total per output (labels missing for some outputs)
    per_output = prior_bias(positives, "sigmoid", total=[1000, 1000, 100, 10])
    np.testing.assert_allclose(per_output, logit(positives / [1000, 1000, 100, 10]))


def test_one_positive_per_ten_negatives():
    bias = prior_bias([1], "sigmoid", total=11)
    assert bias[0] == pytest.approx(-np.log(10), rel=1e-12)
    assert abs(bias[0] - logit(0.1)) > 0.1  # the tempting misreading


def test_smoothing():
    counts = [10, 0, 5]
    bias = prior_bias(counts, smoothing=1)
    np.testing.assert_allclose(np.exp(bias), np.array([11, 1, 6]) / 18, rtol=1e-12)
    sigmoid = prior_bias([0, 10], "sigmoid", total=10, smoothing=0.5)
    np.testing.assert_allclose(sigmoid, logit(np.array([0.5, 10.5]) / 11), rtol=1e-12)
    # empty classes are fine for the loss itself: they contribute 0 log q
    assert initial_loss(counts, prior_bias(counts, smoothing=1e-9)) == pytest.approx(
        entropy(np.array([10, 0, 5]) / 15), abs=1e-6)


def test_class_weights_change_the_effective_prior():
    counts = np.array([900.0, 90.0, 10.0])
    balanced = counts.sum() / (counts.size * counts)
    bias = prior_bias(counts, class_weight=balanced)
    np.testing.assert_allclose(bias - bias.mean(), 0, atol=1e-12)  # uniform: "zero" bias
    weights = np.array([1.0, 2.0, 5.0])
    expected = np.log(weights * counts / np.sum(weights * counts))
    np.testing.assert_allclose(prior_bias(counts, class_weight=weights), expected, rtol=1e-12)
    positives, total = 492, 284_807
    pos_weight = (total - positives) / positives  # torch's "balanced" pos_weight
    assert prior_bias([positives], "sigmoid", total=total, class_weight=pos_weight)[0] == \
        pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Models: both frameworks


def keras_models():
    import keras

    inner = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, name="logits")], name="body")
    return {
        "dense softmax": (keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"),
                                            keras.layers.Dense(3, "softmax")]), None),
        "dense + Activation": (keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                                 keras.layers.Activation("softmax")]), None),
        "dense + Softmax + Dropout": (keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Softmax(),
             keras.layers.Dropout(0.5)]), None),
        "nested Sequential + Activation": (keras.Sequential(
            [keras.Input((4,)), inner, keras.layers.Activation("softmax")]), None),
        "logits": (keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]), "softmax"),
    }


def keras_functional():
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Softmax()(keras.layers.Dense(3, name="head")(hidden))
    return keras.Model(inputs, outputs)


def torch_models():
    import torch.nn as nn

    class HeadFirst(nn.Module):  # registration order differs from call order
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(8, 3)
            self.body = nn.Linear(4, 8)

        def forward(self, x):
            return self.head(self.body(x).relu())

    return {
        "logits": (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), "softmax", None),
        "Linear + Softmax": (nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1)), None, None),
        "Linear + LogSoftmax": (nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)), None, None),
        "nested Sequential + Dropout + Softmax": (nn.Sequential(
            nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 3))),
            nn.Dropout(0.5), nn.Softmax(dim=1)), None, None),
        "custom module, layer named": (HeadFirst(), "softmax", "head"),
    }


def model_output(model, x):
    from utils.frameworks import framework_of

    if framework_of(model) == "keras":
        return np.asarray(model(x, training=False), dtype=np.float64)
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy().astype(np.float64)


@pytest.mark.parametrize("name", list(keras_models()))
def test_set_prior_bias_keras(name):
    import keras

    keras.utils.set_random_seed(0)
    model, activation = keras_models()[name]
    bias = set_prior_bias(model, [6, 3, 1], activation, kernel_scale=0.0)
    np.testing.assert_allclose(bias, np.log([0.6, 0.3, 0.1]), rtol=1e-12)
    last_bias = [p for p in parameters(model) if p.name == "bias"][-1]
    np.testing.assert_allclose(last_bias.numpy(), bias, rtol=1e-6)
    outputs = model_output(model, np.random.default_rng(0).normal(size=(5, 4)).astype("float32"))
    probabilities = softmax(outputs, axis=1) if activation else outputs
    np.testing.assert_allclose(probabilities, np.tile([0.6, 0.3, 0.1], (5, 1)), rtol=1e-6)


def test_set_prior_bias_keras_functional():
    model = keras_functional()
    set_prior_bias(model, [1, 1, 2])
    np.testing.assert_allclose(model.get_layer("head").bias.numpy(), np.log([0.25, 0.25, 0.5]),
                               rtol=1e-6)


@pytest.mark.parametrize("name", list(torch_models()))
def test_set_prior_bias_torch(name):
    import torch

    torch.manual_seed(0)
    model, activation, layer = torch_models()[name]
    bias = set_prior_bias(model, [6, 3, 1], activation, layer=layer, kernel_scale=0.0)
    outputs = model_output(model, np.random.default_rng(0).normal(size=(5, 4)).astype("float32"))
    if name == "Linear + LogSoftmax":
        outputs = np.exp(outputs)
    elif activation:
        outputs = softmax(outputs, axis=1)
    np.testing.assert_allclose(outputs, np.tile([0.6, 0.3, 0.1], (5, 1)), rtol=1e-6)
    np.testing.assert_allclose(bias, np.log([0.6, 0.3, 0.1]), rtol=1e-12)


def test_set_prior_bias_sigmoid_both_frameworks():
    import keras
    import torch.nn as nn

    keras_model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, "relu"),
                                    keras.layers.Dropout(0.5), keras.layers.Dense(1, "sigmoid")])
    torch_model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Dropout(0.5),
                                nn.Linear(16, 1), nn.Sigmoid())
    torch_logits = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 1))
    expected = np.log(FRAUD_POSITIVES / (FRAUD_TOTAL - FRAUD_POSITIVES))
    for model in (keras_model, torch_model, torch_logits):  # one logit is inferred as sigmoid
        bias = set_prior_bias(model, [FRAUD_POSITIVES], total=FRAUD_TOTAL)
        assert bias[0] == pytest.approx(expected)
        assert parameters(model)[-1].numpy()[0] == pytest.approx(expected, rel=FLOAT32_EPS)


def test_set_prior_bias_convolution_head():
    import torch.nn as nn

    head = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 1), nn.Sigmoid())
    bias = set_prior_bias(head, [1, 1], total=100)  # RetinaNet's pi = 0.01 per class
    np.testing.assert_allclose(bias, -np.log(99))
    np.testing.assert_allclose(head[2].bias.detach().numpy(), -np.log(99), rtol=1e-6)


def test_kernel_scale():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(4, 3))
    before = model[0].weight.detach().numpy().copy()
    set_prior_bias(model, [1, 1, 1], "softmax", kernel_scale=0.5)
    np.testing.assert_allclose(model[0].weight.detach().numpy(), 0.5 * before, rtol=1e-6)


def classification_batch(n_features=6, seed=0):
    counts = [300, 120, 60, 20]
    y = labels_with_counts(counts, seed)
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(len(y), n_features)) + 0.5 * y[:, None]).astype("float32")
    return x, y, counts


def keras_classifier(seed=0, units=4):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, "relu"),
                             keras.layers.Dense(units), keras.layers.Activation("softmax")])


def torch_classifier(seed=0, units=4):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Sequential(nn.Linear(6, 16), nn.ReLU()), nn.Linear(16, units))


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_check_initial_loss_measures_the_framework_loss(framework):
    x, y, counts = classification_batch()
    if framework == "keras":
        import keras

        model = keras_classifier()
        result = check_initial_loss(model, x, y, warn=False)
        reference = float(keras.losses.SparseCategoricalCrossentropy()(y, model(x)))
    else:
        import torch
        import torch.nn.functional as F

        model = torch_classifier()
        result = check_initial_loss(model, x, y, "softmax", warn=False)
        with torch.no_grad():
            reference = float(F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)))
    # float32 log-softmax of 4 logits per example, averaged: a few float32 ulps of the loss
    assert result.measured == pytest.approx(reference, abs=16 * FLOAT32_EPS * (1 + reference))
    bias = parameters(model)[-1].numpy()
    assert result.predicted == pytest.approx(initial_loss(counts, bias), rel=1e-12)
    assert result.optimum == pytest.approx(entropy(np.array(counts) / sum(counts)), rel=1e-12)
    assert result.uniform == pytest.approx(np.log(4))
    # Taylor in the random part e of the logits: the third-order remainder is bounded by the
    # third central moment of a variable whose range is each row's logit range
    logits = np.log(model_output(model, x)) if framework == "keras" else model_output(model, x)
    spread = np.ptp(logits - bias, axis=1)
    remainder = result.measured - result.predicted - result.first_order - result.second_order
    assert abs(remainder) <= np.mean(spread**3) / 6 + 1e-6


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_check_initial_loss_flags_and_passes(framework):
    x, y, counts = classification_batch()
    model = keras_classifier() if framework == "keras" else torch_classifier()
    activation = None if framework == "keras" else "softmax"
    with pytest.warns(UserWarning, match="the output bias is not the label prior"):
        flagged = check_initial_loss(model, x, y, activation)
    assert not flagged.ok and "set_prior_bias" in flagged.message
    set_prior_bias(model, counts, activation, kernel_scale=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        passed = check_initial_loss(model, x, y, activation)
    assert passed.ok and passed.message.startswith("OK")
    # the message names what was compared: the bias's prediction, the prior's entropy and the
    # random part, each as check_initial_loss formats it
    for number in (f"{passed.predicted:.4g}", f"{passed.optimum:.4g}", f"{passed.excess:.3g}"):
        assert number in passed.message, (number, passed.message)
    # zero kernel: the model is the constant predictor, its loss is the entropy exactly
    assert passed.measured == pytest.approx(passed.optimum, abs=16 * FLOAT32_EPS)
    assert passed.logit_std < 1e-5
    kernel = [p for p in parameters(model) if p.name in ("kernel", "weight")][-1]
    from utils.frameworks import assign

    # blown-up logits (a constant kernel would shift every logit alike and change nothing)
    assign(kernel, np.random.default_rng(0).normal(scale=3.0, size=kernel.shape))
    with pytest.warns(UserWarning, match="the random part of the logits adds"):
        blown = check_initial_loss(model, x, y, activation)
    assert blown.measured > 2 * blown.predicted and blown.excess > blown.rtol * blown.predicted
    assert "kernel_scale" in str(blown)


def wide_classifier(framework, seed):
    """The chapter's architecture: 64 hidden ReLU units, default initialisation."""
    if framework == "keras":
        import keras

        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(64, "relu"),
                                 keras.layers.Dense(4, "softmax")])
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 64), nn.ReLU(), nn.Linear(64, 4))


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_check_initial_loss_passes_default_inits_with_the_prior_and_flags_a_zero_bias(framework):
    """Twenty seeds of a default-initialised model on standardised inputs: no false alarm once
    the prior bias is set, and a zero bias always flagged (log 4 - H(p) = 0.354 exceeds check
    2's tolerance, sampling + rounding = 0.030, for the batch's 500 labels [300, 120, 60, 20])."""
    from utils.frameworks import assign

    x, y, counts = classification_batch()
    x = ((x - x.mean(0)) / x.std(0)).astype("float32")
    activation = None if framework == "keras" else "softmax"
    for seed in range(20):
        model = wide_classifier(framework, seed)
        assign(parameters(model)[-1], np.zeros(4))
        zero = check_initial_loss(model, x, y, activation, warn=False)
        assert not zero.ok and "not the label prior" in zero.message, (seed, zero)
        set_prior_bias(model, counts, activation)
        prior = check_initial_loss(model, x, y, activation, warn=False)
        assert prior.ok, (seed, prior)
        # the split of the measured loss is exact by construction
        assert prior.excess == pytest.approx(prior.measured - prior.predicted - prior.first_order)


def test_check_initial_loss_flags_the_logit_mistake_on_a_strong_imbalance():
    """logit biases under a two-class softmax square the odds: on a 90/10 split that costs
    39 % of H(p), 0.127 nats, beyond check 2's tolerance for 1,000 labels (0.008); the correct
    log prior passes."""
    import torch.nn as nn

    y = labels_with_counts([900, 100])
    x = np.random.default_rng(0).normal(size=(len(y), 3)).astype("float32")
    model = nn.Sequential(nn.Linear(3, 2))
    p = np.array([0.9, 0.1])
    from utils.frameworks import assign

    assign(parameters(model)[-2], np.zeros((2, 3)))
    assign(parameters(model)[-1], logit(p))
    mistaken = check_initial_loss(model, x, y, "softmax", warn=False)
    assert (mistaken.predicted - mistaken.optimum) / mistaken.optimum == pytest.approx(0.390,
                                                                                       abs=5e-4)
    assert not mistaken.ok and "not the label prior" in mistaken.message
    set_prior_bias(model, [900, 100], "softmax")
    assert check_initial_loss(model, x, y, "softmax", warn=False).ok


def test_sampling_allowance_covers_chance_label_counts():
    """Batches drawn at random from the prior the bias was set from are not flagged, even with
    rare classes (expected count 2.6 per batch), where the chi-squared approximation of 2 n KL
    fails: the allowance bounds KL by log(1 + X^2 / n) with Pearson's X^2 at five standard
    deviations above its mean."""
    import torch.nn as nn

    prior = np.array([0.9, 0.07, 0.02, 0.01])
    model = nn.Sequential(nn.Linear(3, 4))
    set_prior_bias(model, prior, "softmax", kernel_scale=0.0)
    rng = np.random.default_rng(0)
    n = 256
    variance = 2 * 3 + (np.sum(1 / prior) - 16 - 8 + 2) / n  # exact variance of Pearson's X^2
    for _ in range(200):
        y = rng.choice(4, size=n, p=prior)
        x = rng.normal(size=(n, 3)).astype("float32")
        result = check_initial_loss(model, x, y, "softmax", rtol=1e-9, warn=False)
        assert result.sampling == pytest.approx(np.log1p((3 + 5 * np.sqrt(variance)) / n))
        assert result.predicted - result.optimum <= result.sampling
        # Jensen: KL(p || q) <= log(1 + chi^2(p || q)), the bound the allowance rests on
        p = np.bincount(y, minlength=4) / n
        assert result.predicted - result.optimum <= np.log(np.sum(p**2 / prior)) + 1e-12


def test_pearson_variance_formula():
    """The exact variance of Pearson's X^2 that the allowance uses, by simulation (5 s.e. of a
    sample variance of 200,000 draws; X^2's kurtosis estimated from the same draws)."""
    from utils.stats import variance_tolerance

    q, n = np.array([0.9, 0.07, 0.02, 0.01]), 64
    counts = np.random.default_rng(0).multinomial(n, q, size=200_000)
    statistic = np.sum((counts - n * q) ** 2 / (n * q), axis=1)
    expected = 2 * 3 + (np.sum(1 / q) - 16 - 8 + 2) / n
    centred = statistic - statistic.mean()
    kurtosis = np.mean(centred**4) / np.mean(centred**2) ** 2
    assert abs(statistic.var(ddof=1) / expected - 1) <= variance_tolerance(
        statistic.size, 5, kurtosis)
    assert abs(statistic.mean() - 3) <= 5 * statistic.std() / np.sqrt(statistic.size)


def test_check_initial_loss_sigmoid_both_frameworks():
    import keras
    import torch
    import torch.nn as nn

    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.02).astype("float32")
    x = (rng.normal(size=(4000, 5)) + y[:, None]).astype("float32")
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, "relu"),
                                    keras.layers.Dense(1, "sigmoid")])
    torch.manual_seed(0)
    torch_model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    for model in (keras_model, torch_model):
        set_prior_bias(model, [y.sum()], total=len(y), kernel_scale=0.0)
        result = check_initial_loss(model, x, y, warn=False)
        assert result.activation == "sigmoid" and result.ok
        assert result.measured == pytest.approx(binary_entropy(y.mean()), rel=1e-5)
    reference = float(keras.losses.BinaryCrossentropy()(y[:, None], keras_model(x)))
    assert check_initial_loss(keras_model, x, y).measured == pytest.approx(reference, rel=1e-5)


def test_check_initial_loss_accepts_probability_rows_and_restores_train_mode():
    import torch.nn as nn

    x, y, counts = classification_batch()
    model = nn.Sequential(nn.Linear(6, 4), nn.Dropout(0.9))
    model.train()
    one_hot = np.eye(4, dtype="float32")[y]
    first = check_initial_loss(model, x, one_hot, "softmax", warn=False)
    second = check_initial_loss(model, x, y, "softmax", warn=False)
    assert first.measured == second.measured  # dropout off during the check: deterministic
    assert model.training


def test_report_lines_fit_the_page():
    """The printed report keeps every line within the course's 99 characters, even with the
    widest numbers the format strings can produce."""
    from utils.priors import InitialLossCheck

    report = InitialLossCheck(
        activation="softmax", layer="backbone.head.classifier", examples=1_234_567,
        measured=-1.23456e-05, predicted=-1.23456e-05, optimum=-1.23456e-05,
        uniform=-1.23456e-05, first_order=-1.23456e-05, second_order=-1.23456e-05,
        logit_std=-1.23456e-05, rtol=0.25, ok=False, message="CHECK: " + "word " * 60,
        excess=-1.23456e-05, sampling=1e-3)
    assert all(len(line) <= 99 for line in str(report).splitlines()), str(report)


# ---------------------------------------------------------------------------------------------
# Bad input: a ValueError naming the argument and what was expected


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"counts": [3, -1, 2]}, "counts must be non-negative"),
        ({"counts": [3, np.nan, 2]}, "counts must be finite"),
        ({"counts": [3, np.inf]}, "counts must be finite"),
        ({"counts": [0, 0, 0]}, "counts must contain at least one positive count"),
        ({"counts": []}, "counts must be a non-empty 1-D"),
        ({"counts": [[1, 2], [3, 4]]}, "counts must be a non-empty 1-D"),
        ({"counts": ["a", "b"]}, "counts must be a 1-D sequence of numbers"),
        ({"counts": [5, 0, 3]}, "counts has empty classes at \\[1\\]"),
        ({"counts": [5]}, "counts must have at least 2 classes"),
        ({"counts": [5, 3], "total": 8}, "total is only used with activation='sigmoid'"),
        ({"counts": [5, 3], "activation": "relu"}, "activation must be one of"),
        ({"counts": [5, 3], "activation": "Softmax"}, "activation must be one of"),
        ({"counts": [5, 3], "smoothing": -1}, "smoothing must be a finite number >= 0"),
        ({"counts": [5, 3], "class_weight": [1, 0]}, "class_weight must be positive"),
        ({"counts": [5, 3], "class_weight": [1, 2, 3]}, "class_weight must have one weight"),
        ({"counts": [5], "activation": "sigmoid"}, "total must be given"),
        ({"counts": [900, 100], "activation": "sigmoid"}, "pass counts=\\[100\\], total=1000"),
        ({"counts": [5], "activation": "sigmoid", "total": 4}, "counts must not exceed total"),
        ({"counts": [5], "activation": "sigmoid", "total": 0}, "total must be positive"),
        ({"counts": [5, 3], "activation": "sigmoid", "total": [9, 9, 9]},
         "total must be a number or one number per output"),
        ({"counts": [0, 3], "activation": "sigmoid", "total": 9}, "counts gives outputs \\[0\\]"),
        ({"counts": [9, 3], "activation": "sigmoid", "total": 9}, "counts gives outputs \\[0\\]"),
    ],
)
def test_prior_bias_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        prior_bias(**kwargs)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (([1, 2, 3], [0.0, 1.0]), {}, "bias must have one entry per entry of counts \\(3\\), got 2"),
        (([1, 2], [0.0, np.nan]), {}, "bias must be finite"),
        (([1, -2],), {}, "counts must be non-negative"),
        (([0, 0],), {}, "counts must contain at least one positive"),
        (([1, 2],), {"activation": "tanh"}, "activation must be one of"),
        (([1],), {"activation": "sigmoid"}, "total must be given"),
    ],
)
def test_initial_loss_rejects(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        initial_loss(*args, **kwargs)


def test_model_functions_reject_bad_models_and_arguments():
    import keras
    import torch.nn as nn

    with pytest.raises(ValueError, match="model must be a Keras 3 layer/model or a torch"):
        set_prior_bias(np.zeros(3), [1, 2])
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has not been built"):
        set_prior_bias(unbuilt, [1, 2])
    with pytest.raises(ValueError, match="model must contain a Dense/Linear or convolution"):
        set_prior_bias(nn.Sequential(nn.ReLU(), nn.Softmax(dim=1)), [1, 2])
    no_bias_keras = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False,
                                                                            activation="softmax")])
    no_bias_torch = nn.Sequential(nn.Linear(3, 2, bias=False), nn.Softmax(dim=1))
    for model in (no_bias_keras, no_bias_torch):
        with pytest.raises(ValueError, match="model's output layer .* has no bias"):
            set_prior_bias(model, [1, 2])
    softmax3 = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="counts must have one entry per output .* \\(3\\), got 2"):
        set_prior_bias(softmax3, [1, 2])
    sigmoid1 = nn.Sequential(nn.Linear(3, 1), nn.Sigmoid())
    with pytest.raises(ValueError, match="pass counts=\\[positives\\] and total"):
        set_prior_bias(sigmoid1, [90, 10], total=100)
    with pytest.raises(ValueError, match="activation could not be inferred"):
        set_prior_bias(nn.Linear(3, 3), [1, 2, 3])
    with pytest.raises(ValueError, match="activation='softmax' contradicts model"):
        set_prior_bias(sigmoid1, [10], "softmax")
    with pytest.raises(ValueError, match="activation must be one of"):
        set_prior_bias(nn.Linear(3, 3), [1, 2, 3], "softmax_")
    with pytest.raises(ValueError, match="layer must name one of the model's layers"):
        set_prior_bias(softmax3, [1, 2, 3], layer="nope")
    with pytest.raises(ValueError, match="layer must name a dense or convolution layer"):
        set_prior_bias(sigmoid1, [10], total=100, layer="1")
    with pytest.raises(ValueError, match="kernel_scale must be a finite number >= 0"):
        set_prior_bias(softmax3, [1, 2, 3], kernel_scale=-1.0)
    with pytest.raises(ValueError, match="counts has empty classes"):
        set_prior_bias(softmax3, [1, 0, 3])


def test_check_initial_loss_rejects():
    import keras
    import torch.nn as nn

    x, y, counts = classification_batch()
    model = torch_classifier()
    bad_rows = np.full((len(y), 4), 0.3, dtype="float32")
    with pytest.raises(ValueError, match="y's rows must be probabilities that sum to one"):
        check_initial_loss(model, x, bad_rows, "softmax")
    with pytest.raises(ValueError, match="y must hold integer class labels in \\[0, 4\\)"):
        check_initial_loss(model, x, y + 1, "softmax")
    with pytest.raises(ValueError, match="y must hold integer class labels"):
        check_initial_loss(model, x, y + 0.5, "softmax")
    with pytest.raises(ValueError, match="y must have shape"):
        check_initial_loss(model, x, np.zeros((len(y), 3)), "softmax")
    with pytest.raises(ValueError, match="x and y must have the same length"):
        check_initial_loss(model, x[:-1], y, "softmax")
    with pytest.raises(ValueError, match="outputs must be 'logits'"):
        check_initial_loss(model, x, y, "softmax", outputs="scores")
    with pytest.raises(ValueError, match="rtol must be a positive number"):
        check_initial_loss(model, x, y, "softmax", rtol=0)
    with pytest.raises(ValueError, match="sigmas must be a positive number"):
        check_initial_loss(model, x, y, "softmax", sigmas=-1.0)
    with pytest.raises(ValueError, match="activation could not be inferred"):
        check_initial_loss(model, x, y)
    normalised = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4),
                                   keras.layers.LayerNormalization()])
    with pytest.raises(ValueError, match="outputs could not be inferred"):
        check_initial_loss(normalised, x, y, "softmax")
    twice = nn.Sequential(nn.Linear(6, 4), nn.Softmax(dim=1), nn.Softmax(dim=1))
    with pytest.raises(ValueError, match="outputs could not be inferred"):
        check_initial_loss(twice, x, y, "softmax")
    sigmoid = nn.Sequential(nn.Linear(6, 1), nn.Sigmoid())
    with pytest.raises(ValueError, match="y must hold targets in \\[0, 1\\]"):
        check_initial_loss(sigmoid, x, y.astype(float))


def test_probability_outputs_give_the_same_check_as_logits():
    import keras

    x, y, counts = classification_batch()
    keras.utils.set_random_seed(0)
    logits_model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, "relu"),
                                     keras.layers.Dense(4)])
    probability_model = keras.Sequential([logits_model, keras.layers.Softmax()])
    from_logits = check_initial_loss(logits_model, x, y, "softmax", warn=False)
    from_probabilities = check_initial_loss(probability_model, x, y, warn=False)
    for field in ("measured", "predicted", "first_order", "second_order", "logit_std"):
        assert getattr(from_probabilities, field) == pytest.approx(
            getattr(from_logits, field), rel=1e-4, abs=1e-6), field


# ---------------------------------------------------------------------------------------------
# Issue 29, "Why": layouts that are not one chain. The output layer is the one whose output
# becomes the model's output (found from what the model computes); every other layout gets a
# ValueError that lists the candidates and names the argument that chooses.


class AuxAfterClassifier:
    """torch: `body`, `cls`, `aux` registered in that order; forward uses `cls` only."""

    @staticmethod
    def build():
        import torch
        import torch.nn as nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
                self.cls = nn.Linear(16, 4)
                self.aux = nn.Linear(16, 4)

            def forward(self, x):
                return self.cls(self.body(x))

        torch.manual_seed(0)
        return Model()


def head_before_body(width=8):
    """torch: the head is registered before the body, with matching sizes."""
    import torch
    import torch.nn as nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(width, width)
            self.body = nn.Sequential(nn.Linear(width, width))

        def forward(self, x):
            return self.head(self.body(x).relu())

    torch.manual_seed(0)
    return Model()


def keras_two_heads(reg_units):
    """Keras: a softmax head `cls` (5 units, or 4) and a linear head `reg` of `reg_units`."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(16, activation="relu", name="body")(inputs)
    cls = keras.layers.Dense(5 if reg_units == 5 else 4, activation="softmax", name="cls")(hidden)
    reg = keras.layers.Dense(reg_units, name="reg")(hidden)
    return keras.Model(inputs, [cls, reg])


def test_torch_auxiliary_head_after_the_classifier_is_not_the_output_layer():
    model = AuxAfterClassifier.build()
    aux_before = model.aux.bias.detach().numpy().copy()
    x, y, counts = classification_batch()
    bias = set_prior_bias(model, counts, "softmax", kernel_scale=0.0)
    np.testing.assert_allclose(model.cls.bias.detach().numpy(), bias, rtol=1e-6)
    assert np.array_equal(model.aux.bias.detach().numpy(), aux_before)  # untouched
    check = check_initial_loss(model, x, y, "softmax", warn=False)
    # the zeroed `cls` kernel makes the model the constant predictor at the prior
    assert check.ok and check.layer == "cls" and "'cls'" in check.message
    assert check.measured == pytest.approx(check.optimum, abs=16 * FLOAT32_EPS)


@pytest.mark.parametrize("with_x", [False, True], ids=["torch.fx", "traced on x"])
def test_torch_head_registered_before_the_body(with_x):
    model = head_before_body()
    body_before = model.body[0].bias.detach().numpy().copy()
    counts = [1, 1, 1, 1, 1, 1, 2, 8]
    given = {"x": np.random.default_rng(0).normal(size=(4, 8)).astype("float32")} \
        if with_x else {}
    bias = set_prior_bias(model, counts, "softmax", **given)
    np.testing.assert_allclose(model.head.bias.detach().numpy(), bias, rtol=1e-6)
    assert np.array_equal(model.body[0].bias.detach().numpy(), body_before)


def test_keras_two_heads_of_five_units_are_refused_then_chosen():
    model = keras_two_heads(reg_units=5)
    with pytest.raises(ValueError, match=r"2 candidate output layers.*'cls'.*'reg'.*output=.*"
                                         r"layer="):
        set_prior_bias(model, [1, 2, 3, 4, 5], "softmax")
    assert not np.any(model.get_layer("reg").bias.numpy())  # nothing was written
    for choice in ({"output": "cls"}, {"output": 0}, {"layer": "cls"}):
        bias = set_prior_bias(model, [1, 2, 3, 4, 5], "softmax", **choice)
        np.testing.assert_allclose(model.get_layer("cls").bias.numpy(), bias, rtol=1e-6)
        assert not np.any(model.get_layer("reg").bias.numpy())
    # the output and the layer must agree
    with pytest.raises(ValueError, match="layer 'reg' does not compute its output 'cls'"):
        set_prior_bias(model, [1, 2, 3, 4, 5], "softmax", output="cls", layer="reg")


def test_keras_softmax_head_beside_a_regression_head():
    model = keras_two_heads(reg_units=1)
    x, y, counts = classification_batch()
    with pytest.raises(ValueError, match=r"output 'cls'.*layer 'cls' \(Dense, 4 units, then "
                                         r"softmax\).*output 'reg'.*layer 'reg' \(Dense, 1 unit\)"):
        set_prior_bias(model, counts)
    with pytest.raises(ValueError, match="2 candidate output layers"):
        check_initial_loss(model, x, y, warn=False)
    # the chosen head's activation is what follows it, not its sibling
    bias = set_prior_bias(model, counts, layer="cls", kernel_scale=0.0)
    np.testing.assert_allclose(bias, np.log(np.array(counts) / sum(counts)), rtol=1e-12)
    inferred = check_initial_loss(model, x, y, layer="cls", warn=False)
    stated = check_initial_loss(model, x, y, "softmax", layer="cls", outputs="probabilities",
                                warn=False)
    by_output = check_initial_loss(model, x, y, output="cls", warn=False)
    # the head's own output, computed here: the zero kernel makes every row the prior
    probabilities = np.asarray(model(x, training=False)[0], dtype=np.float64)
    reference = float(np.mean(-np.log(probabilities[np.arange(len(y)), y])))
    for result in (inferred, stated, by_output):
        assert result.activation == "softmax" and result.layer == "cls" and result.ok
        assert result.output == "cls"
        # float32 softmax of 4 equal-bias logits: a few float32 ulps of the loss
        assert result.measured == pytest.approx(reference, abs=16 * FLOAT32_EPS)


def test_class_weight_accepts_the_keras_fit_dict():
    counts = [900, 90, 10]
    as_list = prior_bias(counts, class_weight=[1.0, 2.0, 5.0])
    np.testing.assert_array_equal(prior_bias(counts, class_weight={0: 1, 1: 2, 2: 5}), as_list)
    # a class left out of the dict has weight 1, as in Keras's fit
    np.testing.assert_array_equal(prior_bias(counts, class_weight={1: 2, 2: 5}), as_list)
    # Keras's binary dict for one sigmoid output is the ratio w1 / w0 (torch's pos_weight)
    np.testing.assert_array_equal(
        prior_bias([10], "sigmoid", total=100, class_weight={0: 0.5, 1: 4.5}),
        prior_bias([10], "sigmoid", total=100, class_weight=9.0))
    for bad, match in [({3: 1.0}, "class_weight names classes \\[3\\]"),
                       ({"a": 1.0}, "class_weight as a dict must map class indices"),
                       ({0: -1.0}, "class_weight must be positive"),
                       ("balanced", "class_weight must be numbers or a dict")]:
        with pytest.raises(ValueError, match=match):
            prior_bias(counts, class_weight=bad)
    with pytest.raises(ValueError, match="class_weight as a dict .* one binary output"):
        prior_bias([10, 20], "sigmoid", total=100, class_weight={0: 1, 1: 2})


def test_a_head_without_a_bias_gets_told_what_to_do():
    import keras
    import torch.nn as nn

    x, y, counts = classification_batch()
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, "relu"),
                                    keras.layers.Dense(4, use_bias=False, name="out")])
    torch_model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4, bias=False))
    for model, name in ((keras_model, "out"), (torch_model, "2")):
        with pytest.raises(ValueError, match=rf"output layer '{name}' .* has no bias to set. "
                                             r"Either rebuild it with a bias .* or shift the "
                                             r"logits instead: add the constant prior_bias"):
            set_prior_bias(model, counts, "softmax")
        check = check_initial_loss(model, x, y, "softmax", warn=False)
        assert not check.ok and not check.has_bias
        # it does not send the reader to set_prior_bias alone, which would refuse
        assert f"'{name}' has no bias" in check.message and "use_bias=True" in check.message
        assert "add the constant prior_bias(counts)" in check.message


def test_a_layer_that_changes_the_logits_after_the_head_is_refused_unless_named():
    import torch.nn as nn

    x, y, counts = classification_batch()
    for tail in (nn.ReLU(), nn.BatchNorm1d(4)):
        model = nn.Sequential(nn.Linear(6, 4), tail)
        with pytest.raises(ValueError, match=r"output layer '0' is followed by '1' \("
                                             rf"{type(tail).__name__}\).*pass layer='0'"):
            set_prior_bias(model, counts, "softmax")
        set_prior_bias(model, counts, "softmax", layer="0")  # named: the caller's choice
        np.testing.assert_allclose(model[0].bias.detach().numpy(),
                                   np.log(np.array(counts) / sum(counts)), rtol=1e-6)


def test_heads_added_into_one_output_are_candidates():
    import torch.nn as nn

    class Sum(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(6, 4), nn.Linear(6, 4)

        def forward(self, x):
            return self.a(x) + self.b(x)

    with pytest.raises(ValueError, match=r"2 candidate output layers for its output: layer 'a' "
                                         r"\(Linear, 4 units, then add\); layer 'b'.* pass "
                                         r"layer='a'"):
        set_prior_bias(Sum(), [1, 2, 3, 4], "softmax")


def test_torch_dict_outputs_and_a_forward_torch_fx_cannot_trace():
    import torch.nn as nn

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.cls, self.reg = nn.Linear(6, 8), nn.Linear(8, 4), nn.Linear(8, 1)

        def forward(self, x):
            if x.sum() > 1e9:  # data-dependent control flow: torch.fx cannot trace it
                x = x / 2
            hidden = self.body(x).relu()
            return {"logits": self.cls(hidden), "value": self.reg(hidden)}

    model = TwoOutputs()
    x, y, counts = classification_batch()
    with pytest.raises(ValueError, match="x must be given for this model: its forward could not "
                                         "be traced symbolically"):
        set_prior_bias(model, counts, "softmax", output="logits")
    with pytest.raises(ValueError, match=r"output must name one of the model's outputs "
                                         r"\['logits', 'value'\]"):
        set_prior_bias(model, counts, "softmax", output="probs", x=x[:2])
    set_prior_bias(model, counts, "softmax", output="logits", x=x[:2], kernel_scale=0.0)
    check = check_initial_loss(model, x, y, "softmax", output="logits", warn=False)
    assert check.ok and check.layer == "cls" and check.output == "logits"
    assert check.measured == pytest.approx(check.optimum, abs=16 * FLOAT32_EPS)


# ---------------------------------------------------------------------------------------------
# Check 2's own tolerance: sampling + rounding, no relative slack (issue 29). The course's
# multi-class examples: the logit-instead-of-log mistake is flagged once the batch is large
# enough for the mistake's cost to exceed what chance label counts can cost.


def constant_predictor(bias):
    """A torch model whose logits are `bias` for every input (zero kernel)."""
    import torch.nn as nn

    from utils.frameworks import assign

    model = nn.Sequential(nn.Linear(3, len(bias)))
    assign(parameters(model)[0], np.zeros((len(bias), 3)))
    assign(parameters(model)[1], bias)
    return model


@pytest.mark.parametrize("name, counts, repeat", [
    ("Chapter 4's CIFAR profile, all 13,850 labels", CIFAR_COUNTS, 1),
    ("the five-class example [10, 5, 5, 100, 100], ten times", BRIEF_COUNTS, 10),
    ("the four-class test profile [300, 120, 60, 20]", [300, 120, 60, 20], 1),
    ("a 90/10 split", [900, 100], 1),
])
def test_check_2_flags_the_logit_mistake_on_the_course_profiles(name, counts, repeat):
    counts = np.array(counts) * repeat
    y = labels_with_counts(counts)
    x = np.zeros((len(y), 3), dtype="float32")
    p = counts / counts.sum()
    mistaken = check_initial_loss(constant_predictor(logit(p)), x, y, "softmax", warn=False)
    assert not mistaken.ok and "the output bias is not the label prior" in mistaken.message
    # its cost is KL(p || q) with q proportional to p / (1 - p), computed here independently
    q = p / (1 - p) / np.sum(p / (1 - p))
    assert mistaken.predicted - mistaken.optimum == pytest.approx(float(p @ np.log(p / q)),
                                                                  rel=1e-6)
    # the tolerance is the chance allowance for these labels plus rounding, nothing relative
    assert mistaken.prior_tolerance < mistaken.predicted - mistaken.optimum
    assert mistaken.rounding < 1e-9
    correct = check_initial_loss(constant_predictor(np.log(p)), x, y, "softmax", warn=False)
    assert correct.ok, correct


def test_check_2_flags_a_shrunk_prior_that_the_old_relative_tolerance_passed():
    """The issue's example: 0.2 log p on the CIFAR profile costs 0.399 nats, 25 % of H = 1.601,
    which rtol = 0.25 let through; a batch of 2,048 labels allows 0.015."""
    counts = np.array(CIFAR_COUNTS)
    y = np.random.default_rng(0).permutation(labels_with_counts(counts))[:2048]
    x = np.zeros((len(y), 3), dtype="float32")
    result = check_initial_loss(constant_predictor(0.2 * np.log(counts / counts.sum())), x, y,
                                "softmax", warn=False)
    assert not result.ok and result.predicted - result.optimum > 0.3
    assert result.prior_tolerance < 0.02


def test_check_2_tolerance_is_the_sampling_bound_plus_float32_rounding():
    """rounding = (u max|b|)^2 + 8 K eps64 (max|b| + log K + 1), u = float32's unit roundoff:
    for biases below 10 in size it is below 1e-12 and the sampling bound is all that counts."""
    x, y, counts = classification_batch()
    model = torch_classifier()
    set_prior_bias(model, counts, "softmax")
    result = check_initial_loss(model, x, y, "softmax", warn=False)
    bias = np.log(np.array(counts) / sum(counts))
    u = float(np.finfo(np.float32).eps) / 2
    expected = (u * np.abs(bias).max()) ** 2 + 8 * 4 * np.finfo(np.float64).eps * (
        np.abs(bias).max() + np.log(4) + 1)
    assert result.rounding == pytest.approx(expected, rel=1e-6)
    assert result.prior_tolerance == result.sampling + result.rounding
    # the exact prior of these labels, stored in float32, passes with nothing to spare in
    # relative terms: its divergence is rounding-sized
    assert 0 <= result.predicted - result.optimum <= result.rounding
