"""utils.audit: default initializers found by introspection, the distribution matcher, tables."""
from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest

from utils.stats import variance_tolerance
from utils.variance import rounding_tolerance

from utils.audit import (
    FLOAT32_SLACK,
    KERAS_TORCH_PAIRS,
    PROBE_SIZES,
    Candidate,
    default_initializers,
    html_table,
    markdown_table,
    match_distribution,
    side_by_side,
    bound_matches,
    variance_matches,
    variance_standard_error,
)

KEYS = {"framework", "layer", "parameter", "trainable", "initializer", "details", "shape", "std",
        "n"}


@pytest.fixture(scope="module")
def keras_rows():
    return default_initializers("keras")


@pytest.fixture(scope="module")
def torch_rows():
    return default_initializers("torch")


def _lookup(rows):
    return {(r["layer"], r["parameter"]): r for r in rows}


# ------------------------------------------------------------------------------------ Keras

def test_keras_rows_are_complete(keras_rows):
    assert all(set(row) == KEYS and row["framework"] == "keras" for row in keras_rows)
    assert len({row["layer"] for row in keras_rows}) >= 15
    keys = [(row["layer"], row["parameter"]) for row in keras_rows]
    assert len(keys) == len(set(keys))
    # Keras's std is measured on the one probe layer's tensor
    assert all(row["n"] == math.prod(row["shape"]) for row in keras_rows)


def test_keras_defaults_of_the_installed_version(keras_rows):
    # What the installed Keras 3 reports; a release that changes one of these must be noticed.
    table = _lookup(keras_rows)
    expected = {
        ("Dense", "kernel"): "GlorotUniform",
        ("Dense", "bias"): "Zeros",
        ("Conv2D", "kernel"): "GlorotUniform",
        ("Conv2DTranspose", "kernel"): "GlorotUniform",
        ("DepthwiseConv2D", "kernel"): "GlorotUniform",
        ("SeparableConv2D", "pointwise_kernel"): "GlorotUniform",
        ("Embedding", "embeddings"): "RandomUniform",
        ("LSTM", "recurrent_kernel"): "Orthogonal",
        ("GRU", "bias"): "Zeros",
        ("BatchNormalization", "gamma"): "Ones",
        ("BatchNormalization", "beta"): "Zeros",
        ("RMSNormalization", "scale"): "Ones",
        ("MultiHeadAttention", "query/kernel"): "GlorotUniform",
        ("MultiHeadAttention", "attention_output/bias"): "Zeros",
        ("PReLU", "alpha"): "Zeros",
    }
    for key, name in expected.items():
        assert table[key]["initializer"] == name, key
    assert "minval=-0.05, maxval=0.05" in table[("Embedding", "embeddings")]["details"]
    assert "unit_forget_bias=True" in table[("LSTM", "bias")]["details"]


def test_keras_details_match_the_built_values(keras_rows):
    """The configuration read from Keras agrees with what the probe layers actually hold."""
    table = _lookup(keras_rows)
    dense = table[("Dense", "kernel")]
    fan_in, fan_out = PROBE_SIZES["in_features"], PROBE_SIZES["out_features"]
    assert dense["shape"] == (fan_in, fan_out)
    assert f"fan_in={fan_in}, fan_out={fan_out}" in dense["details"]
    # Glorot uniform: variance 2/(fan_in+fan_out); n = 3840 values, 5-sigma bound on the
    # sample variance of a uniform (relative s.e. sqrt(0.8/n)).
    n = fan_in * fan_out
    assert dense["std"] ** 2 == pytest.approx(2 / (fan_in + fan_out), rel=5 * math.sqrt(0.8 / n))
    for key in [("Dense", "bias"), ("BatchNormalization", "gamma"), ("PReLU", "alpha")]:
        assert table[key]["std"] == 0.0
    # LSTM bias: zeros except the forget-gate quarter (ones), so its std is exactly sqrt(3)/4
    assert table[("LSTM", "bias")]["std"] == pytest.approx(math.sqrt(3) / 4, rel=1e-6)


