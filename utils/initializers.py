"""Explicit re-creations of the frameworks' default initialisations (Chapter 1).

Chapter 1 argues that a model's initialisation should be written out rather than left to a
library default, so that it survives a change of framework or version. This module holds the
written-out versions:

- :func:`compute_fans` -- fan-in and fan-out of a weight shape in Keras's or torch's layout;
- :func:`torch_default_bound` -- the bound of PyTorch's default ``U(-b, b)`` weight
  initialisation, with the exact floating-point arithmetic PyTorch uses;
- :func:`torch_default_init_` -- re-initialise every parameter of a ``torch.nn.Module`` tree the
  way the constructors did, bit for bit, with every distribution and draw written out;
- :func:`torch_default_rule` -- what the constructor draws one parameter from, as a
  :class:`TorchDefault`. The course writes PyTorch's defaults down here only:
  :func:`utils.distributions.torch_default_distribution` describes what these rules draw.

Gains and variance-scaling standard deviations live in :mod:`utils.variance` (Chapter 2).

Chapter 6 adds the initialisations that go beyond variance scaling, at the end of the module:

- :func:`orthogonal_matrix`, :func:`orthogonal_` -- Haar-random orthogonal weights, identical for
  a Keras model and its torch twin;
- :func:`looks_linear_matrix`, :func:`looks_linear_` -- looks-linear weights (Balduzzi et al.
  2017), with which a ReLU network computes an orthogonal linear map at initialisation: its
  input-output Jacobian is exactly isometric;
- :func:`lsuv_` -- layer-sequential unit-variance initialisation of any Keras or torch model;
- :func:`input_output_jacobian`, :func:`deep_stack_jacobians` -- the Jacobians whose singular
  values measure dynamical isometry;
- :func:`residual_mlp`, :func:`init_residual_mlp_`, :func:`trace_residual_mlp` -- residual
  stacks with the residual-aware initialisations (zero last layer, Fixup, ReZero, GPT-2).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from utils.frameworks import framework_of

__all__ = ["Layout", "compute_fans", "torch_default_bound", "torch_default_init_", "TorchDefault",
           "torch_default_rule"]

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

    Returns
    -------
    float
        The bound, ``1 / sqrt(fan_in)`` up to the last bit.

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


def _bilinear_bound(module: Any) -> float:
    # Bilinear's bound uses in1_features only (weight is (out, in1, in2)), not the fan-in.
    return 1 / math.sqrt(module.weight.size(1))


def _recurrent_bound(module: Any) -> float:
    # The bound ignores the input size and proj_size.
    return 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0


def _init_bilinear(module: Any, generator: Any) -> None:
    bound = _bilinear_bound(module)
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
    # from U(+-1/sqrt(hidden_size)).
    bound = _recurrent_bound(module)
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


@dataclass(frozen=True)
class TorchDefault:
    """What PyTorch's constructor draws one parameter from (see :func:`torch_default_rule`).

    Attributes
    ----------
    kind
        ``"uniform"``: U(-value, value); ``"normal"``: N(0, value²); ``"constant"``: every
        entry is ``value``.
    value
        The bound, the standard deviation or the constant, computed with the same
        floating-point operations as the draw in :func:`torch_default_init_`.
    label
        The ``torch.nn.init`` call or rule, e.g. ``"kaiming_uniform_(a=√5)"``.
    fan_in, fan_out
        The fans ``value`` was computed from, or None where it does not depend on them.
    """

    kind: Literal["uniform", "normal", "constant"]
    value: float
    label: str
    fan_in: int | None = None
    fan_out: int | None = None


def torch_default_rule(module: Any, name: str,
                       shape: Sequence[int] | None = None) -> TorchDefault | None:
    """What PyTorch's constructor of ``module`` draws parameter (or buffer) ``name`` from.

    The rules :func:`torch_default_init_` draws with, one parameter at a time: ``Linear`` and
    ``Conv*``/``ConvTranspose*`` weights ``kaiming_uniform_(a=sqrt(5))``, i.e.
    U(±:func:`torch_default_bound`), and their biases U(±1/sqrt(fan_in)) with the weight's
    fan-in; ``Bilinear`` U(±1/sqrt(in1_features)); ``Embedding``/``EmbeddingBag`` N(0, 1) (a
    ``padding_idx`` row zeroed); ``RNN``/``LSTM``/``GRU`` and their cells U(±1/sqrt(hidden_size))
    for every parameter; batch/instance/layer/group/RMS norms weight ones, bias zeros, running
    mean zeros and running variance ones; ``PReLU`` the constant ``init``; and
    ``MultiheadAttention`` ``xavier_uniform_`` input projections, zero biases and
    ``xavier_normal_`` ``bias_k``/``bias_v``. Chapter 1 explains them.

    Parameters
    ----------
    module
        A ``torch.nn.Module``, the parameter's owner.
    name
        The parameter's or buffer's own name (``"weight"``, ``"bias"``, ``"running_var"``...).
    shape
        Its shape; read from ``module`` if None.

    Returns
    -------
    TorchDefault or None
        None if the module type, or this name of it, is not covered.

    Raises
    ------
    ValueError
        If ``shape`` is None and ``module`` has no tensor ``name``, or the shape has fewer than
        two dimensions where the rule needs fans (the ``MultiheadAttention`` projections).
    """
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _NormBase
    from torch.nn.modules.conv import _ConvNd

    if shape is None:
        tensor = getattr(module, name, None)
        if not hasattr(tensor, "shape"):
            raise ValueError(f"name must name a tensor of module, got {name!r} for "
                             f"{type(module).__name__}")
        shape = tensor.shape
    shape = tuple(int(d) for d in shape)
    if isinstance(module, nn.MultiheadAttention):
        if name in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            return TorchDefault("uniform", _xavier_bound(shape), "xavier_uniform_",
                                *compute_fans(shape, "torch"))
        if name == "in_proj_bias":
            return TorchDefault("constant", 0.0, "zeros (MultiheadAttention)")
        if name in ("bias_k", "bias_v"):
            return TorchDefault("normal", _xavier_std(shape), "xavier_normal_",
                                *compute_fans(shape, "torch"))
        return None
    if type(module).__name__ == "NonDynamicallyQuantizableLinear" and name == "bias":
        # Only used as MultiheadAttention.out_proj, whose constructor zeroes this bias.
        return TorchDefault("constant", 0.0, "zeros (MultiheadAttention.out_proj)")
    if isinstance(module, (nn.Linear, _ConvNd)):
        fan_in, fan_out = compute_fans(tuple(int(d) for d in module.weight.shape), "torch")
        if name == "weight":
            bound = torch_default_bound(fan_in) if fan_in > 0 else 0.0
            return TorchDefault("uniform", bound, "kaiming_uniform_(a=√5)", fan_in, fan_out)
        if name == "bias":
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            return TorchDefault("uniform", bound, "uniform_(±1/√fan_in)", fan_in)
        return None
    if isinstance(module, nn.Bilinear):
        if name in ("weight", "bias"):
            return TorchDefault("uniform", _bilinear_bound(module), "uniform_(±1/√in1_features)")
        return None
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and name == "weight":
        padding = getattr(module, "padding_idx", None)
        label = "normal_" if padding is None else f"normal_ (row {padding} zeroed: padding_idx)"
        return TorchDefault("normal", 1.0, label)
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return TorchDefault("uniform", float(_recurrent_bound(module)),
                            "uniform_(±1/√hidden_size)")
    norms = (_NormBase, nn.LayerNorm, nn.GroupNorm) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm")
                                                       else ())
    if isinstance(module, norms):
        values = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
        if name in values:
            return TorchDefault("constant", values[name],
                                "ones_" if values[name] == 1.0 else "zeros_")
        return None
    if isinstance(module, nn.PReLU) and name == "weight":
        return TorchDefault("constant", float(module.init), "constant_(init)")
    return None


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


# =============================================================================================
# Chapter 6: beyond variance scaling. Orthogonal starts, LSUV, input-output Jacobians of deep
# stacks, and residual MLPs with the residual-aware initialisations.
# =============================================================================================

import re  # noqa: E402  (Chapter 6's imports sit with its code; NumPy only, frameworks lazy)

import numpy as np  # noqa: E402

from utils.frameworks import (ParamInfo, assign, from_keras_layout,  # noqa: E402
                              keras_layout, parameters, require_built, to_numpy, trace,
                              weight_layers)
from utils.stats import (require_finite, require_int, require_positive,  # noqa: E402
                         require_seed)

__all__ += [
    "orthogonal_matrix",
    "orthogonal_",
    "LOOKS_LINEAR_POSITIONS",
    "looks_linear_matrix",
    "looks_linear_",
    "LSUVRecord",
    "lsuv_",
    "input_output_jacobian",
    "deep_stack_jacobians",
    "RESIDUAL_INITS",
    "residual_mlp",
    "init_residual_mlp_",
    "ResidualTrace",
    "trace_residual_mlp",
]


def orthogonal_matrix(rng: np.random.Generator, rows: int, cols: int,
                      gain: float = 1.0) -> np.ndarray:
    """A Haar-random ``rows x cols`` matrix with orthonormal columns (or rows), times ``gain``.

    The QR decomposition of a Gaussian matrix gives an orthogonal ``Q``, but not a uniformly
    distributed one: the signs QR puts on ``diag(R)`` are a convention. Multiplying each column
    of ``Q`` by the sign of the matching diagonal entry of ``R`` makes ``Q`` Haar-distributed
    (Mezzadri 2007); Keras's ``Orthogonal`` and ``torch.nn.init.orthogonal_`` do the same.
    If ``rows >= cols`` the columns are orthonormal (``Q^T Q = I``), otherwise the rows are.
    Chapter 6, "Orthogonal initialisation", uses it.

    Parameters
    ----------
    rng
        A ``numpy.random.Generator``.
    rows, cols
        The shape, both at least 1.
    gain
        A multiplier (the singular values of the result are all ``gain``).

    Returns
    -------
    numpy.ndarray
        A float64 array of shape ``(rows, cols)``.

    Raises
    ------
    ValueError
        If ``rng`` is not a NumPy generator, a size is not a positive integer, or ``gain`` is
        not a finite number.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    rows = require_int(rows, "rows", 1)
    cols = require_int(cols, "cols", 1)
    require_finite(gain, "gain")
    gaussian = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(gaussian)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)  # a zero diagonal has probability zero
    return float(gain) * (q if rows >= cols else q.T)


