"""Prior-logit biases: start a classifier at the label distribution (Chapter 4).

An untrained network with small last-layer weights outputs nearly the same logits for every
input, so the final layer's bias alone decides its first predictions. Chapter 4 proves that the
bias minimising the initial cross-entropy is the log of the class frequencies (softmax) or the
logit of each positive rate (sigmoid), and that the loss it reaches, the entropy of the labels,
is the floor for any predictor that ignores its input.

The NumPy functions :func:`prior_bias` and :func:`initial_loss` import no framework. The model
functions :func:`set_prior_bias` and :func:`check_initial_loss` work on any Keras 3 or torch
model through :mod:`utils.frameworks`, importing the framework only through the model they get.

Conventions
-----------
``activation="softmax"``
    ``counts[k]`` is the number of examples of class ``k`` (any non-negative numbers; only
    their ratios matter). The bias returned is ``log p`` with ``p = counts / counts.sum()``, so
    ``logsumexp(bias) = 0`` and ``exp(bias)`` *is* the predicted distribution. Softmax ignores a
    constant shift, so ``log p + c`` predicts the same for every ``c``.
``activation="sigmoid"``
    One sigmoid per output unit (binary or multi-label). ``counts[k]`` is the number of
    examples that are *positive for output k* and ``total`` (required) is the number of
    examples, so the positive rate is ``counts[k] / total``. A binary problem with ``neg``
    negatives and ``pos`` positives is ``counts=[pos], total=neg + pos``. The loss is averaged
    over the outputs, as ``keras.losses.BinaryCrossentropy`` and ``torch.nn.BCEWithLogitsLoss``
    do by default.
"""
from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from utils.frameworks import (NeedsInputError, ParamInfo, forward, leaf_layers,
                              output_graph, parameters, require_built)
from utils.stats import require_nonnegative

__all__ = [
    "ACTIVATIONS",
    "InitialLossCheck",
    "prior_bias",
    "initial_loss",
    "set_prior_bias",
    "check_initial_loss",
]

Activation = Literal["softmax", "sigmoid"]
ACTIVATIONS: tuple[Activation, ...] = ("softmax", "sigmoid")

# Layer classes whose bias is "the output bias": dense and convolution layers (a detection head
# such as RetinaNet's is a convolution with one output channel per class and anchor).
_KERAS_AFFINE = {"Dense", "BaseConv", "BaseConvTranspose", "BaseDepthwiseConv",
                 "BaseSeparableConv"}
_TORCH_AFFINE = {"Linear", "_ConvNd"}
_ACTIVATION_NAMES = {"linear": None, "softmax": "softmax", "sigmoid": "sigmoid",
                     "log_softmax": "log_softmax"}


# ----------------------------------------------------------------------------------------------
# Validation helpers (each names the caller's argument)


def _as_vector(values: Any, argument: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{argument} must be a 1-D sequence of numbers, got {values!r}") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"{argument} must be a non-empty 1-D sequence of numbers, got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array)).tolist()
        raise ValueError(
            f"{argument} must be finite, got non-finite entries at {bad}: {array[bad]}"
        )
    return array


def _as_counts(counts: Any, argument: str = "counts") -> np.ndarray:
    array = _as_vector(counts, argument)
    if np.any(array < 0):
        bad = np.flatnonzero(array < 0).tolist()
        raise ValueError(
            f"{argument} must be non-negative, got negative entries at {bad}: {array[bad]}"
        )
    if not np.any(array > 0):
        raise ValueError(f"{argument} must contain at least one positive count, got all zeros")
    return array


def _check_activation(activation: Any, argument: str = "activation") -> Activation:
    if activation not in ACTIVATIONS:
        raise ValueError(f"{argument} must be one of {ACTIVATIONS}, got {activation!r}")
    return activation


def _class_weights(class_weight: Any, counts: np.ndarray, activation: Activation) -> np.ndarray:
    """One positive weight per entry of ``counts``, from a sequence, a number or Keras's dict."""
    if isinstance(class_weight, Mapping):
        keys = list(class_weight)
        bad = [k for k in keys if isinstance(k, bool) or not isinstance(k, (int, np.integer))]
        if bad:
            raise ValueError(
                f"class_weight as a dict must map class indices (integers) to weights, as in "
                f"Keras's fit(class_weight={{0: 1.0, 1: 5.0}}); got keys {bad}"
            )
        values = _as_vector([class_weight[k] for k in keys], "class_weight") if keys \
            else np.zeros(0)
        if np.any(values <= 0):
            raise ValueError(f"class_weight must be positive, got {dict(class_weight)}")
        given = dict(zip((int(k) for k in keys), values))
        if activation == "softmax":
            outside = sorted(k for k in given if not 0 <= k < counts.size)
            if outside:
                raise ValueError(
                    f"class_weight names classes {outside} that counts does not have (classes "
                    f"0 to {counts.size - 1})"
                )
            return np.array([given.get(k, 1.0) for k in range(counts.size)])
        if counts.size != 1:
            raise ValueError(
                "class_weight as a dict ({0: w0, 1: w1}) is Keras's format for one binary "
                f"output; for {counts.size} sigmoid outputs pass one positive-class weight per "
                "output (torch's pos_weight)"
            )
        outside = sorted(k for k in given if k not in (0, 1))
        if outside:
            raise ValueError(
                f"class_weight for a sigmoid output must have keys 0 and 1, got {outside}")
        return np.array([given.get(1, 1.0) / given.get(0, 1.0)])
    if isinstance(class_weight, str):
        raise ValueError(
            f"class_weight must be numbers or a dict {{class index: weight}}, got "
            f"{class_weight!r}")
    try:
        array = np.asarray(class_weight, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"class_weight must be numbers or a dict {{class index: weight}}, "
                         f"got {class_weight!r}") from None
    weights = _as_vector(np.broadcast_to(array, counts.shape) if array.size == 1 else array,
                         "class_weight")
    if weights.shape != counts.shape:
        raise ValueError(
            f"class_weight must have one weight per entry of counts ({counts.size}), "
            f"got {weights.size}"
        )
    if np.any(weights <= 0):
        raise ValueError(f"class_weight must be positive, got {weights}")
    return weights


