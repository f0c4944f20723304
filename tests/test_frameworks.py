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


def test_keras_leaf_layers_follow_call_order_in_nested_models():
    import keras

    inner = keras.Sequential([keras.layers.Dense(3, name="b"), keras.layers.Dense(3, name="c")])
    outer = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="a"), inner,
                              keras.layers.Activation("relu", name="act")])
    assert [name for name, _ in leaf_layers(outer)] == ["a", "b", "c", "act"]


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


# ---- trace: per-layer outputs and gradients -------------------------------------------------

from utils.frameworks import trace  # noqa: E402


def _twin_models(seed: int = 0):
    """A Keras and a torch MLP (3 -> 4 tanh -> 2) with identical parameters."""
    import keras
    import torch.nn as nn

    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(3, 4)), rng.normal(size=4)
    w2, b2 = rng.normal(size=(4, 2)), rng.normal(size=2)
    k = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Activation("tanh"),
                          keras.layers.Dense(2)])
    t = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    for p, v in zip(parameters(k), [w1, b1, w2, b2]):
        assign(p, v)
    for p, v in zip(parameters(t), [w1.T, b1, w2.T, b2]):
        assign(p, v)
    return k, t


def test_trace_forward_records_every_leaf_in_order():
    k, t = _twin_models()
    x = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    kt, tt = trace(k, x), trace(t, x)
    assert [r.layer_type for r in kt.layers] == ["Dense", "Activation", "Dense"]
    assert [r.layer_type for r in tt.layers] == ["Linear", "Tanh", "Linear"]
    assert kt.loss is None and kt.param_grads == [] and kt.layers[0].output_grad is None
    # Same parameters, same function: float32 agreement to a few ulps of O(1) values.
    for a, b in zip(kt.layers, tt.layers):
        np.testing.assert_allclose(a.output, b.output, rtol=0, atol=1e-5)
    np.testing.assert_allclose(kt.layers[1].output, np.tanh(kt.layers[0].output), atol=1e-6)


@pytest.mark.parametrize("loss, y", [
    ("mse", np.zeros((5, 2), np.float32)),
    ("cross_entropy", np.array([0, 1, 1, 0, 1])),
])
def test_trace_backward_agrees_between_frameworks(loss, y):
    k, t = _twin_models()
    x = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32)
    kt, tt = trace(k, x, y, loss), trace(t, x, y, loss)
    assert kt.loss == pytest.approx(tt.loss, rel=1e-5)
    for a, b in zip(kt.layers, tt.layers):
        np.testing.assert_allclose(a.output_grad, b.output_grad, rtol=1e-4, atol=1e-6)
    # Keras kernels are (in, out), torch weights (out, in): compare transposed.
    k_grads = [g for _, g in kt.param_grads]
    t_grads = [g.T for _, g in tt.param_grads]
    for a, b in zip(k_grads, t_grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_trace_gradient_matches_finite_difference():
    import torch.nn as nn

    model = nn.Linear(2, 1).double()
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    y = np.array([[1.0], [0.0]])
    result = trace(model, x, y, "mse")
    weight, grad = result.param_grads[0]
    eps = 1e-6  # central differences in float64: error O(eps^2) + rounding O(1e-16/eps)
    w = weight.numpy()
    for i in range(2):
        for sign, store in ((1, "plus"), (-1, "minus")):
            shifted = w.copy()
            shifted[0, i] += sign * eps
            assign(weight, shifted)
            value = trace(model, x, y, "mse").loss
            if store == "plus":
                plus = value
            else:
                minus = value
        assign(weight, w)
        assert grad[0, i] == pytest.approx((plus - minus) / (2 * eps), abs=1e-8)


def test_trace_subclassed_keras_model_and_restores_layers():
    import keras

    class TwoStep(keras.Model):
        def __init__(self):
            super().__init__()
            self.first = keras.layers.Dense(3, activation="relu")
            self.second = keras.layers.Dense(1)

        def call(self, x):
            return self.second(self.first(x) * 2.0)

    model = TwoStep()
    x = np.ones((4, 2), np.float32)
    model(x)
    result = trace(model, x, np.zeros((4, 1), np.float32), "mse")
    assert [r.layer_type for r in result.layers] == ["Dense", "Dense"]
    assert all(r.output_grad is not None for r in result.layers)
    assert "call" not in vars(model.first)  # the wrapper is gone


def test_trace_errors():
    import keras
    import torch.nn as nn

    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"x with shape \(4, 5\) could not be passed"):
        trace(keras_model, np.zeros((4, 5), np.float32))

    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"x with shape \(4, 5\) could not be passed"):
        trace(model, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="y and loss must be given together"):
        trace(model, np.zeros((4, 3), np.float32), y=np.zeros(4))
    with pytest.raises(ValueError, match="loss must be one of"):
        trace(model, np.zeros((4, 3), np.float32), y=np.zeros(4), loss="hinge")


