"""The frameworks' default initializers, found by introspecting the installed versions (Chapter 1).

Nothing here is copied from documentation. For Keras, each layer type is built on a probe input
and the initializer object attached to each of its variables is read (its class name and
configuration). Torch modules keep no record of how they were initialised, so for torch each
module type is constructed repeatedly and its parameters' values are *measured*: every
candidate distribution (uniform with a bound, or normal with a standard deviation, expressed in
the module's shapes) is tested against the pooled sample, and the ones the sample does not
reject are reported. A framework release that changes a default changes these tables, and the
chapter's asserts turn CI red.

Public functions:

- :func:`default_initializers` -- one row per (layer type, parameter) for ``"keras"`` or
  ``"torch"``;
- :func:`match_distribution` -- which candidate distributions a sample is consistent with;
- :func:`side_by_side`, :func:`markdown_table` and :func:`html_table` -- the Keras/torch
  comparison table, as Markdown (for text) or HTML (for notebooks and the book).
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from utils.distributions import keras_fans
from utils.frameworks import parameters
from utils.initializers import compute_fans
from utils.stats import KURTOSIS, variance_tolerance
from utils.variance import rounding_tolerance

__all__ = [
    "FLOAT32_SLACK",
    "PROBE_SIZES",
    "KERAS_TORCH_PAIRS",
    "Candidate",
    "default_initializers",
    "match_distribution",
    "variance_standard_error",
    "variance_matches",
    "bound_matches",
    "side_by_side",
    "markdown_table",
    "html_table",
]

#: Relative room above a bound that float32 draws may use. The bound is rounded to float32 once
#: and a framework maps a draw r in [0, 1) to lo + (hi - lo) * r with three more float32
#: operations on numbers no larger than 2 * bound, so the result can exceed the exact bound by
#: at most about 1 + 3 * 2 = 7 roundings of relative size u = 2**-24. The course's rounding
#: rule with its default eight elementwise roundings covers them:
#: ``utils.variance.rounding_tolerance(1.0)``, about 8 u. Chapters 1 and 2 use it for every
#: "no value beyond the bound" check.
FLOAT32_SLACK: float = rounding_tolerance(1.0)

#: The sizes of the layers :func:`default_initializers` builds to probe. They are the same in
#: both frameworks, so that paired rows describe the same layer, and deliberately unequal (48
#: inputs, 80 outputs, ...), so that candidate rules such as ``1/sqrt(fan_in)`` and
#: ``sqrt(6/(fan_in + fan_out))`` give clearly different scales.
PROBE_SIZES: dict[str, int] = {
    "in_features": 48,
    "out_features": 80,
    "in_channels": 6,
    "out_channels": 40,
    "kernel_size": 3,
    "input_size": 40,
    "hidden_size": 24,
    "vocabulary": 300,
    "embedding_dim": 40,
    "features": 64,
    "groups": 4,
    "embed_dim": 64,
    "num_heads": 4,
    "key_value_dim": 20,
    "value_dim": 12,
}

# Parameter pairs that several layers share; a None means that framework has no such tensor.
_DENSE_LIKE = [("kernel", "weight"), ("bias", "bias")]
_RECURRENT = [("kernel", "weight_ih_l0"), ("recurrent_kernel", "weight_hh_l0"),
              ("bias", "bias_ih_l0"), (None, "bias_hh_l0")]
_NORM = [("gamma", "weight"), ("beta", "bias")]
# batch normalisation also keeps non-trainable running statistics, initialised like parameters
_BATCH_NORM = _NORM + [("moving_mean", "running_mean"), ("moving_variance", "running_var")]
#: The rows :func:`side_by_side` puts next to each other, each as
#: ``(Keras layer, torch module, [(Keras parameter, torch parameter), ...])``. ``None`` on one
#: side means that framework has no counterpart tensor.
KERAS_TORCH_PAIRS: list[tuple[str, str, list[tuple[str | None, str | None]]]] = [
    ("Dense", "Linear", _DENSE_LIKE),
    ("Conv1D", "Conv1d", _DENSE_LIKE),
    ("Conv2D", "Conv2d", _DENSE_LIKE),
    ("Conv3D", "Conv3d", _DENSE_LIKE),
    ("Conv1DTranspose", "ConvTranspose1d", _DENSE_LIKE),
    ("Conv2DTranspose", "ConvTranspose2d", _DENSE_LIKE),
    ("Conv3DTranspose", "ConvTranspose3d", _DENSE_LIKE),
    ("Embedding", "Embedding", [("embeddings", "weight")]),
    ("SimpleRNN", "RNN", _RECURRENT),
    ("LSTM", "LSTM", _RECURRENT),
    ("GRU", "GRU", _RECURRENT),
    ("BatchNormalization", "BatchNorm1d", _BATCH_NORM),
    ("BatchNormalization", "BatchNorm2d", _BATCH_NORM),
    ("BatchNormalization", "BatchNorm3d", _BATCH_NORM),
    ("LayerNormalization", "LayerNorm", _NORM),
    ("GroupNormalization", "GroupNorm", _NORM),
    ("RMSNormalization", "RMSNorm", [("scale", "weight")]),
    ("MultiHeadAttention", "MultiheadAttention", [
        ("query/kernel", "in_proj_weight"), ("key/kernel", "k_proj_weight"),
        ("value/kernel", "v_proj_weight"), ("query/bias", "in_proj_bias"),
        ("key/bias", None), ("value/bias", None),
        ("attention_output/kernel", "out_proj.weight"),
        ("attention_output/bias", "out_proj.bias"),
    ]),
    ("PReLU", "PReLU", [("alpha", "weight")]),
]

_FRAMEWORKS = ("keras", "torch")


# ---------------------------------------------------------------------------------------------
# Keras: read the initializer objects
# ---------------------------------------------------------------------------------------------

def _keras_probes() -> list[tuple[str, Callable[[], Any]]]:
    import keras

    s = PROBE_SIZES
    layers = keras.layers
    vector = (None, s["in_features"])
    sequence = (None, 5, s["input_size"])
    k = s["kernel_size"]
    images = {1: (None, 16, s["in_channels"]), 2: (None, 12, 12, s["in_channels"]),
              3: (None, 6, 6, 6, s["in_channels"])}
    attention = (None, 5, s["embed_dim"])

    def built(layer: Any, *shapes: Any) -> Any:
        layer.build(*shapes)
        return layer

    probes: list[tuple[str, Callable[[], Any]]] = [
        ("Dense", lambda: built(layers.Dense(s["out_features"]), vector)),
        ("EinsumDense", lambda: built(
            layers.EinsumDense("ab,bc->ac", output_shape=s["out_features"], bias_axes="c"),
            vector)),
    ]
    for rank in (1, 2, 3):
        for suffix in ("", "Transpose"):
            name = f"Conv{rank}D{suffix}"
            probes.append((name, lambda name=name, rank=rank: built(
                getattr(layers, name)(s["out_channels"], k), images[rank])))
    probes += [
        ("DepthwiseConv2D", lambda: built(layers.DepthwiseConv2D(k), images[2])),
        ("SeparableConv2D", lambda: built(
            layers.SeparableConv2D(s["out_channels"], k), images[2])),
        ("Embedding", lambda: built(
            layers.Embedding(s["vocabulary"], s["embedding_dim"]), (None, 5))),
        ("SimpleRNN", lambda: built(layers.SimpleRNN(s["hidden_size"]), sequence)),
        ("LSTM", lambda: built(layers.LSTM(s["hidden_size"]), sequence)),
        ("GRU", lambda: built(layers.GRU(s["hidden_size"]), sequence)),
        ("BatchNormalization", lambda: built(layers.BatchNormalization(), (None, s["features"]))),
        ("LayerNormalization", lambda: built(layers.LayerNormalization(), (None, s["features"]))),
        ("GroupNormalization", lambda: built(
            layers.GroupNormalization(groups=s["groups"]), (None, s["features"]))),
        ("RMSNormalization", lambda: built(layers.RMSNormalization(), (None, s["features"]))),
        ("MultiHeadAttention", lambda: built(
            layers.MultiHeadAttention(s["num_heads"], s["embed_dim"] // s["num_heads"]),
            attention, attention)),
        ("PReLU", lambda: built(layers.PReLU(), (None, s["out_features"]))),
    ]
    return probes


@contextmanager
def _recording_initializers() -> Iterator[dict[int, Any]]:
    """Record the ``initializer`` argument of every ``add_weight`` call, by variable id.

    This is the initializer the installed Keras actually used for each variable, whatever the
    layer calls its constructor argument (``DepthwiseConv2D`` passes ``depthwise_initializer``
    for a variable named ``kernel``; ``RMSNormalization`` passes the string ``"ones"``).
    ``Layer.add_weight`` is wrapped only inside the ``with`` block.
    """
    import keras

    layer_class = keras.layers.Layer
    original = layer_class.add_weight
    record: dict[int, Any] = {}

    def add_weight(self: Any, *args: Any, **kwargs: Any) -> Any:
        variable = original(self, *args, **kwargs)
        initializer = kwargs.get("initializer", args[1] if len(args) > 1 else None)
        record[id(variable)] = initializer
        return variable

    layer_class.add_weight = add_weight
    try:
        yield record
    finally:
        layer_class.add_weight = original


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _describe_keras_initializer(initializer: Any) -> str:
    import keras

    if isinstance(initializer, keras.initializers.VarianceScaling):
        config = {"scale": initializer.scale, "mode": initializer.mode,
                  "distribution": initializer.distribution}
    else:
        config = initializer.get_config()
    return ", ".join(f"{key}={_format_value(value)}" for key, value in config.items()
                     if key != "seed" and value is not None)


def _keras_row(layer_type: str, parameter: str, info: Any, used: Any) -> dict[str, Any]:
    import keras

    if isinstance(used, str):
        used = keras.initializers.get(used)
    notes = []
    if used is None:
        name, details = "(add_weight default)", "no initializer was passed to add_weight"
    elif isinstance(used, keras.initializers.Initializer):
        name, details = type(used).__name__, _describe_keras_initializer(used)
    else:
        # A plain function the layer wrote itself: name the constructor argument it wraps.
        argument = getattr(info.layer_object, f"{info.name}_initializer", None)
        name = type(argument).__name__ if argument is not None else "(function)"
        details = f"a function {getattr(used, '__name__', '')!s} built by the layer"
        if argument is not None:
            details += f" from its {info.name}_initializer"
    if isinstance(used, keras.initializers.VarianceScaling):
        # the axes the installed Keras passed (>= 3.15 for EinsumDense), else the shape rule
        fan_in, fan_out = keras_fans(info.shape, getattr(used, "input_axes", None),
                                     getattr(used, "output_axes", None))
        notes.append(f"fan_in={fan_in}, fan_out={fan_out}")
    if info.name == "bias" and getattr(info.layer_object, "unit_forget_bias", False):
        notes.append("unit_forget_bias=True: the forget-gate block starts at ones")
    values = info.numpy()
    return {
        "framework": "keras",
        "layer": layer_type,
        "parameter": parameter,
        "trainable": bool(info.trainable),
        "initializer": name,
        "details": "; ".join(part for part in [details, *notes] if part),
        "shape": info.shape,
        "std": float(values.std()),
        "n": int(values.size),
    }


def _keras_rows(seed: int) -> list[dict[str, Any]]:
    rows = []
    state = random.getstate()  # unseeded Keras initializers draw their seed from `random`
    try:
        random.seed(seed)
        for layer_type, make in _keras_probes():
            with _recording_initializers() as used:
                layer = make()
            # non-trainable state too (BatchNormalization's moving_mean, moving_variance)
            infos = parameters(layer, include_non_trainable=True)
            names = [info.name for info in infos]
            for info in infos:
                # a variable's bare name, qualified by its sublayer when the name repeats
                # (MultiHeadAttention has four kernels: query/kernel, key/kernel, ...)
                parameter = info.label if names.count(info.name) > 1 else info.name
                rows.append(_keras_row(layer_type, parameter, info, used.get(id(info.handle))))
    finally:
        random.setstate(state)
    return rows


# ---------------------------------------------------------------------------------------------
# torch: measure
# ---------------------------------------------------------------------------------------------

class Candidate(tuple):
    """A candidate distribution: ``Candidate(label, family, scale)``.

    ``family`` is ``"uniform"`` (``scale`` is the bound ``b`` of ``U(-b, b)``) or ``"normal"``
    (``scale`` is the standard deviation of ``N(0, scale**2)``).
    """

    __slots__ = ()

    def __new__(cls, label: str, family: str, scale: float) -> "Candidate":
        if family not in ("uniform", "normal"):
            raise ValueError(f"family must be 'uniform' or 'normal', got {family!r}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive finite number, got {scale!r}")
        return super().__new__(cls, (str(label), family, float(scale)))

    label = property(lambda self: self[0])
    family = property(lambda self: self[1])
    scale = property(lambda self: self[2])


def variance_standard_error(variance: float, n: int, kurtosis: float) -> float:
    """Standard error of the sample variance (``ddof=1``) of ``n`` independent draws.

    ``sqrt(Var(s**2)) = variance * sqrt(2/(n-1) + (kurtosis-3)/n)``, exact for any distribution
    with that variance and (non-excess) kurtosis ``E[(x-mu)**4]/sigma**4``: 3 for a normal, 9/5
    for a uniform (:data:`utils.stats.KURTOSIS`). For large ``n`` it is about
    ``variance * sqrt((kurtosis-1)/n)``. This is :func:`utils.stats.variance_tolerance`
    (Chapter 2) with one standard error, in the units of the variance rather than relative to
    it; Chapter 1 uses ``5 *`` this as the tolerance of every variance claim.

    Parameters
    ----------
    variance
        The variance ``sigma**2`` of the distribution the draws come from, at least 0.
    n
        The number of draws, an integer at least 2.
    kurtosis
        The distribution's kurtosis (not the excess), finite and at least 1.

    Returns
    -------
    float
        The standard deviation of the sample variance, in the units of ``variance``.

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 2, ``variance`` is negative or NaN, or ``kurtosis`` is
        below 1 (no distribution's is), NaN or infinite.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    if not variance >= 0:
        raise ValueError(f"variance must be >= 0, got {variance!r}")
    if not kurtosis >= 1:
        raise ValueError(
            f"kurtosis must be >= 1 (3 for a normal, 9/5 for a uniform), got {kurtosis!r}")
    return float(variance) * variance_tolerance(int(n), sigmas=1.0, kurtosis=float(kurtosis))


def variance_matches(sample: Any, variance: float, kurtosis: float, z: float = 5.0) -> bool:
    """True if a sample's variance (``ddof=1``) is within ``z`` standard errors of ``variance``.

    The standard error is :func:`variance_standard_error` for the sample's size and the
    claimed distribution's ``kurtosis``. With ``z = 5`` a true claim fails with probability
    below about 1e-6 (Chapter 1 checks every variance claim this way).

    Parameters
    ----------
    sample
        Array-like of finite values, assumed independent draws; flattened.
    variance
        The claimed variance, at least 0.
    kurtosis
        The kurtosis (not the excess) of the claimed distribution: 3 for a normal, 9/5 for a
        uniform (:data:`utils.stats.KURTOSIS`).
    z
        How many standard errors to allow, positive.

    Returns
    -------
    bool
        Whether ``abs(s**2 - variance) <= z * variance_standard_error(variance, n, kurtosis)``
        for the sample's variance ``s**2`` and size ``n``.

    Raises
    ------
    ValueError
        If the sample has fewer than 2 values or is not finite, ``z`` is not positive, or
        ``variance`` or ``kurtosis`` is out of range (as in :func:`variance_standard_error`).
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    if values.size < 2 or not np.all(np.isfinite(values)):
        raise ValueError(f"sample must hold at least 2 finite values, got {values.size} values")
    if not z > 0:
        raise ValueError(f"z must be positive, got {z!r}")
    tolerance = z * variance_standard_error(variance, values.size, kurtosis)
    return bool(abs(values.var(ddof=1) - variance) <= tolerance)


def bound_matches(sample: Any, bound: float, alpha: float = 1e-6) -> bool:
    """True if ``U(-bound, bound)`` explains the sample's largest ``|x|`` (Chapter 1).

    No value may lie beyond ``bound`` (up to a relative :data:`FLOAT32_SLACK`, for float32
    rounding), and the largest ``|x|`` must reach ``bound * (1 - ln(1/alpha) / n)``: for ``n``
    uniform draws ``|x|/bound`` is uniform on [0, 1], so ``P(max < 1 - e) = (1 - e)**n <=
    exp(-e n)``, which is ``alpha`` for that ``e``. A true claim fails with probability at
    most ``alpha``; a bound too large by more than about ``ln(1/alpha)/n`` fails.

    Parameters
    ----------
    sample
        Array-like of finite values, assumed independent draws; flattened.
    bound
        The claimed bound ``b`` of ``U(-b, b)``, a positive number.
    alpha
        The probability with which a true claim may fail, in (0, 1).

    Returns
    -------
    bool
        Whether ``bound * (1 - ln(1/alpha) / n) <= max|x| <= bound * (1 + FLOAT32_SLACK)``.

    Raises
    ------
    ValueError
        If the sample is empty or not finite, ``bound`` is not positive, or ``alpha`` is not
        in (0, 1).
    """
    values = np.asarray(sample, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"sample must hold at least 1 finite value, got {values.size} values")
    if not (isinstance(bound, (int, float, np.floating)) and bound > 0):
        raise ValueError(f"bound must be a positive number, got {bound!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    largest = np.abs(values).max()
    return bool(bound * (1 - math.log(1 / alpha) / values.size) <= largest
                <= bound * (1 + FLOAT32_SLACK))


def match_distribution(sample: Any, candidates: Sequence[Candidate],
                       alpha: float = 1e-6) -> list[str]:
    """The labels of the candidates a sample is consistent with, in the candidates' order.

    Chapter 1 uses it to identify torch's defaults from sampled parameters. A candidate is
    kept when the sample passes every test below, each at significance level ``alpha``
    (so a true candidate is wrongly rejected with probability at most about ``3 * alpha``):

    - a Kolmogorov-Smirnov test of the sample against the candidate's CDF;
    - the sample variance within ``z * se`` of the candidate's variance, where ``z`` is the
      two-sided normal quantile for ``alpha`` and ``se`` is the exact standard error of a
      sample variance, :func:`variance_standard_error`, with the candidate's
      kurtosis ``kappa`` (3 for a normal, 9/5 for a uniform);
    - for a uniform ``U(-b, b)``: no value beyond ``b`` (allowing float32 rounding), and the
      largest ``|x|`` at least ``b (1 - ln(1/alpha) / n)``. ``|x|/b`` is uniform on [0, 1],
      so ``P(max < 1 - e) = (1 - e)**n <= exp(-e n) = alpha``.

    Parameters
    ----------
    sample
        Array-like of at least 100 finite values, assumed independent draws.
    candidates
        :class:`Candidate` objects.
    alpha
        Significance level of each test, in (0, 0.5).

    Returns
    -------
    list of str
        The ``label`` of every candidate the sample passes all tests for, in the order of
        ``candidates``; empty if it passes none.

    Raises
    ------
    ValueError
        If the sample is too small or not finite, a candidate is not a :class:`Candidate`,
        or ``alpha`` is out of range.
    """
    from scipy import stats

    values = np.asarray(sample, dtype=np.float64).ravel()
    if values.size < 100:
        raise ValueError(f"sample must hold at least 100 values, got {values.size}")
    if not np.all(np.isfinite(values)):
        raise ValueError("sample must hold finite values only")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    n = values.size
    z = stats.norm.isf(alpha / 2)
    ordered = np.sort(values)
    steps = np.arange(1, n + 1) / n
    matches = []
    for candidate in candidates:
        if not isinstance(candidate, Candidate):
            raise ValueError(f"candidates must be Candidate objects, got {candidate!r}")
        scale = candidate.scale
        if candidate.family == "uniform":
            if not bound_matches(values, scale, alpha):
                continue
            expected, kurtosis = scale**2 / 3, KURTOSIS["uniform"]
            distribution = stats.uniform(loc=-scale, scale=2 * scale)
        else:
            expected, kurtosis = scale**2, KURTOSIS["normal"]
            distribution = stats.norm(scale=scale)
        if not variance_matches(values, expected, kurtosis, z):
            continue
        # Kolmogorov-Smirnov statistic on the sorted sample, exact p-value from its law
        cdf = distribution.cdf(ordered)
        statistic = max(np.max(steps - cdf), np.max(cdf - (steps - 1 / n)))
        if stats.kstwo.sf(statistic, n) >= alpha:
            matches.append(candidate.label)
    return matches


def _torch_probes() -> list[tuple[str, Callable[[], Any]]]:
    import torch.nn as nn

    s = PROBE_SIZES
    c_in, c_out, k = s["in_channels"], s["out_channels"], s["kernel_size"]
    probes: list[tuple[str, Callable[[], Any]]] = [
        ("Linear(48, 80)", lambda: nn.Linear(s["in_features"], s["out_features"])),
        ("Bilinear(12, 20, 30)", lambda: nn.Bilinear(12, 20, 30)),
    ]
    for rank in (1, 2, 3):
        for name in (f"Conv{rank}d", f"ConvTranspose{rank}d"):
            probes.append((f"{name}({c_in}, {c_out}, {k})",
                           lambda name=name: getattr(nn, name)(c_in, c_out, k)))
    for name in ("Embedding", "EmbeddingBag"):
        probes.append((f"{name}({s['vocabulary']}, {s['embedding_dim']})",
                       lambda name=name: getattr(nn, name)(s["vocabulary"], s["embedding_dim"])))
    for name in ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"):
        probes.append((f"{name}({s['input_size']}, {s['hidden_size']})",
                       lambda name=name: getattr(nn, name)(s["input_size"], s["hidden_size"])))
    f = s["features"]
    for name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "RMSNorm"):
        probes.append((f"{name}({f})", lambda name=name: getattr(nn, name)(f)))
    probes += [
        (f"GroupNorm({s['groups']}, {f})", lambda: nn.GroupNorm(s["groups"], f)),
        (f"MultiheadAttention({s['embed_dim']}, {s['num_heads']})",
         lambda: nn.MultiheadAttention(s["embed_dim"], s["num_heads"])),
        (f"MultiheadAttention({s['embed_dim']}, {s['num_heads']}, kdim={s['key_value_dim']}, "
         f"vdim={s['value_dim']}, add_bias_kv=True)",
         lambda: nn.MultiheadAttention(s["embed_dim"], s["num_heads"], kdim=s["key_value_dim"],
                                       vdim=s["value_dim"], add_bias_kv=True)),
        (f"PReLU({s['out_features']})", lambda: nn.PReLU(s["out_features"])),
    ]
    return probes


def _torch_candidates(module: Any, name: str, shape: tuple[int, ...],
                      shapes: dict[str, tuple[int, ...]]) -> list[Candidate]:
    """Candidate distributions for one tensor, expressed in the module's own sizes.

    The order is the order of preference when several candidates coincide for the probe's
    sizes: module-specific rules first, then the fan-based rules of ``torch.nn.init``.
    """
    candidates = []
    for attribute in ("hidden_size", "in1_features"):
        size = getattr(module, attribute, None)
        if isinstance(size, int) and size > 0:
            candidates.append(Candidate(f"uniform(±1/sqrt({attribute}))", "uniform",
                                        1 / math.sqrt(size)))
    # A vector's fans are those of the matrix it belongs with (bias -> weight).
    reference = shape if len(shape) >= 2 else shapes.get(name.replace("bias", "weight"))
    if reference is not None and len(reference) >= 2:
        fan_in, fan_out = compute_fans(reference, "torch")
        candidates += [
            Candidate("uniform(±1/sqrt(fan_in))", "uniform", 1 / math.sqrt(fan_in)),
            Candidate("uniform(±sqrt(6/(fan_in+fan_out)))", "uniform",
                      math.sqrt(6 / (fan_in + fan_out))),
            Candidate("uniform(±sqrt(3/fan_in))", "uniform", math.sqrt(3 / fan_in)),
            Candidate("uniform(±sqrt(6/fan_in))", "uniform", math.sqrt(6 / fan_in)),
        ]
    candidates.append(Candidate("normal(0, 1)", "normal", 1.0))
    if reference is not None and len(reference) >= 2:
        fan_in, fan_out = compute_fans(reference, "torch")
        candidates += [
            Candidate("normal(0, sqrt(2/(fan_in+fan_out)))", "normal",
                      math.sqrt(2 / (fan_in + fan_out))),
            Candidate("normal(0, sqrt(1/fan_in))", "normal", math.sqrt(1 / fan_in)),
            Candidate("normal(0, sqrt(2/fan_in))", "normal", math.sqrt(2 / fan_in)),
        ]
    return candidates


def _torch_tensors(module: Any) -> dict[str, tuple[Any, bool]]:
    """A module's parameters and floating-point buffers, ``name -> (tensor, is_parameter)``.

    Buffers such as ``BatchNorm``'s ``running_mean`` and ``running_var`` are state the
    constructor initialises too; integer buffers (``num_batches_tracked``) are counters and
    left out, as :func:`utils.frameworks.parameters` leaves them out.
    """
    tensors = {name: (p, True) for name, p in module.named_parameters()}
    for name, buffer in module.named_buffers():
        if buffer.is_floating_point() and name not in tensors:
            tensors[name] = (buffer, False)
    return tensors


def _torch_rows(seed: int, min_samples: int, alpha: float) -> list[dict[str, Any]]:
    import torch

    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    with torch.random.fork_rng(devices=[]):  # leave the caller's generator untouched
        torch.manual_seed(seed)
        for probe, make in _torch_probes():
            module = make()
            layer = type(module).__name__
            tensors = _torch_tensors(module)
            trainable = {name: is_parameter for name, (_, is_parameter) in tensors.items()}
            shapes = {name: tuple(t.shape) for name, (t, _) in tensors.items()}
            pools: dict[str, list[np.ndarray]] = {
                name: [] for name in shapes if math.prod(shapes[name])}
            counts = dict.fromkeys(pools, 0)
            constructions = 0
            # Each construction is a fresh, independent draw of every parameter; pool them
            # until each parameter has min_samples values (for a 1-element parameter too).
            while any(count < min_samples for count in counts.values()):
                if constructions:
                    module = make()
                constructions += 1
                for name, (p, _) in _torch_tensors(module).items():
                    if name in pools and counts[name] < min_samples:
                        pools[name].append(p.detach().double().numpy().ravel())
                        counts[name] += p.numel()
            for name, shape in shapes.items():
                if (layer, name) in seen or name not in pools:
                    continue
                seen.add((layer, name))
                sample = np.concatenate(pools[name])
                where = f"{probe}, shape {shape}, n={sample.size}"
                if np.all(sample == sample[0]):
                    value = float(sample[0])
                    initializer = {0.0: "zeros", 1.0: "ones"}.get(value, f"constant({value:.4g})")
                    details = f"measured: every value {value:.4g} ({where})"
                else:
                    candidates = _torch_candidates(module, name, shape, shapes)
                    matches = match_distribution(sample, candidates, alpha)
                    if matches:
                        initializer = matches[0]
                        scale = next(c.scale for c in candidates if c.label == initializer)
                        details = (f"measured: scale {scale:.4g}, sample std {sample.std():.4g}"
                                   f" ({where})")
                        if len(matches) > 1:
                            details += "; also consistent with " + ", ".join(matches[1:])
                    else:
                        initializer = "unrecognised"
                        details = (f"measured: min {sample.min():.4g}, max {sample.max():.4g}, "
                                   f"std {sample.std():.4g} ({where}); no candidate fits")
                rows.append({
                    "framework": "torch",
                    "layer": layer,
                    "parameter": name,
                    "trainable": trainable[name],
                    "initializer": initializer,
                    "details": details,
                    "shape": shape,
                    "std": float(sample.std()),
                    "n": int(sample.size),
                })
    return rows


def default_initializers(framework: str, seed: int = 0, min_samples: int = 20_000,
                         alpha: float = 1e-6) -> list[dict[str, Any]]:
    """The default initializer of every parameter of the common layer types, found from the
    installed framework (Chapter 1, "Defaults of every layer type").

    Parameters
    ----------
    framework
        ``"keras"`` or ``"torch"``.
    seed
        Seeds the probes' draws, so the table is reproducible. The caller's random state
        (Python's ``random`` for Keras, torch's global generator) is restored afterwards.
    min_samples
        torch only: each parameter is sampled (by constructing its module again) until at
        least this many values are pooled, at least 100.
    alpha
        torch only: significance level of each test in :func:`match_distribution`.

    Returns
    -------
    list of dict
        One per (layer type, parameter), with keys ``framework``; ``layer`` (class name);
        ``parameter`` (Keras: the variable's name, qualified by its sublayer when repeated,
        e.g. ``query/kernel``; torch: the ``named_parameters`` name, e.g. ``weight_hh_l0``);
        ``initializer`` (Keras: the initializer's class name as the installed Keras reports
        it, e.g. ``GlorotUniform``; torch: the measured rule, e.g.
        ``uniform(±1/sqrt(fan_in))``, ``normal(0, 1)``, ``ones``); ``details`` (configuration,
        or what was measured); ``shape`` (the probe's tensor shape), ``std`` (the standard
        deviation of the probe's values) and ``n`` (how many values ``std`` is computed from:
        one layer's tensor for Keras, the pooled constructions for torch). The probe sizes are
        :data:`PROBE_SIZES`; for torch a parameter that two probes of one class share is
        reported once.

    Raises
    ------
    ValueError
        If ``framework`` is not ``"keras"`` or ``"torch"``, or ``min_samples`` / ``alpha``
        are out of range.
    """
    if framework not in _FRAMEWORKS:
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 100:
        raise ValueError(f"min_samples must be an integer >= 100, got {min_samples!r}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha!r}")
    if framework == "keras":
        return _keras_rows(seed)
    return _torch_rows(seed, min_samples, alpha)


# ---------------------------------------------------------------------------------------------
# the side-by-side table
# ---------------------------------------------------------------------------------------------

def _check_rows(rows: Sequence[dict[str, Any]], framework: str, argument: str) -> None:
    for row in rows:
        if not isinstance(row, dict) or row.get("framework") != framework or not {
                "layer", "parameter", "initializer"} <= set(row):
            raise ValueError(
                f"{argument} must be rows from default_initializers({framework!r}), got {row!r}"
            )


def side_by_side(keras_rows: Sequence[dict[str, Any]], torch_rows: Sequence[dict[str, Any]],
                 pairs: Sequence[tuple[str, str, Sequence[tuple[str | None, str | None]]]]
                 = KERAS_TORCH_PAIRS) -> list[dict[str, str]]:
    """Pair Keras and torch default-initializer rows into one comparison table (Chapter 1).

    Parameters
    ----------
    keras_rows, torch_rows
        The outputs of ``default_initializers("keras")`` and ``default_initializers("torch")``.
    pairs
        ``(keras_layer, torch_layer, [(keras_parameter, torch_parameter), ...])``; ``None``
        marks a tensor without a counterpart. Defaults to :data:`KERAS_TORCH_PAIRS`.

    Returns
    -------
    list of dict
        Keys ``keras_layer``, ``keras_parameter``, ``keras_initializer``,
        ``keras_trainable``, ``torch_layer``, ``torch_parameter``, ``torch_initializer``,
        ``torch_trainable`` (``""`` where a side is empty; the ``*_trainable`` cells are the
        rows' ``trainable`` flags, True where a row has none). Paired rows
        come first in the order of ``pairs``; rows no pair mentions follow, one side empty.
        A pair whose layer or parameter is absent from the rows (e.g. an older framework
        without that layer) contributes only the side that exists.

    Raises
    ------
    ValueError
        If the rows are not ``default_initializers`` rows of the right framework.
    """
    _check_rows(keras_rows, "keras", "keras_rows")
    _check_rows(torch_rows, "torch", "torch_rows")
    keras_index = {(r["layer"], r["parameter"]): r for r in keras_rows}
    torch_index = {(r["layer"], r["parameter"]): r for r in torch_rows}
    used_keras: set[tuple[str, str]] = set()
    used_torch: set[tuple[str, str]] = set()
    table = []

    def cells(prefix: str, row: dict[str, Any] | None) -> dict[str, str]:
        if row is None:
            return {f"{prefix}_layer": "", f"{prefix}_parameter": "", f"{prefix}_initializer": "",
                    f"{prefix}_trainable": ""}
        return {f"{prefix}_layer": row["layer"], f"{prefix}_parameter": row["parameter"],
                f"{prefix}_initializer": row["initializer"],
                f"{prefix}_trainable": bool(row.get("trainable", True))}

    for keras_layer, torch_layer, parameter_pairs in pairs:
        for keras_parameter, torch_parameter in parameter_pairs:
            keras_row = keras_index.get((keras_layer, keras_parameter))
            torch_row = torch_index.get((torch_layer, torch_parameter))
            if keras_row is None and torch_row is None:
                continue
            if keras_row is not None:
                used_keras.add((keras_layer, keras_parameter))
            if torch_row is not None:
                used_torch.add((torch_layer, torch_parameter))
            table.append({**cells("keras", keras_row), **cells("torch", torch_row)})
    for key, row in keras_index.items():
        if key not in used_keras:
            table.append({**cells("keras", row), **cells("torch", None)})
    for key, row in torch_index.items():
        if key not in used_torch:
            table.append({**cells("keras", None), **cells("torch", row)})
    return table


def _table_cells(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                 headers: Sequence[str] | None) -> tuple[list[str], list[list[str]]]:
    columns = list(columns)
    if not columns:
        raise ValueError("columns must name at least one key")
    headers = list(columns if headers is None else headers)
    if len(headers) != len(columns):
        raise ValueError(f"headers must have {len(columns)} entries (one per column), "
                         f"got {len(headers)}")
    body = []
    for row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"rows must hold every column; a row lacks {missing}: {row!r}")
        body.append([_format_value(row[c]) if isinstance(row[c], float) else str(row[c])
                     for c in columns])
    return [str(h) for h in headers], body


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
                   headers: Sequence[str] | None = None) -> str:
    """Render rows as a Markdown (GitHub) table; floats are shown to 4 significant digits.

    Parameters
    ----------
    rows
        Dicts holding every key in ``columns``.
    columns
        The keys to show, in order.
    headers
        Column titles; defaults to the keys.

    Returns
    -------
    str
        The header line, the separator line ``|---|...|`` and one line per row, joined by
        newlines (no final newline). A ``|`` in a cell is escaped as ``\\|``, and a newline
        becomes a space.

    Raises
    ------
    ValueError
        If ``columns`` is empty, ``headers`` has a different length, or a row lacks a column.
    """
    headers, body = _table_cells(rows, columns, headers)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "|".join("---" for _ in headers) + "|"]
                     + [line(cells) for cells in body])


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str],
               headers: Sequence[str] | None = None) -> str:
    """Render rows as an HTML table, for ``IPython.display.HTML`` (Chapter 1's tables).

    HTML renders the same in Jupyter, Colab and the Jupyter Book, whose notebook outputs do
    not support Markdown tables. Same arguments, formatting and errors as
    :func:`markdown_table`; every cell is HTML-escaped.

    Parameters
    ----------
    rows
        Dicts holding every key in ``columns``.
    columns
        The keys to show, in order.
    headers
        Column titles; defaults to the keys.

    Returns
    -------
    str
        One ``<table class="table">`` element with a ``<thead>`` row of the titles and a
        ``<tbody>`` row per row; floats are shown to 4 significant digits.

    Raises
    ------
    ValueError
        If ``columns`` is empty, ``headers`` has a different length, or a row lacks a column.
    """
    from html import escape

    headers, body = _table_cells(rows, columns, headers)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    lines = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
                    for cells in body)
    return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{lines}</tbody></table>'
