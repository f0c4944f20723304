"""utils.experiments: seeded models, the fused Keras loop, class-weighted losses, summaries."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from utils.experiments import (ArmComparison, class_weighted_bce, compare_arms, predict,
                               reinitialize, small_classifier, steps_to_threshold,
                               trailing_mean, train_fused)
from utils.frameworks import assign, parameters
from utils.stats import mean_ci, paired_difference
from utils.training import train_keras, train_torch
from utils.variance import truncated_normal_std_ratio

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=300)
    return x, y


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=400) > 1.2).astype(np.float32)[:, None]
    return x, y


def values(model):
    return [p.numpy() for p in parameters(model)]


def same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(values(a), values(b)))


# ---------------------------------------------------------------------------------------------
# small_classifier and reinitialize


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_small_classifier_structure_and_default_initialisation(framework):
    model = small_classifier(framework, 30, 1, hidden=16, dropout=0.5,
                             output_activation="sigmoid", seed=3)
    shapes = [p.shape for p in parameters(model)]
    if framework == "keras":
        assert shapes == [(30, 16), (16,), (16, 1), (1,)]
        assert [layer.name for layer in model.layers] == ["hidden", "dropout", "output"]
        assert model.layers[-1].activation.__name__ == "sigmoid"
        kernel, bias = values(model)[:2]
        assert np.all(bias == 0)  # Keras' default bias
        assert np.abs(kernel).max() <= math.sqrt(6 / (30 + 16))  # Glorot uniform bound
    else:
        assert shapes == [(16, 30), (16,), (1, 16), (1,)]
        assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Dropout", "Linear",
                                                     "Sigmoid"]
        weight, bias = values(model)[:2]
        bound = 1 / math.sqrt(30)  # torch's default: U(+-1/sqrt(fan_in)) for both
        assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
        assert np.ptp(bias) > 0
    logits_model = small_classifier(framework, 4, 3, seed=0)
    assert [p.shape[-1] if framework == "keras" else p.shape[0]
            for p in parameters(logits_model)][-1] == 3


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_same_seed_same_model_and_no_global_state_touched(framework):
    import torch

    python_state, torch_state = random.getstate(), torch.get_rng_state()
    a = small_classifier(framework, 5, 2, hidden=7, seed=11)
    b = small_classifier(framework, 5, 2, hidden=7, seed=11)
    c = small_classifier(framework, 5, 2, hidden=7, seed=12)
    assert random.getstate() == python_state
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert same(a, b) and not same(a, c)
    kernels = [p.numpy() for p in parameters(a) if p.name in ("kernel", "weight")]
    # the two layers draw independently (no shared draw across layers)
    assert not np.allclose(kernels[0].ravel()[:5], kernels[1].ravel()[:5])


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_reinitialize_restores_the_seeded_defaults(framework):
    model = small_classifier(framework, 5, 2, hidden=7, seed=4)
    reference = values(model)
    for p in parameters(model):
        assign(p, np.full(p.shape, 3.0))
    reinitialize(model, 4)
    assert all(np.array_equal(a, b) for a, b in zip(reference, values(model)))
    reinitialize(model, 5)
    assert not all(np.array_equal(a, b) for a, b in zip(reference, values(model)))


def test_reinitialize_uses_each_keras_layers_own_initializers():
    import keras

    model = keras.Sequential([
        keras.Input((8, 8, 2)),
        keras.layers.Conv2D(4, 3, kernel_initializer="he_normal", bias_initializer="ones"),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(0.25)),
    ])
    for p in parameters(model, include_non_trainable=True):
        assign(p, np.full(p.shape, -7.0))
    reinitialize(model, 0)
    by_label = {p.label: p.numpy() for p in parameters(model, include_non_trainable=True)}
    conv_kernel = next(v for k, v in by_label.items() if k.endswith("kernel") and v.ndim == 4)
    fan_in = 3 * 3 * 2
    # he_normal: a normal of std sqrt(2 / fan_in) / 0.8796 (so that the truncated std is
    # sqrt(2 / fan_in)), cut at two of its own standard deviations
    underlying = math.sqrt(2 / fan_in) / truncated_normal_std_ratio(2.0)
    assert np.abs(conv_kernel).max() <= 2 * underlying * (1 + 4 * EPS32)
    assert np.ptp(conv_kernel) > 0
    assert any(np.all(v == 1) and v.shape == (4,) for k, v in by_label.items()
               if k.endswith("bias"))  # bias_initializer="ones"
    for name, expected in [("gamma", 1.0), ("beta", 0.0), ("moving_mean", 0.0),
                           ("moving_variance", 1.0)]:
        assert np.all(next(v for k, v in by_label.items() if k.endswith(name)) == expected)
    dense_kernel = next(v for k, v in by_label.items() if k.endswith("kernel") and v.ndim == 2)
    assert np.all(dense_kernel == 0.25)


def test_reinitialize_resets_torch_modules_without_touching_the_global_generator():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))
    for p in parameters(model, include_non_trainable=True):
        assign(p, np.full(p.shape, -7.0))
    state = torch.get_rng_state()
    reinitialize(model, 9)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.all(model[1].weight == 1) and torch.all(model[1].running_var == 1)
    assert torch.all(model[1].running_mean == 0)
    bound = 1 / math.sqrt(2 * 3 * 3)
    assert model[0].weight.abs().max() <= bound and model[0].weight.std() > 0
    first = values(model)
    reinitialize(model, 9)
    assert all(np.array_equal(a, b) for a, b in zip(first, values(model)))


def test_reinitialize_handles_recurrent_layers_and_refuses_what_it_cannot_redraw():
    import keras
    import torch
    import torch.nn as nn

    lstm = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)])
    for p in parameters(lstm):
        assign(p, np.full(p.shape, -7.0))
    reinitialize(lstm, 0)
    kernel, recurrent, bias = values(lstm)
    assert np.ptp(kernel) > 0 and np.ptp(recurrent) > 0
    # recurrent kernels are orthogonal in Keras: R^T R = I (4 units, 16 gate columns)
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-5)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])

    class Scaled(nn.Module):  # owns a raw parameter and no reset_parameters()
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2)
            self.scale = nn.Parameter(torch.full((2,), 3.0))

        def forward(self, x):
            return self.linear(x) * self.scale

    class Gain(keras.layers.Layer):  # a variable without a "gain_initializer" attribute
        def build(self, input_shape):
            self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="gain")

        def call(self, x):
            return x * self.gain

    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3), Gain()])
    keras_before = values(keras_model)
    with pytest.raises(ValueError, match=r"without an initializer attribute.*gain/gain"):
        reinitialize(keras_model, 1)
    assert all(np.array_equal(a, b) for a, b in zip(keras_before, values(keras_model)))

    module = Scaled()
    before = values(module)
    with pytest.raises(ValueError, match=r"no reset_parameters\(\).*\(root\)/scale"):
        reinitialize(module, 0)
    assert all(np.array_equal(a, b) for a, b in zip(before, values(module)))  # unchanged


def test_reinitialize_and_small_classifier_reject_bad_arguments():
    with pytest.raises(ValueError, match="framework must be 'keras' or 'torch'"):
        small_classifier("jax", 3, 2)
    with pytest.raises(ValueError, match="n_in must be an integer >= 1"):
        small_classifier("torch", 0, 2)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        small_classifier("torch", 3, 2, dropout=1.0)
    with pytest.raises(ValueError, match="output_activation must be one of"):
        small_classifier("torch", 3, 2, output_activation="tanh")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        small_classifier("torch", 3, 2, seed=-1)
    with pytest.raises(ValueError, match="model must be a Keras 3 layer/model"):
        reinitialize(object(), 0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        reinitialize(small_classifier("torch", 3, 2), 1.5)


# ---------------------------------------------------------------------------------------------
# predict


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_predict_is_inference_mode_and_chunking_does_not_matter(framework, data):
    x, _ = data
    model = small_classifier(framework, 6, 3, dropout=0.5, output_activation="softmax", seed=2)
    if framework == "torch":
        model.train()
    whole = predict(model, x.astype(np.float64))
    assert whole.dtype == np.float64 and whole.shape == (300, 3)
    np.testing.assert_array_equal(whole, predict(model, x))  # deterministic: dropout is off
    np.testing.assert_allclose(predict(model, x, batch_size=7), whole, rtol=0, atol=4 * EPS32)
    np.testing.assert_allclose(whole.sum(axis=1), 1.0, atol=8 * EPS32)
    if framework == "torch":
        assert model.training  # mode restored
    with pytest.raises(ValueError, match="x must be a non-empty array"):
        predict(model, np.zeros((0, 6), np.float32))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        predict(model, x, batch_size=0)


# ---------------------------------------------------------------------------------------------
# train_fused


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam"])
def test_fused_keras_run_takes_the_same_steps_as_utils_training(data, optimizer):
    x, y = data
    fused = small_classifier("keras", 6, 3, hidden=8, seed=1)
    stepped = small_classifier("keras", 6, 3, hidden=8, seed=1)
    a = train_fused(fused, x, y, "cross_entropy", optimizer, learning_rate=0.01, epochs=2,
                    batch_size=64, seed=3)
    b = train_keras(stepped, x, y, "cross_entropy", optimizer, learning_rate=0.01, epochs=2,
                    batch_size=64, seed=3)
    assert list(a.batch_sizes) == list(b.batch_sizes) == [64, 64, 64, 64, 44] * 2
    assert a.epochs == 2 and a.steps_per_epoch == 5 and a.eval_losses.size == 0
    # Same graph operations on the same values: equal up to float32 rounding (the ops are
    # the same, so in practice bit for bit); allow a few eps over 10 steps.
    np.testing.assert_allclose(a.batch_losses, b.batch_losses, rtol=16 * EPS32)
    for p, q in zip(values(fused), values(stepped)):
        np.testing.assert_allclose(p, q, rtol=0, atol=64 * EPS32)


def test_fused_keras_run_is_traced_once_and_restarts_a_named_optimizer(data):
    from utils.experiments import _RUN_CACHE

    x, y = data
    model = small_classifier("keras", 6, 3, hidden=8, dropout=0.25, seed=5)
    first = train_fused(model, x, y, "cross_entropy", "adam", learning_rate=0.01,
                        batch_size=50, seed=0)
    reinitialize(model, 5)
    second = train_fused(model, x, y, "cross_entropy", "adam", learning_rate=0.01,
                         batch_size=50, seed=0)
    # fresh optimizer state and a dropout generator reset by reinitialize: the same run again
    np.testing.assert_array_equal(first.batch_losses, second.batch_losses)
    assert len(getattr(model, _RUN_CACHE)) == 1
    third = train_fused(model, x, y, "cross_entropy", "adam", learning_rate=0.01,
                        batch_size=50, seed=1)
    assert len(getattr(model, _RUN_CACHE)) == 1 and third.batch_losses.size == 6


def test_fused_first_loss_is_the_loss_before_any_update(binary):
    import keras

    x, y = binary
    model = small_classifier("keras", 5, 1, hidden=4, output_activation="sigmoid", seed=0)
    before = float(keras.losses.BinaryCrossentropy()(y[:400], model(x[:400])))
    history = train_fused(model, x, y, class_weighted_bce("keras"), "sgd", learning_rate=0.5,
                          batch_size=400, seed=0, shuffle=False)
    assert history.batch_losses[0] == pytest.approx(before, rel=16 * EPS32)


def test_train_fused_sends_torch_models_to_train_torch(data):
    x, y = data
    a = small_classifier("torch", 6, 3, hidden=8, seed=1)
    b = small_classifier("torch", 6, 3, hidden=8, seed=1)
    first = train_fused(a, x, y, "cross_entropy", "rmsprop", learning_rate=0.01, batch_size=64,
                        seed=2)
    second = train_torch(b, x, y, "cross_entropy", "rmsprop", learning_rate=0.01,
                         batch_size=64, seed=2)
    np.testing.assert_array_equal(first.batch_losses, second.batch_losses)


def test_keras_and_torch_twins_take_the_same_fused_steps(data):
    x, y = data
    keras_net = small_classifier("keras", 6, 3, hidden=8, seed=1)
    torch_net = small_classifier("torch", 6, 3, hidden=8, seed=1)
    for k, t in zip(parameters(keras_net), parameters(torch_net)):
        assign(t, k.numpy().T if t.name == "weight" else k.numpy())
    a = train_fused(keras_net, x, y, "cross_entropy", "sgd", learning_rate=0.1, epochs=3,
                    batch_size=64, seed=4)
    b = train_fused(torch_net, x, y, "cross_entropy", "sgd", learning_rate=0.1, epochs=3,
                    batch_size=64, seed=4)
    # same weights, batches and rule; float32 sums in different orders over 15 steps
    np.testing.assert_allclose(a.batch_losses, b.batch_losses, rtol=1e-5)


def test_train_fused_rejects_bad_arguments(data):
    x, y = data
    model = small_classifier("keras", 6, 3, seed=0)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_fused(model, x, y, "cross_entropy", "lbfgs")
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        train_fused(model, x, y, "cross_entropy", "sgd", learning_rate=0.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        train_fused(model, x, y, "hinge", "sgd")
    with pytest.raises(ValueError, match="x and y must be non-empty arrays"):
        train_fused(model, x, y[:10], "cross_entropy", "sgd")
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train_fused(model, x, y, "cross_entropy", "sgd", epochs=0)
    with pytest.raises(ValueError, match="model must be a Keras 3 layer/model"):
        train_fused("model", x, y, "cross_entropy", "sgd")


# ---------------------------------------------------------------------------------------------
# class_weighted_bce


def test_class_weighted_bce_is_keras_sample_weighting_and_torch_weighting():
    import keras
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(3)
    y = (rng.random((200, 1)) < 0.1).astype(np.float32)
    logits = rng.normal(-2, 1.5, size=(200, 1)).astype(np.float32)
    probabilities = (1 / (1 + np.exp(-logits))).astype(np.float32)
    weights = {0: 0.55, 1: 5.0}
    sample_weight = np.where(y[:, 0] == 1, weights[1], weights[0]).astype(np.float32)
    keras_reference = float(keras.losses.BinaryCrossentropy()(y, probabilities,
                                                              sample_weight=sample_weight))
    torch_weight = torch.from_numpy(sample_weight[:, None])
    torch_reference = float(F.binary_cross_entropy(torch.from_numpy(probabilities),
                                                   torch.from_numpy(y), weight=torch_weight))
    keras_value = float(class_weighted_bce("keras", weights)(y, probabilities))
    torch_value = float(class_weighted_bce("torch", weights)(torch.from_numpy(probabilities),
                                                             torch.from_numpy(y)))
    keras_logits = float(class_weighted_bce("keras", weights, from_logits=True)(y, logits))
    torch_logits = float(class_weighted_bce("torch", weights, from_logits=True)(
        torch.from_numpy(logits), torch.from_numpy(y[:, 0])))  # (n,) targets are reshaped
    # float32 means of 200 terms of size ~1: a few hundred eps of slack covers clipping in
    # Keras' probability path (epsilon 1e-7) and the summation order
    for value in (keras_value, keras_logits):
        assert value == pytest.approx(keras_reference, rel=256 * EPS32)
    for value in (torch_value, torch_logits):
        assert value == pytest.approx(torch_reference, rel=256 * EPS32)
    plain = float(class_weighted_bce("keras")(y, probabilities))
    assert plain == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, probabilities)),
                                  rel=16 * EPS32)


def test_class_weighted_bce_is_what_keras_fit_minimises_with_class_weight(binary):
    import keras

    x, y = binary
    weights = {0: 0.6, 1: 4.0}
    model = small_classifier("keras", 5, 1, hidden=4, output_activation="sigmoid", seed=1)
    before = float(class_weighted_bce("keras", weights)(y, model(x)))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.BinaryCrossentropy())
    logged = model.fit(x, y, batch_size=len(x), epochs=1, class_weight=weights, verbose=0,
                       shuffle=False).history["loss"][0]
    # one batch: fit reports the loss of that batch before its update
    assert logged == pytest.approx(before, rel=64 * EPS32)


def test_class_weighted_bce_rejects_bad_weights():
    with pytest.raises(ValueError, match="framework must be 'keras' or 'torch'"):
        class_weighted_bce("jax")
    with pytest.raises(ValueError, match=r"class_weight must be None or a mapping \{0"):
        class_weighted_bce("torch", {1: 2.0})
    with pytest.raises(ValueError, match=r"class_weight\[1\] must be a positive finite"):
        class_weighted_bce("torch", {0: 1.0, 1: -2.0})


# ---------------------------------------------------------------------------------------------
# steps_to_threshold and compare_arms


def test_steps_to_threshold_counts_updates_on_the_smoothed_curve():
    assert steps_to_threshold([3.0, 2.0, 1.0, 0.5], 1.0) == 2.0
    assert steps_to_threshold([0.5, 9.0], 1.0) == 0.0
    assert math.isnan(steps_to_threshold([3.0, 3.0], 1.0))
    # trailing mean of 2: [3, 2.5, 1.5, 0.75] -> first <= 1 at index 3
    assert steps_to_threshold([3.0, 2.0, 1.0, 0.5], 1.0, window=2) == 3.0
    # a single low batch does not count once the window smooths it away
    noisy = [2.0, 0.1, 2.0, 2.0, 0.9, 0.9, 0.9]
    assert steps_to_threshold(noisy, 1.0) == 1.0
    assert steps_to_threshold(noisy, 1.0, window=3) == 6.0
    runs = steps_to_threshold(np.array([[3.0, 2.0, 1.0], [0.5, 0.5, 0.5], [4, 4, 4]]), 1.0)
    np.testing.assert_array_equal(runs[:2], [2.0, 0.0])
    assert math.isnan(runs[2])


def test_trailing_mean_uses_only_past_batches():
    np.testing.assert_allclose(trailing_mean([4.0, 2.0, 0.0, 6.0], 2), [4.0, 3.0, 1.0, 3.0])
    np.testing.assert_allclose(trailing_mean([4.0, 2.0, 0.0], 10), [4.0, 3.0, 2.0])
    runs = np.random.default_rng(0).random((3, 50))
    smoothed = trailing_mean(runs, 7)
    assert smoothed.shape == (3, 50)
    for t in (0, 6, 7, 49):
        np.testing.assert_allclose(smoothed[:, t], runs[:, max(0, t - 6):t + 1].mean(axis=1))
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        trailing_mean([1.0], 0)


def test_steps_to_threshold_rejects_bad_input():
    with pytest.raises(ValueError, match="losses must have shape"):
        steps_to_threshold(np.zeros((2, 2, 2)), 1.0)
    with pytest.raises(ValueError, match="losses must be finite"):
        steps_to_threshold([1.0, np.nan], 1.0)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        steps_to_threshold([1.0], "low")
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        steps_to_threshold([1.0], 1.0, window=0)


def test_compare_arms_agrees_with_utils_stats():
    rng = np.random.default_rng(7)
    base = rng.normal(size=10)
    arms = {"zero": base + 1.0 + 0.1 * rng.normal(size=10), "prior": base,
            "same": base + 0.3 * rng.normal(size=10)}
    result = compare_arms(arms, [("zero", "prior"), ("same", "prior")], "loss", digits=4)
    assert isinstance(result, ArmComparison)
    for name, v in arms.items():
        assert result.intervals[name] == mean_ci(v)
    assert result.differences[("zero", "prior")] == paired_difference(arms["zero"],
                                                                      arms["prior"])
    assert result.significant("zero", "prior")
    text = str(result)
    assert text.startswith("loss: mean (95 % CI) over 10 seeds")
    assert "paired differences (95 % CI, two-sided paired t-test):" in text
    assert "zero - prior: +" in text and "p < 1e-4, significant" in text
    assert max(len(line) for line in text.splitlines()) <= 99
    # a shift of 0.3 sd-noise with 10 pairs: the verdict follows the interval, whichever it is
    verdict = result.significant("same", "prior")
    assert ("same - prior" in text) and (("not significant" in text) != verdict)


def test_compare_arms_rejects_bad_input():
    with pytest.raises(ValueError, match="values must be a non-empty mapping"):
        compare_arms({}, [], "m")
    with pytest.raises(ValueError, match="same number of seeds"):
        compare_arms({"a": [1, 2, 3], "b": [1, 2]}, [], "m")
    with pytest.raises(ValueError, match="unknown arm"):
        compare_arms({"a": [1, 2], "b": [1, 3]}, [("a", "c")], "m")
    with pytest.raises(ValueError, match="two different arms"):
        compare_arms({"a": [1, 2], "b": [1, 3]}, [("a", "a")], "m")
    with pytest.raises(ValueError, match="at least 2 values"):
        compare_arms({"a": [1.0]}, [], "m")
    with pytest.raises(ValueError, match="digits must be an integer"):
        compare_arms({"a": [1, 2]}, [], "m", digits=0)