def _positive_rates(counts: np.ndarray, total: Any, smoothing: float) -> np.ndarray:
    """Per-output positive rates for the sigmoid convention, after additive smoothing."""
    if total is None:
        hint = ""
        if counts.size == 2:
            hint = (f" For a binary problem with {counts[0]:g} negatives and {counts[1]:g} "
                    f"positives pass counts=[{counts[1]:g}], total={counts.sum():g}.")
        raise ValueError(
            "total must be given with activation='sigmoid': counts are the positives of each "
            "output and total is the number of examples." + hint
        )
    if np.ndim(total) > 1 or np.size(total) not in (1, counts.size):
        raise ValueError(
            f"total must be a number or one number per output ({counts.size}), got {total!r}"
        )
    totals = np.broadcast_to(_as_vector(np.atleast_1d(total), "total"), counts.shape)
    if np.any(totals <= 0):
        raise ValueError(f"total must be positive, got {total!r}")
    if np.any(counts > totals):
        bad = np.flatnonzero(counts > totals).tolist()
        raise ValueError(
            f"counts must not exceed total (positives out of all examples), got counts "
            f"{counts[bad]} at {bad} with total {total!r}"
        )
    return (counts + smoothing) / (totals + 2 * smoothing)


def _logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    top = np.max(z, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(z - top), axis=axis))


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-_softplus(-z))


# ----------------------------------------------------------------------------------------------
# NumPy functions


def prior_bias(
    counts: Any,
    activation: str = "softmax",
    *,
    total: Any = None,
    smoothing: float = 0.0,
    class_weight: Any = None,
) -> np.ndarray:
    """The output bias that makes a model with zero last-layer weights predict the label prior.

    Chapter 4 ("The prior bias, proved") shows this bias minimises the initial cross-entropy.

    Parameters
    ----------
    counts
        ``"softmax"``: examples per class (length K >= 2). ``"sigmoid"``: positive examples per
        output unit (length K >= 1), out of ``total``. See the module docstring.
    activation
        ``"softmax"`` (one label per example, K mutually exclusive classes) or ``"sigmoid"``
        (an independent sigmoid per output: binary or multi-label).
    total
        Sigmoid only, and required there: the number of examples (a number, or one per output
        when labels are missing for some outputs).
    smoothing
        Additive (Laplace) smoothing: ``smoothing >= 0`` pseudo-examples are added to every
        class. Softmax uses ``(n_k + smoothing) / (N + K smoothing)``, sigmoid
        ``(n_k + smoothing) / (total + 2 smoothing)``. Chapter 4 ("Empty classes and
        smoothing") bounds what it costs on the training labels by
        ``log(1 + K smoothing / N)``. Needed when a class is empty (softmax) or an output is
        never or always positive (sigmoid), whose exact prior bias is infinite.
    class_weight
        Optional positive weights that the training loss applies, which change the *effective*
        prior. Softmax: one weight per class, as a sequence (``weight`` in
        ``torch.nn.CrossEntropyLoss``) or as Keras ``fit``'s dict ``{class index: weight}``
        (a class the dict leaves out has weight 1, as in ``fit``); the bias becomes
        ``log(w_k n_k / sum_j w_j n_j)``. Sigmoid: the weight of a positive relative to a
        negative, per output (torch's ``pos_weight``), or for one output Keras's binary dict
        ``{0: w0, 1: w1}``, which is ``w1 / w0``; the bias becomes ``log(w pi / (1 - pi))``.
        With "balanced" weights the bias is 0.

    Returns
    -------
    numpy.ndarray
        Float64 bias of length K. Softmax: ``log p`` (so ``logsumexp = 0``); sigmoid:
        ``log(pi / (1 - pi))``.

    Raises
    ------
    ValueError
        For negative, non-finite or all-zero counts; an empty softmax class (or a sigmoid output
        that is never or always positive) without smoothing; a softmax with fewer than two
        classes; a missing or inconsistent ``total``; ``total`` given for softmax; a negative
        ``smoothing``; non-positive class weights or a wrong number of them, a ``class_weight``
        dict with keys that are not class indices of ``counts`` (softmax) or not 0 and 1
        (sigmoid, one output only); an unknown ``activation``.

    Examples
    --------
    >>> prior_bias([492], "sigmoid", total=284_807).round(4)
    array([-6.3594])
    >>> np.exp(prior_bias([10, 5, 5, 100, 100])).round(4)
    array([0.0455, 0.0227, 0.0227, 0.4545, 0.4545])
    """
    activation = _check_activation(activation)
    counts = _as_counts(counts)
    smoothing = require_nonnegative(smoothing, "smoothing")
    weights = None if class_weight is None else _class_weights(class_weight, counts, activation)

    if activation == "softmax":
        if total is not None:
            raise ValueError(
                "total is only used with activation='sigmoid'; softmax counts are examples per "
                "class and are normalised by their sum"
            )
        if counts.size < 2:
            raise ValueError(
                "counts must have at least 2 classes for activation='softmax' (a softmax over one "
                "output always predicts 1); for one binary output use activation='sigmoid'"
            )
        smoothed = counts + smoothing
        if np.any(smoothed == 0):
            empty = np.flatnonzero(smoothed == 0).tolist()
            raise ValueError(
                f"counts has empty classes at {empty}, whose prior bias log(0) is -inf; pass "
                "smoothing > 0 (e.g. smoothing=1) or remove the classes from the output"
            )
        if weights is not None:
            smoothed = smoothed * weights
        return np.log(smoothed) - np.log(smoothed.sum())

    rates = _positive_rates(counts, total, smoothing)
    if np.any((rates <= 0) | (rates >= 1)):
        bad = np.flatnonzero((rates <= 0) | (rates >= 1)).tolist()
        raise ValueError(
            f"counts gives outputs {bad} a positive rate of {rates[bad]} (never or always "
            "positive), whose prior bias is infinite; pass smoothing > 0 (e.g. smoothing=1)"
        )
    bias = np.log(rates) - np.log1p(-rates)
    if weights is not None:
        bias = bias + np.log(weights)
    return bias