def test_keras_fans_reported_are_the_ones_keras_used(keras_rows):
    """Every variance-scaling row's reported fans predict the variance its probe tensor holds.

    This is a measurement, independent of how the audit reads the fans: a report of the
    positional (convolution) rule where the installed Keras used an einsum's axes (or the
    reverse) predicts a variance 10 times off for the attention kernels.
    """
    from utils.stats import KURTOSIS

    checked = 0
    for row in keras_rows:
        fans = re.search(r"fan_in=(\d+), fan_out=(\d+)", row["details"])
        config = dict(re.findall(r"(scale|mode|distribution)=([^,;]+)", row["details"]))
        if fans is None:
            continue
        fan_in, fan_out = map(int, fans.groups())
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        variance = float(config["scale"]) / fan[config["mode"]]
        kurtosis = {"uniform": KURTOSIS["uniform"], "truncated_normal":
                    KURTOSIS["truncated_normal"], "untruncated_normal": KURTOSIS["normal"]}
        n = row["n"]
        sample_variance = row["std"] ** 2 * n / (n - 1)  # the row's std has divisor n
        # 5 standard errors of a sample variance; the smallest probe (54 values) allows 62 %
        tolerance = 5 * variance_standard_error(variance, n, kurtosis[config["distribution"]])
        assert abs(sample_variance - variance) <= tolerance, (row["layer"], row["parameter"])
        checked += 1
    # Dense, EinsumDense, 6 convolutions, depthwise, 2 separable, 3 recurrent, 4 attention
    assert checked >= 18


def test_keras_attention_fans_by_version(keras_rows):
    """Keras 3.15 (pull request 22789) gave EinsumDense kernels the fans of the einsum's axes;
    before, they had the positional rule's. Chapter 1 states both; this is its table."""
    import keras

    version = tuple(int(part) for part in keras.__version__.split(".")[:2])
    table = _lookup(keras_rows)
    query = table[("MultiHeadAttention", "query/kernel")]
    output = table[("MultiHeadAttention", "attention_output/kernel")]
    assert query["shape"] == (64, 4, 16) and output["shape"] == (4, 16, 64)
    if version >= (3, 15):  # width 64 in, 4 heads x 16 out (and back)
        expected = {"query": (64, 64), "output": (64, 64)}
    else:  # receptive field = all axes but the last two
        expected = {"query": (4 * 64, 16 * 64), "output": (16 * 4, 64 * 4)}
    for name, row in [("query", query), ("output", output)]:
        fan_in, fan_out = expected[name]
        assert f"fan_in={fan_in}, fan_out={fan_out}" in row["details"], (name, row["details"])


def test_keras_audit_is_deterministic_and_leaves_random_alone():
    random.seed(42)
    before = random.getstate()
    first = default_initializers("keras", seed=3)
    assert random.getstate() == before
    assert default_initializers("keras", seed=3) == first


# ------------------------------------------------------------------------------------ torch

def test_torch_rows_are_complete(torch_rows):
    assert all(set(row) == KEYS and row["framework"] == "torch" for row in torch_rows)
    assert len({row["layer"] for row in torch_rows}) >= 15
    assert "unrecognised" not in {row["initializer"] for row in torch_rows}


def test_torch_defaults_measured(torch_rows):
    table = _lookup(torch_rows)
    expected = {
        ("Linear", "weight"): "uniform(±1/sqrt(fan_in))",
        ("Linear", "bias"): "uniform(±1/sqrt(fan_in))",
        ("Conv2d", "weight"): "uniform(±1/sqrt(fan_in))",
        ("ConvTranspose3d", "bias"): "uniform(±1/sqrt(fan_in))",
        ("Bilinear", "weight"): "uniform(±1/sqrt(in1_features))",
        ("Embedding", "weight"): "normal(0, 1)",
        ("LSTM", "weight_ih_l0"): "uniform(±1/sqrt(hidden_size))",
        ("GRUCell", "bias_hh"): "uniform(±1/sqrt(hidden_size))",
        ("BatchNorm2d", "weight"): "ones",
        ("LayerNorm", "bias"): "zeros",
        ("RMSNorm", "weight"): "ones",
        ("MultiheadAttention", "in_proj_weight"): "uniform(±sqrt(6/(fan_in+fan_out)))",
        ("MultiheadAttention", "k_proj_weight"): "uniform(±sqrt(6/(fan_in+fan_out)))",
        ("MultiheadAttention", "out_proj.weight"): "uniform(±1/sqrt(fan_in))",
        ("MultiheadAttention", "out_proj.bias"): "zeros",
        ("MultiheadAttention", "bias_k"): "normal(0, sqrt(2/(fan_in+fan_out)))",
        ("PReLU", "weight"): "constant(0.25)",
    }
    for key, name in expected.items():
        assert table[key]["initializer"] == name, key