_WEIGHT_LAYER_HELP = ("Dense and Conv1D/2D/3D (and their Transpose variants) in Keras; Linear "
                      "and Conv1d/2d/3d (and ConvTranspose) in torch")


def orthogonal_(model: Any, gain: float = 1.0, seed: int = 0) -> Any:
    """Give every dense/convolution weight of ``model`` a random orthogonal matrix; zero biases.

    Saxe et al. (2014) start deep networks from orthogonal weights: a product of orthogonal
    matrices is orthogonal, so a deep *linear* network's input-output Jacobian has every
    singular value equal to ``gain**depth`` (Chapter 6, theorem "Isometry of orthogonal
    stacks"). Each weight is viewed as a matrix the way Keras's ``Orthogonal`` does (the kernel
    in Keras's layout ``(*kernel_size, in, out)`` flattened to ``(prod(kernel_size)*in, out)``)
    and drawn by :func:`orthogonal_matrix` from ``numpy.random.default_rng(seed)``, layer by
    layer; a torch weight gets the same draw transposed to its ``(out, in, *kernel_size)``
    layout. A Keras model and its torch twin therefore get *identical* parameters.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``; modified in place. The layers drawn are
        those with a trainable weight of two or more dimensions among Keras ``Dense``,
        ``Conv1D/2D/3D`` and their ``Transpose`` variants, and torch ``Linear``, ``Conv1d/2d/3d``
        and ``ConvTranspose1d/2d/3d``. Other parameters are left alone.
    gain
        A multiplier: every singular value of each (flattened) weight equals ``gain``.
    seed
        Seeds a fresh NumPy generator; the frameworks' global generators are not touched.

    Returns
    -------
    The model, for chaining.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, has no such layer, ``gain`` is not a
        finite number or ``seed`` is not an integer in ``[0, 2**32)``.
    """
    framework = require_built(model)
    require_finite(gain, "gain")
    rng = np.random.default_rng(require_seed(seed))
    layers = weight_layers(model, "dense_conv")
    if not layers:
        raise ValueError("model has no layer with a weight to make orthogonal "
                         f"({_WEIGHT_LAYER_HELP})")
    for entry in layers:
        weight, bias = entry.weight, entry.bias
        shape = keras_layout(weight.shape, framework)
        rows, cols = math.prod(shape[:-1]), shape[-1]
        if rows == 0 or cols == 0:  # an empty tensor has nothing to draw
            continue
        kernel = orthogonal_matrix(rng, rows, cols, gain).reshape(shape)
        assign(weight, from_keras_layout(kernel, framework))
        if bias is not None:
            assign(bias, np.zeros(bias.shape))
    return model


