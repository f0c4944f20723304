"""The variance argument: gains, variance-scaling rules, mean-field predictions, layer statistics.

Chapter 2 derives why a weight variance of ``scale / fan`` keeps signals alive in a deep
network. This module is that chapter's toolbox:

- :func:`gain` -- the gain table of ``torch.nn.init.calculate_gain``, with which entries are
  derivations and which are conventions; :func:`derived_gain` computes the derived value for
  any nonlinearity (named or a NumPy function).
- :func:`variance_scaling_std` -- the parameter (std before truncation, or uniform bound) Keras's
  ``VarianceScaling`` draws with, for a fan pair; :data:`RULES` names the classic choices
  (LeCun, Glorot, He, PyTorch's default) as :class:`VarianceRule` objects.
- :func:`apply_rule` -- give a Keras or torch model weights drawn by a rule from NumPy, so the
  two frameworks can start from *identical* weights.
- :func:`activation_second_moment`, :func:`derivative_second_moment` and
  :func:`mean_field_profile` -- the theory's prediction of every layer's pre-activation
  variance and gradient variance in a deep stack, and (``fluctuations=True``) how far one
  finite-width network may stray from it, for any nonlinearity;
  :func:`depth_log_tolerance` -- the closed form of that spread for ReLU.
- :func:`layer_statistics` -- what a real model does: per-layer activation and gradient
  statistics of any Keras 3 or torch model, built on :func:`utils.frameworks.trace`, with
  :func:`statistics_table` to print them and :func:`probe_loss` to measure gradients without
  the loss shaping them. Chapters 3 to 6 reuse it.
- :func:`deep_mlp` -- the plain deep MLP of the chapter, in either framework.
- :func:`rounding_tolerance` -- the course's one rule for floating-point rounding errors
  (:data:`UNIT_ROUNDOFF`), used by every chapter that compares a framework's float32 result
  with exact arithmetic or with another implementation.

Neither framework is imported until a function that needs one is called.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from utils.frameworks import (Trace, assign, framework_of, from_keras_layout, keras_layout,
                              leaf_layers, trace, weight_layers)
from utils.stats import (require_int, require_nonnegative, require_positive,
                         truncated_normal_moments)

__all__ = [
    "NONLINEARITIES",
    "DERIVED_GAINS",
    "gain",
    "derived_gain",
    "TRUNCATED_NORMAL_STD",
    "truncated_normal_std_ratio",
    "variance_scaling_std",
    "VarianceRule",
    "RULES",
    "sample_weights",
    "apply_rule",
    "activation_second_moment",
    "derivative_second_moment",
    "MeanFieldProfile",
    "mean_field_profile",
    "depth_log_tolerance",
    "LayerStats",
    "layer_statistics",
    "trace_statistics",
    "statistics_table",
    "probe_loss",
    "deep_mlp",
    "UNIT_ROUNDOFF",
    "SUMMATIONS",
    "rounding_tolerance",
]

Mode = Literal["fan_in", "fan_out", "fan_avg"]
Distribution = Literal["truncated_normal", "untruncated_normal", "normal", "uniform"]

#: The nonlinearity names :func:`gain` knows ("identity" is an alias of "linear").
NONLINEARITIES = ("linear", "identity", "sigmoid", "tanh", "relu", "leaky_relu", "selu")

#: Which of :func:`gain`'s values follow from the variance argument (``True``) and which are
#: conventions chosen by the PyTorch authors (``False``). Chapter 2, section "Gains", explains.
DERIVED_GAINS: dict[str, bool] = {
    "linear": True,      # 1: nothing to compensate
    "identity": True,
    "relu": True,        # sqrt(2): ReLU keeps half the second moment of a symmetric input
    "leaky_relu": True,  # sqrt(2 / (1 + slope**2)): keeps (1 + slope**2) / 2 of it
    "tanh": False,       # 5/3: a convention; the second-moment fixed point at q=1 needs 1.59
    "sigmoid": False,    # 1: a convention; sigmoid outputs are not zero-mean
    "selu": False,       # 3/4: "found empirically" (PyTorch PR 50664); SELU's own theory wants 1
}

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

#: The unit roundoff ``u`` of each precision: a correctly rounded operation returns its exact
#: result times ``1 + δ`` with ``|δ| <= u`` (``2**-24`` in float32, ``2**-53`` in float64).
UNIT_ROUNDOFF: dict[str, float] = {"float32": 2.0**-24, "float64": 2.0**-53}

#: How :func:`rounding_tolerance` counts the roundings of a sum of ``n`` terms.
SUMMATIONS = ("any", "pairwise", "random")


def rounding_tolerance(magnitude: Any = 1.0, *sums: int, operations: int = 8,
                       summation: str = "any", precision: str = "float32") -> Any:
    """The course's rounding-error rule: how far a computed value may be from the exact one.

    A value computed with ``k`` roundings, each of relative size at most ``u``
    (:data:`UNIT_ROUNDOFF`), from terms whose absolute values add up to ``magnitude``, is
    within ``gamma_k * magnitude`` of the exact value, ``gamma_k = k u / (1 - k u)``
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, lemma 3.1). The rule
    counts ``k`` as ``operations`` elementwise roundings plus, for each length ``n`` in
    ``sums``, the roundings of a sum (or dot product) of ``n`` terms:

    - ``summation="any"``: ``n``. Rigorous for *any* order of summation (Higham's eq. 3.5:
      ``|fl(a.b) - a.b| <= gamma_n sum |a_i b_i|``), so it is the bound for matrix products
      and reductions inside BLAS, TensorFlow and PyTorch, whose kernels accumulate
      sequentially or blockwise in an order the caller does not know. Use it to compare a
      framework's float32 result with exact arithmetic.
    - ``summation="pairwise"``: ``ceil(log2 n) + 1``. Rigorous only for pairwise summation,
      such as NumPy's ``sum``/``mean`` of a float array along a contiguous axis; not for
      matrix products (``@`` goes to BLAS).
    - ``summation="random"``: ``5 sqrt(n)``. Not a bound: if the roundings have independent
      random signs, the error of a sum exceeds ``lambda sqrt(n) u`` with probability at most
      ``2 exp(-lambda**2 / 2)`` (Higham and Mary, 2019), ``lambda = 5`` here. For comparing
      two implementations over many sums, where the rigorous bound would say nothing.

    Orthogonalisation is not a sum and has its own rule: a float32 Householder QR is
    orthonormal to a small multiple of ``n u`` (Higham, section 19.3), and
    :func:`utils.distributions.check_sample` allows ``8 n u`` for orthogonal tensors.

    Parameters
    ----------
    magnitude
        The sum of the absolute values of the terms the result is built from (for a single
        value, its absolute value): a number or an array, returned in the same shape.
    *sums
        The lengths of the sums along the computation (e.g. ``64, 10`` for a 64-term matrix
        product followed by a 10-term softmax normaliser); lengths of 1 add nothing.
    operations
        Elementwise roundings besides the sums (the default 8 covers a handful of operations,
        with room for library functions such as ``exp`` and ``log`` that are accurate to a
        couple of units in the last place).
    summation
        One of :data:`SUMMATIONS`, as above.
    precision
        ``"float32"`` or ``"float64"``: which unit roundoff.

    Returns
    -------
    float or numpy.ndarray
        ``gamma_k * magnitude``.

    Raises
    ------
    ValueError
        If ``magnitude`` is negative or not finite, a sum length is not a positive integer,
        ``operations`` is not a non-negative integer, ``summation`` or ``precision`` is
        unknown, or ``k u >= 1`` (no bound).

    Examples
    --------
    >>> rounding_tolerance(1.0, operations=2) == 2 * 2.0**-24 / (1 - 2 * 2.0**-24)
    True
    >>> rounding_tolerance(10.0, 64, operations=0) == 64 * 2.0**-24 / (1 - 64 * 2.0**-24) * 10
    True
    """
    if summation not in SUMMATIONS:
        raise ValueError(f"summation must be one of {SUMMATIONS}, got {summation!r}")
    if precision not in UNIT_ROUNDOFF:
        raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}")
    if isinstance(operations, bool) or not isinstance(operations, (int, np.integer)) \
            or operations < 0:
        raise ValueError(f"operations must be a non-negative integer, got {operations!r}")
    roundings = float(operations)
    for n in sums:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"sums must be positive integers (lengths), got {n!r}")
        if n > 1:
            roundings += {"any": float(n), "pairwise": math.ceil(math.log2(n)) + 1.0,
                          "random": 5 * math.sqrt(n)}[summation]
    unit = UNIT_ROUNDOFF[precision]
    if roundings * unit >= 1:
        raise ValueError(f"{roundings:.0f} roundings of {unit:.3g} give no bound (k u >= 1)")
    array = np.asarray(magnitude, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"magnitude must be finite and non-negative, got {magnitude!r}")
    gamma = roundings * unit / (1 - roundings * unit)
    result = gamma * array
    return float(result) if result.ndim == 0 else result


# Keras draws truncated normals on [-2σ, 2σ] and divides σ by the std of N(0, 1) cut there.
# The literal is Keras's own; the unit tests check it against truncated_normal_moments.
TRUNCATED_NORMAL_STD = 0.87962566103423978
"""Std of N(0, 1) truncated to [-2, 2], the constant Keras's ``VarianceScaling`` divides by.