def test_loss_function_names_mean_the_same_in_both_frameworks():
    import torch

    from utils.frameworks import loss_function

    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]], np.float32)
    labels = np.array([0, 2])
    keras_value = float(loss_function("keras", "cross_entropy")(labels, logits))
    torch_value = float(loss_function("torch", "cross_entropy")(torch.from_numpy(logits),
                                                               torch.from_numpy(labels)))
    # Exact value: mean of -log softmax at the labels, in float64.
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_softmax[[0, 1], labels].mean()
    assert keras_value == pytest.approx(expected, rel=1e-6)
    assert torch_value == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="framework must be"):
        loss_function("jax", "mse")
    with pytest.raises(ValueError, match="loss must be one of"):
        loss_function("torch", "hinge")


def test_to_numpy_bfloat16_becomes_float32():
    import torch

    array = to_numpy(torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, [1.5, -2.0])


# ------------------------------------------------------------------ weight_layers and layouts
from utils.frameworks import from_keras_layout, keras_layout, weight_layers  # noqa: E402


def test_weight_layers_pairs_each_weight_with_its_bias(keras_nested, torch_nested):
    import torch.nn as nn

    keras_entries = weight_layers(keras_nested)
    assert [(e.name, e.weight.name, e.bias.name, e.weight.shape) for e in keras_entries] == [
        ("d1", "kernel", "bias", (4, 3)), ("inner_dense", "kernel", "bias", (3, 2))]
    torch_entries = weight_layers(torch_nested)
    assert [(e.name, e.weight.shape, e.bias.shape) for e in torch_entries] == [
        ("0", (3, 4), (3,)), ("2.0", (2, 3), (2,))]
    assert all(e.weight.layer_object is e.layer for e in keras_entries + torch_entries)
    # "all" takes any >= 2-D weight (an embedding); "dense_conv" only dense/convolution layers.
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 2, bias=False))
    assert [e.name for e in weight_layers(model)] == ["0", "1"]
    only = weight_layers(model, "dense_conv")
    assert [e.name for e in only] == ["1"] and only[0].bias is None
    with pytest.raises(ValueError, match="kinds must be 'all' or 'dense_conv'"):
        weight_layers(model, "dense")
    with pytest.raises(ValueError, match="model must be a Keras 3 layer/model"):
        weight_layers(np.zeros(3))


def test_keras_layout_round_trips_torch_weights():
    import torch.nn as nn

    conv = nn.Conv2d(3, 5, kernel_size=(2, 4))
    assert keras_layout(tuple(conv.weight.shape), "torch") == (2, 4, 3, 5)
    assert keras_layout((2, 4, 3, 5), "keras") == (2, 4, 3, 5)
    kernel = np.arange(2 * 4 * 3 * 5).reshape(2, 4, 3, 5)
    torch_kernel = from_keras_layout(kernel, "torch")
    assert torch_kernel.shape == (5, 3, 2, 4)
    # element (out=o, in=i, h, w) of the torch kernel is element (h, w, i, o) of the Keras one
    assert torch_kernel[4, 1, 0, 3] == kernel[0, 3, 1, 4]
    assert from_keras_layout(kernel, "keras") is kernel
    with pytest.raises(ValueError, match="shape must have at least 2 dimensions"):
        keras_layout((3,), "torch")
    with pytest.raises(ValueError, match="framework must be 'keras' or 'torch'"):
        from_keras_layout(kernel, "jax")


