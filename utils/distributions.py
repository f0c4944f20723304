"""What distribution a parameter tensor was drawn from, and whether its values agree (Chapter 3).

A histogram of a weight tensor means more with the initializer's density drawn on top. This
module answers "which density?" for any parameter of a Keras 3 or torch model:

* :class:`InitDistribution` describes one distribution (uniform, normal, truncated normal,
  constant, the entries of a random orthogonal matrix, or unknown) with its ``pdf``, ``cdf``,
  ``std`` and bounds.
* :func:`param_distribution` maps a :class:`utils.frameworks.ParamInfo` to its distribution.
  For **Keras** it reads the initializer object the layer holds for that weight
  (``kernel_initializer``, ``bias_initializer``, ``recurrent_initializer``,
  ``embeddings_initializer``, ``gamma_initializer``, ...), so it is exact for what the layer
  was built with. For **torch** it can only describe the layer type's *constructor default*:
  torch does not record how a tensor was initialised, so a tensor re-initialised with
  ``torch.nn.init`` (or trained) is still described by its default. Such results carry
  ``source == "torch constructor default"`` and ``assumed == True``.
* :func:`check_sample` tests values against a distribution with tolerances derived from the
  sample size (bounds, a Kolmogorov-Smirnov distance, and for 100 or more values the mean and
  the variance) or, for an orthogonal tensor, from float32 precision (its Gram matrix is
  ``gain**2`` times the identity).

The moments of a truncated normal come from :func:`utils.stats.truncated_normal_moments` and
Keras's truncation constant from :data:`utils.variance.TRUNCATED_NORMAL_STD`, the course's one
copy of each (:data:`KERAS_TRUNCATION_STD_FACTOR` is the same number under this module's older
name).

The fans are computed exactly as each framework computes them from the tensor's shape (Keras:
``(..., in, out)`` with the leading axes as receptive field; torch: ``(out, in, ...)``), so a
Keras kernel and a torch weight of the same layer get the same fan-in. Both rules are
:func:`utils.initializers.compute_fans`, and torch's constructor defaults are
:func:`utils.initializers.torch_default_rule`: the module that re-creates torch's defaults
(:func:`~utils.initializers.torch_default_init_`) is the one place they are written, and this
module describes what it draws.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from utils.frameworks import ParamInfo, framework_of
from utils.initializers import compute_fans, torch_default_rule
from utils.stats import truncated_normal_moments
from utils.variance import TRUNCATED_NORMAL_STD

__all__ = [
    "Kind",
    "KINDS",
    "KERAS_SOURCE",
    "TORCH_DEFAULT_SOURCE",
    "GIVEN_SOURCE",
    "InitDistribution",
    "uniform",
    "normal",
    "truncated_normal",
    "constant",
    "orthogonal",
    "unknown",
    "keras_fans",
    "keras_distribution",
    "torch_default_distribution",
    "param_distribution",
    "default_distribution",
    "SampleCheck",
    "check_sample",
    "MOMENT_TEST_MIN_N",
    "KERAS_TRUNCATION_STD_FACTOR",
]

Kind = Literal["uniform", "normal", "truncated_normal", "constant", "orthogonal", "unknown"]
KINDS: tuple[str, ...] = ("uniform", "normal", "truncated_normal", "constant", "orthogonal",
                          "unknown")

KERAS_SOURCE = "keras initializer"
TORCH_DEFAULT_SOURCE = "torch constructor default"
GIVEN_SOURCE = "given"

#: The std of a standard normal truncated to [-2, 2], by which Keras's ``VarianceScaling``
#: divides its std: :data:`utils.variance.TRUNCATED_NORMAL_STD` under the name this module
#: has always exported.
KERAS_TRUNCATION_STD_FACTOR = TRUNCATED_NORMAL_STD


@dataclass(frozen=True)
class InitDistribution:
    """One initialisation distribution, with its density, moments and bounds (Chapter 3).

    Build one with the constructors :func:`uniform`, :func:`normal`, :func:`truncated_normal`,
    :func:`constant`, :func:`orthogonal`, :func:`unknown`, or get it for a parameter from
    :func:`param_distribution`.

    Attributes
    ----------
    kind
        ``"uniform"``, ``"normal"``, ``"truncated_normal"``, ``"constant"``, ``"orthogonal"``
        (the entries of a Haar-random orthogonal matrix times ``scale``) or ``"unknown"``.
    name
        What drew it, e.g. ``"GlorotUniform"`` or ``"kaiming_uniform_(a=sqrt(5))"``.
    source
        ``"keras initializer"`` (read from the layer), ``"torch constructor default"`` (assumed
        from the layer type) or ``"given"`` (stated by the caller).
    loc
        Normal / truncated normal: the mean parameter. Constant: the value.
    scale
        Normal: the std. Truncated normal: the std *before* truncation (the ``stddev``
        argument). Orthogonal: the gain.
    low, high
        Uniform: the interval. Truncated normal: the cut-offs (absolute values, not multiples
        of ``scale``). Orthogonal: ``-gain, gain``. None where unbounded.
    dim
        Orthogonal only: the length of the orthonormal vectors, ``max(rows, cols)`` of the
        matrix the tensor is reshaped to.
    matrix_shape
        Orthogonal only: ``(rows, cols)`` of that matrix, the tensor's values read in C order
        (Keras: ``(prod(shape[:-1]), shape[-1])``; torch: ``(shape[0], prod(shape[1:]))``).
        :func:`check_sample` uses it to test the Gram matrix.
    fan_in, fan_out
        The fans used to compute the parameters, where they were used (for the record).
    """

    kind: Kind
    name: str
    source: str = GIVEN_SOURCE
    loc: float = 0.0
    scale: float = 0.0
    low: float | None = None
    high: float | None = None
    dim: int | None = None
    matrix_shape: tuple[int, int] | None = None
    fan_in: int | None = None
    fan_out: int | None = None
    _moments: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), repr=False,
                                                  compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "_moments", self._compute_moments())

    # ---- moments ---------------------------------------------------------------------------
    def _compute_moments(self) -> tuple[float, float, float]:
        """(mean, std, kurtosis) where defined; NaN for unknown."""
        if self.kind == "uniform":
            assert self.low is not None and self.high is not None
            return (self.low + self.high) / 2, (self.high - self.low) / math.sqrt(12), 1.8
        if self.kind == "normal":
            return self.loc, self.scale, 3.0
        if self.kind == "constant":
            return self.loc, 0.0, float("nan")
        if self.kind == "truncated_normal":
            assert self.low is not None and self.high is not None
            a, b = (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale
            moments = truncated_normal_moments(a, b)
            return (self.loc + self.scale * moments.mean, self.scale * moments.std,
                    moments.kurtosis)
        if self.kind == "orthogonal":
            # An entry of a Haar-random orthogonal n-vector is t with (t + 1)/2 ~ Beta(c, c),
            # c = (n - 1)/2: mean 0, E t^2 = 1/n, E t^4 = 3/(n (n + 2)).
            n = int(self.dim or 0)
            return 0.0, self.scale / math.sqrt(n), 3.0 * n / (n + 2)
        return float("nan"), float("nan"), float("nan")

    @property
    def mean(self) -> float:
        """The distribution's mean (NaN if unknown)."""
        return self._moments[0]

    @property
    def std(self) -> float:
        """The distribution's standard deviation (0 for a constant, NaN if unknown)."""
        return self._moments[1]

    @property
    def variance(self) -> float:
        """``std ** 2``."""
        return self.std ** 2

    @property
    def kurtosis(self) -> float:
        """Non-excess kurtosis ``E(x - mean)^4 / std^4`` (3 for a normal, 1.8 for a uniform)."""
        return self._moments[2]

    @property
    def bounds(self) -> tuple[float, float] | None:
        """``(low, high)`` for bounded kinds (a constant's bounds are its value), else None."""
        if self.kind == "constant":
            return (self.loc, self.loc)
        if self.low is None or self.high is None:
            return None
        return (self.low, self.high)

    @property
    def value(self) -> float:
        """A constant's value.

        Raises
        ------
        ValueError
            If the distribution is not a constant.
        """
        if self.kind != "constant":
            raise ValueError(f"value is defined for a constant distribution, not {self.kind!r}")
        return self.loc

    @property
    def is_constant(self) -> bool:
        """True for a constant (a point mass)."""
        return self.kind == "constant"

    @property
    def is_known(self) -> bool:
        """False for ``kind == "unknown"``."""
        return self.kind != "unknown"

    @property
    def assumed(self) -> bool:
        """True when the distribution is a torch constructor default, not a recorded fact."""
        return self.source == TORCH_DEFAULT_SOURCE

    # ---- density ---------------------------------------------------------------------------
    def _require_continuous(self, what: str) -> None:
        if self.kind == "unknown":
            raise ValueError(f"{what} is not defined for an unknown distribution ({self.name})")
        if self.kind == "constant":
            raise ValueError(f"{what} is not defined for a constant ({self.name}): it is a "
                             "point mass; draw it as a spike at `value`")

    def pdf(self, x: Any) -> np.ndarray:
        """The probability density at ``x`` (array-like), zero outside the bounds.

        Raises
        ------
        ValueError
            For a constant (a point mass has no density) or an unknown distribution.
        """
        self._require_continuous("pdf")
        from scipy import stats

        x = np.asarray(x, dtype=np.float64)
        if self.kind == "uniform":
            assert self.low is not None and self.high is not None
            return stats.uniform.pdf(x, self.low, self.high - self.low)
        if self.kind == "normal":
            return stats.norm.pdf(x, self.loc, self.scale)
        if self.kind == "truncated_normal":
            assert self.low is not None and self.high is not None
            a, b = (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale
            return stats.truncnorm.pdf(x, a, b, loc=self.loc, scale=self.scale)
        c = (int(self.dim or 0) - 1) / 2
        # x = gain * t, (t + 1) / 2 ~ Beta(c, c), so x ~ Beta(c, c) on [-gain, gain].
        return stats.beta.pdf(x, c, c, loc=-self.scale, scale=2 * self.scale)

    def cdf(self, x: Any) -> np.ndarray:
        """The cumulative distribution function at ``x`` (a step for a constant).

        Raises
        ------
        ValueError
            For an unknown distribution.
        """
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "constant":
            return (x >= self.loc).astype(np.float64)
        self._require_continuous("cdf")
        from scipy import stats

        if self.kind == "uniform":
            assert self.low is not None and self.high is not None
            return stats.uniform.cdf(x, self.low, self.high - self.low)
        if self.kind == "normal":
            return stats.norm.cdf(x, self.loc, self.scale)
        if self.kind == "truncated_normal":
            assert self.low is not None and self.high is not None
            a, b = (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale
            return stats.truncnorm.cdf(x, a, b, loc=self.loc, scale=self.scale)
        c = (int(self.dim or 0) - 1) / 2
        return stats.beta.cdf(x, c, c, loc=-self.scale, scale=2 * self.scale)

    # ---- text ------------------------------------------------------------------------------
    @property
    def short(self) -> str:
        """A compact formula for plot labels, e.g. ``"U(±0.1768)"`` or ``"N(0, 0.05)"``."""
        if self.kind == "uniform":
            assert self.low is not None and self.high is not None
            if math.isclose(self.low, -self.high):
                return f"U(±{self.high:.4g})"
            return f"U({self.low:.4g}, {self.high:.4g})"
        if self.kind == "normal":
            return f"N({self.loc:.4g}, {self.scale:.4g})"
        if self.kind == "truncated_normal":
            return f"TN({self.loc:.4g}, {self.scale:.4g}; {self.low:.4g}..{self.high:.4g})"
        if self.kind == "constant":
            return f"const {self.loc:.4g}"
        if self.kind == "orthogonal":
            return f"orthogonal(gain {self.scale:.4g}, n={self.dim})"
        return f"unknown ({self.name})"

    def __str__(self) -> str:
        star = " [assumed: torch constructor default]" if self.assumed else ""
        if self.kind == "unknown":
            return f"unknown: {self.name}{star}"
        return f"{self.name}: {self.short}{star}"


# ---- constructors ------------------------------------------------------------------------------

def _finite(value: Any, argument: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{argument} must be a real number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{argument} must be finite, got {number}")
    return number


def uniform(low: float, high: float, name: str = "uniform", source: str = GIVEN_SOURCE,
            fan_in: int | None = None, fan_out: int | None = None) -> InitDistribution:
    """The uniform distribution U(low, high).

    Parameters
    ----------
    low, high
        The bounds, finite numbers with ``low < high``.
    name
        The initializer's name, as plots and tables show it.
    source
        Where the description comes from: ``"given"`` (the default), ``"keras initializer"``
        or ``"torch constructor default"``.
    fan_in, fan_out
        The fans the distribution was derived from, if any (shown in plot notes).

    Returns
    -------
    InitDistribution
        Of kind ``"uniform"``.

    Raises
    ------
    ValueError
        If a bound is not a finite number or ``low >= high``.
    """
    low, high = _finite(low, "low"), _finite(high, "high")
    if not low < high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")
    return InitDistribution("uniform", name, source, low=low, high=high, fan_in=fan_in,
                            fan_out=fan_out)


def normal(mean: float, std: float, name: str = "normal", source: str = GIVEN_SOURCE,
           fan_in: int | None = None, fan_out: int | None = None) -> InitDistribution:
    """The normal distribution N(mean, std²).

    Parameters
    ----------
    mean, std
        Finite numbers, ``std > 0``.
    name, source, fan_in, fan_out
        As in :func:`uniform`.

    Returns
    -------
    InitDistribution
        Of kind ``"normal"``.

    Raises
    ------
    ValueError
        If ``mean`` or ``std`` is not a finite number, or ``std <= 0``.
    """
    mean, std = _finite(mean, "mean"), _finite(std, "std")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    return InitDistribution("normal", name, source, loc=mean, scale=std, fan_in=fan_in,
                            fan_out=fan_out)


def truncated_normal(mean: float, stddev: float, low: float, high: float,
                     name: str = "truncated_normal", source: str = GIVEN_SOURCE,
                     fan_in: int | None = None, fan_out: int | None = None) -> InitDistribution:
    """N(mean, stddev²) conditioned on ``low <= x <= high`` (absolute cut-offs, as in torch's
    ``trunc_normal_``; Keras cuts at ``mean ± 2 stddev``). Its ``std`` is smaller than
    ``stddev``.

    Parameters
    ----------
    mean, stddev
        The untruncated normal's mean and std (finite, ``stddev > 0``).
    low, high
        The absolute cut-offs, ``low < high``.
    name, source, fan_in, fan_out
        As in :func:`uniform`.

    Returns
    -------
    InitDistribution
        Of kind ``"truncated_normal"``.

    Raises
    ------
    ValueError
        Unless every number is finite, ``stddev > 0`` and ``low < high``.
    """
    mean, stddev = _finite(mean, "mean"), _finite(stddev, "stddev")
    low, high = _finite(low, "low"), _finite(high, "high")
    if not stddev > 0:
        raise ValueError(f"stddev must be > 0, got {stddev}")
    if not low < high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")
    return InitDistribution("truncated_normal", name, source, loc=mean, scale=stddev, low=low,
                            high=high, fan_in=fan_in, fan_out=fan_out)


def constant(value: float, name: str = "constant", source: str = GIVEN_SOURCE) -> InitDistribution:
    """A point mass at ``value`` (zeros, ones, ``Constant(0.4)``, ...).

    Parameters
    ----------
    value
        The constant, a finite number.
    name, source
        As in :func:`uniform`.

    Returns
    -------
    InitDistribution
        Of kind ``"constant"``.

    Raises
    ------
    ValueError
        If ``value`` is not a finite number.
    """
    return InitDistribution("constant", name, source, loc=_finite(value, "value"))


def orthogonal(shape: tuple[int, ...], gain: float = 1.0, name: str = "orthogonal",
               source: str = GIVEN_SOURCE, layout: str = "keras") -> InitDistribution:
    """The entries of ``gain`` times a Haar-random orthogonal matrix of the given shape.

    The tensor is viewed as a matrix the way its framework's initializer views it: Keras's
    ``Orthogonal`` uses ``prod(shape[:-1])`` rows and ``shape[-1]`` columns, torch's
    ``orthogonal_`` ``shape[0]`` rows and ``prod(shape[1:])`` columns. The matrix has
    orthonormal columns (if it is tall) or rows (if it is wide) of length
    ``n = max(rows, cols)``, and each entry is ``gain * t`` with
    ``(t + 1) / 2 ~ Beta((n - 1)/2, (n - 1)/2)``: mean 0, std ``gain / sqrt(n)``
    (Chapter 3, "Entries of an orthogonal matrix"). "Haar-random" means drawn from the
    rotation-invariant distribution, which both frameworks' initializers sample.

    Parameters
    ----------
    shape
        The tensor's shape in ``layout``.
    gain
        The factor the orthonormal matrix is multiplied by (non-zero; the sign is irrelevant).
    name, source
        As in :func:`uniform`.
    layout
        ``"keras"`` (kernels ``(..., in, out)``) or ``"torch"`` (weights ``(out, in, ...)``).

    Returns
    -------
    InitDistribution
        Of kind ``"orthogonal"``, bounded by ``±|gain|``.

    Raises
    ------
    ValueError
        If ``shape`` has fewer than 2 dimensions or ``max(rows, cols) < 2``, ``gain`` is zero
        or not finite, or ``layout`` is unknown.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 dimensions for an orthogonal matrix, "
                         f"got {shape}")
    if layout == "keras":
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
    elif layout == "torch":
        rows, cols = shape[0], int(np.prod(shape[1:]))
    else:
        raise ValueError(f"layout must be 'keras' or 'torch', got {layout!r}")
    if max(rows, cols) < 2:
        raise ValueError(f"shape must have at least 2 rows or columns, got {shape}")
    gain = _finite(gain, "gain")
    if gain == 0:
        raise ValueError("gain must be non-zero (a zero gain gives the constant 0)")
    return InitDistribution("orthogonal", name, source, scale=abs(gain), low=-abs(gain),
                            high=abs(gain), dim=max(rows, cols), matrix_shape=(rows, cols))


def unknown(name: str, source: str = GIVEN_SOURCE) -> InitDistribution:
    """An initializer we can name but whose distribution we cannot state (e.g. a custom
    function, ``Identity``, or an LSTM bias with ``unit_forget_bias``).

    Parameters
    ----------
    name, source
        As in :func:`uniform`.

    Returns
    -------
    InitDistribution
        Of kind ``"unknown"``: no density, bounds or moments.
    """
    return InitDistribution("unknown", name, source)


# ---- Keras ---------------------------------------------------------------------------------

def keras_fans(shape: tuple[int, ...], input_axes: Any = None,
               output_axes: Any = None) -> tuple[int, int]:
    """The fans a Keras 3 ``VarianceScaling`` initializer computes for a tensor of ``shape``.

    Since Keras 3.15 an initializer may carry ``input_axes`` and ``output_axes`` (an
    ``EinsumDense`` kernel gets the axes of its equation, so a ``MultiHeadAttention`` query
    kernel ``(width, heads, head_size)`` has fans ``width`` and ``heads * head_size``); the fans
    are then the products of the sizes along those axes. Without them (every layer before 3.15,
    and other layers since) Keras applies the positional rule of
    :func:`utils.initializers.compute_fans` (``(..., in, out)``, leading axes the receptive
    field). This is the course's one copy of that rule: :func:`keras_distribution` and
    :func:`utils.audit.default_initializers` both use it.

    Parameters
    ----------
    shape
        The tensor's shape in Keras layout.
    input_axes, output_axes
        The axes that count as fan-in and fan-out, e.g. read from an initializer's
        ``input_axes``/``output_axes`` attributes; used only when both are given.

    Returns
    -------
    tuple of int
        ``(fan_in, fan_out)``.

    Raises
    ------
    ValueError
        If ``shape`` is not a sequence of non-negative integers, or an axis is out of range.
    """
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be a sequence of integers, got {shape!r}") from None
    if any(d < 0 for d in dims):
        raise ValueError(f"shape must hold non-negative sizes, got {shape!r}")
    if input_axes is not None and output_axes is not None:
        for argument, axes in (("input_axes", input_axes), ("output_axes", output_axes)):
            if any(not isinstance(a, (int, np.integer)) or not -len(dims) <= a < len(dims)
                   for a in axes):
                raise ValueError(f"{argument} must be axes of a {len(dims)}-d shape, "
                                 f"got {axes!r}")
        return (math.prod(dims[a] for a in input_axes),
                math.prod(dims[a] for a in output_axes))
    return compute_fans(dims, "keras")


def keras_distribution(initializer: Any, shape: tuple[int, ...],
                       input_axes: Any = None, output_axes: Any = None) -> InitDistribution:
    """The distribution a Keras 3 initializer draws a tensor of ``shape`` from.

    Parameters
    ----------
    initializer
        A Keras initializer instance, its string name (``"he_uniform"``, ``"ones"``, ...) or
        a config dict. A plain function ``f(shape, dtype)`` is accepted and reported as unknown.
    shape
        The tensor's shape in Keras layout (kernels ``(..., in, out)``).
    input_axes, output_axes
        For variance-scaling initializers without axes of their own: the kernel axes that count
        as fan-in and fan-out (``EinsumDense`` derives them from its equation when it builds).

    Returns
    -------
    InitDistribution
        With ``source == "keras initializer"``; ``kind == "unknown"`` for initializers whose
        distribution is not one of the known kinds (``Identity``, ``STFT``, custom functions).

    Raises
    ------
    ValueError
        If ``initializer`` is neither a Keras initializer, a name Keras knows, a config dict
        nor a callable, or its parameters describe no valid distribution.
    """
    import keras

    init = initializer
    if isinstance(init, (str, dict)):
        try:
            init = keras.initializers.get(init)
        except ValueError as err:
            raise ValueError(f"initializer {initializer!r} is not a Keras initializer: {err}") \
                from None
    shape = tuple(int(d) for d in shape)
    k = keras.initializers
    name = type(init).__name__ if isinstance(init, k.Initializer) else \
        getattr(init, "__name__", type(init).__name__)
    src = KERAS_SOURCE
    if isinstance(init, k.VarianceScaling):  # Glorot*, He*, LeCun* are subclasses
        own_in, own_out = getattr(init, "input_axes", None), getattr(init, "output_axes", None)
        if own_in is None or own_out is None:
            own_in, own_out = input_axes, output_axes
        fan_in, fan_out = keras_fans(shape, own_in, own_out)
        fan = {"fan_in": fan_in, "fan_out": fan_out,
               "fan_avg": (fan_in + fan_out) / 2.0}[init.mode]
        variance = init.scale / max(1.0, fan)
        fans = {"fan_in": fan_in, "fan_out": fan_out}
        if init.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return uniform(-limit, limit, name, src, **fans)
        if init.distribution == "untruncated_normal":
            return normal(0.0, math.sqrt(variance), name, src, **fans)
        stddev = math.sqrt(variance) / KERAS_TRUNCATION_STD_FACTOR
        return truncated_normal(0.0, stddev, -2 * stddev, 2 * stddev, name, src, **fans)
    if isinstance(init, k.RandomNormal):
        return normal(init.mean, init.stddev, name, src)
    if isinstance(init, k.TruncatedNormal):
        # Keras re-draws values more than two stddev from the mean; no variance correction.
        return truncated_normal(init.mean, init.stddev, init.mean - 2 * init.stddev,
                                init.mean + 2 * init.stddev, name, src)
    if isinstance(init, k.RandomUniform):
        return uniform(init.minval, init.maxval, name, src)
    if isinstance(init, k.Zeros):
        return constant(0.0, name, src)
    if isinstance(init, k.Ones):
        return constant(1.0, name, src)
    if isinstance(init, k.Constant):
        value = np.asarray(init.value)
        if value.size == 1:
            return constant(float(value.reshape(())), name, src)
        return unknown(f"{name} (array value)", src)
    if isinstance(init, k.Orthogonal):
        if len(shape) < 2:
            return unknown(f"{name} on a {len(shape)}-d tensor", src)
        if init.gain == 0:
            return constant(0.0, name, src)
        return orthogonal(shape, init.gain, name, src)
    return unknown(name, src)


# Which layer attribute holds the initializer of a Keras weight, by the weight's name. The
# default for a weight called `w` is `w_initializer`.
_KERAS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "kernel": ("kernel_initializer", "depthwise_initializer"),
    "recurrent_kernel": ("recurrent_initializer",),
    "depthwise_kernel": ("depthwise_initializer",),
    "pointwise_kernel": ("pointwise_initializer",),
}


def _keras_param_distribution(param: ParamInfo) -> InitDistribution | None:
    layer = param.layer_object
    names = _KERAS_ATTRIBUTES.get(param.name, ()) + (f"{param.name}_initializer",
                                                      f"_{param.name}_initializer")
    initializer = next((getattr(layer, n) for n in names if getattr(layer, n, None) is not None),
                       None)
    if initializer is None:
        return None
    if (param.name == "bias" and param.layer_type == "LSTMCell"
            and getattr(layer, "unit_forget_bias", False)):
        # Keras builds this bias as [bias_init(units), ones(units), bias_init(2 units)].
        return unknown(f"{type(initializer).__name__} with ones for the forget gate "
                       "(unit_forget_bias=True)", KERAS_SOURCE)
    axes: tuple[Any, Any] = (None, None)
    if param.name == "kernel" and isinstance(getattr(layer, "equation", None), str):
        axes = _einsum_kernel_axes(layer.equation)
    return keras_distribution(initializer, param.shape, *axes)


def _einsum_kernel_axes(equation: str) -> tuple[list[int] | None, list[int] | None]:
    """Fan-in and fan-out axes of an ``EinsumDense`` kernel, as Keras derives them at build:
    kernel letters found in the output are output axes, the others found in the input are
    input axes."""
    match = re.fullmatch(r"([a-zA-Z.]+),([a-zA-Z]+)->([a-zA-Z.]+)", equation.replace(" ", ""))
    if match is None:
        return None, None
    input_spec, weight_spec, output_spec = match.groups()
    output_axes = [i for i, letter in enumerate(weight_spec) if letter in output_spec]
    input_axes = [i for i, letter in enumerate(weight_spec)
                  if letter not in output_spec and letter in input_spec]
    return input_axes, output_axes


# ---- torch -----------------------------------------------------------------------------------

def _default_uniform(bound: float, name: str, **fans: Any) -> InitDistribution:
    if bound <= 0:
        return constant(0.0, name, TORCH_DEFAULT_SOURCE)
    return uniform(-bound, bound, name, TORCH_DEFAULT_SOURCE, **fans)


def torch_default_distribution(module: Any, name: str,
                               shape: tuple[int, ...]) -> InitDistribution | None:
    """The distribution torch's constructor gives parameter ``name`` of ``module`` by default.

    torch does not record how a tensor was initialised: this is what ``reset_parameters`` of
    the module's class does, as :func:`utils.initializers.torch_default_rule` writes it down
    (the rules :func:`utils.initializers.torch_default_init_` draws with, checked against
    samples in ``tests/test_distributions.py``), so it is right for a freshly constructed
    module only. The result has ``source == "torch constructor default"``; a uniform rule
    with bound 0 (an empty fan) is the constant 0.

    Covered: ``Linear`` and ``Conv*``/``ConvTranspose*``, ``Bilinear``, ``Embedding``/
    ``EmbeddingBag``, ``RNN``/``LSTM``/``GRU`` and their cells, batch/instance/layer/group/RMS
    norms, ``PReLU`` and ``MultiheadAttention`` (the rules are listed in
    :func:`~utils.initializers.torch_default_rule`). Returns None for other module types. A
    container such as ``nn.Transformer`` that re-initialises its children in its own
    constructor is not seen from the child and is described by the child's default.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` (the parameter's owner).
    name
        The parameter's or buffer's own name (``"weight"``, ``"bias"``, ``"running_var"``...).
    shape
        Its shape.

    Returns
    -------
    InitDistribution or None
        With ``source == "torch constructor default"``; None if the module type or the name
        is not covered.

    Raises
    ------
    ValueError
        If ``shape`` has fewer than two dimensions where the rule needs fans (the
        ``MultiheadAttention`` projections).
    """
    rule = torch_default_rule(module, name, shape)
    if rule is None:
        return None
    src = TORCH_DEFAULT_SOURCE
    if rule.kind == "constant":
        return constant(rule.value, rule.label, src)
    fans = {key: value for key, value in (("fan_in", rule.fan_in), ("fan_out", rule.fan_out))
            if value is not None}
    if rule.kind == "normal":
        return normal(0.0, rule.value, rule.label, src, **fans)
    return _default_uniform(rule.value, rule.label, **fans)


# ---- any parameter ---------------------------------------------------------------------------

def param_distribution(param: ParamInfo) -> InitDistribution | None:
    """The distribution parameter ``param`` was drawn from, where that is known (Chapter 3).

    Parameters
    ----------
    param
        One entry of :func:`utils.frameworks.parameters`.

    Returns
    -------
    InitDistribution or None
        Keras: what the layer's initializer object for this weight draws (``source ==
        "keras initializer"``), ``kind == "unknown"`` for initializers with no closed form, or
        None if the layer keeps no initializer for this weight. torch: the layer type's
        **constructor default** (``source == "torch constructor default"``, ``assumed ==
        True``; see :func:`torch_default_distribution`), or None for module types it does not
        cover. torch does not record a tensor's initializer, so after ``torch.nn.init`` calls
        or training the result still describes the default; :func:`check_sample` tells you
        whether the values still agree with it.

    Raises
    ------
    ValueError
        If ``param`` is not a :class:`~utils.frameworks.ParamInfo`.
    """
    if not isinstance(param, ParamInfo):
        raise ValueError(f"param must be a utils.frameworks.ParamInfo (an entry of "
                         f"parameters(model)), got {type(param).__name__}")
    if framework_of(param.layer_object, "param.layer_object") == "keras":
        return _keras_param_distribution(param)
    return torch_default_distribution(param.layer_object, param.name, param.shape)


def _keras_default_initializer(layer: Any, name: str) -> Any:
    """The initializer a Keras layer's class uses for weight ``name`` when the constructor is
    given none: the default of the matching ``*_initializer`` argument, read from the
    signatures along the class hierarchy. None if no class declares one."""
    import inspect

    arguments = _KERAS_ATTRIBUTES.get(name, ()) + (f"{name}_initializer",)
    for cls in type(layer).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            continue
        for argument in arguments:
            parameter = signature.parameters.get(argument)
            if parameter is not None and parameter.default is not inspect.Parameter.empty:
                return parameter.default
    return None


def default_distribution(param: ParamInfo) -> InitDistribution | None:
    """The distribution the framework draws ``param`` from when its layer is built with the
    constructor's defaults (Chapter 1's defaults, applied to one tensor).

    torch: :func:`torch_default_distribution` (what the constructor draws; torch keeps no
    record of later re-initialisation). Keras: the default of the layer class's
    ``*_initializer`` argument (``Dense``'s ``kernel_initializer="glorot_uniform"``), whatever
    the layer was actually built with; compare with :func:`param_distribution`, which reads
    the initializer the layer holds.

    Parameters
    ----------
    param
        One entry of :func:`utils.frameworks.parameters`.

    Returns
    -------
    InitDistribution or None
        None where the framework has no default for this tensor (a Keras class without an
        initializer argument for it, a torch module type not covered).

    Raises
    ------
    ValueError
        If ``param`` is not a :class:`~utils.frameworks.ParamInfo`.
    """
    if not isinstance(param, ParamInfo):
        raise ValueError(f"param must be a utils.frameworks.ParamInfo (an entry of "
                         f"parameters(model)), got {type(param).__name__}")
    layer = param.layer_object
    if framework_of(layer, "param.layer_object") == "torch":
        return torch_default_distribution(layer, param.name, param.shape)
    default = _keras_default_initializer(layer, param.name)
    if default is None:
        return None
    axes: tuple[Any, Any] = (None, None)
    if param.name == "kernel" and isinstance(getattr(layer, "equation", None), str):
        axes = _einsum_kernel_axes(layer.equation)
    return keras_distribution(default, param.shape, *axes)


# ---- does a sample agree? --------------------------------------------------------------------

MOMENT_TEST_MIN_N = 100
"""Below this many values :func:`check_sample` skips the mean and variance tests.

Their normal and scaled chi-square approximations are accurate to within about a factor of 2 of
the nominal false-alarm rate in the far (5-sigma) tails from n = 100 on, for uniform and normal
data, but not below (at n = 32 the delta-method std test raises ~100 times more false alarms
than nominal for normal data); the bounds and the DKW shape test hold for every n.
"""


@dataclass(frozen=True)
class SampleCheck:
    """The result of :func:`check_sample`.

    ``ok`` is True when every applicable check passes; ``failures`` names those that did not
    (``"mean"``, ``"std"``, ``"bounds"``, ``"shape"``, ``"constant"``, ``"orthogonality"``).
    ``mean_tolerance``, ``std_interval``, ``ks_critical`` and the two ``orthogonality_*``
    fields are None where the check did not apply. ``orthogonality_error`` is
    ``max |G / gain**2 - I|`` for the Gram matrix ``G`` of the tensor's shorter side.
    """

    n: int
    mean: float
    std: float
    minimum: float
    maximum: float
    expected_mean: float
    expected_std: float
    mean_tolerance: float | None
    std_interval: tuple[float, float] | None
    ks_statistic: float | None
    ks_critical: float | None
    failures: tuple[str, ...]
    orthogonality_error: float | None = None
    orthogonality_tolerance: float | None = None

    @property
    def ok(self) -> bool:
        """True if no check failed."""
        return not self.failures


def _orthogonality(array: np.ndarray, distribution: InitDistribution,
                   eps: float) -> tuple[float, float]:
    """``max |G / gain**2 - I|`` for the Gram matrix of the shorter side, and its tolerance.

    Both frameworks orthonormalise in float32 by a Householder QR, whose computed columns are
    orthonormal to within a small multiple of ``n·u`` (``n`` the vectors' length, ``u`` the
    unit roundoff; Higham 2002, section 19.3), and then multiply by the gain and store the
    result, one more rounding per entry. The tolerance ``4·n·eps = 8·n·u`` covers both; the
    frameworks' errors measure at most about ``1.6·n·eps`` for tiny matrices and far less for
    large ones (``tests/test_distributions.py``), while any matrix that is not orthogonal
    misses by orders of magnitude more (``1/sqrt(n)`` for independent entries).
    """
    rows, cols = distribution.matrix_shape  # type: ignore[misc]
    matrix = array.reshape(rows, cols)
    gram = matrix.T @ matrix if rows >= cols else matrix @ matrix.T
    gain_squared = distribution.scale ** 2
    error = float(np.max(np.abs(gram / gain_squared - np.eye(len(gram)))))
    return error, 4.0 * max(rows, cols) * eps


def check_sample(values: Any, distribution: InitDistribution, z: float = 5.0,
                 population: int | None = None, eps: float | None = None) -> SampleCheck:
    """Test whether ``values`` look like a draw from ``distribution`` (Chapter 3).

    The statistical checks each have the false-alarm probability ``alpha`` of a two-sided
    ``z``-sigma normal event (``z = 5``: about 1 in 1.7 million); up to three of them run on
    one tensor, so the chance that a correct tensor fails *some* check is at most ``3·alpha``
    (a union bound). The exactness checks (bounds, constant, orthogonality) fail only if the
    values violate the distribution beyond rounding.

    * **bounds**: every value inside ``[low, high]`` up to the storage dtype's rounding;
    * **shape** (continuous kinds except ``orthogonal``, whose entries are not independent):
      the Kolmogorov-Smirnov distance ``sup |F_n - F|`` is at most
      ``sqrt(log(2 / alpha) / (2 n))``, the Dvoretzky-Kiefer-Wolfowitz-Massart bound, which
      holds for every ``n``;
    * **mean** (``n >= MOMENT_TEST_MIN_N``): ``|mean - E| <= z std / sqrt(n)``;
    * **std** (``n >= MOMENT_TEST_MIN_N``): the sample variance, as a scaled chi-square with
      the degrees of freedom ``d`` that match its variance
      ``std^4 (2/(n - 1) + (kurtosis - 3)/n)``, lies between the ``alpha/2`` and
      ``1 - alpha/2`` quantiles (``d = n - 1``, exact, for normal data);
    * **orthogonality** (``orthogonal``, when ``values`` is the whole tensor in C order): the
      Gram matrix of the matrix's shorter side is ``gain**2`` times the identity, to within
      ``4·n·eps`` relative to ``gain**2`` (``n = max(rows, cols)``; see
      :class:`SampleCheck`). This is what makes a tensor orthogonal: a matrix of independent
      entries with the right mean and std fails it;
    * **constant**: every value equals the constant up to the storage dtype's rounding.

    Parameters
    ----------
    values
        The tensor's values (any shape; flattened in C order).
    distribution
        What they should follow; ``kind == "unknown"`` raises.
    z
        Strictness, in normal standard deviations.
    population
        If ``values`` is a with-replacement subsample of a tensor of ``population`` values, the
        tensor's own sampling error is added (variances ``1/n + 1/population``; the two DKW
        bounds add). The orthogonality check needs the whole tensor and is skipped.
    eps
        Machine epsilon of the dtype the values were stored in (the tolerance for bounds and
        constants is 4 eps times their scale, for orthogonality ``4·n·eps``). Default:
        float32's, or the dtype of ``values`` if that is a coarser NumPy float (float16). Pass
        ``2**-7`` for bfloat16 tensors.

    Returns
    -------
    SampleCheck
        The sample's statistics, the tolerances used and the names of the failed checks.

    Raises
    ------
    ValueError
        If ``values`` is empty or not finite, ``z <= 0`` or the distribution is unknown.
    """
    if not isinstance(distribution, InitDistribution):
        raise ValueError(f"distribution must be an InitDistribution, got "
                         f"{type(distribution).__name__}")
    if not distribution.is_known:
        raise ValueError(f"distribution is unknown ({distribution.name}): nothing to check")
    if not 0 < z <= 37:
        # beyond 37 sigma the normal tail underflows to 0 in float64: no test level left
        raise ValueError(f"z must be > 0 and at most 37 (the normal tail underflows beyond), "
                         f"got {z}")
    raw = np.asarray(values)
    if eps is None:
        eps = float(np.finfo(np.float32).eps)
        if np.issubdtype(raw.dtype, np.floating):
            eps = max(eps, float(np.finfo(raw.dtype).eps))
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    array = raw.astype(np.float64).reshape(-1)
    n = array.size
    if n == 0:
        raise ValueError("values must not be empty")
    if not np.all(np.isfinite(array)):
        raise ValueError("values must be finite (found NaN or inf)")
    mean = float(array.mean())
    std = float(array.std(ddof=1)) if n > 1 else 0.0
    lo, hi = float(array.min()), float(array.max())
    failures: list[str] = []
    # storage rounds each value by at most half an ulp; allow a few ulps of the scale
    scale = max(abs(lo), abs(hi), abs(distribution.mean), 1e-30)
    rounding = 4 * eps * scale
    if distribution.is_constant:
        if max(abs(lo - distribution.value), abs(hi - distribution.value)) > rounding:
            failures.append("constant")
        return SampleCheck(n, mean, std, lo, hi, distribution.value, 0.0, None, None, None,
                           None, tuple(failures))
    alpha = math.erfc(z / math.sqrt(2.0))
    sigma = distribution.std
    bounds = distribution.bounds
    if bounds is not None and (lo < bounds[0] - rounding or hi > bounds[1] + rounding):
        failures.append("bounds")
    mean_tol = std_interval = None
    if n >= MOMENT_TEST_MIN_N:
        from scipy import stats

        inv_n = 1.0 / n + (1.0 / population if population else 0.0)
        mean_tol = z * sigma * math.sqrt(inv_n)
        if abs(mean - distribution.mean) > mean_tol:
            failures.append("mean")
        relative_var = 2.0 / (n - 1) + (distribution.kurtosis - 3.0) / n
        if population:
            relative_var += (2.0 / max(population - 1, 1)
                             + (distribution.kurtosis - 3.0) / population)
        dof = 2.0 / relative_var
        std_interval = (sigma * math.sqrt(stats.chi2.ppf(alpha / 2, dof) / dof),
                        sigma * math.sqrt(stats.chi2.isf(alpha / 2, dof) / dof))
        if not std_interval[0] <= std <= std_interval[1]:
            failures.append("std")
    ks = critical = None
    orthogonality = tolerance = None
    if distribution.kind == "orthogonal":
        shape = distribution.matrix_shape
        if shape is not None and population is None and shape[0] * shape[1] == n:
            orthogonality, tolerance = _orthogonality(array, distribution, eps)
            if orthogonality > tolerance:
                failures.append("orthogonality")
    else:
        critical = math.sqrt(math.log(2.0 / alpha) / (2.0 * n))
        if population:
            critical += math.sqrt(math.log(2.0 / alpha) / (2.0 * population))
        ordered = np.sort(array)
        cdf = distribution.cdf(ordered)
        ranks = np.arange(1, n + 1) / n
        ks = float(max(np.max(ranks - cdf), np.max(cdf - (ranks - 1.0 / n))))
        if ks > critical:
            failures.append("shape")
    return SampleCheck(n, mean, std, lo, hi, distribution.mean, sigma, mean_tol, std_interval,
                       ks, critical, tuple(failures), orthogonality, tolerance)