The course's one copy of it: :mod:`utils.distributions` and the chapters import it from here.
"""


def _check_nonlinearity(nonlinearity: Any, param: Any) -> tuple[str, float | None]:
    if not isinstance(nonlinearity, str) or nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}"
        )
    if nonlinearity != "leaky_relu":
        if param is not None:
            raise ValueError(
                f"param is only used by 'leaky_relu' (its negative slope); got param={param!r} "
                f"for {nonlinearity!r}"
            )
        return nonlinearity, None
    if param is None:
        return nonlinearity, 0.01  # torch's default negative slope
    if isinstance(param, bool) or not isinstance(param, (int, float)) or not math.isfinite(param):
        raise ValueError(f"param must be a finite number (the negative slope), got {param!r}")
    return nonlinearity, float(param)


def gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain ``g`` PyTorch recommends for a nonlinearity (``torch.nn.init.calculate_gain``).

    A variance-scaling rule with gain ``g`` draws ``Var[w] = g**2 / fan``. Chapter 2, section
    "Gains", derives the first four rows and measures the last three:

    ==============  ==========================  =============================================
    nonlinearity    gain                        where it comes from
    ==============  ==========================  =============================================
    linear          1                           derivation (nothing to compensate)
    relu            sqrt(2)                     derivation: ReLU halves the second moment
    leaky_relu      sqrt(2 / (1 + slope**2))    derivation: keeps (1 + slope**2)/2 of it
    tanh            5/3                         convention (the derived 1.593 is close)
    sigmoid         1                           convention (outputs are not zero-mean)
    selu            3/4                         convention, "found empirically" in PyTorch
                                                PR 50664; SELU's own theory wants 1
    ==============  ==========================  =============================================

    :data:`DERIVED_GAINS` records the last column; :func:`derived_gain` computes what the
    variance argument would give for any of them.

    Parameters
    ----------
    nonlinearity
        One of :data:`NONLINEARITIES`.
    param
        The negative slope of ``"leaky_relu"`` (default 0.01, as in torch); must be ``None``
        for every other nonlinearity.

    Returns
    -------
    float
        The gain ``g``.

    Raises
    ------
    ValueError
        If ``nonlinearity`` is unknown (the message lists the known names), or ``param`` is
        given for a nonlinearity other than ``"leaky_relu"`` or is not a finite number.
    """
    name, slope = _check_nonlinearity(nonlinearity, param)
    if name in ("linear", "identity", "sigmoid"):
        return 1.0
    if name == "tanh":
        return 5.0 / 3.0
    if name == "relu":
        return math.sqrt(2.0)
    if name == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + slope**2))
    return 3.0 / 4.0


# ---------------------------------------------------------------------------------------------
# Gaussian expectations of a nonlinearity (the mean-field maps)
# ---------------------------------------------------------------------------------------------

def _activation_function(nonlinearity: Any, param: Any) -> Callable[[np.ndarray], np.ndarray]:
    if callable(nonlinearity):
        return nonlinearity
    name, slope = _check_nonlinearity(nonlinearity, param)
    if name in ("linear", "identity"):
        return lambda h: h
    if name == "relu":
        return lambda h: np.maximum(h, 0.0)
    if name == "leaky_relu":
        return lambda h: np.where(h > 0, h, slope * h)
    if name == "tanh":
        return np.tanh
    if name == "sigmoid":
        return lambda h: 0.5 * (1 + np.tanh(h / 2))
    return lambda h: _SELU_SCALE * np.where(h > 0, h, _SELU_ALPHA * np.expm1(np.minimum(h, 0)))


def _derivative_function(nonlinearity: Any, param: Any) -> Callable[[np.ndarray], np.ndarray]:
    if callable(nonlinearity):
        step = 1e-5  # central difference: error O(step**2) for smooth functions

        return lambda h: (nonlinearity(h + step) - nonlinearity(h - step)) / (2 * step)
    name, slope = _check_nonlinearity(nonlinearity, param)
    if name in ("linear", "identity"):
        return lambda h: np.ones_like(h)
    if name == "relu":
        return lambda h: (h > 0).astype(float)
    if name == "leaky_relu":
        return lambda h: np.where(h > 0, 1.0, slope)
    if name == "tanh":
        return lambda h: 1 - np.tanh(h) ** 2
    if name == "sigmoid":
        def sigmoid_slope(h: np.ndarray) -> np.ndarray:
            s = 0.5 * (1 + np.tanh(h / 2))
            return s * (1 - s)
        return sigmoid_slope
    return lambda h: _SELU_SCALE * np.where(h > 0, 1.0, _SELU_ALPHA * np.exp(np.minimum(h, 0)))


def _gaussian_expectation(function: Callable[[np.ndarray], np.ndarray], variance: float) -> float:
    """E[f(z)] for z ~ N(0, variance), by adaptive quadrature split at 0 (where ReLU-like
    functions have their kink, which would spoil a Gauss-Hermite rule)."""
    from scipy import integrate

    if variance == 0:
        return float(np.asarray(function(np.zeros(1)))[0])
    std = math.sqrt(variance)

    def integrand(z: float) -> float:
        value = np.asarray(function(np.array([std * z])), dtype=float)[0]
        return float(value) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    left, _ = integrate.quad(integrand, -np.inf, 0.0, epsabs=1e-13, epsrel=1e-11, limit=200)
    right, _ = integrate.quad(integrand, 0.0, np.inf, epsabs=1e-13, epsrel=1e-11, limit=200)
    return left + right