# ---------------------------------------------------------------------------------------------
# Looks-linear initialisation (Balduzzi et al. 2017)
# ---------------------------------------------------------------------------------------------

#: Where a layer sits in a looks-linear stack. ``"first"`` takes the raw input, ``"hidden"``
#: takes and gives paired ReLU units, ``"last"`` recombines the pairs into the output.
LOOKS_LINEAR_POSITIONS = ("first", "hidden", "last")


def looks_linear_matrix(rng: np.random.Generator, rows: int, cols: int, position: str,
                        gain: float = 1.0) -> np.ndarray:
    """A looks-linear weight matrix ``(rows, cols)`` in the mathematical (torch) layout.

    A ReLU layer loses half of every direction, which is why no i.i.d. or orthogonal draw makes
    a ReLU network isometric. Balduzzi et al. (2017) pair the units instead: since
    ``relu(z) - relu(-z) = z``, a layer that sees both ``relu(z)`` and ``relu(-z)`` can undo
    the nonlinearity. With ``A`` Haar-orthogonal (:func:`orthogonal_matrix`, times ``gain``):

    - ``"first"``: ``[A; -A]`` (``rows = 2 r``), so the layer outputs ``(A x, -A x)``;
    - ``"hidden"``: ``[[A, -A], [-A, A]]`` (``rows = 2 r``, ``cols = 2 c``), so from
      ``(relu(z), relu(-z))`` it outputs ``(A z, -A z)``;
    - ``"last"``: ``[A, -A]`` (``cols = 2 c``), so it outputs ``A z``.

    A stack first, hidden, ..., hidden, last with ReLUs between computes ``A_L ... A_1 x``
    exactly at initialisation: an orthogonal map when the ``A`` are square, whose Jacobian has
    every singular value equal to ``gain**L`` (Chapter 6, "Isometry"). Burkholz and Dubatovka
    (2019) analyse such initialisations of ReLU networks.

    Parameters
    ----------
    rng
        A ``numpy.random.Generator``.
    rows, cols
        The shape; ``rows`` must be even for ``"first"`` and ``"hidden"``, ``cols`` for
        ``"hidden"`` and ``"last"``.
    position
        One of :data:`LOOKS_LINEAR_POSITIONS`.
    gain
        Every singular value of ``A``.

    Returns
    -------
    numpy.ndarray
        A float64 array of shape ``(rows, cols)``.

    Raises
    ------
    ValueError
        If ``rng`` is not a NumPy generator, ``position`` is unknown, a size is not a positive
        integer or not even where the position needs pairs, or ``gain`` is not finite.
    """
    if position not in LOOKS_LINEAR_POSITIONS:
        raise ValueError(f"position must be one of {LOOKS_LINEAR_POSITIONS}, got {position!r}")
    rows = require_int(rows, "rows", 1)
    cols = require_int(cols, "cols", 1)
    paired_rows, paired_cols = position in ("first", "hidden"), position in ("hidden", "last")
    if (paired_rows and rows % 2) or (paired_cols and cols % 2):
        raise ValueError(f"a {position!r} looks-linear layer needs an even number of "
                         f"{'rows' if paired_rows and rows % 2 else 'cols'}, got shape "
                         f"({rows}, {cols})")
    half = orthogonal_matrix(rng, rows // 2 if paired_rows else rows,
                             cols // 2 if paired_cols else cols, gain)
    if position == "first":
        return np.concatenate([half, -half], axis=0)
    if position == "last":
        return np.concatenate([half, -half], axis=1)
    return np.block([[half, -half], [-half, half]])


def looks_linear_(model: Any, gain: float = 1.0, seed: int = 0) -> Any:
    """Give a stack of dense layers looks-linear weights (:func:`looks_linear_matrix`), zero
    biases.

    The first dense layer gets ``"first"``, the last ``"last"`` and every other ``"hidden"``;
    the model is meant to have a ReLU after every layer but the last (for example
    ``utils.variance.deep_mlp(framework, [d, 2m, ..., 2m, k], "relu")``), and then computes an
    orthogonal linear map at initialisation. Drawn from ``numpy.random.default_rng(seed)``
    layer by layer, so a Keras model and its torch twin get identical parameters.

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module`` whose weight layers are at least two
        ``Dense``/``Linear`` layers, in the order the forward pass uses them, with even hidden
        widths; modified in place.
    gain
        Every singular value of each orthogonal block.
    seed
        Seeds a fresh NumPy generator.

    Returns
    -------
    The model, for chaining.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, has fewer than two dense layers, a
        layer that is not dense, or an odd hidden width; or if ``gain`` or ``seed`` is invalid.
    """
    framework = require_built(model)
    require_finite(gain, "gain")
    rng = np.random.default_rng(require_seed(seed))
    layers = weight_layers(model, "dense_conv")
    if len(layers) < 2 or any(len(entry.weight.shape) != 2 for entry in layers):
        raise ValueError("model must have at least two dense (Dense/Linear) layers and no "
                         "convolution for a looks-linear start")
    for index, entry in enumerate(layers):
        position = "first" if index == 0 else "last" if index == len(layers) - 1 else "hidden"
        n_in, n_out = keras_layout(entry.weight.shape, framework)
        matrix = looks_linear_matrix(rng, n_out, n_in, position, gain)  # (out, in)
        assign(entry.weight, from_keras_layout(matrix.T, framework))
        if entry.bias is not None:
            assign(entry.bias, np.zeros(entry.bias.shape))
    return model


# ---------------------------------------------------------------------------------------------
# LSUV (Mishkin & Matas 2016)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LSUVRecord:
    """What :func:`lsuv_` did to one layer.

    Attributes
    ----------
    name, layer_type
        The layer (Keras name or torch ``named_modules`` path) and its class name.
    variance_before
        The variance of the layer's output on ``x`` when :func:`lsuv_` reached it (after the
        orthogonal start and the rescaling of every earlier layer).
    variance
        The variance after rescaling.
    scale
        The factor the layer's weight was multiplied by (the product over iterations).
    iterations
        How many times the weight was rescaled (0 if it was already within tolerance).
    """

    name: str
    layer_type: str
    variance_before: float
    variance: float
    scale: float
    iterations: int


def _lsuv_input(x: Any) -> Any:
    if hasattr(x, "detach") or hasattr(x, "shape"):
        shape = tuple(x.shape)
    else:
        x = np.asarray(x)
        shape = x.shape
    if len(shape) < 2 or shape[0] < 2:
        raise ValueError(f"x must be a batch of at least 2 examples (batch axis first), got shape "
                         f"{shape}")
    return x


def _preactivation_variances(model: Any, framework: str, layers: dict[str, Any],
                             x: Any) -> dict[str, float]:
    """One forward pass: the variance of every listed layer's output before its activation
    (first call), keyed by name in call order. Keras layers with a fused ``activation=`` get a
    recording wrapper around it for the duration of the pass, so the forward pass itself is
    unchanged."""
    recorded: dict[str, Any] = {}
    wrapped = []
    if framework == "keras":
        for name, layer in layers.items():
            activation = getattr(layer, "activation", None)
            if activation is None:
                continue

            def recorder(values: Any, _name: str = name, _activation: Any = activation) -> Any:
                recorded.setdefault(_name, values)
                return _activation(values)

            layer.activation = recorder
            wrapped.append((layer, activation))
    try:
        result = trace(model, x)
    finally:
        for layer, activation in wrapped:
            layer.activation = activation
    variances: dict[str, float] = {}
    for record in result.layers:
        if record.name in layers and record.name not in variances:
            values = recorded[record.name] if record.name in recorded else record.output
            with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN are reported later
                variances[record.name] = float(np.var(np.asarray(to_numpy(values), np.float64)))
    return variances


def _check_variance_of(name: str, variance: float) -> None:
    if not math.isfinite(variance):
        raise ValueError(f"the output of layer {name!r} on x is not finite (overflow or NaN); "
                         "lsuv_ cannot rescale it. Start from smaller weights (orthogonal=True "
                         "does) or check x for NaN/inf")
    if variance == 0.0:
        raise ValueError(f"the output of layer {name!r} has zero variance on x, so no rescaling "
                         "of its weight can reach the target: its input is constant (a constant "
                         "batch, or every unit upstream dead) or its weight is zero")


def lsuv_(model: Any, x: Any, *, target_variance: float = 1.0, tolerance: float = 0.1,
          max_iterations: int = 10, orthogonal: bool = True, seed: int = 0) -> list[LSUVRecord]:
    """Layer-sequential unit-variance initialisation (Mishkin & Matas 2016), in place.

    A data-dependent initialisation: instead of predicting each layer's output variance from
    theory (Chapter 2), *measure* it on a batch and fix it. Chapter 6, section "LSUV", explains
    and demonstrates it.

    1. Give every dense/convolution weight a random orthogonal matrix and every such layer's
       bias zeros (:func:`orthogonal_`), unless ``orthogonal=False``.
    2. For each such layer, in the order the forward pass calls them: pass ``x`` through the
       model, compute the variance ``v`` of all values of the layer's output, and while
       ``|v / target_variance - 1| > tolerance``, multiply the layer's weight by
       ``sqrt(target_variance / v)`` and measure again.

    The output measured is the layer's own output *before* its activation: in torch a
    ``Linear``/conv module's output; in Keras the layer's output with any fused ``activation=``
    switched off for the measurement (it is restored afterwards). A layer called more than once
    is measured on its first call. The model runs in inference mode (dropout off, batch
    normalisation with its moving statistics).

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module`` of any architecture (sequential, functional,
        nested, residual); its dense/convolution layers with a trainable weight are rescaled:
        Keras ``Dense``, ``Conv1D/2D/3D`` and ``Transpose`` variants; torch ``Linear``,
        ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d``.
    x
        A batch of inputs (NumPy array or the framework's tensor), at least 2 examples. The
        paper uses one mini-batch; larger batches give a less noisy variance.
    target_variance
        The variance each layer's output should have (1 in the paper).
    tolerance
        Relative tolerance, in ``(0, 1)``: stop when ``|v / target_variance - 1| <= tolerance``
        (the paper's ``Tol_var = 0.1`` with target 1).
    max_iterations
        Rescalings allowed per layer (the paper's ``T_max = 10``). For a layer whose output is
        linear in its weight (no bias, or a zero bias) one rescaling is exact.
    orthogonal
        Start from :func:`orthogonal_` (the paper's step 1). With ``False`` the current weights
        and biases are kept and only rescaled.
    seed
        Seed of the orthogonal draw.

    Returns
    -------
    list of LSUVRecord
        One per rescaled layer, in the order they were processed.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model or has no layer to rescale (or none that
        ``x`` passes through); if ``x`` is not a batch of at least 2 examples or cannot pass
        through the model; if ``target_variance`` is not positive, ``tolerance`` not in
        ``(0, 1)``, ``max_iterations`` not a positive integer, ``orthogonal`` not a bool or
        ``seed`` invalid; if a layer's output variance is zero or not finite; or if a layer
        cannot reach the target within ``max_iterations`` (for example because its bias alone
        has more variance than the target). The message names the layer.
    """
    framework = require_built(model)
    target = require_positive(target_variance, "target_variance")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float, np.floating)) \
            or not 0 < tolerance < 1:
        raise ValueError(f"tolerance must be a number in (0, 1) (relative to target_variance), "
                         f"got {tolerance!r}")
    iterations_allowed = require_int(max_iterations, "max_iterations", 1)
    if not isinstance(orthogonal, bool):
        raise ValueError(f"orthogonal must be True or False, got {orthogonal!r}")
    require_seed(seed)
    batch = _lsuv_input(x)
    layers = weight_layers(model, "dense_conv")
    if not layers:
        raise ValueError(f"model has no layer lsuv_ can rescale ({_WEIGHT_LAYER_HELP}, with a "
                         "trainable weight)")
    if orthogonal:
        orthogonal_(model, seed=seed)
    by_name = {entry.name: (entry.layer, entry.weight, entry.bias) for entry in layers}
    layer_objects = {name: entry[0] for name, entry in by_name.items()}
    # Every forward pass measures all layers; a layer's measurement after its last rescaling
    # is also the next layer's measurement before its first.
    variances = _preactivation_variances(model, framework, layer_objects, batch)
    if not variances:
        raise ValueError("none of the model's dense/convolution layers is used when x passes "
                         "through the model, so there is nothing to rescale")
    records = []
    for name in list(variances):
        layer, weight, bias = by_name[name]
        variance = before = variances[name]
        _check_variance_of(name, variance)
        scale, iterations = 1.0, 0
        while abs(variance / target - 1) > tolerance:
            if iterations == iterations_allowed:
                hint = ""
                if bias is not None:
                    bias_variance = float(np.var(bias.numpy().astype(np.float64)))
                    hint = (f"; its bias alone has variance {bias_variance:.3g} across units"
                            if bias_variance > 0 else "")
                raise ValueError(
                    f"layer {name!r} did not reach variance {target:g} within tolerance "
                    f"{tolerance:g} after max_iterations={iterations_allowed} rescalings "
                    f"(variance {variance:.4g}){hint}. Zero the biases (orthogonal=True does), "
                    "raise max_iterations or tolerance, or use a larger batch")
            factor = math.sqrt(target / variance)
            assign(weight, weight.numpy() * factor)
            scale *= factor
            iterations += 1
            variances = _preactivation_variances(model, framework, layer_objects, batch)
            variance = variances[name]
            _check_variance_of(name, variance)
        records.append(LSUVRecord(name, type(layer).__name__, before, variance, scale,
                                  iterations))
    return records


