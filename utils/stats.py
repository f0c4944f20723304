"""Means with intervals, paired comparisons and Monte-Carlo tolerances (Chapter 2).

Two jobs, one module:

* **Comparing runs.** A training curve from one seed is an anecdote. :func:`mean_ci` gives the
  mean of a few runs with a Student-t interval; :func:`paired_difference` compares two arms run
  with the same seeds (same data order, same everything but the treatment), which is far more
  sensitive than comparing two independent means. Chapter 2 uses them for the He et al. (2015)
  experiment, Chapter 5 for its seed statistics.
* **Checking Monte-Carlo estimates honestly.** A notebook that asserts "the sample variance is
  close to the theory" needs a tolerance derived from the sample size, not one widened until the
  assert passes. :func:`mean_tolerance` and :func:`variance_tolerance` return such bounds
  (``sigmas`` standard errors); Chapter 2, section "Checking a claim by Monte Carlo", explains
  them. :func:`truncated_normal_moments` gives the mean, std and kurtosis of a truncated
  normal, the one place the course computes them (Keras's and torch's truncated initializers,
  Chapters 1 to 3).
* **Checking arguments.** :func:`require_int`, :func:`require_finite`, :func:`require_positive`,
  :func:`require_nonnegative` and :func:`require_seed` raise the course's ``ValueError``
  (naming the argument and what was expected); the other ``utils`` modules use them instead
  of keeping their own copies.

Only NumPy and SciPy are imported.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Interval",
    "PairedComparison",
    "mean_ci",
    "pointwise_mean_ci",
    "paired_difference",
    "mean_tolerance",
    "variance_tolerance",
    "std_tolerance",
    "sum_kurtosis",
    "quote_holds",
    "KURTOSIS",
    "TruncatedNormalMoments",
    "truncated_normal_moments",
    "require_int",
    "require_finite",
    "require_positive",
    "require_nonnegative",
    "require_seed",
]

# ---------------------------------------------------------------------------------------------
# Argument checks shared by the utils modules
# ---------------------------------------------------------------------------------------------

# Each check returns the value converted, or raises "<argument> must be <expected>, got <value>".
# They share one docstring, filled in below, so the reference shows each in full.
_REQUIRE_DOC = """Return ``value`` as {kind} if it is {expected} (a bool never is).

    Parameters
    ----------
    value
        The caller's argument.
    argument
        Its name, for the message.{extra}

    Returns
    -------
    {type}
        ``value`` converted.

    Raises
    ------
    ValueError
        If it is not, with a message naming ``argument``: "<argument> must be ..., got
        <value>".
    """


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def _is_integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def require_int(value: Any, argument: str, minimum: int = 1) -> int:
    if not _is_integer(value) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def require_finite(value: Any, argument: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise ValueError(f"{argument} must be a finite number, got {value!r}")
    return float(value)


def require_positive(value: Any, argument: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{argument} must be a positive finite number, got {value!r}")
    return float(value)


def require_nonnegative(value: Any, argument: str) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{argument} must be a finite number >= 0, got {value!r}")
    return float(value)


def require_seed(value: Any, argument: str = "seed") -> int:
    if not _is_integer(value) or not 0 <= value < 2**32:
        raise ValueError(f"{argument} must be an integer in [0, 2**32), got {value!r}")
    return int(value)


for _check, _kind, _expected, _extra in [
    (require_int, "int", "an integer ``>= minimum``",
     "\n    minimum\n        The smallest value allowed."),
    (require_finite, "float", "a finite number", ""),
    (require_positive, "float", "a positive finite number", ""),
    (require_nonnegative, "float", "a finite number ``>= 0``", ""),
    (require_seed, "int", "an integer in ``[0, 2**32)``, a NumPy seed", ""),
]:
    _check.__doc__ = _REQUIRE_DOC.format(kind=f"``{_kind}``", type=_kind, expected=_expected,
                                         extra=_extra)
del _check, _kind, _expected, _extra


# ---------------------------------------------------------------------------------------------
# The truncated normal
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TruncatedNormalMoments:
    """Mean, standard deviation and kurtosis (not excess) of a truncated standard normal."""

    mean: float
    std: float
    kurtosis: float


def _normal_density(z: float) -> float:
    return 0.0 if math.isinf(z) else math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _normal_mass(low: float, high: float) -> float:
    """P(low <= Z <= high) for Z ~ N(0, 1), from erfc in the tails (no cancellation there)."""
    if low >= 0:
        return 0.5 * (math.erfc(low / math.sqrt(2)) - math.erfc(high / math.sqrt(2)))
    if high <= 0:
        return 0.5 * (math.erfc(-high / math.sqrt(2)) - math.erfc(-low / math.sqrt(2)))
    return 1.0 - 0.5 * math.erfc(-low / math.sqrt(2)) - 0.5 * math.erfc(high / math.sqrt(2))


def truncated_normal_moments(low: float = -2.0, high: float = 2.0) -> TruncatedNormalMoments:
    """Moments of ``N(0, 1)`` conditioned on ``[low, high]``, in closed form.

    With ``Z = Φ(high) - Φ(low)`` and ``μ`` the mean, the central moments
    ``J_k = ∫ (x-μ)^k φ(x) dx`` over the interval satisfy
    ``J_{k+1} = k J_{k-1} - μ J_k + (low-μ)^k φ(low) - (high-μ)^k φ(high)`` (integrate
    ``(x-μ)^k · xφ(x) = -(x-μ)^k φ'(x)`` by parts), starting from ``J_0 = Z`` and
    ``μ = (φ(low) - φ(high)) / Z``. For ``[-2, 2]``, Keras's truncation, the std is 0.87962566
    (:data:`utils.variance.TRUNCATED_NORMAL_STD`) and the kurtosis 2.36, the value in
    :data:`KURTOSIS`. For a normal with mean ``m`` and std ``s`` cut at ``[a, b]`` (torch's
    ``trunc_normal_``), pass ``low = (a-m)/s`` and ``high = (b-m)/s`` and rescale: mean
    ``m + s·mean``, std ``s·std``. Chapter 2, "Uniform, normal and truncated normal", derives
    the variance. Accurate to about 1e-12 unless the interval lies entirely far out in one tail
    (more than about 8 standard deviations), where the probability ``Z`` underflows.

    Parameters
    ----------
    low, high
        The interval in standard deviations of the untruncated normal; ``low < high``, either
        may be infinite.

    Returns
    -------
    TruncatedNormalMoments
        The mean, std and kurtosis.

    Raises
    ------
    ValueError
        If a bound is not a number, ``low >= high``, or the interval has probability 0 in float64.
    """
    bounds = []
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or math.isnan(value):
            raise ValueError(f"{name} must be a number (in standard deviations), got {value!r}")
        bounds.append(float(value))
    a, b = bounds
    if not a < b:
        raise ValueError(f"low must be smaller than high, got low={a!r}, high={b!r}")
    mass = _normal_mass(a, b)
    if not mass > 0:
        raise ValueError(f"the interval [{a}, {b}] has probability 0 under N(0, 1) in float64")
    density_a, density_b = _normal_density(a), _normal_density(b)
    mean = (density_a - density_b) / mass

    def boundary(k: int) -> float:
        # (a-μ)^k φ(a) - (b-μ)^k φ(b), with 0 at an infinite bound (φ decays faster)
        left = 0.0 if math.isinf(a) else (a - mean) ** k * density_a
        right = 0.0 if math.isinf(b) else (b - mean) ** k * density_b
        return left - right

    j0 = mass
    j1 = 0.0  # the first central moment, zero by the choice of μ
    j2 = j0 - mean * j1 + boundary(1)
    j3 = 2 * j1 - mean * j2 + boundary(2)
    j4 = 3 * j2 - mean * j3 + boundary(3)
    variance = j2 / mass
    return TruncatedNormalMoments(mean, math.sqrt(variance), (j4 / mass) / variance**2)


#: Kurtosis ``E[(X - mu)^4] / sigma^4`` of the distributions initializers draw from. The
#: truncated normal is cut at two standard deviations of the underlying normal, as in Keras's
#: ``TruncatedNormal`` and in ``torch.nn.init.trunc_normal_`` with ``a=-2·std, b=2·std``.
KURTOSIS: dict[str, float] = {
    "normal": 3.0,
    "uniform": 9.0 / 5.0,
    "truncated_normal": truncated_normal_moments(-2.0, 2.0).kurtosis,
}


# ---------------------------------------------------------------------------------------------
# Comparing runs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes
    ----------
    mean
        The sample mean.
    low, high
        The interval's end points.
    confidence
        The nominal coverage, e.g. 0.95.
    n
        The number of values the interval is computed from.
    """

    mean: float
    low: float
    high: float
    confidence: float
    n: int

    @property
    def half_width(self) -> float:
        """Half the interval's length (the "±" part)."""
        return (self.high - self.low) / 2

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        percent = f"{100 * self.confidence:g}%"
        return f"{self.mean:.4g} ({percent} CI {self.low:.4g} to {self.high:.4g}, n={self.n})"


@dataclass(frozen=True)
class PairedComparison:
    """The result of :func:`paired_difference`: ``a - b`` over matched pairs.

    Attributes
    ----------
    difference
        The mean of ``a - b`` with its Student-t interval.
    t_statistic, p_value
        The paired t-test of "mean difference = 0" (two-sided).
    wilcoxon_p_value
        The two-sided p-value of the Wilcoxon signed-rank test, which does not assume the
        differences are normal (``None`` if every difference is zero). With ``n`` pairs it can
        never go below ``2 / 2**n`` (0.25 for 3 pairs), so it needs more pairs than the t-test
        to reach a small p-value.
    """

    difference: Interval
    t_statistic: float
    p_value: float
    wilcoxon_p_value: float | None

    def __str__(self) -> str:
        wilcoxon = "n/a" if self.wilcoxon_p_value is None else f"{self.wilcoxon_p_value:.3g}"
        return (f"mean difference {self.difference}; paired t = {self.t_statistic:.3g}, "
                f"p = {self.p_value:.3g}; Wilcoxon p = {wilcoxon}")


def _values(values: Any, argument: str, minimum: int = 2) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{argument} must be a sequence of numbers, got {values!r}") from err
    if array.ndim != 1:
        raise ValueError(f"{argument} must be one-dimensional, got shape {array.shape}")
    if array.size < minimum:
        raise ValueError(
            f"{argument} must hold at least {minimum} values for an interval, got {array.size}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must be finite, got {array}")
    return array


def _confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number strictly between 0 and 1, got {confidence!r}")
    return float(confidence)


def _t_half_width(std: Any, n: int, level: float) -> Any:
    """``t_{(1+level)/2, n-1} · std / sqrt(n)``, the half-width of a Student-t interval."""
    from scipy import stats

    return stats.t.ppf((1 + level) / 2, df=n - 1) * std / math.sqrt(n)


def mean_ci(values: Any, confidence: float = 0.95) -> Interval:
    """Mean of ``values`` with a two-sided Student-t confidence interval.

    The interval ``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)`` covers the true mean with probability
    ``confidence`` when the values are independent draws from a normal distribution, and
    approximately so otherwise. With 3 seeds the t quantile is 4.30 (not 1.96): few runs buy a
    wide interval, which is the honest answer. Chapter 2, "He et al. in small", uses it.

    Parameters
    ----------
    values
        At least two finite numbers, e.g. one final loss per seed.
    confidence
        Nominal coverage, strictly between 0 and 1.

    Returns
    -------
    Interval

    Raises
    ------
    ValueError
        If ``values`` is not a 1-D sequence of at least two finite numbers, or ``confidence`` is
        not in (0, 1).
    """
    array = _values(values, "values")
    level = _confidence(confidence)
    n = array.size
    mean = float(array.mean())
    half = float(_t_half_width(array.std(ddof=1), n, level))
    return Interval(mean, mean - half, mean + half, level, n)


def pointwise_mean_ci(runs: Any, confidence: float = 0.95
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mean_ci` at every point of a curve: the mean over runs with a t-interval band.

    ``runs`` holds one curve per row (for example the per-epoch loss of each seed); the
    interval at each column is ``mean ± t_{(1+c)/2, n-1} · s / sqrt(n)`` over the ``n`` rows,
    exactly as :func:`mean_ci` computes it for one column. Chapter 2 draws its training curves
    with it (through :func:`utils.plotting.plot_mean_band`).

    Parameters
    ----------
    runs
        Array of shape ``(n_runs, n_points)`` with ``n_runs >= 2``, finite.
    confidence
        Nominal coverage, strictly between 0 and 1.

    Returns
    -------
    mean, low, high : numpy.ndarray
        Each of length ``n_points``.

    Raises
    ------
    ValueError
        If ``runs`` is not a finite 2-D array with at least two rows, or ``confidence`` is not
        in (0, 1).
    """
    try:
        array = np.asarray(runs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"runs must be an array of numbers, got {runs!r}") from err
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"runs must have shape (n_runs >= 2, n_points) (one run has no "
                         f"interval), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("runs must be finite")
    level = _confidence(confidence)
    mean = array.mean(axis=0)
    half = _t_half_width(array.std(axis=0, ddof=1), array.shape[0], level)
    return mean, mean - half, mean + half


def paired_difference(a: Any, b: Any, confidence: float = 0.95) -> PairedComparison:
    """Compare two arms run on the same seeds: mean of ``a - b``, its interval and p-values.

    Pairing removes the seed-to-seed variation both arms share (same data order, same
    initial draws where the arms allow it), so a paired comparison detects a smaller difference
    than two independent intervals would. Chapter 2, "He et al. in small", uses it; Chapter 5
    reuses it for its seed statistics.

    Parameters
    ----------
    a, b
        Equal-length sequences of at least two finite numbers; ``a[i]`` and ``b[i]`` come from
        the same seed.
    confidence
        Nominal coverage of the interval for the mean difference.

    Returns
    -------
    PairedComparison
        The mean difference with its t-interval, the paired t statistic and two-sided p-value,
        and the Wilcoxon signed-rank p-value.

    Raises
    ------
    ValueError
        If ``a`` or ``b`` is not a 1-D sequence of at least two finite numbers, or their lengths
        differ, or ``confidence`` is not in (0, 1).
    """
    from scipy import stats

    first = _values(a, "a")
    second = _values(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"a and b must have the same length (one value per seed), got {first.size} and "
            f"{second.size}"
        )
    differences = first - second
    interval = mean_ci(differences, confidence)
    spread = differences.std(ddof=1)
    if spread == 0:
        # All differences equal: the t statistic is infinite unless they are all zero.
        t_statistic = 0.0 if interval.mean == 0 else math.copysign(math.inf, interval.mean)
        p_value = 1.0 if interval.mean == 0 else 0.0
    else:
        t_statistic = float(interval.mean / (spread / math.sqrt(differences.size)))
        p_value = float(2 * stats.t.sf(abs(t_statistic), df=differences.size - 1))
    wilcoxon = None
    if np.any(differences != 0):
        wilcoxon = float(stats.wilcoxon(first, second, alternative="two-sided").pvalue)
    return PairedComparison(interval, t_statistic, p_value, wilcoxon)


def mean_tolerance(std: float, n: int, sigmas: float = 5.0) -> float:
    """How far a mean of ``n`` independent draws may stray from the true mean: ``sigmas·std/√n``.

    The standard error of a sample mean is ``std / sqrt(n)``. A 5-sigma bound fails by chance
    with probability below 6e-7 for a normal estimate (by the central limit theorem, the
    sample mean of many draws is close to normal), so an assert using it fails only when the
    claim it checks is wrong. Chapter 2 uses it for every "E[...] = ..." check.

    Parameters
    ----------
    std
        The standard deviation of *one* draw (known from theory, or estimated from a large
        sample).
    n
        The number of independent draws averaged.
    sigmas
        How many standard errors to allow.

    Returns
    -------
    float
        ``sigmas * std / sqrt(n)``.

    Raises
    ------
    ValueError
        If ``std`` or ``sigmas`` is not a positive finite number, or ``n`` not an integer >= 1.
    """
    spread = require_positive(std, "std")
    count = require_int(n, "n")
    width = require_positive(sigmas, "sigmas")
    return width * spread / math.sqrt(count)


def variance_tolerance(n: int, sigmas: float = 5.0, kurtosis: float = 3.0) -> float:
    """Relative tolerance of an unbiased sample variance of ``n`` independent draws.

    For draws with kurtosis ``κ = E[(X-μ)^4]/σ^4`` the sample variance ``s²`` (divisor ``n-1``)
    has ``Var[s²] / σ^4 = 2/(n-1) + (κ-3)/n``, which is ``2/(n-1)`` for normal data (``κ = 3``).
    The function returns ``sigmas`` times the square root of that, so

    ``abs(s² / σ² - 1) <= variance_tolerance(n, sigmas, κ)``

    fails by chance with a probability of the order of a ``sigmas``-sigma event. Chapter 2,
    "Checking a claim by Monte Carlo", derives it.

    Parameters
    ----------
    n
        Number of independent draws, at least 2.
    sigmas
        How many standard errors to allow.
    kurtosis
        The kurtosis of one draw (not the excess): 3 for a normal, 1.8 for a uniform, see
        :data:`KURTOSIS` and :func:`sum_kurtosis`. Must be at least 1 (every distribution's is).

    Returns
    -------
    float
        The allowed ``abs(s² / σ² - 1)``.

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 2, ``sigmas`` not positive, or ``kurtosis`` below 1.
    """
    count = require_int(n, "n", minimum=2)
    width = require_positive(sigmas, "sigmas")
    if isinstance(kurtosis, bool) or not isinstance(kurtosis, (int, float, np.floating)) \
            or not kurtosis >= 1 or not math.isfinite(kurtosis):
        raise ValueError(f"kurtosis must be a finite number >= 1 (E[(X-mu)^4]/sigma^4, 3 for a "
                         f"normal), got {kurtosis!r}")
    relative_variance = 2 / (count - 1) + (float(kurtosis) - 3) / count
    return width * math.sqrt(max(relative_variance, 0.0))


def std_tolerance(n: int, sigmas: float = 5.0, kurtosis: float = 3.0) -> float:
    """Relative tolerance of a sample standard deviation: half of :func:`variance_tolerance`.

    By the delta method, ``s/σ - 1 ≈ (s²/σ² - 1)/2`` when the relative error is small, so the
    standard error halves. Use it when the claim is about a std (for example Keras's truncated
    normal std); Chapter 2 does.

    Parameters
    ----------
    n, sigmas, kurtosis
        As in :func:`variance_tolerance`.

    Returns
    -------
    float
        The allowed ``abs(s / σ - 1)``.

    Raises
    ------
    ValueError
        As :func:`variance_tolerance`.
    """
    return variance_tolerance(n, sigmas, kurtosis) / 2


def quote_holds(interval: Interval, quoted: str, sigmas: float = 4.0) -> bool:
    """Whether a number the prose quotes for a mean over seeds holds on any machine (Chapter 5).

    A trained result is trajectory-dependent: another CPU, BLAS kernel or framework version
    changes the last bits of the first step, and training amplifies them. In the worst case each
    seed's run becomes a new draw from the seeds' distribution, so the mean over the ``n`` seeds
    moves by the difference of two independent means, whose standard deviation is
    ``sqrt(2) * s / sqrt(n) = sqrt(2) * h / t`` (``s`` the seeds' standard deviation, ``h`` the
    interval's half-width, ``t`` its Student quantile). The quote holds if it lies within
    ``sigmas`` of those standard deviations of the measured mean, plus half a unit of the
    quote's last digit (it is rounded).

    Parameters
    ----------
    interval
        The measured mean with its Student-t interval (:func:`mean_ci`, or the ``difference``
        of :func:`paired_difference`).
    quoted
        The number exactly as the text writes it, e.g. ``"0.56"`` or ``"110"``.
    sigmas
        How many standard deviations of the machine-to-machine change to allow (4: a
        two-sided normal probability of about 6e-5 that a true statement fails).

    Returns
    -------
    bool
        True if the quote is consistent with the measurement to that tolerance.

    Raises
    ------
    ValueError
        If ``quoted`` is not a decimal number, ``sigmas`` is not positive, or the interval has
        fewer than two values.
    """
    if not isinstance(quoted, str) or not re.fullmatch(r"[+-]?\d+(\.\d+)?", quoted.strip()):
        raise ValueError(f"quoted must be a decimal number written as text, got {quoted!r}")
    sigmas = require_positive(sigmas, "sigmas")
    if interval.n < 2:
        raise ValueError(f"interval must come from at least two values, got n={interval.n}")
    from scipy import stats as scipy_stats

    decimals = len(quoted.strip().partition(".")[2])
    t = scipy_stats.t.ppf(0.5 + interval.confidence / 2, interval.n - 1)
    machine_sd = math.sqrt(2) * (interval.high - interval.low) / 2 / t
    return bool(abs(interval.mean - float(quoted)) <= sigmas * machine_sd + 0.5 * 10.0**-decimals)


def sum_kurtosis(term_kurtosis: float, n_terms: int) -> float:
    """Kurtosis of a sum of ``n_terms`` independent, identically distributed terms.

    Cumulants add over independent terms, so the excess kurtosis (``κ - 3``) of the sum is the
    terms' excess divided by ``n_terms``: sums become more normal. For a product ``w·x`` of
    independent zero-mean factors, the term's kurtosis is ``κ_w · κ_x``. Chapter 2 uses this for
    the tolerance of ``Var[Σ w_i x_i]``.

    Parameters
    ----------
    term_kurtosis
        The kurtosis (not the excess) of one term, at least 1.
    n_terms
        How many independent terms are summed.

    Returns
    -------
    float
        ``3 + (term_kurtosis - 3) / n_terms``.

    Raises
    ------
    ValueError
        If ``term_kurtosis`` is below 1 or ``n_terms`` is not an integer >= 1.
    """
    if isinstance(term_kurtosis, bool) or not isinstance(term_kurtosis, (int, float, np.floating)) \
            or not term_kurtosis >= 1:
        raise ValueError(f"term_kurtosis must be a number >= 1, got {term_kurtosis!r}")
    count = require_int(n_terms, "n_terms")
    return 3.0 + (float(term_kurtosis) - 3.0) / count
