"""utils.frameworks: one walk over parameters and layers for Keras 3 and torch models."""
from __future__ import annotations

import numpy as np
import pytest

from utils.frameworks import assign, framework_of, leaf_layers, parameters, require_built, to_numpy


@pytest.fixture
def keras_nested():
    import keras

    inner = keras.Sequential([keras.layers.Dense(2, name="inner_dense")], name="inner")
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="d1"),
         keras.layers.BatchNormalization(name="bn"), inner],
        name="outer",
    )


@pytest.fixture
def torch_nested():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Sequential(nn.Linear(3, 2)))


def test_framework_of(keras_nested, torch_nested):
    assert framework_of(keras_nested) == "keras"
    assert framework_of(torch_nested) == "torch"
    with pytest.raises(ValueError, match=r"model must be a Keras 3 layer/model or a torch.nn.Module, got numpy"):
        framework_of(np.zeros(3))
    with pytest.raises(ValueError, match="net must be"):
        framework_of("a string", argument="net")


def test_keras_parameters_in_layer_order(keras_nested):
    infos = parameters(keras_nested)
    assert [(p.layer, p.layer_type, p.name, p.shape) for p in infos] == [
        ("d1", "Dense", "kernel", (4, 3)),
        ("d1", "Dense", "bias", (3,)),
        ("bn", "BatchNormalization", "gamma", (3,)),
        ("bn", "BatchNormalization", "beta", (3,)),
        ("inner/inner_dense", "Dense", "kernel", (3, 2)),
        ("inner/inner_dense", "Dense", "bias", (2,)),
    ]
    assert all(p.trainable for p in infos)
    with_stats = parameters(keras_nested, include_non_trainable=True)
    assert [p.name for p in with_stats if not p.trainable] == ["moving_mean", "moving_variance"]


def test_torch_parameters_in_layer_order(torch_nested):
    infos = parameters(torch_nested)
    assert [(p.layer, p.layer_type, p.name, p.shape) for p in infos] == [
        ("0", "Linear", "weight", (3, 4)),
        ("0", "Linear", "bias", (3,)),
        ("1", "BatchNorm1d", "weight", (3,)),
        ("1", "BatchNorm1d", "bias", (3,)),
        ("2.0", "Linear", "weight", (2, 3)),
        ("2.0", "Linear", "bias", (2,)),
    ]
    buffers = [p.name for p in parameters(torch_nested, include_non_trainable=True) if not p.trainable]
    # num_batches_tracked is an integer counter, not a parameter worth a histogram
    assert buffers == ["running_mean", "running_var"]


def test_tied_torch_parameters_listed_once():
    import torch.nn as nn

    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight
    infos = parameters(nn.Sequential(first, second))
    assert [p.label for p in infos] == ["0/weight", "0/bias", "1/bias"]


def test_values_match_the_framework(keras_nested, torch_nested):
    kernel = parameters(keras_nested)[0]
    np.testing.assert_array_equal(kernel.numpy(), keras_nested.get_layer("d1").kernel.numpy())
    weight = parameters(torch_nested)[0]
    np.testing.assert_array_equal(weight.numpy(), torch_nested[0].weight.detach().numpy())
    assert kernel.size == 12 and weight.label == "0/weight"


def test_unbuilt_keras_model_says_how_to_build():
    import keras

    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"has not been built.*keras.Input"):
        parameters(model)
    with pytest.raises(ValueError, match="has not been built"):
        require_built(model)


def test_leaf_layers(keras_nested, torch_nested):
    assert [name for name, _ in leaf_layers(keras_nested)] == ["d1", "bn", "inner_dense"]
    assert [name for name, _ in leaf_layers(torch_nested)] == ["0", "1", "2.0"]
    import torch.nn as nn

    assert [name for name, _ in leaf_layers(nn.Linear(2, 2))] == ["(root)"]


def test_assign_round_trips_and_checks_shape(keras_nested, torch_nested):
    for model in (keras_nested, torch_nested):
        first = parameters(model)[0]
        values = np.arange(first.size, dtype=np.float32).reshape(first.shape)
        assign(first, values)
        np.testing.assert_array_equal(first.numpy(), values)
        with pytest.raises(ValueError, match=r"values must have shape"):
            assign(first, values.ravel())


def test_to_numpy_copies():
    import torch

    tensor = torch.zeros(2)
    array = to_numpy(tensor)
    array[0] = 5
    assert tensor[0].item() == 0
    np.testing.assert_array_equal(to_numpy([1, 2]), np.array([1, 2]))