# ---------------------------------------------------------------------------------------------
# Input-output Jacobians (dynamical isometry)
# ---------------------------------------------------------------------------------------------

def input_output_jacobian(model: Any, x: Any) -> np.ndarray:
    """The Jacobian of a model's output with respect to its input at one example, by autodiff.

    Chapter 6, "Dynamical isometry", studies its singular values: if they are all close to 1,
    every direction of the input reaches the output with its length kept, and gradients flow
    back the same way. Keras (TensorFlow backend) uses ``tf.GradientTape.jacobian``, torch
    ``torch.autograd.functional.jacobian``; the model runs in inference mode.

    Parameters
    ----------
    model
        A built Keras 3 model (TensorFlow backend) or ``torch.nn.Module``.
    x
        One example, *without* the batch axis (e.g. shape ``(n_in,)``).

    Returns
    -------
    numpy.ndarray
        Shape ``(n_out, n_in)`` in float64, where ``n_out`` and ``n_in`` are the numbers of
        values in one output and one input (multi-dimensional inputs or outputs are
        flattened, C order).

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, the Keras backend is not TensorFlow,
        ``x`` is empty, or ``x`` cannot pass through the model.
    """
    framework = require_built(model)
    array = to_numpy(x) if (hasattr(x, "detach") or hasattr(x, "numpy")) else np.asarray(x)
    if array.size == 0 or array.ndim == 0:
        raise ValueError(f"x must be one example without the batch axis (e.g. shape (n_in,)), "
                         f"got shape {array.shape}")
    params = parameters(model)
    if framework == "keras":
        import keras

        if keras.backend.backend() != "tensorflow":
            raise ValueError(f"input_output_jacobian needs Keras's TensorFlow backend, got "
                             f"{keras.backend.backend()!r}")
        import tensorflow as tf

        dtype = params[0].handle.dtype if params else "float32"
        inputs = tf.convert_to_tensor(array[None], dtype=dtype)
        try:
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = model(inputs, training=False)
            jacobian = tape.jacobian(outputs, inputs)
        except Exception as err:  # a wrong shape surfaces as many error types
            raise ValueError(f"x with shape {array.shape} could not be passed through the model: "
                             f"{type(err).__name__}: {err}") from err
        values = np.asarray(jacobian, dtype=np.float64)
        n_out = int(np.prod(outputs.shape[1:]))
    else:
        import torch

        dtype = params[0].handle.dtype if params else torch.float32
        inputs = torch.as_tensor(array[None]).to(dtype)
        was_training = model.training
        model.eval()
        try:
            jacobian = torch.autograd.functional.jacobian(model, inputs)
        except Exception as err:
            raise ValueError(f"x with shape {array.shape} could not be passed through the model: "
                             f"{type(err).__name__}: {err}") from err
        finally:
            model.train(was_training)
        values = jacobian.detach().cpu().numpy().astype(np.float64)
        n_out = values.size // array.size
    return values.reshape(n_out, array.size)