def activation_second_moment(nonlinearity: str | Callable[[np.ndarray], np.ndarray],
                             q: float, param: float | None = None) -> float:
    """``E[φ(z)^2]`` for ``z ~ N(0, q)``: what a layer passes on to the next one's fan-in.

    The forward half of the variance argument (Chapter 2, "ReLU halves the second moment"):
    a layer with weight variance ``Var[w]`` and fan-in ``n`` gives pre-activations of variance
    ``n·Var[w]·E[φ(z)^2]``. For ReLU this is exactly ``q/2``; for tanh it has no closed form
    and is computed by quadrature.

    Parameters
    ----------
    nonlinearity
        A name from :data:`NONLINEARITIES` or a vectorised NumPy function ``φ``.
    q
        The variance of the pre-activation ``z`` (``>= 0``).
    param
        The negative slope for ``"leaky_relu"``.

    Returns
    -------
    float
        ``E[φ(z)^2]``.

    Raises
    ------
    ValueError
        If the nonlinearity is unknown or ``q`` is not a finite non-negative number.
    """
    variance = require_nonnegative(q, "q")
    phi = _activation_function(nonlinearity, param)
    return _gaussian_expectation(lambda h: np.asarray(phi(h), dtype=float) ** 2, variance)


def derivative_second_moment(nonlinearity: str | Callable[[np.ndarray], np.ndarray],
                             q: float, param: float | None = None) -> float:
    """``E[φ'(z)^2]`` for ``z ~ N(0, q)``: the backward pass's per-layer factor.

    The backward half of the variance argument (Chapter 2, "The backward pass"): the gradient
    with respect to a layer's pre-activations has variance
    ``n_out·Var[w]·E[φ'(z)^2]`` times the next layer's. For ReLU it is ``1/2`` for any ``q > 0``.
    For a callable ``φ`` the derivative is a central finite difference.

    Parameters
    ----------
    nonlinearity, q, param
        As in :func:`activation_second_moment`.

    Returns
    -------
    float
        ``E[φ'(z)^2]``.

    Raises
    ------
    ValueError
        If the nonlinearity is unknown or ``q`` is not a finite non-negative number.
    """
    variance = require_nonnegative(q, "q")
    slope = _derivative_function(nonlinearity, param)
    return _gaussian_expectation(lambda h: np.asarray(slope(h), dtype=float) ** 2, variance)


def derived_gain(nonlinearity: str | Callable[[np.ndarray], np.ndarray],
                 param: float | None = None, q: float = 1.0) -> float:
    """The gain the variance argument gives: the ``g`` that makes ``q`` a fixed point.

    With ``Var[w] = g**2 / fan_in`` the pre-activation variance maps ``q -> g**2·E[φ(z)^2]``.
    The returned ``g = sqrt(q / E[φ(z)^2])`` keeps a pre-activation variance of ``q`` (default 1)
    unchanged from layer to layer. It reproduces :func:`gain` for linear, ReLU and leaky ReLU
    (whose maps are linear in ``q``, so ``q`` does not matter) and differs for tanh (1.593 at
    ``q = 1``), sigmoid and SELU, whose table values are conventions (Chapter 2, "Gains").

    Parameters
    ----------
    nonlinearity
        A name from :data:`NONLINEARITIES` or a vectorised NumPy function (e.g. GELU).
    param
        The negative slope for ``"leaky_relu"``.
    q
        The pre-activation variance to hold fixed (``> 0``).

    Returns
    -------
    float
        ``sqrt(q / E[φ(z)^2])``.

    Raises
    ------
    ValueError
        If the nonlinearity is unknown, ``q`` is not positive, or ``φ`` is zero almost
        everywhere (no gain can help).
    """
    variance = require_nonnegative(q, "q")
    if variance == 0:
        raise ValueError("q must be positive: every gain keeps a zero variance at zero")
    second_moment = activation_second_moment(nonlinearity, variance, param)
    if not second_moment > 0:
        raise ValueError(f"nonlinearity {nonlinearity!r} has E[φ(z)^2] = 0; no gain restores it")
    return math.sqrt(variance / second_moment)


# ---------------------------------------------------------------------------------------------
# Variance-scaling rules
# ---------------------------------------------------------------------------------------------

def truncated_normal_std_ratio(cut: float = 2.0) -> float:
    """Std of N(0, 1) truncated to ``[-cut, cut]``; 0.8796 for Keras's ``cut = 2``.

    The variance of the truncated normal is ``1 - 2·cut·φ(cut) / (Φ(cut) - Φ(-cut))``
    (Chapter 2, "The truncated normal correction"); this is
    ``utils.stats.truncated_normal_moments(-cut, cut).std``.

    Parameters
    ----------
    cut
        The cut-off in standard deviations.

    Returns
    -------
    float
        The truncated normal's std over the untruncated one's.

    Raises
    ------
    ValueError
        If ``cut`` is not a positive finite number.
    """
    if isinstance(cut, bool) or not isinstance(cut, (int, float)) or not 0 < cut < math.inf:
        raise ValueError(f"cut must be a positive finite number, got {cut!r}")
    return truncated_normal_moments(-float(cut), float(cut)).std


def _check_fan(value: Any, argument: str) -> int:
    return require_int(value, argument, minimum=0)


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "normal", "uniform")


def _check_mode(mode: Any) -> str:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    return mode


def _check_distribution(distribution: Any) -> str:
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}")
    # Keras's VarianceScaling treats "normal" as an alias of "truncated_normal"; so do we.
    return "truncated_normal" if distribution == "normal" else distribution


def _weight_variance(fan_in: int, fan_out: int, scale: float, mode: str) -> float:
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return scale / max(1.0, fan)  # Keras guards empty tensors the same way


def variance_scaling_std(fan_in: int, fan_out: int, scale: float = 1.0, mode: Mode = "fan_in",
                         distribution: Distribution = "truncated_normal") -> float:
    """The parameter Keras's ``VarianceScaling`` draws with, so that ``Var[w] = scale / fan``.

    ``fan`` is ``fan_in``, ``fan_out`` or their mean, as ``mode`` says. What is returned depends
    on ``distribution`` (Chapter 2, "Uniform, normal and truncated normal"):

    - ``"untruncated_normal"``: the std ``sqrt(scale / fan)``;
    - ``"truncated_normal"`` (Keras's default): the std of the normal *before* truncation at
      two of its standard deviations, ``sqrt(scale / fan) / 0.87962566``, so the variance
      *after* truncation is ``scale / fan``;
    - ``"uniform"``: the bound ``a = sqrt(3·scale / fan)`` of ``U(-a, a)``.

    Caution: like Keras, ``"normal"`` is accepted as an alias of ``"truncated_normal"``, not
    of ``"untruncated_normal"`` (torch's ``kaiming_normal_`` is untruncated).

    Parameters
    ----------
    fan_in, fan_out
        The fans of the weight tensor (for a dense kernel, its input and output sizes).
    scale
        The target ``Var[w] · fan``: 1 for LeCun and Glorot, 2 for He, 1/3 for PyTorch's
        default; ``gain(...)**2`` in PyTorch's terms.
    mode
        ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
    distribution
        ``"truncated_normal"``, ``"untruncated_normal"``, ``"uniform"`` (or ``"normal"``).

    Returns
    -------
    float
        The std (normal kinds) or the bound (``"uniform"``).

    Raises
    ------
    ValueError
        If a fan is not a non-negative integer, ``scale`` is not positive, or ``mode`` or
        ``distribution`` is unknown.
    """
    fan_in = _check_fan(fan_in, "fan_in")
    fan_out = _check_fan(fan_out, "fan_out")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    kind = _check_distribution(distribution)
    variance = _weight_variance(fan_in, fan_out, float(scale), _check_mode(mode))
    if kind == "uniform":
        return math.sqrt(3.0 * variance)
    if kind == "truncated_normal":
        return math.sqrt(variance) / TRUNCATED_NORMAL_STD
    return math.sqrt(variance)


