"""utils.initializers: fans, PyTorch's default bound, and bit-identical torch re-initialisation."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from utils.initializers import compute_fans, torch_default_bound, torch_default_init_

SHAPES = [(), (7,), (3, 5), (5, 3), (2, 3, 4), (3, 3, 6, 10), (10, 6, 3, 3), (2, 3, 4, 5, 6), (0, 4)]


# ------------------------------------------------------------------------------- compute_fans

@pytest.mark.parametrize("shape", SHAPES)
def test_keras_fans_match_keras(shape):
    from keras.src.initializers.random_initializers import compute_fans as keras_compute_fans

    assert compute_fans(shape, "keras") == keras_compute_fans(shape)


@pytest.mark.parametrize("shape", [s for s in SHAPES if len(s) >= 2])
def test_torch_fans_match_torch(shape):
    import torch

    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    assert compute_fans(shape, "torch") == expected


def test_fans_of_layouts_agree_on_the_same_layer():
    # A Conv2D from 6 to 10 channels, 3x3: Keras (3, 3, 6, 10), torch (10, 6, 3, 3).
    assert compute_fans((3, 3, 6, 10), "keras") == compute_fans((10, 6, 3, 3), "torch") == (54, 90)
    # Dense 48 -> 80: Keras (48, 80), torch (80, 48)
    assert compute_fans((48, 80), "keras") == compute_fans((80, 48), "torch") == (48, 80)


def test_fans_accept_numpy_and_torch_sizes():
    import torch

    assert compute_fans(np.array([3, 4]), "keras") == (3, 4)
    assert compute_fans(torch.Size([4, 3]), "torch") == (3, 4)


@pytest.mark.parametrize(
    ("shape", "layout", "message"),
    [
        ((3, 4), "jax", r"layout must be 'keras' or 'torch', got 'jax'"),
        ((3.0, 4), "keras", r"shape must hold non-negative integers"),
        ((3, -1), "torch", r"shape must hold non-negative integers"),
        ((True, 2), "keras", r"shape must hold non-negative integers"),
        ("34", "keras", r"shape must be a sequence of integers"),
        (5, "keras", r"shape must be a sequence of integers"),
        ((5,), "torch", r"shape must have at least 2 dimensions for layout 'torch'"),
        ((), "torch", r"shape must have at least 2 dimensions"),
    ],
)
def test_fans_errors(shape, layout, message):
    with pytest.raises(ValueError, match=message):
        compute_fans(shape, layout)


# ------------------------------------------------------------------------ torch_default_bound

def test_default_bound_reproduces_kaiming_arithmetic():
    import torch

    for fan_in in [1, 2, 3, 48, 54, 784, 4096]:
        weight = torch.empty(1, fan_in, dtype=torch.float64)
        torch.manual_seed(0)
        torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        torch.manual_seed(0)
        ours = torch.empty(1, fan_in, dtype=torch.float64).uniform_(
            -torch_default_bound(fan_in), torch_default_bound(fan_in))
        assert torch.equal(weight, ours)
        # equal to 1/sqrt(fan_in) up to double rounding (a few ulps)
        assert torch_default_bound(fan_in) == pytest.approx(1 / math.sqrt(fan_in), rel=4e-16)


@pytest.mark.parametrize("fan_in", [0, -3, 2.5, True, "4", None])
def test_default_bound_errors(fan_in):
    with pytest.raises(ValueError, match="fan_in must be a positive integer"):
        torch_default_bound(fan_in)


# ------------------------------------------------------------------------ torch_default_init_

def _factories():
    import torch
    import torch.nn as nn

    class Block(nn.Module):
        """A user container: children drawn in registration order, one of them shared."""

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(11, 6, padding_idx=0)
            self.rnn = nn.GRU(6, 5, batch_first=True)
            self.norm = nn.LayerNorm(5)
            self.head = nn.Linear(5, 3)
            self.tied = self.head  # the same module twice: drawn once, at construction

    return {
        "Linear": lambda: nn.Linear(7, 5),
        "Linear-no-bias": lambda: nn.Linear(3, 9, bias=False),
        "Linear-float64": lambda: nn.Linear(13, 4, dtype=torch.float64),
        "Linear-empty-input": lambda: nn.Linear(0, 3),
        "Bilinear": lambda: nn.Bilinear(3, 4, 5),
        "Bilinear-no-bias": lambda: nn.Bilinear(6, 2, 3, bias=False),
        "Conv1d": lambda: nn.Conv1d(4, 6, 5),
        "Conv1d-groups-dilation": lambda: nn.Conv1d(6, 9, 3, groups=3, dilation=2),
        "Conv2d": lambda: nn.Conv2d(3, 8, (3, 5)),
        "Conv2d-groups": lambda: nn.Conv2d(8, 4, 3, groups=4, bias=False),
        "Conv2d-channels-last": lambda: nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last),
        "Conv3d": lambda: nn.Conv3d(2, 3, (1, 2, 3), dilation=(1, 2, 1)),
        "Conv3d-float64": lambda: nn.Conv3d(2, 4, 2, groups=2, dtype=torch.float64),
        "ConvTranspose1d": lambda: nn.ConvTranspose1d(4, 6, 3, groups=2),
        "ConvTranspose2d": lambda: nn.ConvTranspose2d(6, 3, (2, 4), dilation=3),
        "ConvTranspose3d": lambda: nn.ConvTranspose3d(4, 6, 2, groups=2, dilation=2),
        "Embedding": lambda: nn.Embedding(20, 7),
        "Embedding-padding": lambda: nn.Embedding(20, 7, padding_idx=3),
        "Embedding-negative-padding": lambda: nn.Embedding(9, 4, padding_idx=-1),
        "EmbeddingBag": lambda: nn.EmbeddingBag(15, 4, padding_idx=2),
        "RNN": lambda: nn.RNN(5, 7),
        "RNN-relu-deep": lambda: nn.RNN(3, 4, num_layers=3, nonlinearity="relu"),
        "LSTM-bidirectional": lambda: nn.LSTM(5, 7, num_layers=2, bidirectional=True),
        "LSTM-proj": lambda: nn.LSTM(5, 7, num_layers=2, proj_size=3, bidirectional=True),
        "GRU-no-bias": lambda: nn.GRU(4, 6, num_layers=2, bias=False, bidirectional=True),
        "RNNCell": lambda: nn.RNNCell(3, 5),
        "LSTMCell": lambda: nn.LSTMCell(3, 5),
        "GRUCell": lambda: nn.GRUCell(3, 5, bias=False),
        "BatchNorm1d": lambda: nn.BatchNorm1d(5),
        "BatchNorm2d-no-affine": lambda: nn.BatchNorm2d(5, affine=False),
        "BatchNorm3d-no-stats": lambda: nn.BatchNorm3d(4, track_running_stats=False),
        "InstanceNorm2d-affine": lambda: nn.InstanceNorm2d(3, affine=True),
        "LayerNorm": lambda: nn.LayerNorm((3, 4)),
        "LayerNorm-no-bias": lambda: nn.LayerNorm(4, bias=False),
        "GroupNorm": lambda: nn.GroupNorm(2, 6),
        "RMSNorm": lambda: nn.RMSNorm(6),
        "PReLU": lambda: nn.PReLU(4, init=0.1),
        "MultiheadAttention": lambda: nn.MultiheadAttention(8, 2),
        "MultiheadAttention-kdim-vdim": lambda: nn.MultiheadAttention(8, 2, kdim=3, vdim=5),
        "MultiheadAttention-bias-kv": lambda: nn.MultiheadAttention(12, 3, add_bias_kv=True),
        "MultiheadAttention-all": lambda: nn.MultiheadAttention(
            6, 2, kdim=4, vdim=7, add_bias_kv=True, batch_first=True),
        "MultiheadAttention-no-bias": lambda: nn.MultiheadAttention(8, 4, bias=False),
        "TransformerEncoderLayer": lambda: nn.TransformerEncoderLayer(8, 2, 16),
        "TransformerDecoderLayer": lambda: nn.TransformerDecoderLayer(8, 2, 16, norm_first=True),
        "Sequential-mixed": lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
            nn.Linear(4, 2), nn.ModuleList([nn.PReLU(), nn.Linear(2, 2)])),
        "Block": Block,
    }


FACTORY_NAMES = list(_factories())


def _state(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _scramble(module):
    """Overwrite every floating tensor so the test proves each one is re-drawn, not kept."""
    import torch

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
            else:
                tensor.fill_(123)


# PyTorch itself warns when it constructs Linear(0, 3): the weight has no elements to draw.
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
@pytest.mark.parametrize("name", FACTORY_NAMES)
@pytest.mark.parametrize("seed", [0, 12345])
def test_bit_identical_to_the_constructor(name, seed):
    import torch

    make = _factories()[name]
    torch.manual_seed(seed)
    constructed = make()
    expected = _state(constructed)
    after_construction = torch.rand(3)  # where the global stream stood after construction

    module = make()
    _scramble(module)
    torch.manual_seed(seed)
    assert torch_default_init_(module) is module
    actual = _state(module)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), f"{name}: {key} differs"
    # the same number of draws: the global stream continues identically
    assert torch.equal(torch.rand(3), after_construction)


def test_padding_rows_are_zero():
    import torch.nn as nn

    for module in (nn.Embedding(10, 4, padding_idx=7), nn.EmbeddingBag(10, 4, padding_idx=7)):
        torch_default_init_(module)
        assert not module.weight[7].any()
        assert module.weight[6].abs().sum() > 0


def test_generator_draws_like_a_seeded_global_stream_and_leaves_it_alone():
    import torch
    import torch.nn as nn

    torch.manual_seed(5)
    expected = nn.LSTM(3, 4, num_layers=2).state_dict()
    torch.manual_seed(99)
    state_before = torch.random.get_rng_state()
    module = nn.LSTM(3, 4, num_layers=2)
    state_after_construction = torch.random.get_rng_state()
    torch_default_init_(module, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.random.get_rng_state(), state_after_construction)
    assert not torch.equal(state_before, state_after_construction)
    for key, value in module.state_dict().items():
        assert torch.equal(value, expected[key])


def test_order_of_construction_is_what_counts():
    """Children built in registration order: the transcript is the constructor's draw order."""
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    torch.manual_seed(0)
    container = nn.Sequential(second, first)  # registered in the opposite order
    torch_default_init_(container)
    # re-drawn in registration order: container[0] (`second`) gets the first draws
    torch.manual_seed(0)
    reference = nn.Linear(3, 3)
    assert torch.equal(container[0].weight, reference.weight)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_zero_element_weight_is_skipped_like_pytorch():
    import torch
    import torch.nn as nn

    torch.manual_seed(1)
    expected = nn.Linear(0, 4).bias.clone()
    module = nn.Linear(0, 4)
    torch.manual_seed(1)
    torch_default_init_(module)
    assert torch.equal(module.bias, expected)
    assert not module.bias.any()  # bound 0 for fan_in 0