_STACK_NONLINEARITIES = ("linear", "tanh", "relu")


def deep_stack_jacobians(weights: Any, x: Any, nonlinearity: str = "linear",
                         biases: Any = None, depths: Any = None) -> dict[int, np.ndarray]:
    """Input-output Jacobians of a deep stack ``x_l = φ(W_l x_{l-1} + b_l)`` at every depth.

    The chain rule gives ``J_l = D_l W_l J_{l-1}`` with ``D_l = diag φ'(W_l x_{l-1} + b_l)`` and
    ``J_0 = I`` (Chapter 6, "Dynamical isometry"). Computing the product directly in float64
    is much faster than autodiff when many networks and depths are wanted, and
    :func:`input_output_jacobian` checks that it is the network's Jacobian. Leading batch axes
    broadcast, so ``R`` networks can be processed at once.

    Parameters
    ----------
    weights
        A sequence of ``L`` arrays, the ``l``-th of shape ``(..., n_l, n_{l-1})`` in the
        mathematical (torch) layout ``y = W x``; transpose Keras kernels first.
    x
        The input, shape ``(..., n_0)``.
    nonlinearity
        ``"linear"``, ``"tanh"`` or ``"relu"``.
    biases
        ``None`` or a sequence of ``L`` arrays of shape ``(..., n_l)``.
    depths
        The depths ``l`` (1 to ``L``) whose Jacobians are returned; default all.

    Returns
    -------
    dict
        ``{l: J_l}`` with ``J_l`` of shape ``(..., n_l, n_0)``, float64.

    Raises
    ------
    ValueError
        If the shapes do not chain, ``nonlinearity`` is unknown, ``biases`` has the wrong
        length, or a depth is outside ``1..L``.
    """
    if nonlinearity not in _STACK_NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {_STACK_NONLINEARITIES}, got "
                         f"{nonlinearity!r}")
    # contiguous copies: matmul on strided views (e.g. one layer of a (nets, layers, n, n)
    # array) falls back to a slow loop instead of BLAS
    matrices = [np.ascontiguousarray(w, dtype=np.float64) for w in weights]
    if not matrices or any(w.ndim < 2 for w in matrices):
        raise ValueError("weights must be a non-empty sequence of arrays with at least 2 "
                         "dimensions (..., n_out, n_in)")
    n_layers = len(matrices)
    if biases is not None:
        vectors = [np.asarray(b, dtype=np.float64) for b in biases]
        if len(vectors) != n_layers:
            raise ValueError(f"biases must have one entry per weight ({n_layers}), got "
                             f"{len(vectors)}")
    wanted = set(range(1, n_layers + 1)) if depths is None else {int(d) for d in depths}
    if not wanted or min(wanted) < 1 or max(wanted) > n_layers:
        raise ValueError(f"depths must lie in 1..{n_layers}, got {sorted(wanted)}")
    state = np.asarray(x, dtype=np.float64)
    if state.ndim < 1 or state.shape[-1] != matrices[0].shape[-1]:
        raise ValueError(f"x must end with the first weight's input size "
                         f"{matrices[0].shape[-1]}, got shape {state.shape}")
    jacobian = None
    result = {}
    for depth, matrix in enumerate(matrices, start=1):
        if matrix.shape[-1] != state.shape[-1]:
            raise ValueError(f"weight {depth} has input size {matrix.shape[-1]} but layer "
                             f"{depth - 1} has {state.shape[-1]} outputs")
        pre = np.einsum("...ij,...j->...i", matrix, state)
        if biases is not None:
            pre = pre + vectors[depth - 1]
        if nonlinearity == "tanh":
            state = np.tanh(pre)
            slope = 1.0 - state**2
        elif nonlinearity == "relu":
            state = np.maximum(pre, 0.0)
            slope = (pre > 0).astype(np.float64)
        else:
            state, slope = pre, None
        step = matrix if slope is None else slope[..., :, None] * matrix
        jacobian = step if jacobian is None else step @ jacobian
        if depth in wanted:
            result[depth] = jacobian
    return result