@dataclass(frozen=True)
class VarianceRule:
    """A variance-scaling rule: ``Var[w] = scale / fan(mode)``, ``Var[b] = bias_scale / fan_in``.

    Attributes
    ----------
    name
        A label for tables and legends.
    scale, mode
        As in :func:`variance_scaling_std`.
    bias_scale
        ``Var[b] · fan_in``; 0 for zero biases (Keras's default), 1/3 for PyTorch's default
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` bias.
    """

    name: str
    scale: float
    mode: Mode = "fan_in"
    bias_scale: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) \
                or not 0 < self.scale < math.inf:
            raise ValueError(f"scale must be a positive number, got {self.scale!r}")
        _check_mode(self.mode)
        if isinstance(self.bias_scale, bool) or not isinstance(self.bias_scale, (int, float)) \
                or not 0 <= self.bias_scale < math.inf:
            raise ValueError(f"bias_scale must be a number >= 0, got {self.bias_scale!r}")

    def weight_variance(self, fan_in: int, fan_out: int) -> float:
        """``Var[w]`` for a tensor with these fans."""
        return _weight_variance(_check_fan(fan_in, "fan_in"), _check_fan(fan_out, "fan_out"),
                                float(self.scale), self.mode)

    def bias_variance(self, fan_in: int) -> float:
        """``Var[b]`` for a layer with this fan-in."""
        return float(self.bias_scale) / max(1, _check_fan(fan_in, "fan_in"))

    def std(self, fan_in: int, fan_out: int,
            distribution: Distribution = "truncated_normal") -> float:
        """The drawing parameter, as :func:`variance_scaling_std` returns it."""
        return variance_scaling_std(fan_in, fan_out, float(self.scale), self.mode, distribution)


#: The classic rules, each derived in Chapter 2. LeCun et al. (1998) ``1/fan_in``, Glorot &
#: Bengio (2010) ``2/(fan_in + fan_out)``, He et al. (2015) ``2/fan_in``, and PyTorch's
#: ``Linear``/conv default, ``U(±1/sqrt(fan_in))`` for weights and biases: ``1/(3·fan_in)``
#: for both.
RULES: dict[str, VarianceRule] = {
    "lecun": VarianceRule("LeCun", 1.0, "fan_in"),
    "glorot": VarianceRule("Glorot", 1.0, "fan_avg"),
    "he": VarianceRule("He", 2.0, "fan_in"),
    "torch_default": VarianceRule("torch default", 1.0 / 3.0, "fan_in", bias_scale=1.0 / 3.0),
}


def _as_rule(rule: Any) -> VarianceRule:
    if isinstance(rule, VarianceRule):
        return rule
    if isinstance(rule, str) and rule in RULES:
        return RULES[rule]
    raise ValueError(f"rule must be a VarianceRule or one of {tuple(RULES)}, got {rule!r}")


def sample_weights(rng: np.random.Generator, shape: Sequence[int], scale: float = 1.0,
                   mode: Mode = "fan_in",
                   distribution: Distribution = "truncated_normal") -> np.ndarray:
    """Draw a float64 tensor as Keras's ``VarianceScaling`` would, from a NumPy generator.

    ``shape`` is in Keras's layout (a dense kernel is ``(in, out)``, a convolution kernel
    ``(*kernel_size, in, out)``) and the fans are computed from it the way Keras does
    (:func:`utils.initializers.compute_fans`). The distribution is Keras's: truncated normals
    are redrawn outside two standard deviations. Drawing in NumPy lets one draw be given to a
    Keras kernel and, transposed, to a torch weight; Chapter 2 uses it to start both
    frameworks from identical weights.

    Parameters
    ----------
    rng
        A ``numpy.random.Generator``; the draws come from it alone.
    shape
        The tensor's shape in Keras's layout.
    scale, mode, distribution
        As in :func:`variance_scaling_std`.

    Returns
    -------
    numpy.ndarray
        A float64 array of ``shape``.

    Raises
    ------
    ValueError
        As :func:`variance_scaling_std`, if ``rng`` is not a ``numpy.random.Generator``, or if
        ``shape`` is not a sequence of non-negative integers.
    """
    from utils.initializers import compute_fans

    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    fan_in, fan_out = compute_fans(shape, "keras")
    parameter = variance_scaling_std(fan_in, fan_out, scale, mode, distribution)
    kind = _check_distribution(distribution)
    size = tuple(int(d) for d in shape)
    if kind == "uniform":
        return rng.uniform(-parameter, parameter, size=size)
    if kind == "untruncated_normal":
        return rng.normal(0.0, parameter, size=size)
    values = rng.standard_normal(size=size)
    outside = np.abs(values) > 2.0
    while outside.any():  # rejection: redraw the 4.6 % that fall outside [-2, 2]
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(values) > 2.0
    return parameter * values


def apply_rule(model: Any, rule: VarianceRule | str,
               distribution: Distribution = "truncated_normal", seed: int = 0) -> Any:
    """Re-draw every dense/convolution weight of ``model`` by ``rule``, from NumPy.

    Every layer with a kernel (Keras) or weight (torch) of two or more dimensions gets a fresh
    draw from :func:`sample_weights`, made in Keras's layout ``(*kernel_size, in, out)`` and
    transposed for torch's ``(out, in, *kernel_size)``; its bias is zero, or
    ``U(±sqrt(3·bias_scale/fan_in))`` if the rule has a ``bias_scale``. The draws depend only
    on ``seed`` and the layer shapes, so a Keras model and its torch twin given the same rule
    and seed get *identical* parameters (Chapter 2, "The depth experiment").

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``. Modified in place.
    rule
        A :class:`VarianceRule` or a key of :data:`RULES`.
    distribution
        As in :func:`variance_scaling_std`.
    seed
        Seeds a fresh ``numpy.random.default_rng``; the global generators are not touched.

    Returns
    -------
    The model, for chaining.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, ``rule`` or ``distribution`` is unknown,
        or the model has no weight to draw.
    """
    chosen = _as_rule(rule)
    _check_distribution(distribution)
    framework = framework_of(model)
    pairs = [(entry.weight, entry.bias) for entry in weight_layers(model)]
    if not pairs:
        raise ValueError("model has no dense or convolution weight (a kernel/weight with two or "
                         "more dimensions) for apply_rule to draw")
    rng = np.random.default_rng(seed)
    for weight, bias in pairs:
        keras_shape = keras_layout(weight.shape, framework)
        kernel = sample_weights(rng, keras_shape, float(chosen.scale), chosen.mode, distribution)
        assign(weight, from_keras_layout(kernel, framework))
        if bias is not None:
            fan_in = math.prod(keras_shape[:-1])
            bound = math.sqrt(3 * chosen.bias_variance(fan_in))
            values = rng.uniform(-bound, bound, size=bias.shape) if bound > 0 \
                else np.zeros(bias.shape)
            assign(bias, values)
    return model