def test_torch_audit_agrees_with_the_written_out_defaults(torch_rows):
    """Two independent routes: the audit measures torch; torch_default_init_ transcribes it.
    A module re-drawn with torch_default_init_ must be classified the same way."""
    import torch.nn as nn

    from utils.audit import _torch_candidates
    from utils.initializers import torch_default_init_

    table = _lookup(torch_rows)
    module = nn.Linear(PROBE_SIZES["in_features"], 600)
    torch_default_init_(module)
    shapes = {name: tuple(p.shape) for name, p in module.named_parameters()}
    sample = module.weight.detach().double().numpy().ravel()
    matches = match_distribution(sample, _torch_candidates(module, "weight", shapes["weight"], shapes))
    assert matches[0] == table[("Linear", "weight")]["initializer"]


def test_torch_audit_is_deterministic_and_leaves_the_generator_alone():
    import torch

    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    first = default_initializers("torch", seed=1, min_samples=500)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert default_initializers("torch", seed=1, min_samples=500) == first


def test_non_trainable_state_is_audited_and_marked(keras_rows, torch_rows):
    # Keras: BatchNormalization's moving statistics, and no other non-trainable variable
    keras_state = {(r["layer"], r["parameter"]): r["initializer"] for r in keras_rows
                   if not r["trainable"]}
    assert keras_state == {("BatchNormalization", "moving_mean"): "Zeros",
                           ("BatchNormalization", "moving_variance"): "Ones"}
    # torch: the running statistics of every BatchNorm (float buffers), not the integer counter
    torch_state = {(r["layer"], r["parameter"]): r["initializer"] for r in torch_rows
                   if not r["trainable"]}
    for rank in "123":
        assert torch_state[(f"BatchNorm{rank}d", "running_mean")] == "zeros"
        assert torch_state[(f"BatchNorm{rank}d", "running_var")] == "ones"
    assert not any(name == "num_batches_tracked" for _, name in torch_state)
    assert all(r["trainable"] for r in torch_rows if r["layer"] in ("Linear", "LayerNorm"))


def test_torch_pooled_samples_reach_min_samples(torch_rows):
    for row in torch_rows:
        assert row["n"] >= 20_000, row
        assert f"n={row['n']})" in row["details"], row
        assert row["n"] % math.prod(row["shape"]) == 0, row  # whole constructions pooled


# ------------------------------------------------------------------------ match_distribution

def test_match_distribution_tells_families_and_scales_apart():
    rng = np.random.default_rng(0)
    n = 20_000
    bound = 0.2
    uniform = rng.uniform(-bound, bound, n)
    normal = rng.normal(0, bound / math.sqrt(3), n)  # same variance as the uniform
    candidates = [
        Candidate("U(b)", "uniform", bound),
        Candidate("U(1.03 b)", "uniform", 1.03 * bound),
        Candidate("U(0.97 b)", "uniform", 0.97 * bound),
        Candidate("N(same variance)", "normal", bound / math.sqrt(3)),
        Candidate("N(1.05 x)", "normal", 1.05 * bound / math.sqrt(3)),
    ]
    assert match_distribution(uniform, candidates) == ["U(b)"]
    assert match_distribution(normal, candidates) == ["N(same variance)"]


def test_match_distribution_false_rejection_rate_is_about_alpha():
    # At alpha = 0.01 each of the three tests wrongly rejects a true candidate with probability
    # <= 0.01, so at most ~3 % of 300 trials; Binomial(300, 0.03) exceeds 25 with probability
    # below 1e-6.
    rng = np.random.default_rng(1)
    rejected = 0
    for trial in range(300):
        if trial % 2:
            sample, candidate = rng.uniform(-1, 1, 1000), Candidate("u", "uniform", 1.0)
        else:
            sample, candidate = rng.normal(0, 2, 1000), Candidate("n", "normal", 2.0)
        rejected += match_distribution(sample, [candidate], alpha=0.01) == []
    assert rejected <= 25


@pytest.mark.parametrize(
    ("sample", "candidates", "alpha", "message"),
    [
        (np.zeros(50), [], 1e-6, "sample must hold at least 100 values, got 50"),
        (np.r_[np.zeros(200), np.nan], [], 1e-6, "sample must hold finite values only"),
        (np.zeros(200), [], 0.0, r"alpha must be in \(0, 0.5\), got 0.0"),
        (np.linspace(-1, 1, 200), [("u", "uniform", 1.0)], 1e-6,
         "candidates must be Candidate objects"),
    ],
)
def test_match_distribution_errors(sample, candidates, alpha, message):
    with pytest.raises(ValueError, match=message):
        match_distribution(sample, candidates, alpha)


def test_candidate_validation():
    candidate = Candidate("x", "normal", 2)
    assert (candidate.label, candidate.family, candidate.scale) == ("x", "normal", 2.0)
    with pytest.raises(ValueError, match="family must be 'uniform' or 'normal', got 'laplace'"):
        Candidate("x", "laplace", 1.0)
    for scale in (0, -1.0, math.inf, "1"):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            Candidate("x", "uniform", scale)


