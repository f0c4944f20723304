"""utils.variance: gains, Keras's VarianceScaling arithmetic, the mean-field theory, layer stats.

Monte-Carlo checks use tolerances from utils.stats (five standard errors from the sample
size); float comparisons use a few ulps of the dtype.
"""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from utils.frameworks import parameters, trace
from utils.stats import KURTOSIS, mean_tolerance, std_tolerance, truncated_normal_moments
from utils.variance import (DERIVED_GAINS, NONLINEARITIES, RULES, TRUNCATED_NORMAL_STD,
                            UNIT_ROUNDOFF, rounding_tolerance,
                            VarianceRule, activation_second_moment, apply_rule, deep_mlp,
                            depth_log_tolerance, derivative_second_moment, derived_gain, gain,
                            layer_statistics, mean_field_profile, probe_loss, sample_weights,
                            statistics_table, truncated_normal_std_ratio, variance_scaling_std)

EPS32 = float(np.finfo(np.float32).eps)


def test_importing_utils_does_not_import_a_framework():
    code = ("import sys, utils.variance, utils.stats, utils.training; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# Gains
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"])
def test_gain_is_torchs(name):
    import torch

    assert gain(name) == pytest.approx(torch.nn.init.calculate_gain(name), rel=1e-15)


@pytest.mark.parametrize("slope", [0.0, 0.2, 1.0, -0.5, 3])
def test_leaky_relu_gain_with_slope(slope):
    import torch

    assert gain("leaky_relu", slope) == pytest.approx(torch.nn.init.calculate_gain("leaky_relu", slope))
    assert derived_gain("leaky_relu", slope) == pytest.approx(gain("leaky_relu", slope), rel=1e-9)


def test_gain_errors():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of \('linear'"):
        gain("gelu")
    with pytest.raises(ValueError, match="param is only used by 'leaky_relu'"):
        gain("relu", 0.1)
    with pytest.raises(ValueError, match="param must be a finite number"):
        gain("leaky_relu", "0.1")
    assert gain("identity") == 1.0


def test_derived_gains_reproduce_the_derivations_and_not_the_conventions():
    for name in ("linear", "relu", "leaky_relu", "tanh", "sigmoid", "selu"):
        matches = math.isclose(derived_gain(name), gain(name), rel_tol=1e-9)
        assert matches == DERIVED_GAINS[name], name
    assert derived_gain("selu") == pytest.approx(1.0, rel=1e-7)  # SELU's fixed point (mean 0, var 1)
    assert set(DERIVED_GAINS) == set(NONLINEARITIES)


def test_gaussian_expectations_match_the_trapezoid_rule_for_smooth_functions():
    # An independent rule: the trapezoid rule on a fine grid converges geometrically for smooth,
    # rapidly decaying integrands (Gauss-Hermite with 120 nodes is only good to 1e-6 at q = 4,
    # because tanh has poles near the real axis).
    z = np.linspace(-40, 40, 400_001)
    density = np.exp(-z * z / 2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    for q in (0.3, 1.0, 4.0):
        h = math.sqrt(q) * z
        assert activation_second_moment("tanh", q) == pytest.approx(np.sum(density * np.tanh(h) ** 2), rel=1e-9)
        assert derivative_second_moment("tanh", q) == pytest.approx(
            np.sum(density * (1 - np.tanh(h) ** 2) ** 2), rel=1e-9)
        sigmoid = 0.5 * (1 + np.tanh(h / 2))
        assert activation_second_moment("sigmoid", q) == pytest.approx(np.sum(density * sigmoid**2), rel=1e-9)


def test_relu_expectations_are_exact():
    for q in (0.01, 1.0, 7.0):
        assert activation_second_moment("relu", q) == pytest.approx(q / 2, rel=1e-10)
        assert derivative_second_moment("relu", q) == pytest.approx(0.5, rel=1e-10)
        assert activation_second_moment("leaky_relu", q, 0.3) == pytest.approx(q * (1 + 0.09) / 2, rel=1e-10)
    assert activation_second_moment("relu", 0.0) == 0.0


def test_callable_nonlinearity_matches_the_named_one_and_monte_carlo():
    def selu(h):
        return 1.0507009873554805 * np.where(h > 0, h, 1.6732632423543772 * np.expm1(np.minimum(h, 0)))

    assert activation_second_moment(selu, 2.0) == pytest.approx(activation_second_moment("selu", 2.0), rel=1e-9)
    assert derivative_second_moment(np.tanh, 1.0) == pytest.approx(derivative_second_moment("tanh", 1.0), rel=1e-6)
    rng = np.random.default_rng(0)
    z = rng.standard_normal(400_000)
    values = np.tanh(z) ** 2
    assert abs(values.mean() - activation_second_moment("tanh", 1.0)) <= mean_tolerance(values.std(), z.size)


def test_derived_gain_errors():
    with pytest.raises(ValueError, match="q must be positive"):
        derived_gain("tanh", q=0.0)
    with pytest.raises(ValueError, match="q must be a finite number >= 0"):
        derived_gain("tanh", q=-1.0)
    with pytest.raises(ValueError, match="no gain restores it"):
        derived_gain(lambda h: np.zeros_like(h))


# --------------------------------------------------------------------------------------------
# Variance scaling, checked against Keras
# --------------------------------------------------------------------------------------------

def test_truncated_normal_constant():
    # Keras's literal, the closed form and SciPy agree (one home: utils.stats)
    assert truncated_normal_std_ratio(2.0) == pytest.approx(TRUNCATED_NORMAL_STD, rel=1e-15)
    assert TRUNCATED_NORMAL_STD == pytest.approx(truncated_normal_moments(-2, 2).std, rel=1e-15)
    assert TRUNCATED_NORMAL_STD == pytest.approx(stats.truncnorm(-2, 2).std(), rel=1e-14)
    assert truncated_normal_std_ratio(1.5) == pytest.approx(stats.truncnorm(-1.5, 1.5).std(), rel=1e-12)
    with pytest.raises(ValueError, match="cut must be a positive finite number"):
        truncated_normal_std_ratio(0)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["truncated_normal", "untruncated_normal", "uniform", "normal"])
def test_variance_scaling_std_agrees_with_keras_draws(mode, distribution):
    import keras

    shape, scale = (300, 700), 2.0
    fan = {"fan_in": 300, "fan_out": 700, "fan_avg": 500}[mode]
    parameter = variance_scaling_std(300, 700, scale, mode, distribution)
    drawn = keras.initializers.VarianceScaling(scale, mode, distribution, seed=1)(shape).numpy()
    drawn = drawn.astype(np.float64)
    n = drawn.size
    target_std = math.sqrt(scale / fan)
    if distribution == "uniform":
        assert parameter == pytest.approx(math.sqrt(3) * target_std, rel=1e-15)
        # the largest of 210,000 uniform draws is within 1e-4 of the bound but for e^-21
        assert parameter * (1 - 1e-4) <= np.abs(drawn).max() <= parameter * (1 + EPS32)
        kurtosis = KURTOSIS["uniform"]
    elif distribution == "untruncated_normal":
        assert parameter == pytest.approx(target_std, rel=1e-15)
        kurtosis = KURTOSIS["normal"]
    else:  # "normal" is Keras's alias of "truncated_normal"
        assert parameter == pytest.approx(target_std / 0.87962566103423978, rel=1e-15)
        assert np.abs(drawn).max() <= 2 * parameter * (1 + EPS32)
        kurtosis = KURTOSIS["truncated_normal"]
    assert abs(drawn.std() / target_std - 1) <= std_tolerance(n, 5, kurtosis)


def test_variance_scaling_std_edge_cases_and_errors():
    assert variance_scaling_std(0, 0, 1.0, "fan_avg", "untruncated_normal") == 1.0  # Keras: max(1, fan)
    with pytest.raises(ValueError, match="fan_in must be an integer >= 0"):
        variance_scaling_std(2.5, 3)
    with pytest.raises(ValueError, match="scale must be a positive finite number"):
        variance_scaling_std(3, 3, scale=0)
    with pytest.raises(ValueError, match=r"mode must be one of \('fan_in'"):
        variance_scaling_std(3, 3, mode="fan_sum")
    with pytest.raises(ValueError, match="distribution must be one of"):
        variance_scaling_std(3, 3, distribution="laplace")


def test_rules():
    assert RULES["lecun"].weight_variance(100, 7) == pytest.approx(1 / 100)
    assert RULES["glorot"].weight_variance(100, 300) == pytest.approx(2 / 400)
    assert RULES["he"].weight_variance(100, 7) == pytest.approx(2 / 100)
    torch_rule = RULES["torch_default"]
    assert torch_rule.std(64, 1, "uniform") == pytest.approx(1 / 8)  # PyTorch's U(+-1/sqrt(fan_in))
    assert torch_rule.bias_variance(64) == pytest.approx(1 / (3 * 64))
    assert RULES["he"].bias_variance(64) == 0.0
    with pytest.raises(ValueError, match="scale must be a positive number"):
        VarianceRule("bad", 0.0)
    with pytest.raises(ValueError, match="scale must be a positive number"):
        VarianceRule("bad", True)  # a bool is an int, but not a scale
    with pytest.raises(ValueError, match="bias_scale must be a number >= 0"):
        VarianceRule("bad", 1.0, bias_scale=False)
    with pytest.raises(ValueError, match="mode must be one of"):
        VarianceRule("bad", 1.0, "fan_max")


def test_sample_weights_distribution_and_fans():
    rng = np.random.default_rng(0)
    conv = sample_weights(rng, (3, 3, 16, 32), 2.0, "fan_in", "truncated_normal")  # fan_in 144
    assert conv.shape == (3, 3, 16, 32)
    target = math.sqrt(2 / 144)
    assert np.abs(conv).max() <= 2 * target / TRUNCATED_NORMAL_STD
    assert abs(conv.std() / target - 1) <= std_tolerance(conv.size, 5, KURTOSIS["truncated_normal"])
    dense = sample_weights(np.random.default_rng(1), (500, 400), 1.0, "fan_avg", "uniform")
    assert abs(dense.std() / math.sqrt(1 / 450) - 1) <= std_tolerance(dense.size, 5, KURTOSIS["uniform"])
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        sample_weights(np.random.RandomState(0), (3, 3))


# --------------------------------------------------------------------------------------------
# apply_rule and deep_mlp: identical weights in both frameworks
# --------------------------------------------------------------------------------------------

def test_apply_rule_gives_keras_and_torch_identical_dense_weights():
    keras_net = deep_mlp("keras", [5, 7, 3], "relu")
    torch_net = deep_mlp("torch", [5, 7, 3], "relu")
    for rule in ("he", RULES["torch_default"]):
        apply_rule(keras_net, rule, "uniform", seed=3)
        apply_rule(torch_net, rule, "uniform", seed=3)
        for k, t in zip(parameters(keras_net), parameters(torch_net)):
            values = t.numpy().T if t.name == "weight" else t.numpy()
            np.testing.assert_array_equal(k.numpy(), values)
    bias = parameters(torch_net)[1].numpy()
    assert np.all(np.abs(bias) <= 1 / math.sqrt(5)) and np.any(bias != 0)
    apply_rule(torch_net, "lecun", seed=3)
    assert np.all(parameters(torch_net)[1].numpy() == 0)


def test_apply_rule_on_convolutions():
    import keras
    import torch.nn as nn

    keras_conv = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.Conv2D(5, 3)])
    torch_conv = nn.Conv2d(4, 5, 3)
    apply_rule(keras_conv, "he", seed=0)
    apply_rule(torch_conv, "he", seed=0)
    kernel = parameters(keras_conv)[0].numpy()  # (3, 3, 4, 5)
    weight = parameters(torch_conv)[0].numpy()  # (5, 4, 3, 3)
    np.testing.assert_array_equal(kernel, np.transpose(weight, (2, 3, 1, 0)))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype(np.float32)
    keras_out = keras_conv(x).numpy()
    torch_out = torch_conv(__import__("torch").from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy()
    scale = np.abs(x).max() * np.abs(kernel).sum(axis=(0, 1, 2)).max()
    np.testing.assert_allclose(keras_out, torch_out.transpose(0, 2, 3, 1), atol=8 * EPS32 * scale)


def test_apply_rule_errors():
    import torch.nn as nn

    with pytest.raises(ValueError, match="rule must be a VarianceRule or one of"):
        apply_rule(nn.Linear(2, 2), "kaiming")
    with pytest.raises(ValueError, match="no dense or convolution weight"):
        apply_rule(nn.Sequential(nn.ReLU()), "he")
    with pytest.raises(ValueError, match="model must be a Keras 3 layer/model or a torch.nn.Module"):
        apply_rule(np.zeros(3), "he")


def test_deep_mlp_structure():
    import keras
    import torch

    keras_net = deep_mlp("keras", [4, 8, 8, 2], "leaky_relu", 0.2, dtype="float64")
    torch_net = deep_mlp("torch", [4, 8, 8, 2], "leaky_relu", 0.2, dtype="float64", use_bias=False)
    assert [type(layer).__name__ for layer in keras_net.layers] == ["Dense", "LeakyReLU", "Dense", "LeakyReLU", "Dense"]
    assert [type(m).__name__ for m in torch_net] == ["Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"]
    assert torch_net[1].negative_slope == 0.2 and keras_net.layers[1].negative_slope == pytest.approx(0.2)
    assert all(p.dtype == torch.float64 for p in torch_net.parameters()) and torch_net[0].bias is None
    assert keras_net.layers[0].kernel.dtype == "float64"
    seeded = deep_mlp("keras", [8, 8, 8, 8], "tanh", kernel_initializer=keras.initializers.HeNormal(seed=1))
    kernels = [layer.kernel.numpy() for layer in seeded.layers if hasattr(layer, "kernel")]
    assert not np.array_equal(kernels[0], kernels[1]) and not np.array_equal(kernels[1], kernels[2])
    with pytest.raises(ValueError, match="kernel_initializer is for Keras models"):
        deep_mlp("torch", [2, 2], "relu", kernel_initializer="he_normal")
    with pytest.raises(ValueError, match="framework must be 'keras' or 'torch'"):
        deep_mlp("jax", [2, 2], "relu")
    with pytest.raises(ValueError, match="layer_sizes must list at least 2 positive integers"):
        deep_mlp("torch", [2], "relu")
    with pytest.raises(ValueError, match="dtype must be"):
        deep_mlp("torch", [2, 2], "relu", dtype="float16")


# --------------------------------------------------------------------------------------------
# The mean-field theory
# --------------------------------------------------------------------------------------------

def test_mean_field_relu_closed_forms():
    sizes = [16] + [32] * 10 + [4]
    for rule in ("lecun", "he"):
        profile = mean_field_profile(sizes, rule, "relu", input_second_moment=2.0, output_grad_variance=3.0)
        factor = 32 * RULES[rule].weight_variance(32, 32) / 2
        q1 = 16 * RULES[rule].weight_variance(16, 32) * 2.0
        np.testing.assert_allclose(profile.preactivation_variance[:10], q1 * factor ** np.arange(10), rtol=1e-12)
        assert profile.gradient_variance[-1] == 3.0
        # backwards through the output layer (fan-out 4), then the ReLU layers
        top = 4 * RULES[rule].weight_variance(32, 4) * 0.5 * 3.0
        assert profile.gradient_variance[9] == pytest.approx(top)
        np.testing.assert_allclose(profile.gradient_variance[:10], top * factor ** np.arange(9, -1, -1), rtol=1e-12)
    floor = mean_field_profile([128] * 52, "torch_default", "relu").preactivation_variance[49]
    assert floor == pytest.approx(2 / (5 * 128), rel=1e-12)  # q = q/6 + 1/(3n)


def test_mean_field_tanh_matches_a_wide_network():
    # Forward only, in NumPy: width 4096, 3 layers, Gaussian weights with gain 5/3.
    rng = np.random.default_rng(0)
    width, sizes = 4096, [4096, 4096, 4096, 4096, 10]
    rule = VarianceRule("5/3", (5 / 3) ** 2)
    profile = mean_field_profile(sizes, rule, "tanh")
    a = rng.normal(size=(8, width))
    for layer in range(3):
        h = a @ rng.normal(0, 5 / 3 / math.sqrt(width), size=(width, width))
        q_hat = np.mean(h**2)
        assert abs(math.log(q_hat / profile.preactivation_variance[layer])) <= depth_log_tolerance(layer + 1, width)
        a = np.tanh(h)


def test_mean_field_profile_errors():
    with pytest.raises(ValueError, match="layer_sizes must list at least 3 positive integers"):
        mean_field_profile([4, 4], "he", "relu")
    with pytest.raises(ValueError, match="rule must be a VarianceRule"):
        mean_field_profile([4, 4, 4], "xavier", "relu")
    with pytest.raises(ValueError, match="input_second_moment must be a finite number >= 0"):
        mean_field_profile([4, 4, 4], "he", "relu", input_second_moment=-1)


def test_depth_log_tolerance_tail_rate_for_exact_relu_networks():
    # For Gaussian weights each ReLU layer multiplies |h|^2 by sigma^2 * chi^2_K, K ~ Bin(n, 1/2),
    # independently of everything before (rotational invariance). Simulate 200,000 networks.
    rng = np.random.default_rng(0)
    networks, depth, width = 200_000, 50, 128
    active = rng.binomial(width, 0.5, size=(networks, depth))
    ratios = rng.chisquare(np.maximum(active, 1)) * (active > 0) / (width / 2)  # mean 1 per layer
    log_q = np.cumsum(np.log(ratios), axis=1)
    layers = np.arange(1, depth + 1)
    exceeded = np.any(np.abs(log_q) > depth_log_tolerance(layers, width), axis=1)
    # The docstring (and Chapter 2) say "about 3 networks in 100,000": allow that rate plus
    # five binomial standard errors, 3e-5 + 5 sqrt(3e-5 / 2e5) = 9e-5.
    assert exceeded.mean() <= 3e-5 + 5 * math.sqrt(3e-5 / networks)
    # ln chi^2 is left-skewed: the sample skewness (s.e. sqrt(6/N)) is negative beyond 5 s.e.
    assert stats.skew(log_q[:, -1]) < -5 * math.sqrt(6 / networks)
    # the standard deviation sqrt(5 l / n) is right to within the delta method's O(1/n)
    assert abs(log_q[:, -1].std() / math.sqrt(5 * depth / width) - 1) <= 0.05 + std_tolerance(networks)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        depth_log_tolerance(3, 0)
    with pytest.raises(ValueError, match="n_layers must be >= 0"):
        depth_log_tolerance(-1, 3)
    with pytest.raises(ValueError, match="sigmas must be a positive finite number"):
        depth_log_tolerance(3, 3, sigmas=0)


def _simulated_log_variances(nonlinearity, weight_std, draw, networks=400, width=64, depth=12,
                             seed=0):
    """ln q-hat and ln r-hat of `networks` independent bias-free MLPs, one fixed input each,
    the probe loss with fixed targets: a direct simulation in batched torch (float64)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, width, generator=generator, dtype=torch.float64)
    x = x.expand(networks, 1, width).clone().requires_grad_(True)
    targets = torch.randn(1, 1, width, generator=generator, dtype=torch.float64)
    phi = {"relu": torch.relu, "tanh": torch.tanh}[nonlinearity]
    h, pre = x, []
    for layer in range(depth + 1):
        weights = draw(torch.empty(networks, width, width, dtype=torch.float64), generator)
        z = h @ (weights * weight_std)
        z.retain_grad()
        pre.append(z)
        h = phi(z) if layer < depth else z
    (h * targets).sum().backward()
    q_hat = torch.stack([(z**2).mean(dim=(1, 2)) for z in pre], dim=1)
    r_hat = torch.stack([(z.grad**2).mean(dim=(1, 2)) for z in pre], dim=1)
    return (np.log(q_hat.detach().numpy()), np.log(r_hat.numpy()),
            float((x[0].detach()**2).mean()), float((targets**2).mean()))


def _normal(tensor, generator):
    return tensor.normal_(0.0, 1.0, generator=generator)


def _uniform(tensor, generator):  # unit variance
    return tensor.uniform_(-math.sqrt(3), math.sqrt(3), generator=generator)


def _truncated(tensor, generator):  # unit variance after truncation at 2 sd
    torch = __import__("torch")
    torch.nn.init.trunc_normal_(tensor, std=1.0, a=-2.0, b=2.0, generator=generator)
    return tensor / TRUNCATED_NORMAL_STD


@pytest.mark.parametrize("nonlinearity, gain_squared, draw", [
    ("relu", 2.0, _normal), ("relu", 2.0, _uniform), ("relu", 2.0, _truncated),
    ("tanh", 1.0, _normal), ("tanh", (5 / 3) ** 2, _uniform),
])
def test_fluctuations_match_simulated_networks(nonlinearity, gain_squared, draw):
    width, depth, networks = 64, 12, 400
    log_q, log_r, input_moment, target_moment = _simulated_log_variances(
        nonlinearity, math.sqrt(gain_squared / width), draw, networks, width, depth)
    sizes = [width] * (depth + 2)
    profile = mean_field_profile(sizes, VarianceRule("g", gain_squared), nonlinearity,
                                 input_second_moment=input_moment,
                                 output_grad_variance=target_moment, fluctuations=True)
    for measured, predicted, bound_only in ((log_q, profile.preactivation_log_sd, False),
                                            (log_r[:, :-1], profile.gradient_log_sd[:-1], True)):
        sd = measured.std(axis=0, ddof=1)
        # the sample sd of N networks: relative s.e. from the sample's own kurtosis, 5 of
        # them; plus 10 % for the delta method's O(1/n) (1/64 per layer, compounding)
        kurtosis = stats.kurtosis(measured, axis=0, fisher=False)
        tolerance = np.array([std_tolerance(networks, 5, k) for k in kurtosis]) + 0.10
        assert np.all(sd / predicted - 1 <= tolerance), (sd, predicted)
        if not bound_only:  # forwards the value is a prediction, not only a bound
            assert np.all(sd / predicted - 1 >= -tolerance), (sd, predicted)
    # the mean lies below ln q by about half the variance (the drift log_tolerance allows)
    drift = log_q.mean(axis=0) - np.log(profile.preactivation_variance)
    assert np.all(np.abs(drift) <= profile.log_tolerance("forward", networks))


def test_fluctuation_closed_forms_for_relu():
    sizes = [32] + [64] * 10 + [8]
    profile = mean_field_profile(sizes, "he", "relu", fluctuations=True)
    layers = np.arange(1, 12)
    # forwards: sqrt((5 (l - 1) + 2) / n); backwards: 5 / n per ReLU layer above
    np.testing.assert_allclose(profile.preactivation_log_sd[:10],
                               np.sqrt((5 * (layers[:10] - 1) + 2) / 64), rtol=1e-4)
    np.testing.assert_allclose(profile.gradient_log_sd[:10], np.sqrt(5 * (10 - np.arange(10)) / 64),
                               rtol=1e-4)
    assert profile.gradient_log_sd[-1] == 0.0
    tolerance = profile.log_tolerance("backward", n_networks=4, sigmas=2.0)
    sd = profile.gradient_log_sd
    np.testing.assert_allclose(tolerance, 2 * sd / 2 + sd**2 / 2)
    with pytest.raises(ValueError, match="has no fluctuations"):
        mean_field_profile(sizes, "he", "relu").log_tolerance()
    with pytest.raises(ValueError, match="direction must be 'forward' or 'backward'"):
        profile.log_tolerance("sideways")


def test_tanh_fluctuation_facts_the_chapter_states():
    # v = E[tanh^4]/E[tanh^2]^2 - 1 is at most 2 (its limit at q -> 0), and the map
    # q -> E[tanh(z)^2] has elasticity at most 1 (it is concave with value 0 at 0)
    from utils.variance import _elasticity, _relative_variance

    for q in np.geomspace(1e-4, 100, 60):
        assert _relative_variance(np.tanh, q) <= 2.0 + 1e-6
        assert 0 < _elasticity(np.tanh, q) <= 1.0 + 1e-6


# --------------------------------------------------------------------------------------------
# layer_statistics and probe_loss
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_layer_statistics_values(framework):
    net = deep_mlp(framework, [6, 5, 4], "relu")
    apply_rule(net, "he", seed=0)
    x = np.random.default_rng(0).normal(size=(32, 6)).astype(np.float32)
    targets = np.random.default_rng(1).normal(size=(32, 4)).astype(np.float32)
    rows = layer_statistics(net, x, targets, probe_loss(framework))
    reference = trace(net, x, targets, probe_loss(framework))
    assert [r.layer_type for r in rows] == [rec.layer_type for rec in reference.layers]
    for row, record in zip(rows, reference.layers):
        out = record.output.astype(np.float64)
        assert row.std == pytest.approx(out.std()) and row.mean == pytest.approx(out.mean())
        assert row.rms == pytest.approx(np.sqrt(np.mean(out**2)))
        assert row.grad_std == pytest.approx(record.output_grad.std())
        assert row.shape == out.shape
    # the probe loss makes the output's gradient exactly the targets
    np.testing.assert_array_equal(reference.layers[-1].output_grad, targets)
    dense_rows = [r for r in rows if r.layer_type in ("Dense", "Linear")]
    assert all(r.weight_grad_std is not None and r.weight_grad_std > 0 for r in dense_rows)
    assert rows[1].weight_grad_std is None
    assert rows[1].fraction_saturated is None
    filtered = layer_statistics(net, x, layer_types=("Dense", "Linear"))
    assert len(filtered) == 2 and filtered[0].grad_std is None


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_dead_units_and_saturation(framework):
    relu_net = deep_mlp(framework, [3, 4, 2], "relu")
    tanh_net = deep_mlp(framework, [3, 4, 2], "tanh")
    for net in (relu_net, tanh_net):
        weight, bias = parameters(net)[0], parameters(net)[1]
        from utils.frameworks import assign

        assign(weight, np.full(weight.shape, 10.0))
        assign(bias, np.array([-1e6, -1e6, 0.0, 0.0]))  # units 0 and 1 always negative
    x = np.abs(np.random.default_rng(0).normal(size=(16, 3))).astype(np.float32) + 0.1
    relu_row = layer_statistics(relu_net, x)[1]
    assert relu_row.fraction_dead == 0.5 and relu_row.fraction_zero == 0.5
    tanh_row = layer_statistics(tanh_net, x)[1]
    assert tanh_row.fraction_saturated == 1.0 and tanh_row.fraction_dead == 0.0


def test_dead_channels_of_a_torch_convolution():
    import torch.nn as nn

    from utils.frameworks import assign

    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU())
    assign(parameters(net)[1], np.array([-1e6, 0.0, 0.0]))
    x = np.random.default_rng(0).normal(size=(4, 2, 5, 5)).astype(np.float32)
    assert layer_statistics(net, x)[1].fraction_dead == pytest.approx(1 / 3)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_saturation_threshold(framework):
    # one definition (Chapters 2 and 3): within 1 - saturation of an end of the output range
    net = deep_mlp(framework, [1, 1, 1], "tanh", dtype="float64", use_bias=False)
    weight = parameters(net)[0]
    from utils.frameworks import assign

    assign(weight, np.ones(weight.shape))
    x = np.arctanh(np.array([[0.5], [0.985], [0.995], [-0.999]]))  # tanh(x) as listed
    row = layer_statistics(net, x)[1]
    assert row.fraction_saturated == 0.5  # 0.995 and -0.999 exceed 0.99
    assert layer_statistics(net, x, saturation=0.98)[1].fraction_saturated == 0.75
    with pytest.raises(ValueError, match="saturation must be a number strictly between 0 and 1"):
        layer_statistics(net, x, saturation=1.0)


def test_layer_statistics_errors_and_table():
    import torch.nn as nn

    net = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
    with pytest.raises(ValueError, match="layer_types must be a sequence of class names"):
        layer_statistics(net, np.zeros((1, 2)), layer_types="Linear")
    with pytest.raises(ValueError, match="y and loss must be given together"):
        layer_statistics(net, np.zeros((1, 2)), y=np.zeros((1, 2)))
    rows = layer_statistics(net, np.ones((3, 2)))
    table = statistics_table(rows, ("std", "fraction_saturated", "grad_std"))
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["layer", "std", "fraction_saturated", "grad_std"]
    assert lines[1].split()[-1] == "-"  # no gradient in a forward-only call
    with pytest.raises(ValueError, match="columns must be fields of LayerStats"):
        statistics_table(rows, ("variance",))
    with pytest.raises(ValueError, match="framework must be 'keras' or 'torch'"):
        probe_loss("jax")


# ---------------------------------------------------------------------- rounding_tolerance

def test_rounding_tolerance_counts_roundings():
    u = 2.0**-24
    assert UNIT_ROUNDOFF == {"float32": u, "float64": 2.0**-53}
    assert rounding_tolerance(1.0, operations=2) == 2 * u / (1 - 2 * u)
    # any order: n roundings per sum; pairwise: ceil(log2 n) + 1; random: 5 sqrt(n)
    assert rounding_tolerance(3.0, 1000, 10) == pytest.approx(3 * 1018 * u, rel=1e-4)
    assert rounding_tolerance(1.0, 1000, summation="pairwise") == pytest.approx(19 * u, rel=1e-5)
    assert rounding_tolerance(1.0, 64, operations=0, summation="random") == pytest.approx(
        40 * u, rel=1e-5)
    assert rounding_tolerance(1.0, 1, 1, operations=0) == 0.0  # one-term sums round nothing
    assert rounding_tolerance(1.0, precision="float64") == pytest.approx(8 * 2.0**-53)
    values = rounding_tolerance(np.array([1.0, 2.0]), 4)
    assert values.shape == (2,) and values[1] == 2 * values[0]


def test_rounding_tolerance_bounds_float32_dot_products():
    """The "any" rule holds for float32 dot products computed sequentially, pairwise and by
    BLAS, and the pairwise rule for NumPy's pairwise sum; random data, many trials."""
    rng = np.random.default_rng(0)
    n = 4096
    a = rng.standard_normal((200, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    magnitude = np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))
    blas = (a @ b).astype(np.float64)
    sequential = np.array([np.cumsum((row * b).astype(np.float32), dtype=np.float32)[-1]
                           for row in a], dtype=np.float64)
    pairwise = np.sum(a * b, axis=1, dtype=np.float32).astype(np.float64)
    bound_any = rounding_tolerance(magnitude, n, operations=0)
    for computed in (blas, sequential, pairwise):
        assert np.all(np.abs(computed - exact) <= bound_any)
    assert np.all(np.abs(pairwise - exact)
                  <= rounding_tolerance(magnitude, n, operations=0, summation="pairwise"))


@pytest.mark.parametrize("kwargs, message", [
    ({"summation": "blocked"}, "summation must be one of"),
    ({"precision": "float16"}, "precision must be"),
    ({"operations": -1}, "operations must be a non-negative integer"),
    ({"operations": 1.5}, "operations must be a non-negative integer"),
    ({"magnitude": -1.0}, "magnitude must be finite and non-negative"),
    ({"magnitude": np.nan}, "magnitude must be finite and non-negative"),
])
def test_rounding_tolerance_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rounding_tolerance(**kwargs)
    with pytest.raises(ValueError, match="sums must be positive integers"):
        rounding_tolerance(1.0, 0)
    with pytest.raises(ValueError, match="no bound"):
        rounding_tolerance(1.0, 2**24)
