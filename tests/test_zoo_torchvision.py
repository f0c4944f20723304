"""The practitioner tools on torchvision's architectures (issue 29), built offline with random
weights (``weights=None``): ResNet-18 and ViT-B/16. torchvision is released for one torch at a
time, so these run in .venv-zoo (``make test-zoo``, requirements-zoo.txt); in .venv, whose
torch has no matching torchvision, they are skipped. With COURSE_ZOO=1 (set by make test-zoo) a
torchvision that does not import is an error instead."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.zoo import COUNTS, Timer, classifier_tools, report_times
from utils.frameworks import output_graph


def _torchvision():
    try:
        import torchvision
    except Exception as error:  # a torchvision built for another torch fails with OSError
        if os.environ.get("COURSE_ZOO") == "1":
            raise
        pytest.skip(f"torchvision does not import here ({type(error).__name__}: "
                    f"{str(error)[:120]}); make test-zoo runs these tests in .venv-zoo",
                    allow_module_level=True)
    return torchvision


torchvision = _torchvision()


@pytest.fixture(scope="module")
def timer():
    timer = Timer()
    yield timer
    report_times(timer)


@pytest.fixture(scope="module")
def images():
    # two images at 32 x 32, channels first; ViT-B/16 is built for 32-pixel images (2 x 2
    # patches of 16), ResNet-18 pools any size down to 1 x 1
    return np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype("float32")


MODELS = {
    # name: (builder keyword arguments, the layer that computes the output)
    "resnet18": ({}, "fc"),
    "vit_b_16": ({"image_size": 32}, "heads.head"),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_torchvision_model(name, images, timer):
    import torch

    kwargs, head = MODELS[name]
    with timer.step(name, "build"):
        torch.manual_seed(0)
        model = getattr(torchvision.models, name)(weights=None, num_classes=len(COUNTS),
                                                  **kwargs)
    # the head is found from the computation, by torch.fx and by a traced pass alike
    assert [s.layer for s in output_graph(model).sources] == [head]
    assert [s.layer for s in output_graph(model, images).sources] == [head]
    report = classifier_tools(name, model, images, timer, activation="softmax")
    if name == "resnet18":
        # torchvision draws its convolutions with kaiming_normal_(mode="fan_out"): He (fan_out)
        rules = [row.rule for row in report.layers if row.layer_type == "Conv2d"]
        assert rules and all("He (fan_out)" in rule.split("/") for rule in rules), set(rules)
    assert model.training  # the tools put the mode back