# --------------------------------------------------------------------- default_initializers

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"framework": "jax"}, "framework must be 'keras' or 'torch', got 'jax'"),
        ({"framework": "torch", "seed": -1}, r"seed must be an integer in \[0, 2\*\*32\)"),
        ({"framework": "torch", "seed": 1.5}, "seed must be an integer"),
        ({"framework": "torch", "min_samples": 10}, "min_samples must be an integer >= 100, got 10"),
        ({"framework": "torch", "alpha": 0.7}, r"alpha must be in \(0, 0.5\), got 0.7"),
    ],
)
def test_default_initializers_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        default_initializers(**kwargs)


# ------------------------------------------------------------------------------------ tables

def test_side_by_side_pairs_and_leftovers(keras_rows, torch_rows):
    table = side_by_side(keras_rows, torch_rows)
    first = table[0]
    assert first == {"keras_layer": "Dense", "keras_parameter": "kernel",
                     "keras_initializer": "GlorotUniform", "keras_trainable": True,
                     "torch_layer": "Linear", "torch_parameter": "weight",
                     "torch_initializer": "uniform(±1/sqrt(fan_in))", "torch_trainable": True}
    # every row of both frameworks appears at least once
    keras_seen = {(r["keras_layer"], r["keras_parameter"]) for r in table if r["keras_layer"]}
    torch_seen = {(r["torch_layer"], r["torch_parameter"]) for r in table if r["torch_layer"]}
    assert keras_seen == {(r["layer"], r["parameter"]) for r in keras_rows}
    assert torch_seen == {(r["layer"], r["parameter"]) for r in torch_rows}
    # an unpaired layer keeps an empty other side
    einsum = [r for r in table if r["keras_layer"] == "EinsumDense"]
    assert einsum and all(r["torch_layer"] == "" for r in einsum)
    assert all(pair[0] and pair[1] for pair in KERAS_TORCH_PAIRS)


def test_side_by_side_with_custom_pairs_and_missing_layers():
    keras = [{"framework": "keras", "layer": "A", "parameter": "k", "initializer": "X"}]
    torch = [{"framework": "torch", "layer": "B", "parameter": "w", "initializer": "Y"}]
    pairs = [("A", "B", [("k", "w")]), ("Missing", "Gone", [("k", "w")])]
    assert side_by_side(keras, torch, pairs) == [{
        "keras_layer": "A", "keras_parameter": "k", "keras_initializer": "X",
        "keras_trainable": True, "torch_layer": "B", "torch_parameter": "w",
        "torch_initializer": "Y", "torch_trainable": True}]


def test_side_by_side_pairs_the_batch_norm_running_statistics(keras_rows, torch_rows):
    table = side_by_side(keras_rows, torch_rows)
    pairs = {(r["keras_parameter"], r["torch_parameter"]): r for r in table
             if r["keras_layer"] == "BatchNormalization" and r["torch_layer"] == "BatchNorm2d"}
    for keras_name, torch_name, value in [("moving_mean", "running_mean", "zeros"),
                                          ("moving_variance", "running_var", "ones")]:
        row = pairs[(keras_name, torch_name)]
        assert row["keras_trainable"] is False and row["torch_trainable"] is False
        assert row["keras_initializer"] == value.capitalize()
        assert row["torch_initializer"] == value
    assert pairs[("gamma", "weight")]["keras_trainable"] is True


def test_side_by_side_rejects_swapped_rows():
    keras = [{"framework": "keras", "layer": "A", "parameter": "k", "initializer": "X"}]
    with pytest.raises(ValueError, match=r"torch_rows must be rows from default_initializers\('torch'\)"):
        side_by_side(keras, keras)
    with pytest.raises(ValueError, match="keras_rows must be rows"):
        side_by_side([{"layer": "A"}], [])


def test_markdown_table():
    rows = [{"a": "x|y", "b": 0.123456}, {"a": "z", "b": 2}]
    assert markdown_table(rows, ["a", "b"], ["A", "B"]) == (
        "| A | B |\n|---|---|\n| x\\|y | 0.1235 |\n| z | 2 |"
    )
    with pytest.raises(ValueError, match="columns must name at least one key"):
        markdown_table(rows, [])
    with pytest.raises(ValueError, match=r"headers must have 2 entries \(one per column\), got 1"):
        markdown_table(rows, ["a", "b"], ["A"])
    with pytest.raises(ValueError, match=r"rows must hold every column; a row lacks \['c'\]"):
        markdown_table(rows, ["a", "c"])


