"""utils.initializers, Chapter 6: orthogonal_matrix, orthogonal_, the looks-linear start and lsuv_
on Keras and torch."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.frameworks import parameters
from utils.initializers import (LOOKS_LINEAR_POSITIONS, LSUVRecord, deep_stack_jacobians,
                                input_output_jacobian, looks_linear_, looks_linear_matrix, lsuv_,
                                orthogonal_, orthogonal_matrix)

EPS32 = float(np.finfo(np.float32).eps)


def keras_mlp(sizes, activation="relu", fused=False, use_bias=True, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((sizes[0],))]
    for i, width in enumerate(sizes[1:]):
        last = i == len(sizes) - 2
        layers.append(keras.layers.Dense(width, use_bias=use_bias,
                                         activation=None if (last or not fused) else activation))
        if not last and not fused:
            layers.append(keras.layers.Activation(activation))
    return keras.Sequential(layers)


def torch_mlp(sizes, use_bias=True, seed=0):
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    modules = []
    for i in range(len(sizes) - 1):
        modules.append(nn.Linear(sizes[i], sizes[i + 1], bias=use_bias))
        if i < len(sizes) - 2:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def batch(n=128, features=16, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal((n, features))).astype(np.float32)


# ------------------------------------------------------------------------- orthogonal_matrix

@pytest.mark.parametrize(("rows", "cols"), [(5, 5), (7, 3), (3, 7), (1, 4), (4, 1)])
def test_orthogonal_matrix_has_orthonormal_columns_or_rows(rows, cols):
    q = orthogonal_matrix(np.random.default_rng(1), rows, cols, gain=2.5)
    assert q.shape == (rows, cols)
    gram = q.T @ q if rows >= cols else q @ q.T
    assert np.allclose(gram, 2.5**2 * np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_matrix_is_haar_distributed():
    # For a Haar-random orthogonal n x n matrix every entry has mean 0 and variance 1/n, and the
    # diagonal is not biased towards positive values (plain QR makes diag(R) positive, which
    # biases diag(Q)). 4,000 draws: five standard errors of the mean of Q_11 (std 1/sqrt(n)).
    n, draws = 6, 4000
    rng = np.random.default_rng(2)
    first = np.array([orthogonal_matrix(rng, n, n)[0, 0] for _ in range(draws)])
    assert abs(first.mean()) <= 5 / math.sqrt(n * draws)
    # E[Q_11^2] = 1/n; Q_11^2 lies in [0, 1], so its std is at most 1/2
    assert abs(np.mean(first**2) - 1 / n) <= 5 * 0.5 / math.sqrt(draws)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rng": np.random.RandomState(0), "rows": 3, "cols": 3},
         "rng must be a numpy.random.Generator"),
        ({"rows": 0, "cols": 3}, "rows must be an integer >= 1"),
        ({"rows": 3, "cols": 2.0}, "cols must be an integer >= 1"),
        ({"rows": 3, "cols": 3, "gain": float("nan")}, "gain must be a finite number"),
        ({"rows": 3, "cols": 3, "gain": "1"}, "gain must be a finite number"),
    ],
)
def test_orthogonal_matrix_errors(kwargs, message):
    arguments = {"rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(ValueError, match=message):
        orthogonal_matrix(**arguments)


# ------------------------------------------------------------------------------- orthogonal_

def test_orthogonal_gives_identical_weights_to_keras_and_torch_twins():
    keras_model, torch_model = keras_mlp([6, 9, 4]), torch_mlp([6, 9, 4])
    orthogonal_(keras_model, gain=1.5, seed=3)
    orthogonal_(torch_model, gain=1.5, seed=3)
    for k, t in zip(parameters(keras_model), parameters(torch_model)):
        k_values, t_values = k.numpy(), t.numpy()
        assert np.array_equal(k_values, t_values.T if k_values.ndim == 2 else t_values)
    kernel = parameters(keras_model)[0].numpy().astype(np.float64)  # (6, 9): orthonormal rows
    assert np.allclose(kernel @ kernel.T, 1.5**2 * np.eye(6), atol=32 * EPS32)
    assert all(np.all(p.numpy() == 0) for p in parameters(keras_model) if p.name == "bias")


def test_orthogonal_convolutions_match_across_frameworks_and_leave_other_layers_alone():
    import keras
    import torch
    import torch.nn as nn

    keras_cnn = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(5, 3),
                                  keras.layers.BatchNormalization(), keras.layers.Flatten(),
                                  keras.layers.Dense(2)])
    torch_cnn = nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.Flatten(),
                              nn.Linear(80, 2))
    with torch.no_grad():
        torch_cnn[1].weight.fill_(0.7)
    orthogonal_(keras_cnn, seed=4)
    orthogonal_(torch_cnn, seed=4)
    keras_kernel = parameters(keras_cnn)[0].numpy()  # (3, 3, 3, 5)
    torch_weight = parameters(torch_cnn)[0].numpy()  # (5, 3, 3, 3)
    assert np.array_equal(keras_kernel, np.transpose(torch_weight, (2, 3, 1, 0)))
    flat = keras_kernel.reshape(27, 5).astype(np.float64)
    assert np.allclose(flat.T @ flat, np.eye(5), atol=32 * EPS32)
    assert np.all(torch_cnn[1].weight.detach().numpy() == np.float32(0.7))  # BatchNorm untouched
    gamma = next(p for p in parameters(keras_cnn) if p.name == "gamma")
    assert np.all(gamma.numpy() == 1)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_orthogonal_errors(framework):
    if framework == "keras":
        import keras

        nothing = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization()])
        model = keras_mlp([4, 3])
    else:
        import torch.nn as nn

        nothing = nn.Sequential(nn.LayerNorm(4), nn.ReLU())
        model = torch_mlp([4, 3])
    with pytest.raises(ValueError, match="model has no layer with a weight to make orthogonal"):
        orthogonal_(nothing)
    with pytest.raises(ValueError, match="gain must be a finite number"):
        orthogonal_(model, gain=float("inf"))
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        orthogonal_(model, seed=-1)


def test_orthogonal_rejects_unbuilt_keras_models_and_other_objects():
    import keras

    with pytest.raises(ValueError, match="has not been built"):
        orthogonal_(keras.Sequential([keras.layers.Dense(3)]))
    with pytest.raises(ValueError, match="must be a Keras 3 layer/model or a torch.nn.Module"):
        orthogonal_(np.zeros((3, 3)))


# ------------------------------------------------------------------------------------- lsuv_

def dense_output_variances(model, x):
    """Variance of every dense layer's output before its activation, computed independently of
    lsuv_: in NumPy, layer by layer, from the parameters (plain MLPs only)."""
    values = x.astype(np.float64)
    params = parameters(model)
    keras_layout = params[0].name == "kernel"
    weights = [p for p in params if p.name in ("kernel", "weight")]
    biases = {p.layer: p for p in params if p.name == "bias"}
    variances = []
    for index, weight in enumerate(weights):
        kernel = weight.numpy().astype(np.float64)
        pre = values @ (kernel if keras_layout else kernel.T)
        if weight.layer in biases:
            pre = pre + biases[weight.layer].numpy()
        variances.append(pre.var())
        values = np.maximum(pre, 0.0)
    return np.array(variances)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_lsuv_sets_every_layer_to_unit_variance(framework):
    sizes = [16, 32, 32, 32, 8]
    model = keras_mlp(sizes) if framework == "keras" else torch_mlp(sizes)
    x = batch(scale=3.0)
    records = lsuv_(model, x, seed=5)
    assert [type(r) for r in records] == [LSUVRecord] * 4
    variances = dense_output_variances(model, x)
    assert np.all(np.abs(variances - 1) <= 0.1)
    for record, variance in zip(records, variances):
        assert math.isclose(record.variance, variance, rel_tol=1e-5)
        # bias zero after the orthogonal start: one rescaling is exact up to float32 rounding
        assert record.iterations <= 1
        assert math.isclose(record.scale, math.sqrt(1 / record.variance_before), rel_tol=1e-5) \
            or record.iterations == 0


def test_lsuv_gives_the_same_result_in_both_frameworks():
    sizes = [16, 24, 24, 6]
    x = batch()
    keras_records = lsuv_(keras_mlp(sizes), x, seed=6, tolerance=0.01)
    torch_records = lsuv_(torch_mlp(sizes), x, seed=6, tolerance=0.01)
    assert [r.iterations for r in keras_records] == [r.iterations for r in torch_records]
    # 4 layers of sums of at most 24 products: a few float32 roundings per layer
    assert np.allclose([r.scale for r in keras_records], [r.scale for r in torch_records],
                       rtol=4 * 5 * math.sqrt(24) * EPS32)


def test_lsuv_respects_target_and_tolerance():
    model = torch_mlp([16, 32, 8])
    records = lsuv_(model, batch(), target_variance=4.0, tolerance=1e-3)
    assert np.all(np.abs(dense_output_variances(model, batch()) / 4.0 - 1) <= 1e-3)
    assert all(abs(r.variance / 4.0 - 1) <= 1e-3 for r in records)


def test_lsuv_without_orthogonal_start_only_rescales():
    model = torch_mlp([16, 32, 32, 8], use_bias=False)
    before = [p.numpy().copy() for p in parameters(model)]
    records = lsuv_(model, batch(), orthogonal=False)
    for old, new, record in zip(before, parameters(model), records):
        assert np.allclose(new.numpy(), old * record.scale, rtol=4 * EPS32)


def test_lsuv_measures_keras_fused_activations_before_the_activation_and_restores_them():
    import keras

    model = keras_mlp([16, 32, 32, 4], fused=True)
    records = lsuv_(model, batch())
    variances = dense_output_variances(model, batch())  # pre-activations, computed in NumPy
    assert np.all(np.abs(variances - 1) <= 0.1)
    assert np.allclose([r.variance for r in records], variances, rtol=1e-5)
    assert model.layers[0].activation is keras.activations.relu
    assert model.layers[-1].activation is keras.activations.linear


def test_lsuv_on_a_functional_keras_model_with_branches():
    import keras

    inputs = keras.Input((16,))
    left = keras.layers.Dense(12, activation="tanh", name="left")(inputs)
    right = keras.layers.Dense(20, name="right")(inputs)
    right = keras.layers.Activation("relu")(right)
    joined = keras.layers.Concatenate()([left, right])
    outputs = keras.layers.Dense(3, name="head")(joined)
    model = keras.Model(inputs, outputs)
    x = batch()
    records = lsuv_(model, x)
    assert {r.name for r in records} == {"left", "right", "head"}
    assert records[-1].name == "head"  # after both branches it reads
    left_pre = x @ model.get_layer("left").kernel.numpy() + model.get_layer("left").bias.numpy()
    right_pre = x @ model.get_layer("right").kernel.numpy()
    features = np.concatenate([np.tanh(left_pre), np.maximum(right_pre, 0)], axis=1)
    head = features @ model.get_layer("head").kernel.numpy()
    for values in (left_pre, right_pre, head):
        assert abs(values.astype(np.float64).var() - 1) <= 0.1


def test_lsuv_on_a_torch_module_with_nested_blocks_follows_the_call_order():
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.second = nn.Linear(width, width)  # registered first, called second
            self.first = nn.Linear(width, width)

        def forward(self, x):
            return x + self.second(torch.relu(self.first(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Linear(16, 24)
            self.blocks = nn.ModuleList([Block(24), Block(24)])
            self.unused = nn.Linear(24, 24)
            self.head = nn.Linear(24, 5)

        def forward(self, x):
            x = self.stem(x)
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    torch.manual_seed(0)
    net = Net()
    x = batch()
    records = lsuv_(net, x)
    assert [r.name for r in records] == ["stem", "blocks.0.first", "blocks.0.second",
                                         "blocks.1.first", "blocks.1.second", "head"]
    outputs = {}

    def recorder(name):
        def hook(module, inputs, output):
            outputs.setdefault(name, output.detach().numpy())
        return hook

    hooks = [module.register_forward_hook(recorder(name))
             for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    with torch.no_grad():
        net(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    for record in records:
        assert abs(outputs[record.name].astype(np.float64).var() - 1) <= 0.1


def test_lsuv_on_convolutions_in_both_frameworks():
    import keras
    import torch.nn as nn

    images = np.random.default_rng(3).standard_normal((32, 8, 8, 3)).astype(np.float32)
    keras_cnn = keras.Sequential([keras.Input((8, 8, 3)),
                                  keras.layers.Conv2D(6, 3, activation="relu"),
                                  keras.layers.Conv2D(4, 3), keras.layers.Flatten(),
                                  keras.layers.Dense(2)])
    torch_cnn = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Conv2d(6, 4, 3), nn.Flatten(),
                              nn.Linear(64, 2))
    keras_records = lsuv_(keras_cnn, images, seed=2)
    torch_records = lsuv_(torch_cnn, images.transpose(0, 3, 1, 2), seed=2)
    assert [r.layer_type for r in keras_records] == ["Conv2D", "Conv2D", "Dense"]
    assert [r.layer_type for r in torch_records] == ["Conv2d", "Conv2d", "Linear"]
    for records in (keras_records, torch_records):
        assert all(abs(r.variance - 1) <= 0.1 for r in records)
    # same draws (Keras layout, transposed for torch), same images: same first-layer variance
    assert math.isclose(keras_records[0].variance_before, torch_records[0].variance_before,
                        rel_tol=1e-5)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_lsuv_cannot_converge_when_the_bias_alone_is_too_large(framework):
    model = keras_mlp([16, 8]) if framework == "keras" else torch_mlp([16, 8])
    bias = next(p for p in parameters(model) if p.name == "bias")
    from utils.frameworks import assign

    assign(bias, np.linspace(-6, 6, 8))  # variance 13.7 across units, far above the target 1
    with pytest.raises(ValueError, match=r"layer '.+' did not reach variance 1 .* after "
                                         r"max_iterations=3 rescalings .*bias alone has variance"):
        lsuv_(model, batch(), orthogonal=False, max_iterations=3)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_lsuv_errors_on_zero_and_non_finite_variance(framework):
    model = keras_mlp([16, 8, 4]) if framework == "keras" else torch_mlp([16, 8, 4])
    with pytest.raises(ValueError, match="has zero variance on x"):
        lsuv_(model, np.zeros((8, 16), dtype=np.float32))
    infinite = batch(n=8)
    infinite[0, 0] = np.inf
    with pytest.raises(ValueError, match="is not finite"):
        lsuv_(model, infinite)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_lsuv_argument_errors(framework):
    model = keras_mlp([16, 8]) if framework == "keras" else torch_mlp([16, 8])
    x = batch(n=8)
    cases = [
        ({"x": x[:1]}, "x must be a batch of at least 2 examples"),
        ({"x": x[0]}, "x must be a batch of at least 2 examples"),
        ({"target_variance": 0}, "target_variance must be a positive finite number"),
        ({"target_variance": float("nan")}, "target_variance must be a positive finite number"),
        ({"tolerance": 0}, r"tolerance must be a number in \(0, 1\)"),
        ({"tolerance": 1.5}, r"tolerance must be a number in \(0, 1\)"),
        ({"tolerance": "0.1"}, r"tolerance must be a number in \(0, 1\)"),
        ({"max_iterations": 0}, "max_iterations must be an integer >= 1"),
        ({"max_iterations": 2.5}, "max_iterations must be an integer >= 1"),
        ({"orthogonal": "yes"}, "orthogonal must be True or False"),
        ({"seed": 2**32}, r"seed must be an integer in \[0, 2\*\*32\)"),
    ]
    for overrides, message in cases:
        arguments = {"x": x, **overrides}
        with pytest.raises(ValueError, match=message):
            lsuv_(model, **arguments)
    with pytest.raises(ValueError, match="could not be passed through the model"):
        lsuv_(model, batch(n=8, features=5))


def test_lsuv_model_errors():
    import keras
    import torch.nn as nn

    with pytest.raises(ValueError, match="model has no layer lsuv_ can rescale"):
        lsuv_(nn.Sequential(nn.ReLU()), batch(n=4))
    with pytest.raises(ValueError, match="model has no layer lsuv_ can rescale"):
        lsuv_(keras.Sequential([keras.Input((16,)), keras.layers.LayerNormalization()]),
              batch(n=4))
    with pytest.raises(ValueError, match="has not been built"):
        lsuv_(keras.Sequential([keras.layers.Dense(3)]), batch(n=4))
    with pytest.raises(ValueError, match="must be a Keras 3 layer/model or a torch.nn.Module"):
        lsuv_("model", batch(n=4))

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.spare = nn.Linear(16, 4)

        def forward(self, x):
            return x * 2

    with pytest.raises(ValueError, match="none of the model's dense/convolution layers is used"):
        lsuv_(Unused(), batch(n=4))


# ------------------------------------------------------------------------------- looks-linear

@pytest.mark.parametrize(("rows", "cols", "position"), [(8, 3, "first"), (6, 10, "hidden"),
                                                        (4, 4, "hidden"), (3, 8, "last")])
def test_looks_linear_matrix_pairs_orthogonal_blocks(rows, cols, position):
    matrix = looks_linear_matrix(np.random.default_rng(1), rows, cols, position, gain=1.3)
    assert matrix.shape == (rows, cols)
    r, c = (rows // 2 if position != "last" else rows), (cols // 2 if position != "first" else cols)
    block = matrix[:r, :c]
    # the block is gain times a matrix with orthonormal columns (or rows)
    gram = block.T @ block if r >= c else block @ block.T
    assert np.allclose(gram, 1.3**2 * np.eye(min(r, c)), atol=1e-12)
    if position == "first":
        assert np.array_equal(matrix[r:], -block)
    elif position == "last":
        assert np.array_equal(matrix[:, c:], -block)
    else:
        assert np.array_equal(matrix, np.block([[block, -block], [-block, block]]))


def test_a_looks_linear_relu_stack_is_an_orthogonal_linear_map():
    # relu(z) - relu(-z) = z: the ReLU network computes A_L ... A_1 x exactly, whatever x is
    rng = np.random.default_rng(2)
    m, depth = 12, 9
    weights = ([looks_linear_matrix(rng, 2 * m, m, "first")]
               + [looks_linear_matrix(rng, 2 * m, 2 * m, "hidden") for _ in range(depth - 2)])
    readout = looks_linear_matrix(rng, m, 2 * m, "last")
    for x in rng.standard_normal((3, m)):
        jacobian = readout @ deep_stack_jacobians(weights, x, "relu")[depth - 1]
        assert np.allclose(jacobian.T @ jacobian, np.eye(m), atol=1e-12)  # float64 products
        blocks = [w[:m, :m] if w.shape[1] == 2 * m else w[:m] for w in weights]
        product = readout[:, :m] @ np.linalg.multi_dot(blocks[::-1])
        assert np.allclose(jacobian, product, atol=1e-12)
    # a Gaussian ReLU stack of the same variance is far from isometric
    gaussian = [rng.standard_normal((2 * m, m)) * math.sqrt(2 / m)] + [
        rng.standard_normal((2 * m, 2 * m)) * math.sqrt(1 / m) for _ in range(depth - 2)]
    squares = np.linalg.svd(deep_stack_jacobians(gaussian, x, "relu")[depth - 1],
                            compute_uv=False) ** 2
    assert squares.max() / squares[:m].min() > 10


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=7, cols=4, position="first"), "even number of rows"),
    (dict(rows=4, cols=5, position="hidden"), "even number of cols"),
    (dict(rows=4, cols=3, position="last"), "even number of cols"),
    (dict(rows=4, cols=4, position="middle"), "position must be one of"),
    (dict(rows=0, cols=4, position="first"), "rows"),
    (dict(rows=4, cols=4, position="first", gain=math.inf), "gain"),
])
def test_looks_linear_matrix_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        looks_linear_matrix(np.random.default_rng(0), **kwargs)
    assert LOOKS_LINEAR_POSITIONS == ("first", "hidden", "last")


def test_looks_linear_gives_both_frameworks_the_same_isometric_network():
    keras_model, torch_model = keras_mlp([6, 12, 12, 12, 6]), torch_mlp([6, 12, 12, 12, 6])
    looks_linear_(keras_model, seed=4)
    looks_linear_(torch_model, seed=4)
    for k, t in zip(parameters(keras_model), parameters(torch_model)):
        k_values, t_values = k.numpy(), t.numpy()
        assert np.array_equal(k_values, t_values.T if k_values.ndim == 2 else t_values)
    x = batch(1, 6)[0]
    for model in (keras_model, torch_model):
        jacobian = input_output_jacobian(model, x).astype(np.float64)
        # float32 through 4 layers of sums of at most 12 terms: 4 * 12 * eps, generously
        assert np.allclose(jacobian.T @ jacobian, np.eye(6), atol=4 * 12 * 5 * EPS32)


def test_looks_linear_errors():
    with pytest.raises(ValueError, match="at least two dense"):
        looks_linear_(torch_mlp([4, 6]))
    with pytest.raises(ValueError, match="even number"):
        looks_linear_(torch_mlp([4, 7, 4]))
    with pytest.raises(ValueError, match="gain"):
        looks_linear_(torch_mlp([4, 6, 4]), gain=math.nan)
    with pytest.raises(ValueError, match="seed"):
        looks_linear_(torch_mlp([4, 6, 4]), seed=-1)