# ---------------------------------------------------------------------------------------------
# Residual MLPs and their initialisations
# ---------------------------------------------------------------------------------------------

#: The initialisations :func:`init_residual_mlp_` knows (Chapter 6, "Residual networks"):
#: ``"preserving"`` every branch preserves its input's second moment (LeCun then He);
#: ``"depth_scaled"`` the same with the branch's last layer scaled by ``1/sqrt(n_blocks)``;
#: ``"zero_last"`` the last layer of every branch zero (Goyal et al. 2017's zero gamma,
#: SkipInit); ``"fixup"`` zero last layer and the first scaled by ``n_blocks**-1/2`` (Fixup with
#: two layers per branch); ``"rezero"`` preserving branches behind a gate ``alpha = 0``;
#: ``"gpt2"`` every weight ``N(0, 0.02^2)``, the branch's last layer
#: ``N(0, (0.02/sqrt(n_blocks))^2)``; ``"gpt2_unscaled"`` every weight ``N(0, 0.02^2)``.
RESIDUAL_INITS = ("preserving", "depth_scaled", "zero_last", "fixup", "rezero", "gpt2",
                  "gpt2_unscaled")

_GPT2_STD = 0.02
_LAYER_NORM_EPSILON = 1e-5  # GPT-2's and torch's; Keras's default (1e-3) is set to match


@lru_cache(maxsize=1)
def _keras_gate_class() -> type:
    import keras

    class ResidualGate(keras.layers.Layer):
        """Multiplies its input by a learnable scalar ``alpha`` (ReZero's gate), zero at init."""

        def build(self, input_shape: Any) -> None:
            self.alpha = self.add_weight(name="alpha", shape=(), initializer="zeros")

        def call(self, inputs: Any) -> Any:
            return inputs * self.alpha

    return ResidualGate


@lru_cache(maxsize=1)
def _torch_residual_classes() -> tuple[type, type]:
    import torch
    import torch.nn as nn

    class ResidualBlock(nn.Module):
        """``x + alpha * fc_out(act(fc_in(norm(x))))``; ``stream`` is an identity leaf that lets
        forward hooks (utils.frameworks.trace) see the residual stream after the block."""

        def __init__(self, width: int, hidden: int, pre_norm: bool, rezero: bool) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(width, eps=_LAYER_NORM_EPSILON) if pre_norm else None
            self.fc_in = nn.Linear(width, hidden)
            self.act = nn.GELU() if pre_norm else nn.ReLU()
            self.fc_out = nn.Linear(hidden, width)
            self.alpha = nn.Parameter(torch.zeros(())) if rezero else None
            self.stream = nn.Identity()

        def forward(self, x: Any) -> Any:
            branch = self.fc_out(self.act(self.fc_in(x if self.norm is None else self.norm(x))))
            if self.alpha is not None:
                branch = self.alpha * branch
            return self.stream(x + branch)

    class ResidualMLP(nn.Module):
        """A stack of :class:`ResidualBlock` s in an ``nn.ModuleList`` called ``blocks``."""

        def __init__(self, width: int, n_blocks: int, hidden: int, pre_norm: bool,
                     rezero: bool) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(ResidualBlock(width, hidden, pre_norm, rezero)
                                        for _ in range(n_blocks))

        def forward(self, x: Any) -> Any:
            for block in self.blocks:
                x = block(x)
            return x

    return ResidualBlock, ResidualMLP