def test_variance_standard_error_against_monte_carlo():
    # 4000 sample variances of n = 50 uniforms: their spread must match the formula. The
    # standard deviation of 4000 draws is itself known to ~1.2 % (normal approximation,
    # relative s.e. ~ sqrt(1/(2*4000)) plus the kurtosis of s**2), so 6 % is a safe bound.
    rng = np.random.default_rng(2)
    variances = rng.uniform(-1, 1, size=(4000, 50)).var(axis=1, ddof=1)
    assert variances.std() == pytest.approx(variance_standard_error(1 / 3, 50, 9 / 5), rel=0.06)
    assert variance_standard_error(1.0, 10**6, 3.0) == pytest.approx(math.sqrt(2 / (10**6 - 1)))
    # the same formula as Chapter 2's relative tolerance, in absolute units
    for variance, n, kurtosis in [(0.25, 50, 9 / 5), (3.0, 1000, 3.0), (1.0, 7, 1.0)]:
        assert variance_standard_error(variance, n, kurtosis) == pytest.approx(
            variance * variance_tolerance(n, sigmas=1.0, kurtosis=kurtosis), rel=1e-12)
        # and the textbook form sqrt(kappa/n - (n-3)/(n(n-1)))
        assert variance_standard_error(variance, n, kurtosis) == pytest.approx(
            variance * math.sqrt(kurtosis / n - (n - 3) / (n * (n - 1))), rel=1e-12)
    for kwargs, message in [({"n": 1}, "n must be an integer >= 2"),
                            ({"variance": -1.0}, "variance must be >= 0"),
                            ({"kurtosis": 0.5}, "kurtosis must be >= 1")]:
        arguments = {"variance": 1.0, "n": 10, "kurtosis": 3.0, **kwargs}
        with pytest.raises(ValueError, match=message):
            variance_standard_error(**arguments)


def test_variance_matches():
    rng = np.random.default_rng(3)
    normal = rng.normal(0, 2, 10_000)
    assert variance_matches(normal, 4.0, 3.0)
    # 5 % too large is 3.5 standard errors at n = 10^4 (relative s.e. sqrt(2/n) = 1.4 %): with
    # z = 2 it must be rejected, with z = 5 it need not be.
    assert not variance_matches(normal, 4.0 * 1.05, 3.0, z=2.0)
    assert not variance_matches(normal, 4.0 * 1.2, 3.0)
    with pytest.raises(ValueError, match="sample must hold at least 2 finite values"):
        variance_matches([1.0], 1.0, 3.0)
    with pytest.raises(ValueError, match="z must be positive"):
        variance_matches(normal, 4.0, 3.0, z=0)


def test_bound_matches():
    rng = np.random.default_rng(4)
    sample = rng.uniform(-0.5, 0.5, 5000)
    assert bound_matches(sample, 0.5)
    assert not bound_matches(sample, 0.49)    # values beyond the bound
    assert not bound_matches(sample, 0.51)    # the largest |x| falls far short of the bound
    assert bound_matches(np.float32(sample), 0.5)
    # float32 rounding room: a value just inside FLOAT32_SLACK passes, one outside fails
    edge = np.r_[sample, 0.5 * (1 + FLOAT32_SLACK / 2)]
    assert bound_matches(edge, 0.5)
    assert not bound_matches(np.r_[sample, 0.5 * (1 + 2 * FLOAT32_SLACK)], 0.5)
    assert FLOAT32_SLACK == rounding_tolerance(1.0)  # 8 roundings: 7 counted, and one spare
    assert 7 * 2.0**-24 < FLOAT32_SLACK < 9 * 2.0**-24
    for bound in (0, -1.0, "1"):
        with pytest.raises(ValueError, match="bound must be a positive number"):
            bound_matches(sample, bound)
    with pytest.raises(ValueError, match="sample must hold at least 1 finite value"):
        bound_matches([], 1.0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        bound_matches(sample, 0.5, alpha=1.0)


def test_html_table_escapes_and_validates():
    rows = [{"a": "<b>&", "b": 0.123456}]
    assert html_table(rows, ["a", "b"], ["A", "B"]) == (
        '<table class="table"><thead><tr><th>A</th><th>B</th></tr></thead>'
        "<tbody><tr><td>&lt;b&gt;&amp;</td><td>0.1235</td></tr></tbody></table>"
    )
    with pytest.raises(ValueError, match=r"rows must hold every column"):
        html_table(rows, ["c"])