def _error_cases():
    import torch
    import torch.nn as nn
    from torch.nn.utils import parametrizations

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 3)
            self.scale = nn.Parameter(torch.ones(3))

    class ZeroInitLinear(nn.Linear):
        def reset_parameters(self):
            nn.init.zeros_(self.weight)

    return [
        (Scaled, r"module contains a .*Scaled with parameters of its own \(\['scale'\]\)"),
        (lambda: nn.Sequential(nn.ParameterList([nn.Parameter(torch.ones(2))])),
         r"torch\.nn\.modules\.container\.ParameterList with parameters of its own"),
        (lambda: ZeroInitLinear(3, 3), r"ZeroInitLinear, which overrides reset_parameters\(\) of Linear"),
        (lambda: nn.LazyLinear(3), r"lazy torch\.nn\.modules\.linear\.LazyLinear"),
        (lambda: parametrizations.weight_norm(nn.Linear(3, 3)), r"parametrized"),
        (lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2),
         r"TransformerEncoder, whose constructor re-initialises or copies its sublayers"),
        (lambda: nn.Transformer(8, 2, 1, 1, 16, batch_first=True), r"Transformer, whose constructor"),
    ]


@pytest.mark.parametrize("case", range(7))
def test_unsupported_modules_raise_naming_the_type(case):
    make, message = _error_cases()[case]
    module = make()
    with pytest.raises(ValueError, match=message):
        torch_default_init_(module)