def residual_mlp(framework: str, width: int, n_blocks: int, *, pre_norm: bool = False,
                 rezero: bool = False, hidden: int | None = None, init: str = "preserving",
                 seed: int = 0, dtype: str = "float32") -> Any:
    """A residual MLP ``x_{l+1} = x_l + f_l(x_l)``, built in Keras or torch and initialised.

    Each branch is ``Dense(hidden) -> ReLU -> Dense(width)``, or with ``pre_norm`` GPT-2's MLP
    branch ``LayerNorm -> Dense(hidden) -> GELU -> Dense(width)`` (``hidden = 4 * width`` by
    default, LayerNorm epsilon 1e-5, exact GELU). With ``rezero`` the branch is multiplied by a
    learnable scalar gate (Bachlechner et al. 2021). There is no input or output layer: the
    model maps the stream to the stream, and :func:`trace_residual_mlp` records it after every
    block. Chapter 6, "Residual networks", measures it.

    Layer names: Keras ``block{i}_norm``, ``block{i}_in``, ``block{i}_act``, ``block{i}_out``,
    ``block{i}_gate``, ``block{i}_add`` in a functional model; torch
    ``blocks.{i}.norm/fc_in/act/fc_out/stream`` and the parameter ``blocks.{i}.alpha``, nested
    modules in an ``nn.ModuleList``.

    Parameters
    ----------
    framework
        ``"keras"`` or ``"torch"``.
    width, n_blocks
        The stream's width and the number of residual blocks (both >= 1).
    pre_norm, rezero, hidden
        As above.
    init, seed
        Passed to :func:`init_residual_mlp_`; the same ``init`` and ``seed`` give identical
        parameters in both frameworks.
    dtype
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    keras.Model or torch.nn.Module
        The initialised model.

    Raises
    ------
    ValueError
        If an argument is not one of the documented values.
    """
    if framework not in ("keras", "torch"):
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    width = require_int(width, "width", 1)
    n_blocks = require_int(n_blocks, "n_blocks", 1)
    hidden = (4 * width if pre_norm else width) if hidden is None \
        else require_int(hidden, "hidden", 1)
    if not isinstance(pre_norm, bool) or not isinstance(rezero, bool):
        raise ValueError(f"pre_norm and rezero must be True or False, got {pre_norm!r}, "
                         f"{rezero!r}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    if init not in RESIDUAL_INITS:
        raise ValueError(f"init must be one of {RESIDUAL_INITS}, got {init!r}")
    if framework == "torch":
        import torch

        _, model_class = _torch_residual_classes()
        model = model_class(width, n_blocks, hidden, pre_norm, rezero).to(getattr(torch, dtype))
    else:
        import keras

        inputs = keras.Input((width,), dtype=dtype)
        stream = inputs
        for i in range(n_blocks):
            branch = stream
            if pre_norm:
                branch = keras.layers.LayerNormalization(
                    epsilon=_LAYER_NORM_EPSILON, dtype=dtype, name=f"block{i}_norm")(branch)
            branch = keras.layers.Dense(hidden, dtype=dtype, name=f"block{i}_in")(branch)
            branch = keras.layers.Activation("gelu" if pre_norm else "relu", dtype=dtype,
                                             name=f"block{i}_act")(branch)
            branch = keras.layers.Dense(width, dtype=dtype, name=f"block{i}_out")(branch)
            if rezero:
                branch = _keras_gate_class()(dtype=dtype, name=f"block{i}_gate")(branch)
            stream = keras.layers.Add(dtype=dtype, name=f"block{i}_add")([stream, branch])
        model = keras.Model(inputs, stream, name="residual_mlp")
    return init_residual_mlp_(model, init, seed)


def _residual_blocks(model: Any) -> list[dict[str, Any]]:
    """Per block: the ParamInfo of fc_in/fc_out weights and biases, norm gamma/beta, gate."""
    framework = require_built(model)
    if framework == "keras":
        keys = {"in": "_in", "out": "_out", "norm": "_norm", "gate": "_gate"}
        pattern = re.compile(r"^block(\d+)(_in|_out|_norm|_gate)$")

        def locate(param: ParamInfo) -> tuple[int, str] | None:
            match = pattern.match(getattr(param.layer_object, "name", ""))
            if match is None:
                return None
            return int(match.group(1)), {v: k for k, v in keys.items()}[match.group(2)]
    else:
        pattern = re.compile(r"^blocks\.(\d+)(?:\.(fc_in|fc_out|norm))?$")
        names = {"fc_in": "in", "fc_out": "out", "norm": "norm", None: "gate"}

        def locate(param: ParamInfo) -> tuple[int, str] | None:
            match = pattern.match(param.layer)
            if match is None:
                return None
            return int(match.group(1)), names[match.group(2)]
    blocks: dict[int, dict[str, Any]] = {}
    for param in parameters(model):
        place = locate(param)
        if place is None:
            continue
        blocks.setdefault(place[0], {})[f"{place[1]}/{param.name}"] = param
    ordered = [blocks[i] for i in sorted(blocks)]
    weight = "kernel" if framework == "keras" else "weight"
    if not ordered or sorted(blocks) != list(range(len(ordered))) or any(
            f"in/{weight}" not in b or f"out/{weight}" not in b for b in ordered):
        raise ValueError("model must be built by utils.initializers.residual_mlp (blocks whose "
                         "layers are named block{i}_in/_out in Keras or blocks.{i}.fc_in/fc_out "
                         "in torch)")
    for block in ordered:
        block["framework"] = framework
    return ordered


def init_residual_mlp_(model: Any, init: str = "preserving", seed: int = 0) -> Any:
    """(Re-)initialise a :func:`residual_mlp` in place with one of :data:`RESIDUAL_INITS`.

    Weights are drawn from ``numpy.random.default_rng(seed)`` as standard normals, block by
    block (``fc_in`` then ``fc_out``) in Keras's layout and transposed for torch, then scaled;
    every scheme draws the same normals, so two schemes with the same seed differ only in the
    scales. Biases are zero, LayerNorm scales one and offsets zero, ReZero gates ``alpha = 1``
    except under ``"rezero"`` (``alpha = 0``). With ``n`` the stream width, ``m`` the hidden
    width and ``N`` the number of blocks, the standard deviations are (Chapter 6 derives them):

    ================  =============================  ====================================
    init              first layer ``fc_in``          last layer ``fc_out``
    ================  =============================  ====================================
    preserving        ``sqrt(1/n)`` (LeCun)          ``sqrt(2/m)`` (He: ReLU input)
    depth_scaled      ``sqrt(1/n)``                  ``sqrt(2/m) / sqrt(N)``
    zero_last         ``sqrt(1/n)``                  0
    fixup             ``sqrt(1/n) / sqrt(N)``        0
    rezero            ``sqrt(1/n)``                  ``sqrt(2/m)``, gate 0
    gpt2              0.02                           ``0.02 / sqrt(N)``
    gpt2_unscaled     0.02                           0.02
    ================  =============================  ====================================

    Fixup (Zhang et al. 2019) scales all but the last of a branch's ``k`` layers by
    ``N**(-1/(2k - 2))``, which is ``N**-1/2`` for ``k = 2``; its scalar biases and multipliers
    are not modelled. GPT-2 (Radford et al. 2019) divides by the square root of the number of
    residual layers; a GPT-2 block has two (attention and MLP), hence its
    ``0.02 / sqrt(2 * n_layer)``, and here every block is one residual layer.

    Parameters
    ----------
    model
        A model built by :func:`residual_mlp`; modified in place.
    init
        One of :data:`RESIDUAL_INITS` (the table above).
    seed
        Seeds a fresh ``numpy.random.default_rng``; the global generators are not touched.

    Returns
    -------
    The model, for chaining.

    Raises
    ------
    ValueError
        If ``model`` was not built by :func:`residual_mlp`, ``init`` is unknown, ``"rezero"`` is
        asked of a model without gates, or ``seed`` is invalid.
    """
    if init not in RESIDUAL_INITS:
        raise ValueError(f"init must be one of {RESIDUAL_INITS}, got {init!r}")
    rng = np.random.default_rng(require_seed(seed))
    blocks = _residual_blocks(model)
    framework = blocks[0]["framework"]
    weight = "kernel" if framework == "keras" else "weight"
    gated = all(any(key.startswith("gate/") for key in block) for block in blocks)
    if init == "rezero" and not gated:
        raise ValueError("init='rezero' needs a model built with residual_mlp(..., rezero=True)")
    n_blocks = len(blocks)
    for block in blocks:
        w_in, w_out = block[f"in/{weight}"], block[f"out/{weight}"]
        n, m = keras_layout(w_in.shape, framework)[-2:]
        if init in ("gpt2", "gpt2_unscaled"):
            std_in = _GPT2_STD
            std_out = _GPT2_STD / math.sqrt(n_blocks) if init == "gpt2" else _GPT2_STD
        else:
            std_in = math.sqrt(1.0 / n) / (math.sqrt(n_blocks) if init == "fixup" else 1.0)
            std_out = {"preserving": math.sqrt(2.0 / m), "rezero": math.sqrt(2.0 / m),
                       "depth_scaled": math.sqrt(2.0 / m) / math.sqrt(n_blocks),
                       "zero_last": 0.0, "fixup": 0.0}[init]
        for param, std in ((w_in, std_in), (w_out, std_out)):
            shape = keras_layout(param.shape, framework)
            kernel = std * rng.standard_normal(shape)
            assign(param, from_keras_layout(kernel, framework))
        for key, param in block.items():
            if key in ("framework", f"in/{weight}", f"out/{weight}"):
                continue
            if key.startswith("gate/"):
                assign(param, np.full(param.shape, 0.0 if init == "rezero" else 1.0))
            elif key in ("norm/gamma", "norm/weight"):
                assign(param, np.ones(param.shape))
            else:  # biases and LayerNorm offsets
                assign(param, np.zeros(param.shape))
    return model


@dataclass(frozen=True)
class ResidualTrace:
    """The residual stream of a :func:`residual_mlp` at every depth, and its branches' hidden
    activations (see :func:`trace_residual_mlp`).

    Attributes
    ----------
    stream
        Shape ``(n_blocks + 1, batch, width)``: the input, then the stream after each block.
    hidden
        Shape ``(n_blocks, batch, hidden)``: each branch's activations after its nonlinearity
        (the input of its last layer).
    """

    stream: np.ndarray
    hidden: np.ndarray

    @property
    def rms(self) -> np.ndarray:
        """Root mean square of the stream at each depth (its std about zero), float64."""
        values = self.stream.astype(np.float64)
        return np.sqrt(np.mean(values**2, axis=(1, 2)))


def trace_residual_mlp(model: Any, x: Any) -> ResidualTrace:
    """One forward pass of a :func:`residual_mlp`, recording the stream after every block.

    Built on :func:`utils.frameworks.trace` (the Keras ``block{i}_add`` layers and torch
    ``blocks.{i}.stream`` leaves record the stream; ``block{i}_act`` / ``blocks.{i}.act`` the
    hidden activations).

    Parameters
    ----------
    model
        A model built by :func:`residual_mlp`.
    x
        A batch of inputs of shape ``(batch, width)``.

    Returns
    -------
    ResidualTrace
        The stream at every depth (the input, then after each block) and each branch's
        hidden activations.

    Raises
    ------
    ValueError
        If ``model`` was not built by :func:`residual_mlp` or ``x`` cannot pass through it.
    """
    blocks = _residual_blocks(model)
    framework = blocks[0]["framework"]
    records = {record.name: record.output for record in trace(model, x).layers}
    n_blocks = len(blocks)
    if framework == "keras":
        streams = [records[f"block{i}_add"] for i in range(n_blocks)]
        hidden = [records[f"block{i}_act"] for i in range(n_blocks)]
    else:
        streams = [records[f"blocks.{i}.stream"] for i in range(n_blocks)]
        hidden = [records[f"blocks.{i}.act"] for i in range(n_blocks)]
    first = to_numpy(x) if (hasattr(x, "detach") or hasattr(x, "numpy")) else np.asarray(x)
    return ResidualTrace(np.stack([first.astype(streams[0].dtype)] + streams), np.stack(hidden))
