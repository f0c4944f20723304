"""utils.initializers, Chapter 6: Jacobians of deep stacks and residual MLPs in Keras and torch."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.frameworks import parameters
from utils.initializers import (RESIDUAL_INITS, ResidualTrace, deep_stack_jacobians,
                                init_residual_mlp_, input_output_jacobian, orthogonal_,
                                residual_mlp, trace_residual_mlp)

EPS32 = float(np.finfo(np.float32).eps)


def rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------- deep_stack_jacobians

@pytest.mark.parametrize("nonlinearity", ["linear", "tanh", "relu"])
def test_deep_stack_jacobians_match_torch_autograd(nonlinearity):
    import torch

    generator = rng(1)
    sizes = [5, 7, 4, 6]
    weights = [generator.standard_normal((sizes[i + 1], sizes[i])) for i in range(3)]
    biases = [generator.standard_normal(sizes[i + 1]) for i in range(3)]
    x = generator.standard_normal(5)
    activation = {"linear": lambda t: t, "tanh": torch.tanh, "relu": torch.relu}[nonlinearity]

    def network(inputs, depth):
        for w, b in zip(weights[:depth], biases[:depth]):
            inputs = activation(torch.from_numpy(w) @ inputs + torch.from_numpy(b))
        return inputs

    ours = deep_stack_jacobians(weights, x, nonlinearity, biases)
    assert sorted(ours) == [1, 2, 3]
    for depth in (1, 2, 3):
        expected = torch.autograd.functional.jacobian(
            lambda t: network(t, depth), torch.from_numpy(x)).numpy()
        assert ours[depth].shape == (sizes[depth], 5)
        assert np.allclose(ours[depth], expected, rtol=1e-12, atol=1e-12)


def test_deep_stack_jacobians_broadcast_over_networks_and_select_depths():
    generator = rng(2)
    weights = [generator.standard_normal((3, 4, 4)) for _ in range(5)]  # 3 networks
    x = generator.standard_normal((3, 4))
    batched = deep_stack_jacobians(weights, x, "tanh", depths=[2, 5])
    assert sorted(batched) == [2, 5] and batched[5].shape == (3, 4, 4)
    for net in range(3):
        single = deep_stack_jacobians([w[net] for w in weights], x[net], "tanh", depths=[5])
        assert np.allclose(single[5], batched[5][net], rtol=1e-13, atol=1e-15)
    # strided views (one layer of a (nets, layers, n, n) array) give the same result
    stacked = np.stack(weights, axis=1)
    views = deep_stack_jacobians(list(np.swapaxes(stacked, 0, 1)), x, "tanh", depths=[5])
    assert np.array_equal(views[5], batched[5])


def test_deep_stack_jacobians_of_orthogonal_linear_stacks_are_orthogonal():
    from utils.initializers import orthogonal_matrix

    generator = rng(3)
    weights = [orthogonal_matrix(generator, 16, 16) for _ in range(40)]
    jacobian = deep_stack_jacobians(weights, np.zeros(16), "linear", depths=[40])[40]
    assert np.allclose(np.linalg.svd(jacobian, compute_uv=False), 1.0, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nonlinearity": "gelu"}, "nonlinearity must be one of"),
        ({"weights": []}, "weights must be a non-empty sequence"),
        ({"weights": [np.ones(3)]}, "weights must be a non-empty sequence"),
        ({"x": np.ones(5)}, "x must end with the first weight's input size 3"),
        ({"weights": [np.ones((4, 3)), np.ones((2, 5))]},
         "weight 2 has input size 5 but layer 1 has 4"),
        ({"biases": [np.ones(4), np.ones(2)]}, r"biases must have one entry per weight \(1\)"),
        ({"depths": [0]}, r"depths must lie in 1..1"),
        ({"depths": [2]}, r"depths must lie in 1..1"),
    ],
)
def test_deep_stack_jacobians_errors(kwargs, message):
    arguments = {"weights": [np.ones((4, 3))], "x": np.ones(3), **kwargs}
    with pytest.raises(ValueError, match=message):
        deep_stack_jacobians(**arguments)


# --------------------------------------------------------------------- input_output_jacobian

def test_input_output_jacobian_of_linear_layers_is_the_weight():
    import keras
    import torch.nn as nn

    keras_dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    torch_linear = nn.Linear(4, 3)
    x = rng().standard_normal(4).astype(np.float32)
    kernel = parameters(keras_dense)[0].numpy()
    assert np.allclose(input_output_jacobian(keras_dense, x), kernel.T, atol=4 * EPS32)
    weight = parameters(torch_linear)[0].numpy()
    assert np.allclose(input_output_jacobian(torch_linear, x), weight, atol=4 * EPS32)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_input_output_jacobian_of_a_tanh_stack_matches_the_chain_rule(framework):
    from utils.variance import deep_mlp

    model = deep_mlp(framework, [6, 8, 8, 5], "tanh")
    orthogonal_(model, gain=1.3, seed=1)
    x = rng(4).standard_normal(6).astype(np.float32)
    params = parameters(model)
    weights = [p.numpy().astype(np.float64) for p in params if len(p.shape) == 2]
    if framework == "keras":
        weights = [w.T for w in weights]
    # deep_mlp's last layer is linear: chain through two tanh layers, then multiply
    hidden = deep_stack_jacobians(weights[:2], x, "tanh")[2]
    expected = weights[2] @ hidden
    measured = input_output_jacobian(model, x)
    assert measured.shape == (5, 6)
    assert np.allclose(measured, expected, rtol=0, atol=64 * EPS32 * np.abs(expected).max())


def test_input_output_jacobian_flattens_multidimensional_inputs_and_leaves_torch_mode_alone():
    import torch.nn as nn

    model = nn.Sequential(nn.Flatten(start_dim=1), nn.Linear(6, 2), nn.Dropout(0.5))
    model.train()
    jacobian = input_output_jacobian(model, np.ones((2, 3), dtype=np.float32))
    assert jacobian.shape == (2, 6)
    # dropout is off during the computation (the Jacobian is the weight), and the mode restored
    assert np.allclose(jacobian, parameters(model)[0].numpy(), atol=4 * EPS32)
    assert model.training


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_input_output_jacobian_errors(framework):
    from utils.variance import deep_mlp

    model = deep_mlp(framework, [4, 3], "linear")
    with pytest.raises(ValueError, match="x must be one example without the batch axis"):
        input_output_jacobian(model, np.zeros(0))
    with pytest.raises(ValueError, match=r"x with shape \(5,\) could not be passed through"):
        input_output_jacobian(model, np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="must be a Keras 3 layer/model or a torch.nn.Module"):
        input_output_jacobian([1, 2], np.zeros(4))


# ------------------------------------------------------------------------------ residual_mlp

@pytest.mark.parametrize("init", RESIDUAL_INITS)
def test_residual_mlp_is_identical_in_keras_and_torch(init):
    pre_norm = init.startswith("gpt2")
    rezero = init == "rezero"
    x = rng(5).standard_normal((16, 12)).astype(np.float32)
    traces = [trace_residual_mlp(residual_mlp(framework, 12, 4, pre_norm=pre_norm, rezero=rezero,
                                              init=init, seed=3), x)
              for framework in ("keras", "torch")]
    assert isinstance(traces[0], ResidualTrace)
    assert traces[0].stream.shape == (5, 16, 12)
    assert traces[0].hidden.shape == (4, 16, 48 if pre_norm else 12)
    scale = np.abs(traces[1].stream).max()
    # 4 blocks of sums of at most 48 products, a few float32 roundings each
    assert np.allclose(traces[0].stream, traces[1].stream, rtol=0,
                       atol=4 * 5 * math.sqrt(48) * EPS32 * scale)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_zero_schemes_make_every_block_the_identity(framework):
    x = rng(6).standard_normal((8, 10)).astype(np.float32)
    for init, rezero in (("zero_last", False), ("fixup", False), ("rezero", True)):
        record = trace_residual_mlp(residual_mlp(framework, 10, 5, rezero=rezero, init=init), x)
        assert all(np.array_equal(layer, x) for layer in record.stream)
        assert np.allclose(record.rms, np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_init_residual_mlp_standard_deviations_follow_the_table():
    # Weights are standard normals times the table's std: the sample std of n entries has
    # relative standard error 1/sqrt(2 n); allow five.
    width, blocks = 64, 9
    model = residual_mlp("torch", width, blocks)
    expected = {
        "preserving": (math.sqrt(1 / width), math.sqrt(2 / width)),
        "depth_scaled": (math.sqrt(1 / width), math.sqrt(2 / width) / 3),
        "fixup": (math.sqrt(1 / width) / 3, 0.0),
        "gpt2": (0.02, 0.02 / 3),
        "gpt2_unscaled": (0.02, 0.02),
    }
    for init, (std_in, std_out) in expected.items():
        init_residual_mlp_(model, init, seed=1)
        for block in model.blocks:
            for layer, std in ((block.fc_in, std_in), (block.fc_out, std_out)):
                values = layer.weight.detach().numpy().astype(np.float64)
                if std == 0:
                    assert np.all(values == 0)
                else:
                    assert abs(values.std() / std - 1) <= 5 / math.sqrt(2 * values.size)
                assert np.all(layer.bias.detach().numpy() == 0)


def test_init_residual_mlp_draws_the_same_normals_for_every_scheme():
    model = residual_mlp("keras", 8, 3)
    init_residual_mlp_(model, "preserving", seed=2)
    first = parameters(model)[0].numpy()
    init_residual_mlp_(model, "fixup", seed=2)
    assert np.allclose(parameters(model)[0].numpy(), first / math.sqrt(3), rtol=4 * EPS32)


def test_rezero_gates_and_layer_norm_parameters():
    import keras

    model = residual_mlp("keras", 8, 2, pre_norm=True, rezero=True, init="rezero")
    gates = [p for p in parameters(model) if p.name == "alpha"]
    assert len(gates) == 2 and all(float(g.numpy()) == 0.0 for g in gates)
    norms = [p for p in parameters(model) if p.name == "gamma"]
    assert all(np.all(p.numpy() == 1) for p in norms)
    assert all(layer.epsilon == 1e-5 for layer in model.layers
               if isinstance(layer, keras.layers.LayerNormalization))
    init_residual_mlp_(model, "gpt2")
    assert all(float(g.numpy()) == 1.0 for g in gates)  # gates open for the other schemes


def test_preserving_branches_double_the_stream_variance():
    # Theorem "Variance of a residual stream", part 2 with c = 1: given the stream, the next
    # mean square has expectation exactly twice the current one, so the block-by-block ratios
    # minus 2 are martingale differences; 24 blocks, five standard errors.
    x = rng(7).standard_normal((128, 128)).astype(np.float32)
    record = trace_residual_mlp(residual_mlp("torch", 128, 24, init="preserving", seed=4), x)
    q = record.rms.astype(np.float64) ** 2
    ratios = q[1:] / q[:-1] - 2
    assert abs(ratios.mean()) <= 5 * ratios.std(ddof=1) / math.sqrt(ratios.size)


def test_trace_residual_mlp_works_on_torch_tensors():
    import torch

    model = residual_mlp("torch", 6, 2)
    x = torch.randn(4, 6)
    record = trace_residual_mlp(model, x)
    assert np.allclose(record.stream[-1], model(x).detach().numpy())
    assert np.allclose(record.stream[0], x.numpy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"framework": "jax"}, "framework must be 'keras' or 'torch'"),
        ({"width": 0}, "width must be an integer >= 1"),
        ({"n_blocks": 1.5}, "n_blocks must be an integer >= 1"),
        ({"hidden": -1}, "hidden must be an integer >= 1"),
        ({"pre_norm": 1}, "pre_norm and rezero must be True or False"),
        ({"dtype": "float16"}, "dtype must be 'float32' or 'float64'"),
        ({"init": "he"}, "init must be one of"),
        ({"init": "rezero"},
         r"init='rezero' needs a model built with residual_mlp\(..., rezero=True\)"),
        ({"seed": -3}, r"seed must be an integer in \[0, 2\*\*32\)"),
    ],
)
def test_residual_mlp_errors(kwargs, message):
    arguments = {"framework": "torch", "width": 4, "n_blocks": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        residual_mlp(**arguments)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_residual_helpers_reject_other_models(framework):
    from utils.variance import deep_mlp

    other = deep_mlp(framework, [4, 4, 2], "relu")
    with pytest.raises(ValueError, match="model must be built by utils.initializers.residual_mlp"):
        init_residual_mlp_(other, "preserving")
    with pytest.raises(ValueError, match="model must be built by utils.initializers.residual_mlp"):
        trace_residual_mlp(other, np.zeros((2, 4), dtype=np.float32))
    model = residual_mlp(framework, 4, 2)
    with pytest.raises(ValueError, match="init must be one of"):
        init_residual_mlp_(model, "lecun")
