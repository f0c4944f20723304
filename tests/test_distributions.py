"""utils.distributions: every initializer mapping checked against tensors the frameworks draw.

Sampling checks use ``check_sample`` at its default strictness (z = 5: bounds, the DKW bound on
the Kolmogorov-Smirnov distance, and for n >= 100 the mean and a scaled chi-square interval for
the variance, each with a false-alarm probability of about 6e-7). Fixed seeds make every test
deterministic; the tolerances are what a fresh seed would need, not tuned to these seeds.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from utils.distributions import (GIVEN_SOURCE, KERAS_SOURCE, KERAS_TRUNCATION_STD_FACTOR,
                                 keras_fans,
                                 MOMENT_TEST_MIN_N, TORCH_DEFAULT_SOURCE, InitDistribution,
                                 check_sample, constant, keras_distribution, normal, orthogonal,
                                 param_distribution, torch_default_distribution,
                                 truncated_normal, uniform, unknown)
from utils.frameworks import parameters
from utils.initializers import torch_default_bound

Z5_ALPHA = math.erfc(5 / math.sqrt(2))


# ---- the distributions themselves ---------------------------------------------------------

CONTINUOUS = [
    uniform(-0.3, 0.5),
    normal(0.1, 0.05),
    truncated_normal(0.0, 0.2, -0.4, 0.4),
    truncated_normal(0.5, 1.0, -1.0, 3.0),
    orthogonal((64, 32), gain=1.5),
    orthogonal((3, 3, 4, 40), gain=1.0),
]


@pytest.mark.parametrize("dist", CONTINUOUS, ids=lambda d: d.short)
def test_moments_match_numerical_integration(dist):
    lo, hi = dist.bounds if dist.bounds else (dist.mean - 12 * dist.std, dist.mean + 12 * dist.std)
    mass = integrate.quad(lambda x: dist.pdf(x), lo, hi, limit=200)[0]
    mean = integrate.quad(lambda x: x * dist.pdf(x), lo, hi, limit=200)[0]
    var = integrate.quad(lambda x: (x - mean) ** 2 * dist.pdf(x), lo, hi, limit=200)[0]
    m4 = integrate.quad(lambda x: (x - mean) ** 4 * dist.pdf(x), lo, hi, limit=200)[0]
    # quadrature of smooth densities: relative error far below 1e-6
    assert mass == pytest.approx(1.0, abs=1e-6)
    assert mean == pytest.approx(dist.mean, abs=1e-6 * max(1.0, dist.std))
    assert math.sqrt(var) == pytest.approx(dist.std, rel=1e-6)
    assert m4 / var ** 2 == pytest.approx(dist.kurtosis, rel=1e-5)


@pytest.mark.parametrize("dist", CONTINUOUS, ids=lambda d: d.short)
def test_cdf_is_the_integral_of_the_pdf(dist):
    lo, hi = dist.bounds if dist.bounds else (dist.mean - 12 * dist.std, dist.mean + 12 * dist.std)
    for q in (0.1, 0.5, 0.9):
        x = lo + q * (hi - lo)
        assert dist.cdf(x) == pytest.approx(integrate.quad(dist.pdf, lo, x, limit=200)[0],
                                            abs=1e-7)
    if dist.bounds:
        assert dist.cdf(dist.bounds[0]) == pytest.approx(0.0, abs=1e-12)
        assert dist.cdf(dist.bounds[1]) == pytest.approx(1.0, abs=1e-12)
        assert dist.pdf(dist.bounds[1] + 1e-3) == 0.0


def test_orthogonal_entry_law_against_independent_draws():
    """Entry [0, 0] of independent Haar matrices is an iid sample of the stated marginal."""
    import torch

    shape, gain, n_matrices = (16, 8), 2.0, 3000
    generator = torch.Generator().manual_seed(0)
    entries = np.empty(n_matrices)
    for i in range(n_matrices):
        matrix = torch.empty(shape)
        torch.nn.init.orthogonal_(matrix, gain=gain, generator=generator)
        entries[i] = matrix[0, 0].item()
    dist = orthogonal(shape, gain)
    assert dist.std == pytest.approx(gain / math.sqrt(16))
    # iid values: the DKW bound applies (check_sample skips it for orthogonal tensors, whose
    # entries are dependent, so it is computed here)
    ks = stats.kstest(entries, dist.cdf).statistic
    assert ks <= math.sqrt(math.log(2 / Z5_ALPHA) / (2 * n_matrices))
    as_normal = normal(0.0, dist.std)  # power: the Beta law is not a normal at n = 16
    assert stats.kstest(entries, as_normal.cdf).statistic < ks + 0.05


def test_orthogonal_entry_law_holds_for_keras_draws():
    """The same marginal for Keras's Orthogonal (a 4 x 3 kernel: Beta(3/2, 3/2) entries).

    1,000 seeded draws take about a second; the DKW bound is the five-sigma one.
    """
    import keras

    shape, n_matrices = (4, 3), 1000
    entries = np.array([keras.initializers.Orthogonal(seed=seed)(shape).numpy()[0, 0]
                        for seed in range(n_matrices)], dtype=np.float64)
    ks = stats.kstest(entries, orthogonal(shape).cdf).statistic
    assert ks <= math.sqrt(math.log(2 / Z5_ALPHA) / (2 * n_matrices))


def test_keras_truncation_constant_is_the_course_one():
    from utils.variance import TRUNCATED_NORMAL_STD

    assert KERAS_TRUNCATION_STD_FACTOR is TRUNCATED_NORMAL_STD
    he = keras_distribution("he_normal", (300, 200))
    assert he.kurtosis == pytest.approx(stats.truncnorm.stats(-2, 2, moments="k") + 3, rel=1e-10)


def test_orthogonal_layouts_and_errors():
    keras_view = orthogonal((3, 3, 16, 8))
    torch_view = orthogonal((8, 16, 3, 3), layout="torch")
    assert keras_view.matrix_shape == (144, 8) and torch_view.matrix_shape == (8, 144)
    assert keras_view.dim == torch_view.dim == 144 and keras_view.std == torch_view.std
    with pytest.raises(ValueError, match="layout must be 'keras' or 'torch'"):
        orthogonal((4, 4), layout="jax")
    with pytest.raises(ValueError, match="gain must be non-zero"):
        orthogonal((4, 4), gain=0.0)
    assert keras_distribution("orthogonal", (4, 4)).matrix_shape == (4, 4)
    import keras

    assert keras_distribution(keras.initializers.Orthogonal(gain=0.0), (4, 4)).is_constant


def _torch_orthogonal(shape, gain, seed):
    import torch

    weight = torch.empty(shape)
    torch.nn.init.orthogonal_(weight, gain=gain, generator=torch.Generator().manual_seed(seed))
    return weight.numpy()


ORTHOGONAL_CASES = [((2, 2), 3.0), ((3, 3), 0.5), ((5, 40), 1.0), ((40, 5), 2.0),
                    ((3, 3, 16, 8), 1.0), ((2, 7, 7), 0.5), ((256, 256), 1.0), ((64, 700), 1.3)]


@pytest.mark.parametrize("shape, gain", ORTHOGONAL_CASES)
def test_check_sample_confirms_orthogonality_in_both_layouts(shape, gain):
    """Tolerance 4 n eps: both frameworks measure at most about 1.6 n eps (2 x 2, gain 3)."""
    import keras

    eps = np.finfo(np.float32).eps
    for seed in range(3):
        drawn = keras.initializers.Orthogonal(gain=gain, seed=seed)(shape).numpy()
        check = check_sample(drawn, orthogonal(shape, gain))
        assert check.ok, (shape, gain, check)
        assert check.orthogonality_error <= check.orthogonality_tolerance
        assert check.orthogonality_tolerance == 4 * max(orthogonal(shape).matrix_shape) * eps
        weight = _torch_orthogonal(shape, gain, seed)
        assert check_sample(weight, orthogonal(shape, gain, layout="torch")).ok, (shape, gain)


def test_check_sample_rejects_matrices_that_are_not_orthogonal():
    """Independent entries with the orthogonal std pass the moment tests but not the Gram test."""
    import keras

    rng = np.random.default_rng(4)
    n = 64
    dist = orthogonal((n, n))
    signs = rng.choice([-1.0, 1.0], size=(n, n)) / math.sqrt(n)  # every entry exactly ±1/8
    gaussian = rng.normal(0.0, 1 / math.sqrt(n), size=(n, n))
    for fake in (signs, gaussian):
        check = check_sample(fake.astype(np.float32), dist)
        assert check.failures == ("orthogonality",), check
        # independent entries: off-diagonal Gram entries of order 1/sqrt(n), not float32 ulps
        assert check.orthogonality_error > 0.1
    drawn = keras.initializers.Orthogonal(seed=1)((n, n)).numpy()
    assert "orthogonality" in check_sample(drawn, orthogonal((n, n), gain=1.01)).failures
    nudged = drawn.copy()
    nudged[0, 0] += 1e-3  # one entry off by 1e-3: far beyond rounding
    assert check_sample(nudged, dist).failures == ("orthogonality",)
    # a subsample, or values without the tensor's size, cannot be reshaped: the test is skipped
    partial = check_sample(drawn.ravel()[:1000], dist)
    assert partial.ok and partial.orthogonality_error is None
    subsample = check_sample(drawn.ravel(), dist, population=n * n)
    assert subsample.orthogonality_error is None


def test_constant_and_unknown_behave():
    c = constant(0.4)
    assert c.is_constant and c.value == 0.4 and c.std == 0.0 and c.bounds == (0.4, 0.4)
    assert np.array_equal(c.cdf([0.3, 0.4, 0.5]), [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="pdf is not defined for a constant"):
        c.pdf(0.4)
    u = unknown("Identity")
    assert not u.is_known and math.isnan(u.std)
    with pytest.raises(ValueError, match="unknown"):
        u.cdf(0.0)
    with pytest.raises(ValueError, match="value is defined for a constant"):
        uniform(-1, 1).value
    assert str(u) == "unknown: Identity"


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match="low must be < high"):
        uniform(1.0, 1.0)
    with pytest.raises(ValueError, match="std must be > 0"):
        normal(0.0, 0.0)
    with pytest.raises(ValueError, match="stddev must be > 0"):
        truncated_normal(0.0, -1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="shape must have at least 2 dimensions"):
        orthogonal((5,))
    with pytest.raises(ValueError, match="value must be a real number"):
        constant("a")
    with pytest.raises(ValueError, match="kind must be one of"):
        InitDistribution("laplace", "x")


# ---- check_sample --------------------------------------------------------------------------

def test_check_sample_accepts_true_draws_and_rejects_wrong_ones():
    rng = np.random.default_rng(1)
    draws = rng.uniform(-0.2, 0.2, size=100_000)
    assert check_sample(draws, uniform(-0.2, 0.2)).ok
    # same std, different shape: only the KS test can see it
    same_std_normal = normal(0.0, 0.4 / math.sqrt(12))
    check = check_sample(draws, same_std_normal)
    assert check.failures == ("shape",)
    # a 10 % wider uniform: bounds are fine, the std and the shape are not
    assert set(check_sample(draws, uniform(-0.22, 0.22)).failures) == {"std", "shape"}
    assert "bounds" in check_sample(draws, uniform(-0.19, 0.19)).failures
    assert "mean" in check_sample(draws + 0.01, uniform(-0.2, 0.2)).failures
    assert check_sample(np.full(7, 0.4, np.float32), constant(0.4)).ok
    assert check_sample(np.array([0.4, 0.41]), constant(0.4)).failures == ("constant",)


def test_check_sample_false_alarm_rate_is_calibrated():
    """At z = 3 (alpha = 0.0027 per test, three tests) the union rate is at most 3 alpha.

    2,000 samples of 200 uniform values: the expected number of false alarms is at most
    3 * 0.0027 * 2000 = 16.2; allow 5 Poisson standard deviations above it.
    """
    rng = np.random.default_rng(2)
    dist = uniform(-1.0, 1.0)
    alarms = sum(not check_sample(rng.uniform(-1, 1, 200), dist, z=3.0).ok for _ in range(2000))
    expected = 3 * math.erfc(3 / math.sqrt(2)) * 2000
    assert alarms <= expected + 5 * math.sqrt(expected)


def test_check_sample_small_samples_skip_moment_tests():
    check = check_sample(np.linspace(-0.1, 0.1, MOMENT_TEST_MIN_N - 1), uniform(-0.1, 0.1))
    assert check.mean_tolerance is None and check.std_interval is None
    assert check.ks_critical is not None and check.ok


def test_check_sample_rounding_follows_the_storage_dtype():
    bound = 1 / math.sqrt(300)  # not representable: storage may round past it
    values = np.random.default_rng(3).uniform(-bound, bound, 20_000).astype(np.float16)
    assert values.max() > bound * (1 + 4 * np.finfo(np.float32).eps)  # some did
    assert check_sample(values, uniform(-bound, bound)).ok
    as_float32 = values.astype(np.float32)  # same numbers, but claimed to be float32 data
    assert "bounds" in check_sample(as_float32, uniform(-bound, bound)).failures
    assert check_sample(as_float32, uniform(-bound, bound), eps=2.0 ** -10).ok
    with pytest.raises(ValueError, match="eps must be > 0"):
        check_sample(values, uniform(-bound, bound), eps=0.0)


def test_check_sample_errors():
    with pytest.raises(ValueError, match="values must not be empty"):
        check_sample([], uniform(-1, 1))
    with pytest.raises(ValueError, match="values must be finite"):
        check_sample([0.0, np.nan], uniform(-1, 1))
    with pytest.raises(ValueError, match="distribution is unknown"):
        check_sample([0.0], unknown("custom"))
    with pytest.raises(ValueError, match="z must be > 0"):
        check_sample([0.0], uniform(-1, 1), z=0)
    with pytest.raises(ValueError, match="distribution must be an InitDistribution"):
        check_sample([0.0], "uniform")


# ---- Keras mappings -------------------------------------------------------------------------

def _keras_draw(initializer, shape):
    return np.asarray(initializer(shape)).astype(np.float64)


KERAS_CASES = [
    ("glorot_uniform", (300, 500)),
    ("glorot_normal", (300, 500)),
    ("he_uniform", (400, 300)),
    ("he_normal", (400, 300)),
    ("lecun_uniform", (3, 3, 64, 32)),
    ("lecun_normal", (3, 3, 64, 32)),
    ("random_normal", (200, 600)),
    ("random_uniform", (200, 600)),
    ("truncated_normal", (200, 600)),
    ("zeros", (50, 7)),
    ("ones", (50, 7)),
    ("orthogonal", (300, 200)),
    ("orthogonal", (5, 5, 8, 300)),
]


@pytest.mark.parametrize("name, shape", KERAS_CASES)
def test_keras_named_initializers_match_their_draws(name, shape):
    import keras

    initializer = keras.initializers.get({"class_name": name, "config": {"seed": 3}}
                                         if name not in ("zeros", "ones") else name)
    dist = keras_distribution(initializer, shape)
    assert dist.source == KERAS_SOURCE and not dist.assumed
    check = check_sample(_keras_draw(initializer, shape), dist)
    assert check.ok, (name, check)


@pytest.mark.parametrize("initializer_args", [
    ("RandomNormal", {"mean": 0.3, "stddev": 0.02}),
    ("RandomUniform", {"minval": -0.01, "maxval": 0.03}),
    ("TruncatedNormal", {"mean": -0.1, "stddev": 0.5}),
    ("Constant", {"value": 0.4}),
    ("Orthogonal", {"gain": 3.0}),
    ("VarianceScaling", {"scale": 0.5, "mode": "fan_out", "distribution": "untruncated_normal"}),
    ("VarianceScaling", {"scale": 3.0, "mode": "fan_avg", "distribution": "uniform"}),
    ("VarianceScaling", {"scale": 2.0, "mode": "fan_in", "distribution": "truncated_normal"}),
])
def test_keras_initializer_instances_match_their_draws(initializer_args):
    import keras

    class_name, kwargs = initializer_args
    cls = getattr(keras.initializers, class_name)
    seeded = {"seed": 5} if class_name not in ("Constant",) else {}
    initializer = cls(**kwargs, **seeded)
    shape = (250, 400)
    check = check_sample(_keras_draw(initializer, shape), keras_distribution(initializer, shape))
    assert check.ok, (initializer_args, check)


def test_keras_formulas_from_the_brief():
    import keras

    fan_in, fan_out = 300, 500
    glorot = keras_distribution("glorot_uniform", (fan_in, fan_out))
    assert glorot.high == pytest.approx(math.sqrt(6 / (fan_in + fan_out)))
    he = keras_distribution("he_normal", (fan_in, fan_out))
    assert he.std == pytest.approx(math.sqrt(2 / fan_in), rel=1e-9)  # variance-corrected
    assert he.scale == pytest.approx(math.sqrt(2 / fan_in) / KERAS_TRUNCATION_STD_FACTOR)
    # brief §6: a standalone TruncatedNormal(stddev=s) has std ≈ 0.8796 s (no correction)
    plain = keras_distribution(keras.initializers.TruncatedNormal(stddev=0.1), (10, 10))
    assert plain.std == pytest.approx(0.1 * KERAS_TRUNCATION_STD_FACTOR, rel=1e-9)
    assert plain.bounds == pytest.approx((-0.2, 0.2))
    # the hard-coded Keras factor is the std of a standard normal truncated at ±2
    assert stats.truncnorm.std(-2, 2) == pytest.approx(KERAS_TRUNCATION_STD_FACTOR, rel=1e-12)
    conv = keras_distribution("he_uniform", (3, 3, 16, 8))
    assert conv.fan_in == 3 * 3 * 16 and conv.fan_out == 3 * 3 * 8


def test_keras_unmapped_initializers_are_unknown():
    import keras

    def custom(shape, dtype=None):
        return keras.ops.zeros(shape)

    assert keras_distribution(custom, (3, 3)).kind == "unknown"
    assert keras_distribution("identity", (3, 3)).kind == "unknown"
    assert keras_distribution("orthogonal", (7,)).kind == "unknown"
    with pytest.raises(ValueError, match="is not a Keras initializer"):
        keras_distribution("no_such_initializer", (3, 3))


def _keras_layer_params():
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(11)
    inputs = keras.Input((6, 6, 8))
    x = layers.Conv2D(64, 3, name="conv")(inputs)
    x = layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = layers.SeparableConv2D(64, 1, name="separable", bias_initializer="random_uniform")(x)
    x = layers.BatchNormalization(name="bn", gamma_initializer="random_normal")(x)
    x = layers.Reshape((4, 64))(x)  # 2 x 2 positions of 64 channels
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.SimpleRNN(128, return_sequences=True, name="rnn")(x)
    x = layers.GRU(128, return_sequences=True, name="gru")(x)
    x = layers.LSTM(128, name="lstm")(x)
    x = layers.PReLU(name="prelu", alpha_initializer=keras.initializers.Constant(0.25))(x)
    outputs = layers.Dense(300, name="dense", kernel_initializer="lecun_normal",
                           bias_initializer=keras.initializers.RandomNormal(stddev=0.1))(x)
    model = keras.Model(inputs, outputs)
    tokens = keras.Sequential([keras.Input((5,), dtype="int32"),
                               layers.Embedding(1000, 200, name="embedding")])
    return parameters(model, include_non_trainable=True) + parameters(tokens)


def test_keras_layers_map_every_weight_to_its_initializer():
    infos = _keras_layer_params()
    seen = {}
    for info in infos:
        dist = param_distribution(info)
        assert dist is not None, info.label
        seen[info.label] = dist.kind
        if dist.is_known:
            check = check_sample(info.numpy(), dist)
            assert check.ok, (info.label, dist, check)
    expected = {
        "conv/kernel": "uniform", "conv/bias": "constant",
        "depthwise/kernel": "uniform",
        "separable/depthwise_kernel": "uniform", "separable/pointwise_kernel": "uniform",
        "separable/bias": "uniform",
        "bn/gamma": "normal", "bn/beta": "constant",
        "bn/moving_mean": "constant", "bn/moving_variance": "constant",
        "ln/gamma": "constant",
        "rnn/simple_rnn_cell/recurrent_kernel": "orthogonal",
        "gru/gru_cell/recurrent_kernel": "orthogonal",
        "lstm/lstm_cell/kernel": "uniform", "lstm/lstm_cell/bias": "unknown",
        "prelu/alpha": "constant",
        "dense/kernel": "truncated_normal", "dense/bias": "normal",
        "embedding/embeddings": "uniform",
    }
    for label, kind in expected.items():
        assert seen[label] == kind, label


def test_keras_fans_rules_and_errors():
    from utils.initializers import compute_fans

    # no axes: the positional rule (receptive field times the last two axes)
    for shape in [(784, 256), (3, 3, 16, 32), (64, 4, 16), (5,)]:
        assert keras_fans(shape) == compute_fans(shape, "keras")
    assert keras_fans((3, 3, 16, 32)) == (3 * 3 * 16, 3 * 3 * 32)
    # explicit axes (an EinsumDense kernel since Keras 3.15): products along those axes
    assert keras_fans((64, 4, 16), [0], [1, 2]) == (64, 64)
    assert keras_fans((4, 16, 64), [0, 1], [2]) == (64, 64)
    assert keras_fans((64, 4, 16), [0], None) == compute_fans((64, 4, 16), "keras")
    with pytest.raises(ValueError, match="input_axes"):
        keras_fans((64, 4, 16), [3], [1])
    with pytest.raises(ValueError, match="shape"):
        keras_fans((64, -1))
    with pytest.raises(ValueError, match="shape"):
        keras_fans("ab")


def test_keras_fans_are_what_the_installed_keras_uses():
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)
    x = keras.ops.ones((1, 3, 64))
    layer(x, x)
    query = next(p for p in parameters(layer) if p.label == "query/kernel")
    # Keras >= 3.15 gives the EinsumDense kernel (width, heads, head size) its equation's axes
    version = tuple(int(part) for part in keras.__version__.split(".")[:2])
    axes = ([0], [1, 2]) if version >= (3, 15) else (None, None)
    fan_in, fan_out = keras_fans(query.shape, *axes)
    # the sample's variance is 2/(fan_in+fan_out) to 5 standard errors (uniform kurtosis 9/5)
    n = query.size
    relative = query.numpy().astype(np.float64).var(ddof=1) / (2 / (fan_in + fan_out)) - 1
    assert abs(relative) <= 5 * math.sqrt(2 / (n - 1) - 1.2 / n)


def test_keras_attention_kernels_use_keras_fans():
    import keras

    attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=64, name="mha")
    query = keras.ops.ones((1, 3, 128))
    attention(query, query)  # builds the layer; a built layer is a valid `parameters` root
    kernels = [p for p in parameters(attention) if p.name == "kernel"]
    assert [p.label for p in kernels] == ["query/kernel", "key/kernel", "value/kernel",
                                          "attention_output/kernel"]
    for info in kernels:
        dist = param_distribution(info)
        assert dist.kind == "uniform"
        assert check_sample(info.numpy(), dist).ok, info.label


# ---- torch mappings --------------------------------------------------------------------------

def _torch_layers():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    return [
        nn.Linear(500, 400),
        nn.Conv1d(40, 300, 5),
        nn.Conv2d(16, 256, 3),
        nn.Conv3d(4, 128, 3),
        nn.ConvTranspose2d(64, 32, 4),
        nn.Bilinear(20, 30, 300),
        nn.Embedding(2000, 64),
        nn.LSTM(64, 128),
        nn.GRU(64, 128),
        nn.RNN(64, 128),
        nn.LSTMCell(64, 128),
        nn.BatchNorm2d(128),
        nn.LayerNorm(128),
        nn.GroupNorm(8, 128),
        nn.RMSNorm(128),
        nn.PReLU(128, init=0.1),
        nn.MultiheadAttention(128, 4, add_bias_kv=True),
    ]


@pytest.mark.parametrize("index", range(17))
def test_torch_constructor_defaults_match_fresh_layers(index):
    module = _torch_layers()[index]
    infos = parameters(module, include_non_trainable=True)
    assert infos
    for info in infos:
        dist = param_distribution(info)
        assert dist is not None, (type(module).__name__, info.label)
        assert dist.source == TORCH_DEFAULT_SOURCE and dist.assumed
        check = check_sample(info.numpy(), dist)
        assert check.ok, (type(module).__name__, info.label, dist, check)


def test_torch_formulas_from_the_brief():
    import torch.nn as nn

    layer = nn.Linear(300, 20)
    weight, bias = (param_distribution(p) for p in parameters(layer))
    assert weight.bounds == pytest.approx((-1 / math.sqrt(300), 1 / math.sqrt(300)))
    # The same bound, computed two ways as torch computes them: the weight's as
    # sqrt(3) * sqrt(2 / (1 + 5)) / sqrt(fan_in) (torch_default_bound), the bias's as
    # 1 / sqrt(fan_in). Each of those float64 operations rounds by at most half an ulp
    # (relative 1.1e-16), so the two agree to within 6 roundings: relative 1e-15.
    assert bias.bounds == pytest.approx(weight.bounds, rel=1e-15, abs=0)
    assert weight.high == torch_default_bound(300)
    # brief §6: variance 1/(3 fan_in), a third of LeCun's 1/fan_in and a sixth of He's 2/fan_in
    assert weight.variance == pytest.approx(1 / (3 * 300))
    assert weight.variance * 6 == pytest.approx(2 / 300)
    conv = nn.Conv2d(16, 8, 3)
    assert param_distribution(parameters(conv)[0]).fan_in == 16 * 9
    embedding = nn.Embedding(10, 4, padding_idx=0)
    assert "padding_idx" in param_distribution(parameters(embedding)[0]).name
    prelu = nn.PReLU()
    assert param_distribution(parameters(prelu)[0]).value == 0.25


def test_torch_attention_output_bias_is_zero():
    import torch.nn as nn

    attention = nn.MultiheadAttention(32, 4)
    labels = {p.label: param_distribution(p) for p in parameters(attention)}
    assert labels["out_proj/bias"].is_constant and labels["out_proj/bias"].value == 0.0
    assert labels["(root)/in_proj_bias"].is_constant
    assert labels["(root)/in_proj_weight"].name == "xavier_uniform_"


def test_torch_reinitialised_tensor_is_flagged():
    import torch
    import torch.nn as nn

    layer = nn.Linear(256, 256)
    with torch.no_grad():
        nn.init.normal_(layer.weight, std=0.2, generator=torch.Generator().manual_seed(0))
    weight = parameters(layer)[0]
    assert not check_sample(weight.numpy(), param_distribution(weight)).ok


def test_torch_unknown_module_types_return_none():
    import torch
    import torch.nn as nn

    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.factor = nn.Parameter(torch.zeros(3))

    assert param_distribution(parameters(Scale())[0]) is None
    assert torch_default_distribution(nn.Linear(3, 2), "not_a_param", (2,)) is None


def test_param_distribution_rejects_other_objects():
    with pytest.raises(ValueError, match="param must be a utils.frameworks.ParamInfo"):
        param_distribution("kernel")


def test_given_source_default():
    assert uniform(-1, 1).source == GIVEN_SOURCE and not uniform(-1, 1).assumed
