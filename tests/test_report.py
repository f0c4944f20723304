"""utils.report.init_report: each finding on a model built to have it, and not on a healthy twin;
the numbers it reports against the frameworks' own; the model left as it was."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.frameworks import parameters, trace
from utils.priors import set_prior_bias
from utils.report import THRESHOLDS, InitReport, init_report
from utils.stats import LINE_WIDTH

FLOAT32_EPS = float(np.finfo(np.float32).eps)


def batch(n=256, features=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype("float32")
    y = rng.choice(classes, size=n, p=np.arange(classes, 0, -1) / np.arange(1, classes + 1).sum())
    return x, y


def keras_mlp(activation="tanh", kernel_initializer="glorot_uniform", classes=4, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(64, activation, kernel_initializer=kernel_initializer, name="hidden"),
        keras.layers.Dense(classes, "softmax", name="out"),
    ])


def torch_mlp(seed=0, depth=2, width=64, classes=4):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    layers, size = [], 20
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, classes))


def by_layer(report: InitReport, layer: str):
    return [f for f in report.findings if f.layer == layer]


# ---- activations -----------------------------------------------------------------------------

def test_a_saturated_tanh_layer_comes_first_and_the_default_is_clean():
    x, y = batch()
    # N(0, 1) weights on 20 standard-normal inputs: pre-activations with std sqrt(20) = 4.5,
    # so P(|z| > 2.65) = 56 % saturate, beyond the 25 % of a "problem"
    report = init_report(keras_mlp(kernel_initializer=_normal(1.0)), x, y)
    first = report.findings[0]
    assert (first.severity, first.layer) == ("problem", "hidden") and "saturated" in first.what
    row = next(r for r in report.layers if r.name == "hidden")
    assert row.fraction_saturated > THRESHOLDS["saturated_problem"]
    clean = init_report(keras_mlp(), x, y)
    assert not any("saturated" in f.what for f in clean.findings)
    assert next(r for r in clean.layers if r.name == "hidden").rule == "default = Glorot"


def _normal(std):
    import keras

    return keras.initializers.RandomNormal(stddev=std, seed=0)


def test_dead_relu_units_beyond_chance():
    import torch.nn as nn

    x, y = batch()
    model = torch_mlp()
    nn.init.constant_(model[2].bias, -3.0)  # every unit of the second ReLU below zero
    report = init_report(model, x, y, activation="softmax")
    dead = by_layer(report, "3")
    assert dead and dead[0].severity == "problem" and "100% of its 64 units" in dead[0].what
    assert report.findings[0] is dead[0]
    # the layers it starves get exactly zero weight gradients, and are told so
    assert any(f.layer == "2/weight" and "exactly 0" in f.what for f in report.findings)
    assert not any("units are 0" in f.what
                   for f in init_report(torch_mlp(), x, y, activation="softmax").findings)


def test_few_examples_do_not_make_healthy_units_look_dead():
    """With n examples a healthy ReLU unit is dead on the batch with probability about 2^-n:
    a quarter of them for n = 2 (above the 10 % warning: the dead fraction of 512 units has
    mean 0.25 and sd 0.019, so it exceeds 0.10 by 7.9 sds), and there are no findings below
    16 examples. From 16 on the chance level 2^-16 (plus 5 binomial sds over the units,
    5 sqrt(2^-16 / 512) = 0.003) is below the 10 % warning."""
    x, y = batch(n=2)
    report = init_report(torch_mlp(width=512), x)
    row = next(r for r in report.layers if r.name == "1")
    assert row.fraction_dead > THRESHOLDS["dead_warning"]  # by chance, on two examples
    assert not any("units are 0" in f.what for f in report.findings)
    x, y = batch(n=16)
    assert not any("units are 0" in f.what
                   for f in init_report(torch_mlp(width=512), x).findings)


def test_growth_through_depth_is_flagged_and_he_keeps_the_scale():
    import torch
    import torch.nn as nn

    x, _ = batch()
    model = torch_mlp(depth=6)
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=2.0 * math.sqrt(2 / layer.in_features))
                nn.init.zeros_(layer.bias)
    # each ReLU layer multiplies the rms by 2 (variance 4x He's): 2^5 = 32 from the first to
    # the sixth weight layer, beyond the warning's factor 10
    report = init_report(model, x)
    grown = [f for f in report.findings if "grown" in f.what]
    assert grown and grown[0].layer == "10" and grown[0].severity == "warning"
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    he = init_report(model, x)
    assert not any("grown" in f.what or "shrunk" in f.what for f in he.findings)
    # (square layers have equal fans: He's fan_in and fan_out rules coincide)
    assert all("He" in r.rule.split("/") for r in he.layers if r.weight and r.name != "12")


# ---- gradients -------------------------------------------------------------------------------

def test_gradient_ratios_are_those_of_the_frameworks_loss():
    """The report backpropagates dL/d(output), computed in NumPy, through a probe loss; the
    gradients must be the framework's own for the same loss (float32: a few ulps relative)."""
    import keras

    x, y = batch()
    torch_model = torch_mlp()
    report = init_report(torch_model, x, y, activation="softmax", optimizer="sgd",
                         learning_rate=0.1)
    reference = {p.label: g for p, g in trace(torch_model, x, y, "cross_entropy").param_grads}
    for row in (r for r in report.layers if r.weight):
        weight = next(p for p in parameters(torch_model) if p.label == row.weight).numpy()
        expected = np.linalg.norm(reference[row.weight]) / np.linalg.norm(weight)
        assert row.grad_to_weight == pytest.approx(expected, rel=1e-4)
        assert row.update_to_data == pytest.approx(0.1 * expected, rel=1e-4)

    keras_model = keras_mlp()  # softmax probabilities out: the gradient goes through them
    report = init_report(keras_model, x, y, optimizer="adam", learning_rate=1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy()
    reference = {p.label: g for p, g in trace(keras_model, x, y, loss).param_grads}
    for row in (r for r in report.layers if r.weight):
        weight = next(p for p in parameters(keras_model) if p.label == row.weight).numpy()
        gradient = reference[row.weight]
        expected = np.linalg.norm(gradient) / np.linalg.norm(weight)
        assert row.grad_to_weight == pytest.approx(expected, rel=1e-4)
        # Adam's first step is lr * g / (|g| + eps), bias corrections cancelling
        step = 1e-3 * gradient / (np.abs(gradient) + 1e-7)
        assert row.update_to_data == pytest.approx(np.linalg.norm(step)
                                                   / np.linalg.norm(weight), rel=1e-4)


def test_a_large_learning_rate_is_flagged():
    x, y = batch()
    model = torch_mlp()
    report = init_report(model, x, y, activation="softmax", optimizer="adam",
                         learning_rate=1.0)
    # Adam moves every weight by about lr = 1, far more than the weights' own size (~0.1)
    assert all(f.severity == "problem" for f in report.findings if "changes it by" in f.what)
    assert {f.layer for f in report.findings if "changes it by" in f.what} == \
        {"0/weight", "2/weight", "4/weight"}
    assert not any("changes it by" in f.what for f in
                   init_report(model, x, y, activation="softmax").findings)


def test_without_labels_the_probe_gives_gradients_at_a_cross_entropy_scale():
    x, _ = batch()
    report = init_report(torch_mlp(), x)
    assert report.gradients == "probe" and report.loss is None
    assert all(r.grad_to_weight is not None and r.grad_to_weight > 0
               for r in report.layers if r.weight)
    again = init_report(torch_mlp(), x)  # seeded: the same probe
    assert [r.grad_to_weight for r in again.layers] == [r.grad_to_weight for r in report.layers]


# ---- initialisation rules --------------------------------------------------------------------

def test_named_rules_defaults_and_constants():
    import torch.nn as nn

    x, y = batch()
    he = keras_mlp(activation="relu", kernel_initializer="he_normal")
    report = init_report(he, x, y)
    assert next(r for r in report.layers if r.name == "hidden").rule == "He"
    note = by_layer(report, "hidden/kernel")
    assert note and note[0].severity == "note" and "not the framework's default" in note[0].what

    odd = keras_mlp(kernel_initializer=_normal(0.5))  # variance 0.25: 5x LeCun's 1/20
    finding = by_layer(init_report(odd, x, y), "hidden/kernel")[0]
    assert finding.severity == "warning" and "follows neither" in finding.what

    model = torch_mlp()
    nn.init.kaiming_normal_(model[0].weight, mode="fan_out", nonlinearity="relu")
    nn.init.constant_(model[2].weight, 0.05)
    report = init_report(model, x, y, activation="softmax")
    rules = {r.name: r.rule for r in report.layers if r.weight}
    assert rules == {"0": "He (fan_out)", "2": "constant 0.05", "4": "default"}
    constant = by_layer(report, "2/weight")[0]
    assert constant.severity == "problem" and "symmetry not broken" in constant.what

    # a zeroed output kernel is Chapter 4's deliberate start: a note, not a problem
    keras_model = keras_mlp()
    set_prior_bias(keras_model, np.bincount(y, minlength=4), kernel_scale=0.0)
    zeroed = by_layer(init_report(keras_model, x, y), "out/kernel")
    assert [f.severity for f in zeroed] == ["note"]


# ---- the initial loss ------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_the_initial_loss_against_the_prior(framework):
    x, y = batch()
    model = keras_mlp() if framework == "keras" else torch_mlp()
    activation = None if framework == "keras" else "softmax"
    report = init_report(model, x, y, activation=activation)
    assert report.loss is not None and not report.loss.ok
    prior = [f for f in report.findings if "the label prior" in f.what]
    assert prior and "set_prior_bias" in prior[0].suggestion
    set_prior_bias(model, np.bincount(y, minlength=4), activation)
    after = init_report(model, x, y, activation=activation)
    assert after.loss.ok and not any("the label prior" in f.what for f in after.findings)
    assert after.ok


# ---- the model is left alone; text; errors ---------------------------------------------------

def test_the_model_is_left_as_it_was():
    import keras
    import torch
    import torch.nn as nn

    x, y = batch()
    torch.manual_seed(0)
    torch_model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                nn.Dropout(0.5), nn.Linear(32, 4))
    torch_model.train()
    keras.utils.set_random_seed(0)
    keras_model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32),
                                    keras.layers.BatchNormalization(), keras.layers.ReLU(),
                                    keras.layers.Dropout(0.5), keras.layers.Dense(4)])
    for model, activation in ((torch_model, "softmax"), (keras_model, "softmax")):
        before = [p.numpy() for p in parameters(model, include_non_trainable=True)]
        init_report(model, x, y, activation=activation)
        after = [p.numpy() for p in parameters(model, include_non_trainable=True)]
        assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert torch_model.training and all(p.grad is None for p in torch_model.parameters())