# --------------------------------------------------------------------------------------------
# output_graph: the layers that compute each output, from what the model computes
# --------------------------------------------------------------------------------------------

def _sources(graph):
    return [(s.output_name, s.layer, [(step.name, step.kind) for step in s.after])
            for s in graph.sources]


def _torch_layouts():
    import torch
    import torch.nn as nn

    class HeadFirst(nn.Module):  # registered head first; called last, then reshaped
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 3)
            self.body = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))

        def forward(self, x):
            return torch.log_softmax(self.head(self.body(x).relu()).view(-1, 3), dim=-1)

    class Aux(nn.Module):  # an auxiliary head registered last and never called
        def __init__(self):
            super().__init__()
            self.body, self.cls, self.aux = nn.Linear(4, 4), nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.cls(self.body(x))

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.cls, self.reg = nn.Linear(4, 4), nn.Linear(4, 3), nn.Linear(4, 1)

        def forward(self, x):
            hidden = self.body(x)
            return self.cls(hidden), torch.sigmoid(self.reg(hidden)).squeeze(-1)

    return {
        "head first": (HeadFirst(), [("output", "head", ["same", "log_softmax"])]),
        "aux": (Aux(), [("output", "cls", [])]),
        "two outputs": (TwoOutputs(), [("0", "cls", []), ("1", "reg", ["sigmoid", "same"])]),
        "sequential": (nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.1), nn.Softmax(dim=1)),
                       [("output", "0", ["same", "softmax"])]),
        "one layer": (nn.Linear(4, 3), [("output", "(root)", [])]),
        "no parameters": (nn.Sequential(nn.ReLU(), nn.Softmax(dim=1)), []),
    }


@pytest.mark.parametrize("name", list(_torch_layouts()))
def test_output_graph_torch_fx_and_a_traced_pass_agree(name):
    from utils.frameworks import output_graph

    model, expected = _torch_layouts()[name]
    x = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    symbolic, traced = output_graph(model), output_graph(model, x)
    assert (symbolic.method, traced.method) == ("torch.fx", "torch autograd trace")
    for graph in (symbolic, traced):
        assert [(o, layer, [step.kind for step in steps]) for o, layer, steps
                in [(s.output_name, s.layer, s.after) for s in graph.sources]] == expected
    assert symbolic.outputs == traced.outputs
    assert model.training  # the traced pass ran in eval mode and put the mode back


def test_output_graph_keras_follows_the_graph_into_nested_and_subclassed_models():
    import keras

    from utils.frameworks import output_graph

    inner = keras.Sequential([keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, name="logits")], name="body")
    nested = keras.Sequential([keras.Input((4,)), inner,
                               keras.layers.Activation("softmax", name="act"),
                               keras.layers.Dropout(0.5, name="drop")])
    graph = output_graph(nested)
    assert _sources(graph) == [("drop", "logits", [("'act' (Activation)", "softmax"),
                                                   ("'drop' (Dropout)", "same")])]
    before = len(inner.layers[1]._inbound_nodes)
    assert output_graph(nested).sources[0].layer == "logits"
    assert len(inner.layers[1]._inbound_nodes) == before  # the symbolic calls left no trace

    class Sub(keras.Model):  # head defined before the body, a keras op after it
        def __init__(self):
            super().__init__()
            self.head = keras.layers.Dense(3, name="head")
            self.body = keras.layers.Dense(8, name="body")

        def call(self, x):
            return keras.ops.softmax(self.head(keras.ops.relu(self.body(x))))

    model = Sub()
    model(np.zeros((2, 4), np.float32))
    assert [(s.layer, [st.kind for st in s.after]) for s in output_graph(model).sources] == [
        ("head", ["softmax"])]

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, name="shared")(inputs)
    heads = {"c": keras.layers.Dense(3, activation="softmax", name="cls")(hidden),
             "r": keras.layers.Dense(1, name="reg")(hidden)}
    graph = output_graph(keras.Model(inputs, heads))
    assert graph.outputs == ("c", "r")
    assert [(s.output, s.layer) for s in graph.sources] == [(0, "cls"), (1, "reg")]
    assert graph.index("r") == 1 and graph.index(0) == 0
    with pytest.raises(ValueError, match=r"output must name one of the model's outputs "
                                         r"\['c', 'r'\] or be its position \(0 to 1\)"):
        graph.index("logits")