# ---------------------------------------------------------------------------------------------
# The theory's prediction for a deep stack
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeanFieldProfile:
    """What the variance argument predicts for a stack of dense layers (see
    :func:`mean_field_profile`). Every array has one entry per dense layer, in order, the last
    being the linear output layer.

    Attributes
    ----------
    preactivation_variance
        ``q_l = Var[z_l]`` of each layer's output before its nonlinearity.
    gradient_variance
        ``r_l = Var[∂ℒ/∂z_l]``, the loss's gradient with respect to those pre-activations.
    preactivation_log_sd, gradient_log_sd
        With ``fluctuations=True``: how far one network of these finite widths may stray, the
        standard deviation of ``ln q̂_l`` and ``ln r̂_l`` around ``ln q_l`` and ``ln r_l`` (to
        leading order in 1/width; see :func:`mean_field_profile`). ``None`` otherwise.
    """

    preactivation_variance: np.ndarray
    gradient_variance: np.ndarray
    preactivation_log_sd: np.ndarray | None = None
    gradient_log_sd: np.ndarray | None = None

    @property
    def preactivation_std(self) -> np.ndarray:
        return np.sqrt(self.preactivation_variance)

    @property
    def gradient_std(self) -> np.ndarray:
        return np.sqrt(self.gradient_variance)

    def log_tolerance(self, direction: str = "forward", n_networks: int = 1,
                      sigmas: float = 5.0) -> np.ndarray:
        """How far the mean of ``ln q̂`` (or ``ln r̂``) over ``n_networks`` may stray, per layer.

        ``sigmas · sd / sqrt(n_networks) + sd² / 2``: ``sigmas`` standard errors of a mean of
        ``n_networks`` independent networks, plus the drift of a logarithm (the mean of
        ``ln X`` lies about ``Var[ln X] / 2`` below ``ln E[X]``). Chapter 2, "The depth
        experiment", uses it with 8 networks per rule.

        Parameters
        ----------
        direction
            ``"forward"`` (pre-activations) or ``"backward"`` (gradients).
        n_networks
            How many independently initialised networks the measured mean is over.
        sigmas
            How many standard errors to allow.

        Raises
        ------
        ValueError
            If the profile was computed without ``fluctuations=True``, ``direction`` is
            unknown, ``n_networks`` is not a positive integer or ``sigmas`` not positive.
        """
        if direction not in ("forward", "backward"):
            raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
        sd = self.preactivation_log_sd if direction == "forward" else self.gradient_log_sd
        if sd is None:
            raise ValueError("this profile has no fluctuations: call mean_field_profile(..., "
                             "fluctuations=True)")
        count = require_int(n_networks, "n_networks")
        width = require_positive(sigmas, "sigmas")
        return width * sd / math.sqrt(count) + sd**2 / 2


# A fixed grid for the fluctuation terms: 4,000 points on [-10, 10], symmetric about 0 with no
# node at 0, so a step such as relu' gets exactly half the weight on each side and a kink costs
# O(step**2) ~ 1e-5. The mean-field q and r themselves use adaptive quadrature; fluctuations
# only set tolerances, and the grid is about 100 times faster.
_GRID = np.linspace(-10.0, 10.0, 4000)
_GRID_WEIGHTS = np.exp(-_GRID**2 / 2) / np.sum(np.exp(-_GRID**2 / 2))


def _grid_moment(function: Callable[[np.ndarray], np.ndarray], q: float, power: int) -> float:
    values = np.asarray(function(math.sqrt(q) * _GRID), dtype=float)
    return float(np.sum(_GRID_WEIGHTS * values**power))


def _relative_variance(function: Callable[[np.ndarray], np.ndarray], q: float,
                       kurtosis: float = 1.0) -> float:
    """``kurtosis · E[f²] / E[f]² - 1`` for ``f = function(z)**2``, ``z ~ N(0, q)``: the
    relative variance of one unit's ``f·u²`` when ``u`` has that kurtosis (1: ``u = 1``)."""
    second, fourth = _grid_moment(function, q, 2), _grid_moment(function, q, 4)
    return kurtosis * fourth / second**2 - 1 if second > 0 else 0.0


def _elasticity(function: Callable[[np.ndarray], np.ndarray], q: float) -> float:
    """``d ln E[function(z)²] / d ln q`` for ``z ~ N(0, q)``, by a central difference."""
    step = 1e-3
    up, down = _grid_moment(function, q * math.exp(step), 2), \
        _grid_moment(function, q * math.exp(-step), 2)
    if not (up > 0 and down > 0):
        return 0.0
    return (math.log(up) - math.log(down)) / (2 * step)