def test_report_text_fits_the_page():
    x, y = batch()
    report = init_report(keras_mlp(kernel_initializer=_normal(1.0)), x, y)
    text = str(report)
    assert all(len(line) <= LINE_WIDTH for line in text.splitlines()), text
    assert "1. [problem] 'hidden'" in text
    assert report.table(max_rows=1).count("\n") == 2  # header, one row, "... more"
    assert report.worst("problem") == tuple(f for f in report.findings
                                            if f.severity == "problem")
    with pytest.raises(ValueError, match="severity must be one of"):
        report.worst("bad")
    with pytest.raises(ValueError, match="max_rows must be None or a positive integer"):
        report.table(max_rows=0)


def test_errors_name_the_argument():
    import keras

    x, y = batch()
    model = torch_mlp()
    with pytest.raises(ValueError, match="optimizer must be one of \\('sgd', 'adam'\\)"):
        init_report(model, x, optimizer="rmsprop")
    with pytest.raises(ValueError, match="learning_rate must be"):
        init_report(model, x, learning_rate=0)
    with pytest.raises(ValueError, match="saturation must be a number strictly between"):
        init_report(model, x, saturation=1)
    with pytest.raises(ValueError, match="x must be a batch of inputs"):
        init_report(model, None)
    with pytest.raises(ValueError, match="activation could not be inferred"):
        init_report(model, x, y)  # torch logits: the activation must be stated
    keras.utils.set_random_seed(0)
    inputs = keras.Input((20,))
    hidden = keras.layers.Dense(8, name="body")(inputs)
    two = keras.Model(inputs, [keras.layers.Dense(4, "softmax", name="cls")(hidden),
                               keras.layers.Dense(1, name="reg")(hidden)])
    with pytest.raises(ValueError, match=r"output must be given: the model has 2 outputs"):
        init_report(two, x)
    with pytest.raises(ValueError, match=r"2 candidate output layers"):
        init_report(two, x, y)
    chosen = init_report(two, x, y, output="cls")
    assert chosen.loss.layer == "cls"
    assert any(f.layer.startswith("reg/") and "no gradient" in f.what for f in chosen.findings)