def test_output_graph_through_and_needs_input():
    import torch.nn as nn

    from utils.frameworks import NeedsInputError, output_graph

    transformer = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1,
                                 num_decoder_layers=1, dim_feedforward=16, batch_first=True)
    with pytest.raises(NeedsInputError, match="x must be given for this model"):
        output_graph(transformer)
    rng = np.random.default_rng(0)
    src, tgt = (rng.normal(size=(2, n, 8)).astype(np.float32) for n in (5, 4))
    graph = output_graph(transformer, (src, tgt))  # a tuple: two positional inputs
    assert [(s.layer, s.layer_type) for s in graph.sources] == [("decoder.norm", "LayerNorm")]
    # followed through the final normalisation, the output comes from the feed-forward branch
    behind = output_graph(transformer, (src, tgt),
                          through=lambda layer: type(layer).__name__ != "Linear")
    layers = {s.layer for s in behind.sources}
    assert "decoder.layers.0.linear2" in layers
    assert all(any(step.name == "'decoder.norm' (LayerNorm)" for step in s.after)
               for s in behind.sources)
    with pytest.raises(ValueError, match="through must be None or a callable"):
        output_graph(transformer, (src, tgt), through="Linear")


def test_model_outputs_forward_and_trace_select_one_output():
    import keras
    import torch
    import torch.nn as nn

    from utils.frameworks import forward, model_outputs, trace

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, name="shared")(inputs)
    keras_model = keras.Model(inputs, [keras.layers.Dense(3, name="cls")(hidden),
                                       keras.layers.Dense(1, name="reg")(hidden)])

    class TorchTwo(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared, self.cls, self.reg = nn.Linear(4, 6), nn.Linear(6, 3), nn.Linear(6, 1)

        def forward(self, x):
            hidden = self.shared(x)
            return {"cls": self.cls(hidden), "reg": self.reg(hidden)}

    torch_model = TorchTwo()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    for model in (keras_model, torch_model):
        outputs = forward(model, x)
        assert [name for name, _ in outputs] == ["cls", "reg"]
        assert [v.shape for _, v in outputs] == [(5, 3), (5, 1)]
        assert all(v.dtype == np.float64 for _, v in outputs)
        with pytest.raises(ValueError, match=r"output must be given: the model has 2 outputs "
                                             r"\['cls', 'reg'\] and loss='cross_entropy'"):
            trace(model, x, y, "cross_entropy")
        by_name = trace(model, x, y, "cross_entropy", output="cls")
        by_position = trace(model, x, y, "cross_entropy", output=0)
        assert by_name.loss == by_position.loss
        # the loss of the chosen output, computed here from its values in float64
        logits = outputs[0][1]
        shifted = logits - logits.max(axis=1, keepdims=True)
        expected = np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(5), y])
        assert by_name.loss == pytest.approx(expected, rel=1e-5)  # float32 forward
        # the unused head gets no gradient from it
        assert not any(p.layer.endswith("reg") for p, _ in by_name.param_grads)
    with torch.no_grad():
        value = torch_model(torch.from_numpy(x))
    assert [name for name, _ in model_outputs(torch_model, value)] == ["cls", "reg"]
    assert [name for name, _ in model_outputs(torch_model, (value["cls"], [value["reg"]]))] \
        == ["0", "1.0"]
