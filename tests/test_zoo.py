"""The practitioner tools on the frameworks' own architectures (issue 29), built offline with
random weights: keras.applications (ResNet50, MobileNetV3Small, EfficientNetB0) and
torch.nn.Transformer. Each tool gives the right answer or a clear ValueError; the time of each
model is written to the terminal at the end of the module (README.md quotes them).

torchvision's models are in tests/test_zoo_torchvision.py (`make test-zoo`)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.zoo import COUNTS, Timer, classifier_tools, report_times
from utils.frameworks import output_graph
from utils.plotting import activation_histograms, gradient_histograms, weight_histograms
from utils.priors import check_initial_loss, set_prior_bias
from utils.report import init_report


@pytest.fixture(scope="module")
def timer():
    timer = Timer()
    yield timer
    report_times(timer)


@pytest.fixture(scope="module")
def images():
    # two images at 32 x 32, the smallest size all three applications accept
    return np.random.default_rng(0).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")


KERAS_APPLICATIONS = {
    # name: (the layer that computes the output, the rule init_report must find for the
    # convolutions: ResNet50 keeps Keras's default, EfficientNet draws He with fan_out)
    "ResNet50": ("predictions", "default"),
    "MobileNetV3Small": ("logits", None),
    "EfficientNetB0": ("predictions", "He (fan_out)"),
}


@pytest.mark.parametrize("name", list(KERAS_APPLICATIONS))
def test_keras_application(name, images, timer):
    import keras

    head, conv_rule = KERAS_APPLICATIONS[name]
    with timer.step(name, "build"):
        keras.utils.set_random_seed(0)
        model = getattr(keras.applications, name)(weights=None, input_shape=(32, 32, 3),
                                                  classes=len(COUNTS))
    sources = output_graph(model).sources
    assert [s.layer for s in sources] == [head]
    report = classifier_tools(name, model, images, timer,
                              gradient_loss=keras.losses.SparseCategoricalCrossentropy())
    if conv_rule is not None:
        rules = [row.rule for row in report.layers if row.layer_type == "Conv2D"]
        # a square kernel's fans coincide, and so may rules ("He/He (fan_out)")
        assert rules and all(rule.startswith(conv_rule) or conv_rule in rule.split("/")
                             for rule in rules), set(rules)


@pytest.fixture(scope="module")
def transformer(timer):
    import torch
    import torch.nn as nn

    with timer.step("nn.Transformer", "build"):
        torch.manual_seed(0)
        model = nn.Transformer(batch_first=True)  # the defaults: d_model 512, 6 + 6 layers
    return model


def test_torch_transformer_has_no_output_bias(transformer, timer):
    """nn.Transformer ends with the decoder's LayerNorm: there is no classification head, and
    the tools say so; the histograms and init_report work on its two inputs."""
    name = "nn.Transformer"
    rng = np.random.default_rng(0)
    src = rng.normal(size=(2, 10, 512)).astype("float32")
    tgt = rng.normal(size=(2, 9, 512)).astype("float32")
    with timer.step(name, "set_prior_bias"):
        with pytest.raises(ValueError, match="x must be given for this model: its forward "
                                             "could not be traced symbolically"):
            set_prior_bias(transformer, COUNTS, "softmax")
        with pytest.raises(ValueError, match=r"model must contain a Dense/Linear or convolution "
                                             r"output layer: its output is computed by layer "
                                             r"'decoder.norm' \(LayerNorm\)"):
            set_prior_bias(transformer, COUNTS, "softmax", x=(src, tgt))
    with timer.step(name, "check_initial_loss"):
        with pytest.raises(ValueError, match="'decoder.norm' \\(LayerNorm\\)"):
            check_initial_loss(transformer, (src, tgt), np.zeros(2, int), "softmax")
    with timer.step(name, "histograms"):
        weight_histograms(transformer, max_panels=4)
        activation_histograms(transformer, (src, tgt), max_panels=4)
        gradient_histograms(transformer, (src, tgt), np.zeros((2, 9, 512), "float32"), "mse",
                            max_panels=4)
    with timer.step(name, "init_report"):
        report = init_report(transformer, (src, tgt))
    assert report.gradients == "probe" and report.layers
    with pytest.raises(ValueError, match="'decoder.norm' \\(LayerNorm\\)"):
        init_report(transformer, (src, tgt), np.zeros(2, int), activation="softmax")
    assert transformer.training  # left as it was


def test_torch_transformer_with_a_classification_head(transformer, timer):
    """The same Transformer under a linear head on the first target position: torch.fx cannot
    trace it, so the tools run it on x and find the head from the autograd graph."""
    import torch.nn as nn

    class Classifier(nn.Module):
        def __init__(self, body):
            super().__init__()
            self.head = nn.Linear(512, len(COUNTS))  # registered before the body
            self.body = body

        def forward(self, src, tgt):
            return self.head(self.body(src, tgt)[:, 0])

    model = Classifier(transformer)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4, 10, 512)).astype("float32"),
         rng.normal(size=(4, 9, 512)).astype("float32"))
    with timer.step("nn.Transformer + head", "set_prior_bias"):
        with pytest.raises(ValueError, match="x must be given"):
            set_prior_bias(model, COUNTS, "softmax")
        set_prior_bias(model, COUNTS, "softmax", x=x, kernel_scale=0.0)
    np.testing.assert_allclose(model.head.bias.detach().numpy(),
                               np.log(COUNTS / COUNTS.sum()), rtol=1e-6)
    labels = np.arange(4) % len(COUNTS)
    with timer.step("nn.Transformer + head", "check_initial_loss"):
        check = check_initial_loss(model, x, labels, "softmax", warn=False)
    assert check.layer == "head" and check.excess == pytest.approx(0.0, abs=1e-6)
    with timer.step("nn.Transformer + head", "init_report"):
        report = init_report(model, x, labels, activation="softmax")
    assert report.loss.layer == "head"