def _log_fluctuations(sizes: list[int], weight_var: list[float], q: np.ndarray,
                      phi: Callable[[np.ndarray], np.ndarray],
                      slope: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n_dense = len(sizes) - 1
    # Forwards: X_l = ln s_l² - ln q_l, with s_l² the variance of layer l's pre-activations
    # given the layer below. X_0 = 0 (the input is given); X_l = w_l (ε X_{l-1} + ξ), where ξ,
    # the sampling noise of the n units' φ(z)², has variance v/n; ε is the elasticity of
    # E[φ(z)²] in q and w_l the share of q_l that comes through the weights (not the biases).
    # One more sampling step, ≤ 2/n (Gaussian z), turns s_l² into the measured q̂_l.
    gain_from = np.zeros(n_dense)  # a_l = w_l ε_{l-1}: how much of X_{l-1} reaches X_l
    innovation = np.zeros(n_dense)  # Var of the new noise entering X_l
    for i in range(1, n_dense):
        second = _grid_moment(phi, q[i - 1], 2)
        share = sizes[i] * weight_var[i] * second / q[i] if q[i] > 0 else 1.0
        gain_from[i] = share * _elasticity(phi, q[i - 1])
        innovation[i] = share**2 * _relative_variance(phi, q[i - 1]) / sizes[i]
    # X = A ζ with A[k, m] = prod_{j=m+1..k} a_j: each X_k as a sum of independent innovations
    propagate = np.zeros((n_dense, n_dense))
    for k in range(n_dense):
        propagate[k, k] = 1.0
        for m in range(k - 1, -1, -1):
            propagate[k, m] = propagate[k, m + 1] * gain_from[m + 1]
    x_variance = propagate**2 @ innovation
    forward = np.sqrt(x_variance + 2.0 / np.array(sizes[1:], dtype=float))
    # Backwards: ln r̂_l - ln r_l = Σ_{k>=l} (η_k + e_k X_k): η_k, the sampling noise of the
    # n units' φ'(z)²u² with Gaussian u, has variance v'/n; e_k is the elasticity of E[φ'²]
    # in q, through which the forward deviation X_k moves the backward factor. The output's
    # gradient is taken as given. η and X are correlated, so their sds add (Minkowski).
    eta_variance = np.zeros(n_dense)
    backward_elasticity = np.zeros(n_dense)
    for i in range(n_dense - 1):
        eta_variance[i] = _relative_variance(slope, q[i], kurtosis=3.0) / sizes[i + 1]
        backward_elasticity[i] = _elasticity(slope, q[i])
    backward = np.zeros(n_dense)
    for i in range(n_dense - 1):
        weights = np.where(np.arange(n_dense) >= i, backward_elasticity, 0.0)
        coupled = (weights @ propagate) ** 2 @ innovation
        backward[i] = math.sqrt(eta_variance[i:].sum()) + math.sqrt(coupled)
    return forward, backward


def mean_field_profile(layer_sizes: Sequence[int], rule: VarianceRule | str,
                       nonlinearity: str | Callable[[np.ndarray], np.ndarray],
                       param: float | None = None, input_second_moment: float = 1.0,
                       output_grad_variance: float = 1.0,
                       fluctuations: bool = False) -> MeanFieldProfile:
    """Predict each layer's pre-activation and gradient variance in a deep MLP.

    The network is ``x -> [dense -> φ] * L -> dense``, with ``layer_sizes = [n_0, ..., n_L,
    n_out]``, weights drawn by ``rule`` and inputs with ``E[x^2] = input_second_moment``. The
    forward recursion (Chapter 2, theorem "Forward variance") is

    ``q_1 = n_0 Var[w_1] E[x^2] + Var[b_1]``, ``q_l = n_{l-1} Var[w_l] E[φ(z_{l-1})^2] + Var[b_l]``

    and the backward one (theorem "Backward variance"), from the output's gradient variance
    ``r``, is ``Var[∂ℒ/∂z_l] = n_{l+1}·Var[w_{l+1}]·E[φ'(z_l)^2]·Var[∂ℒ/∂z_{l+1}]``. Both
    assume infinitely wide layers and, backwards, gradients independent of the forward pass (the
    usual mean-field assumptions); at finite width the measured values scatter around them.

    With ``fluctuations=True`` the profile also says by how much (Chapter 2, "How far can one
    network stray?"). Each layer of width ``n`` adds sampling noise of relative variance
    ``v/n`` to the squared norm it passes on, with ``v = E[φ⁴]/E[φ²]² - 1`` (5 for ReLU, at
    most 2 for tanh) forwards and ``v' = 3 E[φ'⁴]/E[φ'²]² - 1`` (5 for ReLU) backwards; the
    variance map passes on a fraction ``ε = d ln E[φ²] / d ln q`` of the deviation it receives
    (1 for ReLU, less for a saturating tanh or where biases dominate). The returned standard
    deviations of ``ln q̂_l`` and ``ln r̂_l`` are leading-order (delta-method) values for one
    input, and upper bounds for the statistics of a batch (different inputs average part of the
    noise away): for ReLU without biases ``sqrt((5(l-1) + 2)/n)`` forwards, close to
    :func:`depth_log_tolerance`'s ``sqrt(5 l / n)``.

    Parameters
    ----------
    layer_sizes
        ``[n_0, n_1, ..., n_L, n_out]``: the input size, the L hidden widths, the output size.
    rule
        A :class:`VarianceRule` or a key of :data:`RULES`.
    nonlinearity, param
        As in :func:`activation_second_moment`.
    input_second_moment
        ``E[x^2]`` of the input's coordinates.
    output_grad_variance
        ``Var[∂ℒ/∂y]`` at the output (1 for :func:`probe_loss` with standard-normal targets;
        pass the targets' actual mean square to compare with one batch).
    fluctuations
        Also compute ``preactivation_log_sd`` and ``gradient_log_sd``.

    Returns
    -------
    MeanFieldProfile
        Arrays of length ``L + 1``.

    Raises
    ------
    ValueError
        If ``layer_sizes`` has fewer than 3 entries or non-positive sizes, or another argument
        is invalid.
    """
    items = [] if isinstance(layer_sizes, (str, bytes)) else list(layer_sizes)
    if len(items) < 3 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                             or s < 1 for s in items):
        raise ValueError(
            "layer_sizes must list at least 3 positive integers [n_0, n_1, ..., n_out], got "
            f"{layer_sizes!r}"
        )
    sizes = [int(s) for s in items]
    chosen = _as_rule(rule)
    moment = require_nonnegative(input_second_moment, "input_second_moment")
    top = require_nonnegative(output_grad_variance, "output_grad_variance")
    n_dense = len(sizes) - 1
    weight_var = [chosen.weight_variance(sizes[i], sizes[i + 1]) for i in range(n_dense)]
    bias_var = [chosen.bias_variance(sizes[i]) for i in range(n_dense)]
    q = np.empty(n_dense)
    previous_moment = moment
    for i in range(n_dense):
        q[i] = sizes[i] * weight_var[i] * previous_moment + bias_var[i]
        if i < n_dense - 1:
            previous_moment = activation_second_moment(nonlinearity, q[i], param)
    r = np.empty(n_dense)
    r[-1] = top
    for i in range(n_dense - 2, -1, -1):
        # Backwards through dense layer i + 1, whose fan-out sizes[i + 2] is the length of the
        # sum in dℒ/dh_i = δ_{i+1} W^T.
        r[i] = (sizes[i + 2] * weight_var[i + 1]
                * derivative_second_moment(nonlinearity, q[i], param) * r[i + 1])
    if not fluctuations:
        return MeanFieldProfile(q, r)
    forward, backward = _log_fluctuations(sizes, weight_var, q,
                                          _activation_function(nonlinearity, param),
                                          _derivative_function(nonlinearity, param))
    return MeanFieldProfile(q, r, forward, backward)


def depth_log_tolerance(n_layers: Any, width: int, sigmas: float = 5.0) -> Any:
    """How far ``ln q`` of one finite-width ReLU network may stray from :func:`mean_field_profile`.

    Each ReLU layer of width ``n`` multiplies the squared norm of the signal (forwards) or of
    the gradient (backwards) by an independent random factor with mean ``n·Var[w]/2`` and
    relative variance ``5/n`` (``relu(z)^2`` has ``Var/E^2 = 5`` for Gaussian ``z``). After ``l``
    layers, ``ln q`` therefore has standard deviation about ``sqrt(5 l / n)`` around the
    mean-field value and drifts below it by about half its variance, ``5 l / (2 n)``; Hanin and
    Rolnick (2018) show this depth-to-width ratio governs the fluctuations. The function returns
    ``sigmas`` standard deviations plus the drift. The log of a random factor is left-skewed, so
    the lower tail is heavier than a normal's: for Gaussian-weight ReLU networks of width 128
    and depth 50, five sigma is exceeded (always on the low side) by about 3 networks in
    100,000, where a normal estimate would exceed it with probability 6e-7; the unit tests
    check this rate, and that uniform and truncated-normal weights fluctuate the same way. For tanh the
    bound is conservative (the per-unit relative variance of ``tanh(z)^2`` is at most 2, and
    tanh's variance map is contracting); ``mean_field_profile(..., fluctuations=True)`` gives
    the fluctuation of any nonlinearity. Chapter 2, "How far can one network stray?", derives
    it.

    Parameters
    ----------
    n_layers
        The number of layers traversed (an integer or an array of them, ``>= 0``).
    width
        The layers' width ``n``.
    sigmas
        How many standard deviations to allow.

    Returns
    -------
    float or numpy.ndarray
        The allowed ``abs(ln q - ln q_mean_field)``, one per entry of ``n_layers``.

    Raises
    ------
    ValueError
        If ``width`` is not a positive integer, ``sigmas`` not positive, or ``n_layers``
        negative.
    """
    width = require_int(width, "width")
    sigmas = require_positive(sigmas, "sigmas")
    layers = np.asarray(n_layers, dtype=float)
    if np.any(layers < 0) or not np.all(np.isfinite(layers)):
        raise ValueError(f"n_layers must be >= 0, got {n_layers!r}")
    result = sigmas * np.sqrt(5 * layers / width) + 5 * layers / (2 * width)
    return float(result) if result.ndim == 0 else result


