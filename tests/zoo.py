"""Shared by the zoo tests (tests/test_zoo.py, tests/test_zoo_torchvision.py): the course's
practitioner tools run on one of the frameworks' own architectures, each step timed.

The models are built offline with random weights (``weights=None``); nothing is downloaded.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils.frameworks import forward  # noqa: E402
from utils.plotting import activation_histograms, gradient_histograms, weight_histograms  # noqa: E402,E501
from utils.priors import check_initial_loss, set_prior_bias  # noqa: E402
from utils.report import init_report  # noqa: E402
from utils.stats import LINE_WIDTH  # noqa: E402

#: Chapter 4's ten-class profile (the CIFAR-10 subset).
COUNTS = np.array([4000, 3700, 100, 4000, 400, 100, 50, 700, 700, 100])
FLOAT32_EPS = float(np.finfo(np.float32).eps)


class Timer:
    """Seconds per step of one model, reported at the end of the module."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    @contextmanager
    def step(self, model: str, what: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.rows.append((model, what, time.perf_counter() - start))

    def total(self, model: str) -> float:
        return sum(seconds for name, _, seconds in self.rows if name == model)

    def lines(self) -> list[str]:
        models = list(dict.fromkeys(name for name, _, _ in self.rows))
        lines = []
        for model in models:
            parts = ", ".join(f"{what} {seconds:.1f}" for name, what, seconds in self.rows
                              if name == model)
            lines.append(f"{model}: {self.total(model):.1f} s ({parts})")
        return lines


def report_times(timer: Timer) -> None:
    """Add the module's timings to the summary at the end of the run."""
    from tests.pytest_course import add_summary

    for line in timer.lines():
        add_summary("zoo: seconds per model (build, each tool)", line)


def classifier_tools(name: str, model, x, timer: Timer, activation: str | None = None,
                     gradient_loss=None):
    """Every practitioner tool on a classifier with a ten-class head; the right answer each.
    Returns the init_report.

    After ``set_prior_bias(..., kernel_scale=0)`` the head's kernel is zero, so the model must
    predict the prior for every input: that proves the bias went into the layer that computes
    the output. Then the initial-loss check must find the loss at the prior's entropy.
    """
    labels = np.arange(len(x)) % len(COUNTS)
    p = COUNTS / COUNTS.sum()
    with timer.step(name, "set_prior_bias"):
        bias = set_prior_bias(model, COUNTS, activation, kernel_scale=0.0)
    np.testing.assert_allclose(bias, np.log(p), rtol=1e-12)
    probabilities = forward(model, x)[0][1]
    if activation == "softmax":  # torch heads output logits
        shifted = np.exp(probabilities - probabilities.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    # a float32 softmax of logits of size <= |log p| < 5.7: a few ulps of each probability
    np.testing.assert_allclose(probabilities, np.tile(p, (len(x), 1)), rtol=64 * FLOAT32_EPS)
    with timer.step(name, "check_initial_loss"):
        check = check_initial_loss(model, x, labels, activation, warn=False)
    # the bias's prediction is the prior's cross-entropy on these labels (float32 storage of
    # the bias: relative rounding 6e-8), and with a zero kernel the measured loss is that
    # prediction up to the float32 rounding of the model's probabilities (a few ulps per log)
    assert check.predicted == pytest.approx(-np.mean(np.log(p[labels])), rel=1e-6)
    assert abs(check.measured - check.predicted) <= 16 * FLOAT32_EPS * (1 + check.predicted)
    with timer.step(name, "histograms"):
        weight_histograms(model, max_panels=4)
        activation_histograms(model, x, max_panels=4)
        gradient_histograms(model, x, labels, gradient_loss or "cross_entropy", max_panels=4)
        plt.close("all")
    with timer.step(name, "init_report"):
        report = init_report(model, x, labels, activation=activation)
    assert report.loss is not None and report.loss.layer == check.layer
    text = str(report)
    assert all(len(line) <= LINE_WIDTH for line in text.splitlines())
    assert [f.severity for f in report.findings] == sorted(
        (f.severity for f in report.findings), key=("problem", "warning", "note").index)
    return report