def initial_loss(
    counts: Any,
    bias: Any = None,
    activation: str = "softmax",
    *,
    total: Any = None,
) -> float:
    """Expected cross-entropy of the constant predictor with logits ``bias`` (Chapter 4).

    This is the loss a model whose last-layer weights are zero has on data with the class
    distribution ``counts``: ``logsumexp(b) - p . b`` for softmax, and the binary cross-entropy
    averaged over the outputs for sigmoid. With ``bias=None`` (zeros) it is ``log K`` for softmax
    and ``log 2`` for sigmoid; with :func:`prior_bias` it is the entropy of the labels, the
    smallest value any bias (indeed any predictor that ignores its input) can reach.

    Parameters
    ----------
    counts, activation, total
        As in :func:`prior_bias`. Empty classes are allowed here (they contribute nothing).
    bias
        The output logits' bias, length K; ``None`` means zeros.

    Returns
    -------
    float
        The expected loss in nats.

    Raises
    ------
    ValueError
        For bad counts (negative, non-finite, all zero), a bias that is not finite or whose
        length differs from ``counts``, a missing or inconsistent ``total``, ``total`` given for
        softmax, or an unknown ``activation``.

    Examples
    --------
    >>> round(initial_loss([10, 5, 5, 100, 100]), 4)  # log 5
    1.6094
    >>> round(initial_loss([10, 5, 5, 100, 100], prior_bias([10, 5, 5, 100, 100])), 4)
    1.0293
    """
    activation = _check_activation(activation)
    counts = _as_counts(counts)
    bias = np.zeros_like(counts) if bias is None else _as_vector(bias, "bias")
    if bias.shape != counts.shape:
        raise ValueError(
            f"bias must have one entry per entry of counts ({counts.size}), got {bias.size}"
        )
    if activation == "softmax":
        if total is not None:
            raise ValueError("total is only used with activation='sigmoid'")
        if counts.size < 2:
            raise ValueError("counts must have at least 2 classes for activation='softmax'")
        p = counts / counts.sum()
        return float(_logsumexp(bias) - p @ bias)
    rates = _positive_rates(counts, total, 0.0)
    return float(np.mean(rates * _softplus(-bias) + (1 - rates) * _softplus(bias)))