# ---------------------------------------------------------------------------------------------
# Measured per-layer statistics of a real model
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerStats:
    """Statistics of one leaf layer's output (and its gradient) over a batch.

    Attributes
    ----------
    name, layer_type
        As in :class:`utils.frameworks.LayerRecord`.
    shape
        The output's shape (batch first).
    mean, std, rms
        Of all the output's values; ``rms = sqrt(mean(x**2))``, the quantity the variance
        argument propagates through a ReLU.
    fraction_zero
        Fraction of values that are exactly 0 (a ReLU's inactive outputs).
    fraction_dead
        Fraction of units that are 0 for *every* example in the batch. A unit is a feature of
        a dense output and a *channel* of a convolution's output (a filter that never fires
        anywhere in the batch is dead; one position where it is 0 is not).
    fraction_saturated
        For layers with a bounded output (tanh, sigmoid, hard tanh, softsign): fraction of
        values within ``1 - saturation`` of either end of the range (``saturation`` is an
        argument of :func:`layer_statistics`, 0.99 by default: ``|tanh| > 0.99``, where the
        slope ``1 - tanh²`` is below 0.02; sigmoid above 0.99 or below 0.01). ``None`` for
        layers whose output is unbounded (ReLU, leaky ReLU, GELU, SiLU, ELU, dense, ...).
    grad_std, grad_rms
        Of the loss's gradient with respect to the output; ``None`` for a forward-only call.
    weight_grad_std
        Std of the gradient of the layer's kernel/weight, or ``None``.
    """

    name: str
    layer_type: str
    shape: tuple[int, ...]
    mean: float
    std: float
    rms: float
    fraction_zero: float
    fraction_dead: float
    fraction_saturated: float | None = None
    grad_std: float | None = None
    grad_rms: float | None = None
    weight_grad_std: float | None = None


# Output ranges of bounded activations, by torch class name and Keras activation name.
_TORCH_BOUNDED = {"Tanh": (-1.0, 1.0), "Sigmoid": (0.0, 1.0), "Softsign": (-1.0, 1.0),
                  "Hardsigmoid": (0.0, 1.0)}
_KERAS_BOUNDED = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "soft_sign": (-1.0, 1.0),
                  "hard_sigmoid": (0.0, 1.0), "hard_tanh": (-1.0, 1.0)}


def _output_range(framework: str, layer: Any) -> tuple[float, float] | None:
    if framework == "torch":
        name = type(layer).__name__
        if name == "Hardtanh":
            return float(layer.min_val), float(layer.max_val)
        return _TORCH_BOUNDED.get(name)
    activation = getattr(layer, "activation", None)
    return _KERAS_BOUNDED.get(getattr(activation, "__name__", None))


def _unit_axis(framework: str, ndim: int) -> int:
    # Dense outputs are (batch, units) in both; conv outputs are channels-last in Keras and
    # channels-first in torch.
    return 1 if (framework == "torch" and ndim > 2) else ndim - 1


def _std(values: np.ndarray) -> float:
    return float(values.std()) if values.size else float("nan")


def layer_statistics(model: Any, x: Any, y: Any = None, loss: Any = None,
                     layer_types: Sequence[str] | None = None,
                     training: bool = False, saturation: float = 0.99,
                     output: Any = None) -> list[LayerStats]:
    """Per-layer activation and gradient statistics of any Keras 3 or torch model.

    One call to :func:`utils.frameworks.trace`, then for every leaf layer: the mean, std and
    rms of its output, the fractions of zero outputs, dead units and saturated outputs, and,
    if ``y`` and ``loss`` are given, the std of the loss's gradient with respect to the output
    and to the layer's weight. Chapter 2 introduces it (depth experiment); Chapters 3 to 6 use
    it to diagnose an initialisation.

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module``.
    x
        A batch of inputs.
    y, loss
        For the gradient statistics, as in :func:`utils.frameworks.trace`: ``loss`` is a name
        from ``utils.frameworks.LOSS_NAMES`` or a callable in the framework's convention
        (:func:`probe_loss` makes the output's gradient exactly ``y``).
    layer_types
        Keep only layers of these class names (e.g. ``("Dense", "Linear")`` for the
        pre-activations of a Keras or torch MLP built with separate activation layers).
    training
        Run dropout/batch-norm layers in training mode.
    saturation
        Where a bounded activation counts as saturated: within ``1 - saturation`` of an end of
        its range (the course's one definition; Chapters 2 and 3 use the default 0.99).
    output
        For a model with several outputs and a named ``loss``: the output it applies to, as in
        :func:`utils.frameworks.trace`.

    Returns
    -------
    list of LayerStats
        One per leaf-layer call, in call order. Statistics are computed in float64, so outputs
        too large for float32 squares still give a finite std.

    Raises
    ------
    ValueError
        As :func:`utils.frameworks.trace` (not a model, unbuilt, bad ``x``, only one of ``y``
        and ``loss``, unknown loss, several outputs and no ``output``), if ``layer_types`` is a
        string rather than a sequence of names, or if ``saturation`` is not strictly between 0
        and 1.
    """
    _check_statistics_arguments(layer_types, saturation)
    result = trace(model, x, y, loss, training=training, output=output)
    return trace_statistics(model, result, layer_types, saturation)


def _check_statistics_arguments(layer_types: Any, saturation: Any) -> None:
    if isinstance(saturation, bool) or not isinstance(saturation, (int, float)) \
            or not 0 < saturation < 1:
        raise ValueError(f"saturation must be a number strictly between 0 and 1, got "
                         f"{saturation!r}")
    if isinstance(layer_types, str):
        raise ValueError(f"layer_types must be a sequence of class names such as "
                         f"('Dense', 'Linear'), got the string {layer_types!r}")


def trace_statistics(model: Any, result: Trace, layer_types: Sequence[str] | None = None,
                     saturation: float = 0.99) -> list[LayerStats]:
    """:func:`layer_statistics` of a trace already made with :func:`utils.frameworks.trace`.

    For callers that also need the trace's parameter gradients (``utils.report.init_report``):
    one forward and backward pass serves both.

    Parameters
    ----------
    model
        The model ``result`` was traced from.
    result
        What :func:`utils.frameworks.trace` returned for it.
    layer_types, saturation
        As in :func:`layer_statistics`.

    Returns
    -------
    list of LayerStats
        As :func:`layer_statistics`.

    Raises
    ------
    ValueError
        If ``model`` is not a supported model, ``result`` is not a
        :class:`~utils.frameworks.Trace`, or ``layer_types`` or ``saturation`` is invalid (as in
        :func:`layer_statistics`).
    """
    _check_statistics_arguments(layer_types, saturation)
    if not isinstance(result, Trace):
        raise ValueError(f"result must be a utils.frameworks.Trace, got {type(result).__name__}")
    framework = framework_of(model)
    layers = dict(leaf_layers(model))
    weight_grads: dict[str, np.ndarray] = {}
    for param, grad in result.param_grads:
        if param.name in ("kernel", "weight") and len(param.shape) >= 2:
            key = param.layer_object.name if framework == "keras" else param.layer
            weight_grads.setdefault(key, grad)
    rows = []
    for record in result.layers:
        if layer_types is not None and record.layer_type not in layer_types:
            continue
        values = np.asarray(record.output, dtype=np.float64)
        axis = _unit_axis(framework, values.ndim)
        if values.ndim >= 2:
            other = tuple(i for i in range(values.ndim) if i != axis)
            dead = float(np.mean(np.all(values == 0, axis=other)))
        else:
            dead = float(np.all(values == 0))
        bounds = _output_range(framework, layers.get(record.name.split("#")[0]))
        saturated = None
        if bounds is not None:
            margin = 1.0 - saturation
            saturated = float(np.mean((values < bounds[0] + margin)
                                      | (values > bounds[1] - margin)))
        grad_std = grad_rms = None
        if record.output_grad is not None:
            grad = np.asarray(record.output_grad, dtype=np.float64)
            grad_std, grad_rms = _std(grad), float(np.sqrt(np.mean(grad**2)))
        weight_grad = weight_grads.get(record.name)
        rows.append(LayerStats(
            name=record.name,
            layer_type=record.layer_type,
            shape=tuple(values.shape),
            mean=float(values.mean()),
            std=_std(values),
            rms=float(np.sqrt(np.mean(values**2))),
            fraction_zero=float(np.mean(values == 0)),
            fraction_dead=dead,
            fraction_saturated=saturated,
            grad_std=grad_std,
            grad_rms=grad_rms,
            weight_grad_std=None if weight_grad is None
            else _std(np.asarray(weight_grad, dtype=np.float64)),
        ))
    return rows