def test_not_a_torch_module():
    import keras

    with pytest.raises(ValueError, match=r"module must be a Keras 3 layer/model or a torch.nn.Module, got numpy"):
        torch_default_init_(np.zeros(3))
    with pytest.raises(ValueError, match=r"module must be a torch.nn.Module, got a Keras object"):
        torch_default_init_(keras.layers.Dense(2))


def test_generator_must_be_a_torch_generator():
    import torch.nn as nn

    with pytest.raises(ValueError, match="generator must be a torch.Generator or None, got Random"):
        torch_default_init_(nn.Linear(2, 2), generator=random.Random(0))


def test_torch_default_rule_is_what_torch_default_init_draws():
    import torch
    import torch.nn as nn

    from utils.initializers import TorchDefault, torch_default_rule

    layer = nn.Linear(300, 20)
    assert torch_default_rule(layer, "weight") == TorchDefault(
        "uniform", torch_default_bound(300), "kaiming_uniform_(a=√5)", 300, 20)
    assert torch_default_rule(layer, "bias").value == 1 / math.sqrt(300)
    assert torch_default_rule(nn.LSTM(4, 25), "weight_hh_l0").value == 1 / 5
    norm = nn.BatchNorm1d(3)
    assert [torch_default_rule(norm, n).value for n in ("weight", "bias", "running_var")] == \
        [1.0, 0.0, 1.0]
    assert torch_default_rule(nn.ReLU(), "weight", (2, 2)) is None
    assert torch_default_rule(layer, "not_a_param", (2,)) is None
    with pytest.raises(ValueError, match="name must name a tensor of module"):
        torch_default_rule(layer, "not_a_param")
    # The draws stay inside the bound the rule states, as the float32 weight stores it.
    torch_default_init_(layer, torch.Generator().manual_seed(0))
    bound = np.float32(torch_default_rule(layer, "weight").value)
    assert float(layer.weight.abs().max()) <= bound