def _entropy(counts: np.ndarray, activation: Activation, total: Any) -> float:
    """The loss floor: entropy of the labels (mean binary entropy for sigmoid), 0 log 0 = 0."""
    if activation == "softmax":
        p = counts / counts.sum()
        p = p[p > 0]
        return float(-(p @ np.log(p)))
    rates = _positive_rates(counts, total, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = -(rates * np.log(rates) + (1 - rates) * np.log1p(-rates))
    return float(np.mean(np.nan_to_num(terms, nan=0.0)))


# ----------------------------------------------------------------------------------------------
# Finding a model's output layer


@dataclass(frozen=True)
class _Head:
    framework: str
    name: str
    layer: Any
    kernel: ParamInfo | None
    bias: ParamInfo | None
    units: int
    applied: tuple[str, ...]  # activations applied after the affine map, in order
    unknown_after: str | None  # first step after the head whose effect we cannot tell
    output: int = 0  # which of the model's outputs it computes
    output_name: str = "output"
    explicit: bool = False  # named by the caller with layer=
    n_outputs: int = 1


def _class_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def _is_affine(framework: str, layer: Any) -> bool:
    return bool(_class_names(layer) & (_KERAS_AFFINE if framework == "keras" else _TORCH_AFFINE))


def _keras_activation_name(function: Any) -> str | None | Literal[False]:
    """``None`` for identity, a name for softmax/sigmoid/log_softmax, ``False`` for others."""
    name = getattr(function, "__name__", None)
    return _ACTIVATION_NAMES.get(name, False) if name is not None else False


def _units(framework: str, layer: Any, owned: list[ParamInfo]) -> tuple[Any, Any, int | None]:
    kernel = next((p for p in owned if p.name in ("kernel", "weight")), None)
    bias = next((p for p in owned if p.name == "bias"), None)
    if bias is not None:
        return kernel, bias, bias.shape[0]
    if kernel is not None:
        return kernel, None, kernel.shape[-1] if framework == "keras" else kernel.shape[0]
    return None, None, None


def _describe_source(framework: str, source: Any, several_outputs: bool) -> str:
    owned = [p for p in parameters(source.layer_object) if p.layer_object is source.layer_object]
    units = _units(framework, source.layer_object, owned)[2]
    parts = [source.layer_type] + ([f"{units} unit{'s' if units != 1 else ''}"]
                                   if units is not None else [])
    fused = getattr(source.layer_object, "activation", None) if framework == "keras" else None
    then = ([getattr(fused, "__name__", str(fused))] if fused is not None
            and getattr(fused, "__name__", "") != "linear" else [])
    then += [step.name for step in source.after if step.kind != "same"]
    text = f"layer {source.layer!r} ({', '.join(parts)}"
    text += f", then {' then '.join(then)})" if then else ")"
    if several_outputs:
        text = f"output {source.output_name!r} (position {source.output}) <- {text}"
    return text


def _head_from(framework: str, model: Any, source: Any, name: str, explicit: bool,
               n_outputs: int) -> _Head:
    head = source.layer_object if source is not None else dict(leaf_layers(model))[name]
    owned = [p for p in parameters(model) if p.layer_object is head]
    kernel, bias, units = _units(framework, head, owned)
    if units is None:
        raise ValueError(f"model's output layer {name!r} has no parameters")
    applied: list[str] = []
    unknown_after = None
    if framework == "keras":
        own = _keras_activation_name(getattr(head, "activation", None))
        if own is False:
            unknown_after = f"activation {getattr(head.activation, '__name__', head.activation)!r}"
        elif own is not None:
            applied.append(own)
    if source is None:  # named by the caller, but the model's computation could not be followed
        unknown_after = unknown_after or "steps that were not traced (pass x= to trace them)"
    for step in source.after if source is not None and unknown_after is None else ():
        if step.kind == "same":
            continue
        if step.kind == "other":
            unknown_after = step.name
            break
        applied.append(step.kind)
    output = source.output if source is not None else 0
    output_name = source.output_name if source is not None else "output"
    return _Head(framework, name, head, kernel, bias, int(units), tuple(applied), unknown_after,
                 output, output_name, explicit, n_outputs)


def _find_head(model: Any, layer: str | None, output: Any = None, x: Any = None) -> _Head:
    """The layer whose bias is the output bias, found from what the model computes.

    The model's computation is followed back from its outputs
    (:func:`utils.frameworks.output_graph`) to the layers with parameters that compute them.
    Exactly one candidate must remain after ``output`` and ``layer`` narrow them down.
    """
    framework = require_built(model)
    leaves = leaf_layers(model)
    chosen = None
    if layer is not None:
        names = [name for name, _ in leaves]
        if not isinstance(layer, str) or layer not in names:
            raise ValueError(f"layer must name one of the model's layers {names}, got {layer!r}")
        chosen = leaves[names.index(layer)][1]
        if not _is_affine(framework, chosen):
            raise ValueError(
                f"layer must name a dense or convolution layer, got {layer!r} "
                f"({type(chosen).__name__})"
            )
    try:  # follow the computation back to dense/convolution layers only
        graph = output_graph(model, x, through=lambda obj: not _is_affine(framework, obj))
    except NeedsInputError:
        if chosen is None or output is not None:
            raise
        return _head_from(framework, model, None, layer, True, 1)
    several = len(graph.outputs) > 1
    sources = list(graph.sources)
    where, verb = "its output", "is"
    if output is not None:
        position = graph.index(output)
        sources = [s for s in sources if s.output == position]
        where = f"its output {graph.outputs[position]!r}"
    elif several:
        where, verb = f"its {len(graph.outputs)} outputs", "are"
    if chosen is not None:
        mine = [s for s in sources if s.layer_object is chosen]
        if not mine:
            computed = "; ".join(_describe_source(framework, s, several) for s in sources) \
                or "no layer with parameters"
            raise ValueError(
                f"layer {layer!r} does not compute {where}: the model's output comes from "
                f"{computed}. Pass layer= a layer whose output is the model's output (after "
                "activations, dropout or reshapes only)"
            )
        sources = mine
    if not sources:
        raise ValueError(
            "model must contain a Dense/Linear or convolution output layer: no dense or "
            f"convolution layer computes {where} (its layers: "
            f"{[type(obj).__name__ for _, obj in leaves]})"
        )
    # several dense layers behind one layer that is not (a final normalisation after residual
    # branches, as in torch.nn.Transformer): that layer computes the output, and has no bias
    # that sets the logits
    shared = [step for step in sources[0].after if step.is_layer and step.kind == "other"
              and all(step in other.after for other in sources[1:])]
    if len(sources) > 1 and shared:
        raise ValueError(
            f"model must contain a Dense/Linear or convolution output layer: {where} {verb} "
            f"computed by layer {shared[-1].name}, which is neither, after "
            f"{len(sources)} dense or convolution layers; add a dense or convolution head, or "
            "pass layer= to name one whose output is the model's"
        )
    if len(sources) > 1:
        listed = "; ".join(_describe_source(framework, s, several) for s in sources)
        first = sources[0]
        how = (f"output={first.output_name!r} (or output={first.output}) or "
               f"layer={first.layer!r}" if several else f"layer={first.layer!r}")
        raise ValueError(
            f"model has {len(sources)} candidate output layers for {where}: {listed}. Choose "
            f"one: pass {how}"
        )
    source = sources[0]
    return _head_from(framework, model, source, source.layer, chosen is not None,
                      len(graph.outputs))


def _inferred_activation(head: _Head) -> Activation | None:
    if head.unknown_after is not None or len(head.applied) > 1:
        return None
    if head.applied in (("softmax",), ("log_softmax",)):
        return "softmax"
    if head.applied == ("sigmoid",):
        return "sigmoid"
    return "sigmoid" if head.units == 1 else None  # one logit can only be a sigmoid output


def _resolve_activation(head: _Head, activation: str | None) -> Activation:
    inferred = _inferred_activation(head)
    if activation is None:
        if inferred is None:
            after = " then ".join(head.applied) or "nothing"
            if head.unknown_after:
                after = f"{after}, then {head.unknown_after}"
            raise ValueError(
                f"activation could not be inferred from model: its output layer {head.name!r} "
                f"({head.units} units) is followed by {after}; pass activation='softmax' "
                "(one class per example) or 'sigmoid' (independent outputs)"
            )
        return inferred
    activation = _check_activation(activation)
    if inferred is not None and head.applied and inferred != activation:
        raise ValueError(
            f"activation={activation!r} contradicts model, whose output layer {head.name!r} is "
            f"followed by {head.applied[0]}"
        )
    return activation


# ----------------------------------------------------------------------------------------------
# Model functions


def set_prior_bias(
    model: Any,
    counts: Any,
    activation: str | None = None,
    *,
    total: Any = None,
    smoothing: float = 0.0,
    class_weight: Any = None,
    layer: str | None = None,
    output: Any = None,
    x: Any = None,
    kernel_scale: float = 1.0,
) -> np.ndarray:
    """Set a model's output bias to :func:`prior_bias` in place (Chapter 4).

    The output layer is found from what the model computes, not from the order its layers
    were defined in (:func:`utils.frameworks.output_graph`): the dense or convolution layer
    whose output becomes the model's output, through activations, dropout and reshapes only.
    A model with several outputs, or several heads added into one output, is refused with a
    list of the candidates; choose one with ``output`` or ``layer``.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``.
    counts, total, smoothing, class_weight
        As in :func:`prior_bias`.
    activation
        ``"softmax"`` or ``"sigmoid"``; ``None`` infers it from the model: the output layer's
        own Keras activation, or a softmax/sigmoid after it, or ``"sigmoid"`` for a single
        logit. A model that outputs several logits (the usual torch style) needs it stated.
    layer
        The output layer's name as listed by :func:`utils.frameworks.leaf_layers`; it must
        compute one of the model's outputs. Named, it is used even when something other than
        an activation, dropout or a reshape follows it (you say its bias is the one to set).
    output
        For a model with several outputs: which one, by name or position
        (:attr:`utils.frameworks.OutputGraph.outputs`).
    x
        A sample batch of inputs (a few rows). Needed only for torch models whose forward
        ``torch.fx`` cannot trace (the message says so) and subclassed Keras models built
        without a recorded input shape: the model is run on it to find the output layer.
    kernel_scale
        Multiply the output layer's kernel by this (``0`` zeroes it), which shrinks the
        input-dependent part of the initial logits; Chapter 4 measures what that buys.

    Returns
    -------
    numpy.ndarray
        The bias that was set (float64; the layer stores it in its own dtype).

    Raises
    ------
    ValueError
        For everything :func:`prior_bias` rejects; a model that is not a built Keras/torch
        model; a model whose output is not computed by a dense or convolution layer, or is
        computed by several (the message lists them and how to choose); an output layer
        followed by something other than an activation, dropout or a reshape (unless named
        with ``layer``); an output layer without a bias (the message says what to do
        instead); counts whose length differs from the layer's number of outputs; an
        activation that cannot be inferred or contradicts the model; an unknown ``layer`` or
        ``output``, or a ``layer`` that computes no output; ``x`` missing where it is needed;
        a negative or non-finite ``kernel_scale``.
    """
    from utils.frameworks import assign

    head = _find_head(model, layer, output, x)
    if head.bias is None:
        raise ValueError(
            f"model's output layer {head.name!r} ({type(head.layer).__name__}) has no bias to "
            "set. Either rebuild it with a bias (Keras use_bias=True, torch bias=True) and call "
            "set_prior_bias again, or shift the logits instead: add the constant "
            "prior_bias(counts) to the model's output logits (before any softmax or sigmoid)"
        )
    if head.unknown_after is not None and not head.explicit:
        raise ValueError(
            f"model's output layer {head.name!r} is followed by {head.unknown_after} before "
            f"the output {head.output_name!r}, so its bias is not the bias of the output's "
            f"logits; pass layer={head.name!r} if it is the one to set anyway"
        )
    activation = _resolve_activation(head, activation)
    kernel_scale = require_nonnegative(kernel_scale, "kernel_scale")
    bias = prior_bias(counts, activation, total=total, smoothing=smoothing,
                      class_weight=class_weight)
    if bias.size != head.units:
        hint = ""
        if activation == "sigmoid" and head.units == 1 and bias.size == 2:
            hint = " (for one sigmoid output pass counts=[positives] and total=n_examples)"
        raise ValueError(
            f"counts must have one entry per output of layer {head.name!r} ({head.units}), got "
            f"{bias.size}{hint}"
        )
    assign(head.bias, bias)
    if kernel_scale != 1.0 and head.kernel is not None:
        # zeros, not 0 * w, which leaves -0.0 entries
        scaled = head.kernel.numpy() * kernel_scale if kernel_scale \
            else np.zeros(head.kernel.shape)
        assign(head.kernel, scaled)
    return bias


@dataclass(frozen=True)
class InitialLossCheck:
    """What :func:`check_initial_loss` measured and predicted, in nats per example.

    The measured loss splits as ``measured = predicted + first_order + excess``: a Taylor
    expansion of the loss in the input-dependent part of the logits ``e = z - bias`` (Chapter 4,
    "The last layer's weights are not zero"). ``first_order`` is ``mean (q - y) . e``, with
    ``q`` the prediction of the bias alone; its average over random initialisations of the
    output kernel is zero, so it says how lucky this draw is, not how good the set-up is.
    ``excess`` is everything else (the second order ``second_order = mean e^T H e / 2 >= 0``,
    with ``H`` the loss's curvature at the bias, plus the higher orders): the part of the random
    logits' cost that does not average out. ``logit_std`` is the standard deviation of the
    logits across the examples, averaged over the outputs (for softmax after removing each
    example's mean logit, which it ignores).

    ``ok`` is true when ``excess <= rtol * predicted`` (check 1) and
    ``predicted - optimum <= prior_tolerance`` (check 2), where
    ``prior_tolerance = sampling + rounding``: ``sampling`` allows for the batch's label
    counts differing by chance from those the bias was set from, ``rounding`` for the bias
    being stored in the layer's floating-point type (see :func:`check_initial_loss`).
    ``has_bias`` is False when the output layer has no bias (then the bias is taken as zero).
    ``output`` names the model output that was checked, ``outputs`` says what it holds
    (``"logits"``, ``"probabilities"`` or ``"log_probabilities"``).
    """

    activation: str
    layer: str
    examples: int
    measured: float
    predicted: float
    optimum: float
    uniform: float
    first_order: float
    second_order: float
    logit_std: float
    rtol: float
    ok: bool
    message: str
    excess: float = math.nan
    sampling: float = 0.0
    rounding: float = 0.0
    has_bias: bool = True
    output: str = "output"
    outputs: str = "logits"

    @property
    def prior_tolerance(self) -> float:
        """Check 2's tolerance on ``predicted - optimum``: ``sampling + rounding`` (nats)."""
        return self.sampling + self.rounding

    def __str__(self) -> str:
        message = textwrap.fill(self.message, width=88, initial_indent="  ",
                                subsequent_indent="    ")
        return (
            f"initial loss of a {self.activation} output (layer {self.layer!r}, "
            f"{self.examples} examples)\n"
            f"  measured {self.measured:.4g} = bias predicts {self.predicted:.4g} "
            f"{self.first_order:+.3g} (1st order) {self.excess:+.3g} (2nd and higher)\n"
            f"  prior bias would give {self.optimum:.4g}, zero bias {self.uniform:.4g}; "
            f"logits vary with std {self.logit_std:.3g}\n"
            f"{message}"
        )


def _targets(y: Any, activation: Activation, units: int) -> np.ndarray:
    """Labels as an (n, units) float64 matrix of probabilities (softmax) or rates (sigmoid)."""
    try:
        array = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"y must be numeric labels, got {type(y).__name__}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError("y must be finite")
    if activation == "softmax":
        if array.ndim == 2 and array.shape[1] == 1 and units > 1:
            array = array[:, 0]
        if array.ndim == 1:
            if np.any(array != np.round(array)) or np.any(array < 0) or np.any(array >= units):
                raise ValueError(
                    f"y must hold integer class labels in [0, {units}) or one row of class "
                    f"probabilities per example, got values in [{array.min():g}, {array.max():g}]"
                )
            return np.eye(units)[array.astype(np.int64)]
        if array.ndim != 2 or array.shape[1] != units:
            raise ValueError(
                f"y must have shape (n,) of labels or (n, {units}) of probabilities, "
                f"got {array.shape}"
            )
        if np.any(array < 0) or np.any(array > 1):
            raise ValueError("y must hold probabilities in [0, 1] when it is (n, K)")
        sums = array.sum(axis=1)
        # float32 one-hot or smoothed labels sum to 1 within a few float32 roundings
        bad = np.flatnonzero(np.abs(sums - 1) > 1e-5 * units)
        if bad.size:
            raise ValueError(
                f"y's rows must be probabilities that sum to one, got sums {sums[bad[:3]]} at "
                f"rows {bad[:3].tolist()}"
            )
        return array
    if array.ndim == 1 and units == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != units:
        raise ValueError(f"y must have shape (n, {units}) of 0/1 targets, got {array.shape}")
    if np.any(array < 0) or np.any(array > 1):
        raise ValueError("y must hold targets in [0, 1] for activation='sigmoid'")
    return array


def _forward(head: _Head, model: Any, x: Any) -> np.ndarray:
    """The output the head computes, on x in inference mode (dropout off), as float64."""
    outputs = forward(model, x)
    return outputs[head.output][1]


def _rounding_allowance(bias: np.ndarray, dtype: Any, k: int) -> float:
    """How far ``predicted - optimum`` may exceed zero for the exact prior bias stored in
    ``dtype``: ``KL(p || softmax(b + d)) = Var_p(d) / 2 + O(d^3) <= max d^2 / 2`` for rounding
    errors ``|d_k| <= u |b_k|`` (``u`` the unit roundoff; the same bound holds per sigmoid
    output), doubled for the third order, plus the float64 evaluation of both losses
    (``8 K eps64`` of their terms' magnitude)."""
    try:
        unit = float(np.finfo(np.dtype(str(dtype).removeprefix("torch."))).eps) / 2
    except TypeError:  # bfloat16, which NumPy does not know
        unit = 2.0 ** -8
    largest = float(np.max(np.abs(bias))) if bias.size else 0.0
    return (unit * largest) ** 2 + 8 * k * float(np.finfo(np.float64).eps) * (
        largest + math.log(max(k, 2)) + 1)


def _to_logits(outputs: np.ndarray, kind: str, activation: Activation) -> np.ndarray:
    if kind == "logits" or kind == "log_probabilities":
        return outputs
    tiny = np.finfo(np.float32).tiny  # outputs were float32 probabilities
    if activation == "softmax":
        return np.log(np.clip(outputs, tiny, None))
    clipped = np.clip(outputs, tiny, 1 - np.finfo(np.float32).epsneg)
    return np.log(clipped) - np.log1p(-clipped)


def _sampling_allowance(q: Any, n: int, sigmas: float) -> float:
    """How far ``KL(p_batch || q)`` may exceed zero by chance for ``n`` labels drawn from ``q``.

    ``KL(p || q) <= log(sum_k p_k^2 / q_k) = log(1 + X^2 / n)`` by Jensen's inequality, with
    Pearson's ``X^2``, whose mean ``K - 1`` and variance
    ``2 (K - 1) + (sum_k 1/q_k - K^2 - 2 K + 2) / n`` are exact for multinomial counts; we allow
    ``sigmas`` standard deviations above the mean.
    """
    q = np.asarray(q, dtype=np.float64).ravel()
    k = q.size
    variance = 2 * (k - 1) + (np.sum(1 / q) - k**2 - 2 * k + 2) / n
    return float(np.log1p((k - 1 + sigmas * math.sqrt(max(variance, 0.0))) / n))


def check_initial_loss(
    model: Any,
    x: Any,
    y: Any,
    activation: str | None = None,
    *,
    layer: str | None = None,
    output: Any = None,
    outputs: str | None = None,
    rtol: float = 0.25,
    sigmas: float = 5.0,
    warn: bool = True,
) -> InitialLossCheck:
    """Compare a model's loss on a batch with the loss its output bias predicts (Chapter 4).

    Karpathy's "verify loss at init" as a tool. A freshly initialised classifier should have
    about the loss of the constant predictor given by its output bias (:func:`initial_loss`):
    ``log K`` with a zero bias, the label entropy with :func:`prior_bias`. The output layer is
    found from what the model computes, as in :func:`set_prior_bias`, and named in every
    message. The measured loss is split as ``predicted + first_order + excess`` (see
    :class:`InitialLossCheck`) and two things are checked, each with its own tolerance:

    1. **The random part of the logits is small**: ``excess <= rtol * predicted``. The
       first-order term is left out because it averages to zero over initialisations (the
       kernel ``-W`` is as likely as ``W``): it makes one model's loss scatter around the
       prediction, by chance, in either direction. ``excess`` is the cost that remains on
       average. More than ``rtol`` means the output kernel is too large for the bias to decide
       the first predictions (scale it down: ``set_prior_bias(..., kernel_scale=0.1)``), or the
       outputs are not what the loss assumes (e.g. probabilities declared as logits).

       The default ``rtol = 0.25`` is chosen, not derived: ``excess`` depends on the
       architecture and the initialiser, so no one bound fits every model, and the value sits
       between the two groups of measurements it must separate. Chapter 4 measures ``excess``
       averaging about 9 % of ``predicted`` with Keras's defaults and 1 to 2 % with PyTorch's
       on its ten-class model (twenty seeds); on its fraud model, Keras's Glorot uniform on a
       one-unit output layer exceeds 25 % on roughly one seed in ten. The warning is then
       right: the random logits, not the bias, decide the first predictions.
    2. **The bias is the label prior**: ``predicted - optimum <= sampling + rounding``, where
       ``optimum`` is the entropy of the batch's labels. ``predicted - optimum`` is the
       Kullback-Leibler divergence ``KL(p_batch || q)`` from the batch's label distribution to
       the bias's prediction ``q``; it is zero for the prior of these labels, and any bias that
       predicts another distribution costs exactly this much. Its tolerance is derived, with
       no relative slack, from the two reasons why the correct prior bias can miss zero:

       * ``sampling``: the batch's labels differ by chance from the counts the bias was set
         from. ``KL <= log(1 + X^2 / n)`` (Jensen), where Pearson's statistic ``X^2`` of ``n``
         labels drawn from ``q`` has mean ``d = K - 1`` and variance
         ``2 d + (sum_k 1/q_k - K^2 - 2 K + 2) / n`` exactly, so
         ``sampling = log(1 + (d + sigmas * sd) / n)`` (per sigmoid output with ``K = 2``,
         averaged over the outputs). This assumes the batch's labels are drawn from the
         distribution the bias was set from, as a batch of the training set is.
       * ``rounding``: the bias is stored in the layer's dtype; rounding each ``b_k`` by at
         most ``u |b_k|`` raises the divergence by at most ``(u max|b|)^2`` (float32:
         below ``1e-12`` for ``|b| < 10``), plus the float64 evaluation of both losses.

       More than the tolerance means the bias predicts another distribution than the labels',
       and :func:`set_prior_bias` would lower the initial loss. The smallest such mistake the
       check can see is the tolerance itself, which shrinks like ``(K - 1) / n``: the
       logit-instead-of-log mistake on Chapter 4's CIFAR profile costs 0.0053 nats (0.33 % of
       the entropy), flagged from about 5,700 labels on (the full 13,850: tolerance 0.0022)
       but not on a batch of 2,048 (0.015), where chance label counts of the correct prior
       bias can cost as much; on the five-class example (``[10, 5, 5, 100, 100]``) it costs
       0.0116, flagged from about 1,600 labels; on a 90/10 split, 0.127, flagged from 61.
       Check on as many labels as you can.

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module``; its output (or the one ``output`` or
        ``layer`` selects) has shape ``(n, K)``.
    x
        A batch of inputs (NumPy or anything the model accepts as an array; a tuple for
        several inputs).
    y
        Its labels. Softmax: integer class labels ``(n,)`` or probability rows ``(n, K)``.
        Sigmoid: 0/1 targets ``(n, K)`` (or ``(n,)`` for one output).
    activation, layer, output
        As in :func:`set_prior_bias`.
    outputs
        What the model returns: ``"logits"``, ``"probabilities"`` or ``"log_probabilities"``.
        ``None`` infers it from the steps after the output layer.
    rtol
        Check 1's relative tolerance, ``> 0``.
    sigmas
        Check 2: standard deviations of the chance difference between the batch's labels and
        the prior allowed, ``> 0``.
    warn
        Issue a ``UserWarning`` with the message when a check fails.

    Returns
    -------
    InitialLossCheck
        All the numbers, ``ok``, and a readable ``message``; ``print`` it for a summary.

    Raises
    ------
    ValueError
        For a model that is not a built Keras/torch model, whose output is not computed by one
        dense/convolution layer (the message lists the candidates and how to choose with
        ``output`` or ``layer``); an activation that cannot be inferred or is unknown; outputs
        of another shape than ``(n, K)``; ``x`` and ``y`` of different lengths; labels out of
        range; probability rows that do not sum to one; an unknown ``outputs``, ``output`` or
        ``layer``; a non-positive ``rtol`` or ``sigmas``.
    """
    for value, argument in ((rtol, "rtol"), (sigmas, "sigmas")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0) \
                or not math.isfinite(value):
            raise ValueError(f"{argument} must be a positive number, got {value!r}")
    if outputs is not None and outputs not in ("logits", "probabilities", "log_probabilities"):
        raise ValueError(
            f"outputs must be 'logits', 'probabilities' or 'log_probabilities', got {outputs!r}"
        )
    n_examples = len(x[0]) if isinstance(x, tuple) else len(x)
    sample = tuple(part[:8] for part in x) if isinstance(x, tuple) else x[:8]
    head = _find_head(model, layer, output, sample)
    activation = _resolve_activation(head, activation)
    if outputs is None:
        if head.unknown_after is not None or len(head.applied) > 1:
            after = f" and {head.unknown_after}" if head.unknown_after else ""
            raise ValueError(
                f"outputs could not be inferred from model: after its output layer {head.name!r} "
                f"come {list(head.applied)}{after}; pass outputs='logits', 'probabilities' or "
                "'log_probabilities'"
            )
        outputs = {(): "logits", ("log_softmax",): "log_probabilities"}.get(
            head.applied, "probabilities")

    targets = _targets(y, activation, head.units)
    if len(targets) != n_examples:
        raise ValueError(f"x and y must have the same length, got {n_examples} and "
                         f"{len(targets)}")
    raw = _forward(head, model, x)
    if raw.ndim == 1 and head.units == 1:
        raw = raw[:, None]
    if raw.shape != targets.shape:
        raise ValueError(
            f"model must output one row of {head.units} values per example from layer "
            f"{head.name!r}, got shape {raw.shape} for output {head.output_name!r}"
        )
    logits = _to_logits(raw, outputs, activation)
    has_bias = head.bias is not None
    bias = head.bias.numpy().astype(np.float64) if has_bias else np.zeros(head.units)
    counts = targets.sum(axis=0)
    n = len(targets)
    noise = logits - bias  # the input-dependent part of the logits (plus any bias shift after it)

    if activation == "softmax":
        measured = float(np.mean(_logsumexp(logits) - np.sum(targets * logits, axis=1)))
        predicted = initial_loss(counts, bias)
        q = _softmax(bias)
        first = float(np.mean(np.sum((q - targets) * noise, axis=1)))
        weighted = noise * np.sqrt(q)
        second = 0.5 * float(np.mean(np.sum(weighted**2, axis=1) - (noise @ q) ** 2))
        uniform = math.log(head.units)
        sampling = _sampling_allowance([q], n, sigmas)
    else:
        measured = float(np.mean(_softplus(logits) - targets * logits))
        predicted = initial_loss(counts, bias, "sigmoid", total=n)
        q = _sigmoid(bias)
        first = float(np.mean((q - targets) * noise))
        second = 0.5 * float(np.mean(q * (1 - q) * noise**2))
        uniform = math.log(2)
        sampling = float(np.mean([_sampling_allowance(np.array([rate, 1 - rate]), n, sigmas)
                                  for rate in q]))
    rounding = _rounding_allowance(bias, head.bias.handle.dtype if has_bias else "float32",
                                   head.units)
    optimum = _entropy(counts, activation, n)
    excess = measured - predicted - first
    if activation == "softmax":  # a softmax ignores each example's mean logit: remove it
        spread = logits - logits.mean(axis=1, keepdims=True)
    else:
        spread = logits
    logit_std = float(np.sqrt(np.mean(np.var(spread, axis=0))))
    allowed = sampling + rounding
    where = f"output layer {head.name!r}" + (
        f" (model output {head.output_name!r})" if head.n_outputs > 1 else "")

    problems = []
    if excess > rtol * predicted:
        shrink = ("set_prior_bias(..., kernel_scale=0.1)" if has_bias
                  else "multiply it by 0.1")
        problems.append(
            f"the random part of the logits adds {excess:.3g} beyond its 1st-order term, "
            f"{excess / predicted:.0%} of the {predicted:.4g} the output bias predicts "
            f"(tolerance {rtol:.0%}); scale down the kernel of {where} ({shrink}), and check "
            f"that the outputs are what the loss expects ({outputs}) and the labels match them"
        )
    if predicted - optimum > allowed:
        if has_bias:
            problems.append(
                f"the output bias is not the label prior: the bias of {where} predicts "
                f"{predicted:.4g} but the prior bias reaches {optimum:.4g}, "
                f"{predicted - optimum:.2g} lower (more than the {allowed:.2g} the batch's chance "
                "label counts allow); call set_prior_bias(model, counts) with the training "
                "set's counts"
            )
        else:
            problems.append(
                f"the start is not the label prior: {where} has no bias, so the model starts "
                f"near {predicted:.4g} where the prior would give {optimum:.4g}; add a bias to "
                "the layer (Keras use_bias=True, torch bias=True) and call "
                "set_prior_bias(model, counts), or add the constant prior_bias(counts) to the "
                "model's output logits"
            )
    if problems:
        message = "CHECK: " + "; ".join(problems) + "."
    else:  # say what was compared, so that "OK" next to a larger measured loss is explained
        message = (
            f"OK on both checks of {where}. The output bias predicts {predicted:.4g} against "
            f"the label prior's {optimum:.4g} (allowed: {allowed:.2g} for the batch's chance "
            f"label counts). The random part of the logits adds {excess:.3g} beyond its "
            f"1st-order term, {excess / predicted:.0%} of the prediction (allowed: "
            f"{rtol:.0%}). The 1st-order term ({first:+.3g}) is this initialisation's chance "
            "and averages to zero"
        ) + "."
    result = InitialLossCheck(
        activation=activation, layer=head.name, examples=n, measured=measured,
        predicted=predicted, optimum=optimum, uniform=uniform, first_order=first,
        second_order=second, logit_std=logit_std, rtol=float(rtol), ok=not problems,
        message=message, excess=excess, sampling=sampling, rounding=rounding,
        has_bias=has_bias, output=head.output_name, outputs=outputs,
    )
    if problems and warn:
        warnings.warn(message, UserWarning, stacklevel=2)
    return result