def statistics_table(rows: Sequence[LayerStats],
                     columns: Sequence[str] = ("std", "grad_std"),
                     digits: int = 4) -> str:
    """Format :func:`layer_statistics` rows as a plain-text table (``digits`` significant).

    Parameters
    ----------
    rows
        What :func:`layer_statistics` returned.
    columns
        Fields of :class:`LayerStats` to show after the layer name.
    digits
        Significant digits.

    Returns
    -------
    str
        The table, one line per row under a header line.

    Raises
    ------
    ValueError
        If a column is not a field of :class:`LayerStats`.
    """
    known = [f.name for f in fields(LayerStats)]
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"columns must be fields of LayerStats {known}, got unknown {unknown}")
    width = max([len("layer")] + [len(r.name) for r in rows])
    widths = [max(10, len(c)) for c in columns]
    header = f"{'layer':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(columns, widths))
    lines = [header]
    for row in rows:
        cells = []
        for column, cell_width in zip(columns, widths):
            value = getattr(row, column)
            if value is None:
                cells.append(f"{'-':>{cell_width}}")
            elif isinstance(value, float):
                cells.append(f"{value:>{cell_width}.{digits}g}")
            else:
                cells.append(f"{str(value):>{cell_width}}")
        lines.append(f"{row.name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def probe_loss(framework: str) -> Callable[[Any, Any], Any]:
    """A loss whose gradient with respect to the output is exactly the target: ``Σ y·ŷ``.

    Used to measure how gradients propagate backwards without the loss shaping them: with
    standard-normal targets the output's gradient has variance 1 whatever the forward pass did
    (Chapter 2, "The depth experiment"). The callable follows the framework's convention
    (Keras ``loss(y_true, y_pred)``, torch ``loss(prediction, target)``).

    Parameters
    ----------
    framework
        ``"keras"`` or ``"torch"``.

    Returns
    -------
    callable
        The loss, in the framework's argument order.

    Raises
    ------
    ValueError
        If ``framework`` is not ``"keras"`` or ``"torch"``.
    """
    if framework == "keras":
        def keras_probe(y_true: Any, y_pred: Any) -> Any:
            import keras

            return keras.ops.sum(keras.ops.cast(y_true, y_pred.dtype) * y_pred)
        return keras_probe
    if framework == "torch":
        def torch_probe(prediction: Any, target: Any) -> Any:
            return (prediction * target.to(prediction.dtype)).sum()
        return torch_probe
    raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")


_KERAS_ACTIVATIONS = {"linear": "linear", "identity": "linear", "relu": "relu", "tanh": "tanh",
                      "sigmoid": "sigmoid", "selu": "selu"}


def deep_mlp(framework: str, layer_sizes: Sequence[int], activation: str,
             param: float | None = None, dtype: str = "float32", use_bias: bool = True,
             kernel_initializer: Any = None) -> Any:
    """The plain MLP of the variance argument: ``[dense -> activation] * L -> dense``.

    Each nonlinearity is its own layer (Keras ``Activation``/``LeakyReLU``, torch ``nn.ReLU``
    etc.), so :func:`layer_statistics` sees the pre-activations as the dense layers' outputs
    (filter with ``layer_types=("Dense", "Linear")``). The layers keep their framework's
    default initialisation (Keras: Glorot uniform kernels and zero biases; torch:
    ``U(±1/sqrt(fan_in))`` weights and biases) unless ``kernel_initializer`` is given (Keras
    only) or :func:`apply_rule` redraws them. Chapter 2 builds every deep network with it.

    Parameters
    ----------
    framework
        ``"keras"`` or ``"torch"``.
    layer_sizes
        ``[n_0, n_1, ..., n_L, n_out]`` as in :func:`mean_field_profile`.
    activation, param
        A name from :data:`NONLINEARITIES`, and the negative slope for ``"leaky_relu"``.
    dtype
        ``"float32"`` or ``"float64"``.
    use_bias
        Give the dense layers biases.
    kernel_initializer
        A Keras initializer (name or instance) for every Dense kernel. An *instance* is
        cloned per layer, with seed ``seed + i`` for the ``i``-th Dense layer if it has a
        seed, so that the layers get independent draws rather than one draw repeated
        (Chapter 1's pitfall).

    Returns
    -------
    A built ``keras.Sequential`` or ``torch.nn.Sequential``.

    Raises
    ------
    ValueError
        If an argument is not one of the documented values.
    """
    if framework not in ("keras", "torch"):
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    _check_nonlinearity(activation, param)
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    sizes = list(layer_sizes) if not isinstance(layer_sizes, (str, bytes)) else []
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                             for s in sizes):
        raise ValueError(f"layer_sizes must list at least 2 positive integers, got {layer_sizes!r}")
    if framework == "torch":
        if kernel_initializer is not None:
            raise ValueError("kernel_initializer is for Keras models; for torch, build the "
                             "model and call apply_rule or torch.nn.init on it")
        import torch
        import torch.nn as nn

        def torch_activation() -> Any:
            if activation == "leaky_relu":
                return nn.LeakyReLU(0.01 if param is None else param)
            return {"linear": nn.Identity, "identity": nn.Identity, "relu": nn.ReLU,
                    "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "selu": nn.SELU}[activation]()

        modules: list[Any] = []
        for i in range(len(sizes) - 1):
            modules.append(nn.Linear(int(sizes[i]), int(sizes[i + 1]), bias=use_bias))
            if i < len(sizes) - 2:
                modules.append(torch_activation())
        return nn.Sequential(*modules).to(getattr(torch, dtype))
    import keras

    def keras_activation() -> Any:
        if activation == "leaky_relu":
            return keras.layers.LeakyReLU(0.01 if param is None else param, dtype=dtype)
        return keras.layers.Activation(_KERAS_ACTIVATIONS[activation], dtype=dtype)

    def kernel(index: int) -> Any:
        if kernel_initializer is None:
            return "glorot_uniform"
        if isinstance(kernel_initializer, str):
            return kernel_initializer
        config = kernel_initializer.get_config()
        if config.get("seed") is not None:
            config["seed"] = int(config["seed"]) + index  # one seed per layer, not one draw
        return kernel_initializer.__class__.from_config(config)

    layers: list[Any] = [keras.Input((int(sizes[0]),), dtype=dtype)]
    for i in range(len(sizes) - 1):
        layers.append(keras.layers.Dense(int(sizes[i + 1]), use_bias=use_bias,
                                         kernel_initializer=kernel(i), dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(keras_activation())
    return keras.Sequential(layers)
