"""Explicit re-creations of the frameworks' default initialisations (Chapter 1).

Chapter 1 argues that a model's initialisation should be written out rather than left to a
library default, so that it survives a change of framework or version. This module holds the
written-out versions:

- :func:`compute_fans` -- fan-in and fan-out of a weight shape in Keras's or torch's layout;
- :func:`torch_default_bound` -- the bound of PyTorch's default ``U(-b, b)`` weight
  initialisation, with the exact floating-point arithmetic PyTorch uses;
- :func:`torch_default_init_` -- re-initialise every parameter of a ``torch.nn.Module`` tree the
  way the constructors did, bit for bit, with every distribution and draw written out.

Gains and variance-scaling standard deviations live in :mod:`utils.variance` (Chapter 2).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Literal

from utils.frameworks import framework_of

__all__ = ["Layout", "compute_fans", "torch_default_bound", "torch_default_init_"]

Layout = Literal["keras", "torch"]

# PyTorch's Linear/conv default is kaiming_uniform_(a=sqrt(5)); see torch_default_bound.
_TORCH_DEFAULT_NEGATIVE_SLOPE = math.sqrt(5.0)


def compute_fans(shape: Sequence[int], layout: Layout) -> tuple[int, int]:
    """Fan-in and fan-out of a weight tensor, with the rule each framework's initializers use.

    Chapter 1, section "Weight layout and fans", explains the two layouts.

    Parameters
    ----------
    shape
        The tensor's shape as the framework stores it.
    layout
        ``"keras"``: dense kernels are ``(in, out)``, convolution kernels
        ``(*kernel_size, in_channels / groups, out_channels)``; a vector counts as
        ``fan_in = fan_out = len`` and a scalar as ``1, 1`` (Keras's ``compute_fans``).
        ``"torch"``: dense weights are ``(out, in)``, convolution weights
        ``(out_channels, in_channels / groups, *kernel_size)``; fewer than two dimensions is
        an error, as in ``torch.nn.init``.

    Returns
    -------
    (fan_in, fan_out)
        The number of inputs (outputs) per unit times the receptive field size, i.e. the
        product of the kernel's spatial dimensions.

    Notes
    -----
    Both rules read the channel axes positionally. For a *transposed* convolution the stored
    kernel has its channel axes the other way round (Keras ``(*k, out, in)``, torch
    ``(in, out / groups, *k)``), so what these functions call ``fan_in`` is computed from the
    layer's *output* channels. That is what the frameworks' initializers do, and it is what
    this function reproduces.

    Raises
    ------
    ValueError
        If ``layout`` is not ``"keras"`` or ``"torch"``, if ``shape`` holds anything but
        non-negative integers, or if a torch shape has fewer than two dimensions.
    """
    if layout not in ("keras", "torch"):
        raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
    import numbers

    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__iter__"):
        raise ValueError(f"shape must be a sequence of integers, got {shape!r}")
    items = tuple(shape)
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
               for d in items):
        raise ValueError(f"shape must hold non-negative integers, got {items!r}")
    dims = tuple(int(d) for d in items)
    if layout == "keras":
        if len(dims) == 0:
            return 1, 1
        if len(dims) == 1:
            return dims[0], dims[0]
        receptive_field = math.prod(dims[:-2])
        return dims[-2] * receptive_field, dims[-1] * receptive_field
    if len(dims) < 2:
        raise ValueError(
            f"shape must have at least 2 dimensions for layout 'torch' (torch.nn.init "
            f"computes no fans for a vector), got {dims!r}"
        )
    receptive_field = math.prod(dims[2:])
    return dims[1] * receptive_field, dims[0] * receptive_field


def torch_default_bound(fan_in: int) -> float:
    """Bound ``b`` of PyTorch's default ``U(-b, b)`` for ``Linear`` and convolution weights.

    PyTorch calls ``kaiming_uniform_(w, a=sqrt(5))``: gain ``sqrt(2 / (1 + a**2)) = sqrt(1/3)``,
    std ``gain / sqrt(fan_in)`` and bound ``sqrt(3) * std``, which is ``1 / sqrt(fan_in)``
    (Chapter 1 derives it). This function performs those same double-precision operations, in
    the same order, so a float64 weight drawn with it is bit-identical to PyTorch's (computing
    ``1 / sqrt(fan_in)`` directly differs in the last bit for most fan-ins, which float32 rounds
    away but float64 does not).

    Parameters
    ----------
    fan_in
        A positive integer: ``in_features``, or ``in_channels / groups`` times the kernel size.

    Raises
    ------
    ValueError
        If ``fan_in`` is not a positive integer.
    """
    if isinstance(fan_in, bool) or not isinstance(fan_in, int) or fan_in <= 0:
        raise ValueError(f"fan_in must be a positive integer, got {fan_in!r}")
    gain = math.sqrt(2.0 / (1 + _TORCH_DEFAULT_NEGATIVE_SLOPE**2))
    std = gain / math.sqrt(fan_in)
    return math.sqrt(3.0) * std


# ---------------------------------------------------------------------------------------------
# torch_default_init_: one function per module family, each a transcription of what that
# family's constructor draws, in the order it draws it.
# ---------------------------------------------------------------------------------------------

def _uniform_(tensor: Any, bound: float, generator: Any) -> None:
    tensor.uniform_(-bound, bound, generator=generator)


def _default_weight_(weight: Any, generator: Any) -> None:
    """U(+-1/sqrt(fan_in)) for a Linear/conv weight (PyTorch skips zero-element tensors)."""
    if 0 in weight.shape:
        return
    fan_in, _ = compute_fans(tuple(weight.shape), "torch")
    _uniform_(weight, torch_default_bound(fan_in), generator)


def _default_bias_(bias: Any, weight: Any, generator: Any) -> None:
    fan_in, _ = compute_fans(tuple(weight.shape), "torch")
    _uniform_(bias, 1 / math.sqrt(fan_in) if fan_in > 0 else 0, generator)


def _xavier_bound(shape: tuple[int, ...]) -> float:
    fan_in, fan_out = compute_fans(shape, "torch")
    return math.sqrt(3.0) * (1.0 * math.sqrt(2.0 / float(fan_in + fan_out)))


def _xavier_std(shape: tuple[int, ...]) -> float:
    fan_in, fan_out = compute_fans(shape, "torch")
    return 1.0 * math.sqrt(2.0 / float(fan_in + fan_out))


def _init_linear(module: Any, generator: Any) -> None:
    _default_weight_(module.weight, generator)
    if module.bias is not None:
        _default_bias_(module.bias, module.weight, generator)


def _init_bilinear(module: Any, generator: Any) -> None:
    # Bilinear's bound uses in1_features only (weight is (out, in1, in2)), not the fan-in.
    bound = 1 / math.sqrt(module.weight.size(1))
    _uniform_(module.weight, bound, generator)
    if module.bias is not None:
        _uniform_(module.bias, bound, generator)


def _init_conv(module: Any, generator: Any) -> None:
    import torch

    weight = module.weight
    if weight.is_contiguous():
        _default_weight_(weight, generator)
    else:
        # PyTorch draws into a contiguous buffer and copies, so the draws land in the same
        # logical positions whatever the memory format (e.g. channels_last).
        buffer = torch.empty_like(weight, memory_format=torch.contiguous_format)
        _default_weight_(buffer, generator)
        weight.copy_(buffer)
    if module.bias is not None:
        _default_bias_(module.bias, weight, generator)


def _init_embedding(module: Any, generator: Any) -> None:
    module.weight.normal_(0.0, 1.0, generator=generator)
    if module.padding_idx is not None:
        module.weight[module.padding_idx].fill_(0)


def _init_recurrent(module: Any, generator: Any) -> None:
    # Every tensor, weights and biases of every layer and direction, in registration order,
    # from U(+-1/sqrt(hidden_size)): the bound ignores the input size and proj_size.
    bound = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for tensor in module.parameters():
        _uniform_(tensor, bound, generator)


def _init_norm_with_stats(module: Any, generator: Any) -> None:
    if module.track_running_stats:
        module.running_mean.zero_()
        module.running_var.fill_(1)
        module.num_batches_tracked.zero_()
    if module.affine:
        module.weight.fill_(1)
        if module.bias is not None:
            module.bias.zero_()


def _init_affine_norm(flag: str) -> Callable[[Any, Any], None]:
    def init(module: Any, generator: Any) -> None:
        if getattr(module, flag):
            module.weight.fill_(1)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()

    return init


def _init_prelu(module: Any, generator: Any) -> None:
    module.weight.fill_(module.init)


def _init_multihead_attention(module: Any, generator: Any) -> None:
    # The constructor builds out_proj (a Linear, which draws its weight AND its bias) before
    # it initialises its own tensors; the bias draw is then overwritten with zeros, but it has
    # already advanced the generator, so it must be drawn here too.
    _init_linear(module.out_proj, generator)
    if module._qkv_same_embed_dim:
        weights = [module.in_proj_weight]
    else:
        weights = [module.q_proj_weight, module.k_proj_weight, module.v_proj_weight]
    for weight in weights:
        _uniform_(weight, _xavier_bound(tuple(weight.shape)), generator)
    if module.in_proj_bias is not None:
        module.in_proj_bias.zero_()
        module.out_proj.bias.zero_()
    for extra in (module.bias_k, module.bias_v):
        if extra is not None:
            extra.normal_(0.0, _xavier_std(tuple(extra.shape)), generator=generator)


@lru_cache(maxsize=1)
def _torch_rules() -> tuple[dict[type, tuple[str, Callable[[Any, Any], None]]], tuple[type, ...]]:
    """{class: (the method holding its default init, our transcription)}, and the classes whose
    constructors re-initialise or copy their children (not a registration-order walk)."""
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.conv import _ConvNd
    from torch.nn.modules.rnn import RNNBase, RNNCellBase

    rules = {
        nn.Linear: ("reset_parameters", _init_linear),
        nn.Bilinear: ("reset_parameters", _init_bilinear),
        _ConvNd: ("reset_parameters", _init_conv),
        nn.Embedding: ("reset_parameters", _init_embedding),
        nn.EmbeddingBag: ("reset_parameters", _init_embedding),
        RNNBase: ("reset_parameters", _init_recurrent),
        RNNCellBase: ("reset_parameters", _init_recurrent),
        _NormBase: ("reset_parameters", _init_norm_with_stats),
        nn.LayerNorm: ("reset_parameters", _init_affine_norm("elementwise_affine")),
        nn.GroupNorm: ("reset_parameters", _init_affine_norm("affine")),
        nn.PReLU: ("reset_parameters", _init_prelu),
        nn.MultiheadAttention: ("_reset_parameters", _init_multihead_attention),
    }
    if hasattr(nn, "RMSNorm"):
        rules[nn.RMSNorm] = ("reset_parameters", _init_affine_norm("elementwise_affine"))
    # nn.Transformer re-draws all its matrices after building its children; the encoder and
    # decoder stacks deep-copy one layer, so their layers start identical.
    copying = (nn.Transformer, nn.TransformerEncoder, nn.TransformerDecoder)
    return rules, copying


def _qualified(module: Any) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def _rule_for(module: Any) -> Callable[[Any, Any], None] | None:
    rules, _ = _torch_rules()
    for cls in type(module).__mro__:
        if cls in rules:
            method, init = rules[cls]
            if getattr(type(module), method) is not getattr(cls, method):
                raise ValueError(
                    f"module contains a {_qualified(module)}, which overrides {method}() of "
                    f"{cls.__name__}, so its initialisation is not {cls.__name__}'s default; "
                    "torch_default_init_ cannot know what it draws"
                )
            return init
    return None


def _check_materialised(module: Any) -> None:
    from torch.nn.parameter import UninitializedParameter
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(module):
        raise ValueError(
            f"module contains a parametrized {_qualified(module)} (e.g. weight_norm); its "
            "weight is computed, not stored, so it cannot be re-initialised in place"
        )
    if any(isinstance(p, UninitializedParameter) for p in module.parameters(recurse=False)):
        raise ValueError(
            f"module contains a lazy {_qualified(module)} whose parameters do not exist yet; "
            "run one forward pass to materialise them first"
        )


def _init_tree(module: Any, generator: Any, seen: set[int]) -> None:
    if id(module) in seen:  # a shared submodule was initialised once, where it was created
        return
    seen.add(id(module))
    _check_materialised(module)
    init = _rule_for(module)
    if init is not None:
        init(module, generator)
        for sub in module.modules():  # the rule covered the whole subtree (e.g. out_proj)
            seen.add(id(sub))
        return
    _, copying = _torch_rules()
    if isinstance(module, copying):
        raise ValueError(
            f"module contains a {_qualified(module)}, whose constructor re-initialises or "
            "copies its sublayers, so its draws are not those of its children built in order; "
            "torch_default_init_ does not support it"
        )
    own = [name for name, _ in module.named_parameters(recurse=False)]
    if own:
        raise ValueError(
            f"module contains a {_qualified(module)} with parameters of its own ({own}); "
            "torch_default_init_ does not know how its constructor initialises them. "
            "Supported: Linear, Bilinear, Conv*/ConvTranspose*, Embedding/EmbeddingBag, "
            "RNN/LSTM/GRU and their cells, BatchNorm*/InstanceNorm*, LayerNorm, GroupNorm, "
            "RMSNorm, PReLU, MultiheadAttention, and containers of these"
        )
    for child in module.children():
        _init_tree(child, generator, seen)


def torch_default_init_(module: Any, generator: Any = None) -> Any:
    """Re-initialise a torch module tree exactly as PyTorch's constructors did, bit for bit.

    ``torch.manual_seed(s); m = M(...)`` and ``torch.manual_seed(s); torch_default_init_(m)``
    give identical tensors: every distribution is written out (Chapter 1, "Writing the default
    out") and the modules are visited in the order their constructors draw, i.e. children in
    registration order. Batch-norm running statistics are reset too.

    Parameters
    ----------
    module
        A ``torch.nn.Module``: a supported layer or any container of supported layers (see
        *Raises*). Modified in place.
    generator
        A ``torch.Generator`` to draw from instead of the global one. A generator seeded with
        ``s`` draws what ``torch.manual_seed(s)`` would, independently of any other draws in
        the program.

    Returns
    -------
    torch.nn.Module
        ``module`` itself, for chaining.

    Raises
    ------
    ValueError
        If ``module`` is not a torch module, or its tree contains a module with parameters of
        its own whose type is not one of Linear, Bilinear, Conv1d/2d/3d, ConvTranspose1d/2d/3d,
        Embedding, EmbeddingBag, RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell,
        BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d, LayerNorm, GroupNorm, RMSNorm, PReLU,
        MultiheadAttention (the message names the type); a subclass that overrides its
        parent's ``reset_parameters``; a lazy or parametrized module; or an ``nn.Transformer``
        / ``TransformerEncoder`` / ``TransformerDecoder``, whose constructors copy or redraw
        their sublayers.

    Notes
    -----
    A container whose own ``__init__`` re-initialises its children (for example by calling
    ``nn.init.zeros_`` on one of them), or that registers children in a different order from
    the one it constructed them in, draws differently from this walk: such code is not the
    library default, and the point of this function is to replace defaults with written code.
    """
    if framework_of(module, "module") != "torch":
        raise ValueError(
            f"module must be a torch.nn.Module, got a Keras object "
            f"{type(module).__module__}.{type(module).__qualname__}"
        )
    import torch

    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    with torch.no_grad():
        _init_tree(module, generator, set())
    return module
