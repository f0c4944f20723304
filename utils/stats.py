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
    "RISK",
    "LINE_WIDTH",
    "risk_quantile",
    "Verdict",
    "claim",
    "assert_claims",
    "quote_holds",
    "range_holds",
    "sign_holds",
    "bounds_hold",
    "fresh_seed_failure",
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


#: The course's risk budget. A check of a true claim may fail by chance at most once in a
#: million runs, on any seeds and any machine. A 5-sigma Monte-Carlo bound meets it (two-sided
#: normal tail 5.7e-7); a claim about a mean over ``n`` seeds meets it through
#: :func:`risk_quantile`. "How this course checks a claim" derives both.
RISK = 1e-6


def risk_quantile(n: int, risk: float = RISK) -> float:
    """How many standard errors a mean of ``n`` values may stray from its true value at ``risk``.

    The mean ``m`` of ``n`` independent, roughly normal values, with ``se = s / sqrt(n)`` from
    their sample standard deviation ``s``, satisfies ``P(|m - mu| > q·se) = risk`` for
    ``q = t_{n-1}(1 - risk/2)``, the Student quantile with ``n - 1`` degrees of freedom. With the
    course's ``risk = 1e-6``: 11.6 for 10 seeds, 7.1 for 20, 5.2 for 100, tending to 4.9 (the
    normal's). Few seeds pay twice, through ``se`` and through ``q`` (1000 for 3 seeds).

    Parameters
    ----------
    n
        The number of values averaged, at least 2.
    risk
        The two-sided probability, strictly between 0 and 1.

    Returns
    -------
    float
        ``t_{n-1}(1 - risk/2)``.

    Raises
    ------
    ValueError
        If ``n`` is not an integer >= 2 or ``risk`` is not in (0, 1).
    """
    from scipy import stats as scipy_stats

    count = require_int(n, "n", minimum=2)
    if isinstance(risk, bool) or not _is_number(risk) or not 0 < risk < 1:
        raise ValueError(f"risk must be a probability strictly between 0 and 1, got {risk!r}")
    return float(scipy_stats.t.isf(float(risk) / 2, count - 1))


#: The widest line a check cell prints (what the book's code column shows without scrolling).
LINE_WIDTH = 99


@dataclass(frozen=True)
class Verdict:
    """Whether one claim holds, with what was compared: one line of a check cell's output.

    ``bool(verdict)`` is ``holds``, so ``assert quote_holds(...)`` works;
    :func:`assert_claims` prints the lines and fails with the detail.

    Attributes
    ----------
    claim
        The claim in words, as the text states it.
    holds
        Whether the measurement supports it.
    detail
        What was compared, e.g. "mean 0.42 ± 0.03 (11.6 se at n=10), quote 0.4 ± 0.05".
    """

    claim: str
    holds: bool
    detail: str

    def __bool__(self) -> bool:
        return bool(self.holds)

    def __str__(self) -> str:
        import textwrap

        line = f"{self.claim}: {self.detail}: {'holds' if self.holds else 'DOES NOT HOLD'}"
        # at most LINE_WIDTH characters a line, continuation lines indented: it fits the page
        return textwrap.fill(line, width=LINE_WIDTH, subsequent_indent="    ",
                             break_long_words=False, break_on_hyphens=False)


def claim(text: str, holds: Any, detail: str = "") -> Verdict:
    """A :class:`Verdict` for a claim checked by the caller's own comparison.

    Parameters
    ----------
    text
        The claim in words ("the width ratio is 2.1").
    holds
        The comparison's result (anything NumPy or Python can turn into one bool).
    detail
        What was compared ("2.094 vs 2.1 ± 0.03, 5 sigma").

    Returns
    -------
    Verdict

    Raises
    ------
    ValueError
        If ``text`` is not a non-empty string, or ``holds`` is not a single truth value.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be the claim in words, a non-empty string, got {text!r}")
    if not isinstance(detail, str):
        raise ValueError(f"detail must be a string, got {detail!r}")
    array = np.asarray(holds)
    if array.shape != () or array.dtype.kind not in "biu":
        raise ValueError(f"holds must be one truth value (use all(...) or any(...) for many), "
                         f"got {holds!r}")
    return Verdict(text.strip(), bool(array), detail)


def assert_claims(*verdicts: Verdict) -> None:
    """Print one line per claim, then raise ``AssertionError`` naming those that do not hold.

    A check cell ends with it: ``assert_claims(quote_holds(...), sign_holds(...))``.

    Parameters
    ----------
    *verdicts
        At least one :class:`Verdict` (from :func:`claim`, :func:`quote_holds`,
        :func:`range_holds` or :func:`sign_holds`).

    Raises
    ------
    ValueError
        If no verdict is given, or an argument is not a :class:`Verdict`.
    AssertionError
        If any claim does not hold; the message lists them with their detail.
    """
    if not verdicts:
        raise ValueError("assert_claims needs at least one Verdict")
    for verdict in verdicts:
        if not isinstance(verdict, Verdict):
            raise ValueError(f"every argument must be a Verdict (from claim, quote_holds, "
                             f"range_holds or sign_holds), got {verdict!r}")
    for verdict in verdicts:
        print(verdict)
    failed = [str(verdict) for verdict in verdicts if not verdict.holds]
    if failed:
        raise AssertionError("; ".join(failed))


def _standard_error(interval: Interval) -> float:
    """The standard error behind a Student-t :class:`Interval`: half-width over its quantile."""
    from scipy import stats as scipy_stats

    if not isinstance(interval, Interval):
        raise ValueError(f"interval must be an Interval (from mean_ci or paired_difference), "
                         f"got {interval!r}")
    if interval.n < 2:
        raise ValueError(f"interval must come from at least two values, got n={interval.n}")
    t = scipy_stats.t.ppf(0.5 + interval.confidence / 2, interval.n - 1)
    return interval.half_width / t


def _number(text: Any, argument: str) -> tuple[float, int]:
    if not isinstance(text, str) or not re.fullmatch(r"[+-]?\d+(\.\d+)?", text.strip()):
        raise ValueError(f"{argument} must be a decimal number written as text, exactly as the "
                         f"prose writes it (e.g. \"0.4\"), got {text!r}")
    return float(text), len(text.strip().partition(".")[2])


def quote_holds(interval: Interval, quoted: str, risk: float = RISK) -> Verdict:
    """Whether a number the prose quotes for a mean over seeds holds, at its own precision.

    A quote written with ``d`` decimals, such as ``"0.4"``, claims that the true mean lies within
    half a unit of its last digit, ``p = 0.5·10^-d`` (0.35 to 0.45). A fresh run (other seeds,
    another CPU) measures the mean with standard error ``se``; it strays more than
    ``q·se`` from the true mean with probability ``risk``, for ``q`` from
    :func:`risk_quantile`. So the check passes when ``|mean - quote| <= p + q·se``: a true quote
    fails with probability at most ``risk``. That is only a check if the slack ``q·se`` is no
    wider than the quote's own precision ``p``: otherwise quotes of either sign, or a digit
    apart, would pass on the same data. Then the quote is *under-supported* and the verdict does
    not hold: measure more seeds, or write a range (:func:`range_holds`).

    Parameters
    ----------
    interval
        The measured mean with its Student-t interval (:func:`mean_ci`, or the ``difference``
        of :func:`paired_difference`); its half-width gives ``se``.
    quoted
        The number exactly as the text writes it, e.g. ``"0.4"`` or ``"110"``.
    risk
        The chance that a true quote fails, :data:`RISK` by default.

    Returns
    -------
    Verdict
        True (``holds``) if the quote is supported and within the slack.

    Raises
    ------
    ValueError
        If ``interval`` is not an :class:`Interval` of at least two values, ``quoted`` is not a
        decimal number written as text, or ``risk`` is not in (0, 1).
    """
    se = _standard_error(interval)
    value, decimals = _number(quoted, "quoted")
    precision = 0.5 * 10.0**-decimals
    slack = risk_quantile(interval.n, risk) * se
    measured = (f"mean {interval.mean:.4g} (n={interval.n}, slack {slack:.2g}), "
                f"quote {quoted.strip()} ± {precision:g}")
    if slack > precision:
        return Verdict(f"the mean is {quoted.strip()}", False,
                       f"{measured}: under-supported, the slack is wider than the quote's "
                       "precision; use more seeds or quote a range")
    return Verdict(f"the mean is {quoted.strip()}",
                   abs(interval.mean - value) <= precision + slack, measured)


def range_holds(interval: Interval, low: str, high: str, risk: float = RISK) -> Verdict:
    """Whether a range the prose quotes for a mean over seeds ("between 0.3 and 0.6") holds.

    As :func:`quote_holds`, with the range in place of the quote's rounding interval: the check
    passes when ``low - q·se <= mean <= high + q·se``, so a true range fails with probability at
    most ``risk``; it is under-supported (the verdict does not hold) when the slack ``q·se`` is
    wider than half the range.

    Parameters
    ----------
    interval
        The measured mean with its Student-t interval.
    low, high
        The range's ends exactly as the text writes them, ``low < high``.
    risk
        The chance that a true range fails, :data:`RISK` by default.

    Returns
    -------
    Verdict

    Raises
    ------
    ValueError
        As :func:`quote_holds`, and if ``low >= high``.
    """
    se = _standard_error(interval)
    lower, _ = _number(low, "low")
    upper, _ = _number(high, "high")
    if not lower < upper:
        raise ValueError(f"low must be smaller than high, got low={low!r}, high={high!r}")
    slack = risk_quantile(interval.n, risk) * se
    text = f"the mean lies between {low.strip()} and {high.strip()}"
    measured = f"mean {interval.mean:.4g} (n={interval.n}, slack {slack:.2g})"
    if slack > (upper - lower) / 2:
        return Verdict(text, False, f"{measured}: under-supported, the slack is wider than half "
                                    "the range; use more seeds or a wider range")
    return Verdict(text, lower - slack <= interval.mean <= upper + slack, measured)


def fresh_seed_failure(t_statistic: float, n: int, threshold: float) -> float:
    """Chance that ``n`` fresh seeds give a t statistic below ``threshold``, at the measured effect.

    If the true standardised effect is ``d``, the t statistic of ``n`` fresh values follows a
    noncentral t with ``n - 1`` degrees of freedom and noncentrality ``d·sqrt(n)``. Plugging in
    the measured ``t_statistic`` for ``d·sqrt(n)`` estimates how often a re-run fails a check
    that needs ``t >= threshold``. It is an estimate at the measured effect, not a bound: the
    course's held-out-seed runs are its test.

    Parameters
    ----------
    t_statistic
        The measured ``mean / se`` on the claimed side (positive when the claim holds).
    n
        The number of values, at least 2.
    threshold
        The t statistic the check needs.

    Returns
    -------
    float
        A probability in [0, 1].

    Raises
    ------
    ValueError
        If an argument is not finite or ``n`` is not an integer >= 2.
    """
    from scipy import stats as scipy_stats

    statistic = require_finite(t_statistic, "t_statistic")
    count = require_int(n, "n", minimum=2)
    needed = require_finite(threshold, "threshold")
    if statistic <= 0:
        return 1.0 if needed >= 0 else float(scipy_stats.t.sf(-needed, count - 1))
    return float(min(1.0, max(0.0, scipy_stats.nct.cdf(needed, count - 1, statistic))))


def bounds_hold(interval: Interval, low: float | None = None, high: float | None = None,
                what: str = "the mean") -> Verdict:
    """Whether the measurement shows the bounds the prose claims ("between 0.5 and 0.65").

    Each bound is a sign claim of its own (the mean minus ``low`` is positive; ``high`` minus
    the mean is positive), checked as :func:`sign_holds` checks a sign: the interval must lie
    beyond the bound, so a mean on the wrong side of a bound fails, and no data pass a bound and
    its negation. The detail gives :func:`fresh_seed_failure` for the nearer bound: the chance
    that fresh seeds fail the check, at the measured distance. Where the prose writes a range
    that the seeds cannot support at the one-in-a-million level of :func:`range_holds`, this is
    the check: the range's ends are claims the interval clears.

    Parameters
    ----------
    interval
        The mean (or paired difference) with its Student-t interval.
    low, high
        The claimed bounds; at least one, ``low < high`` when both are given.
    what
        The quantity in words, for the verdict.

    Returns
    -------
    Verdict

    Raises
    ------
    ValueError
        If ``interval`` is not an :class:`Interval` of two or more values, no bound is given,
        a bound is not finite, or ``low >= high``.
    """
    from scipy import stats as scipy_stats

    se = _standard_error(interval)
    if low is None and high is None:
        raise ValueError("give low, high or both: the bounds the text claims")
    lower = None if low is None else require_finite(low, "low")
    upper = None if high is None else require_finite(high, "high")
    if lower is not None and upper is not None and not lower < upper:
        raise ValueError(f"low must be smaller than high, got low={low!r}, high={high!r}")
    needed = float(scipy_stats.t.ppf(0.5 + interval.confidence / 2, interval.n - 1))
    holds, chance, words = True, 0.0, []
    for bound, distance, beyond, word in (
            (lower, None if lower is None else interval.mean - lower,
             None if lower is None else interval.low > lower, "above"),
            (upper, None if upper is None else upper - interval.mean,
             None if upper is None else interval.high < upper, "below")):
        if bound is None:
            continue
        holds = holds and bool(beyond)
        if se > 0:
            bound_chance = fresh_seed_failure(distance / se, interval.n, needed)
        else:
            bound_chance = 0.0 if distance > 0 else 1.0
        chance = max(chance, bound_chance)
        words.append(f"{word} {bound:g}")
    percent = f"{100 * interval.confidence:g}%"
    return Verdict(f"{what} is {' and '.join(words)}", holds,
                   f"{interval.mean:.3g} ({percent} CI {interval.low:.3g} to {interval.high:.3g},"
                   f" n={interval.n}); fresh seeds fail this check with chance {chance:.1g}")


def sign_holds(interval: Interval, side: str, what: str = "the mean") -> Verdict:
    """Whether the measurement shows the sign the prose claims ("B is lower than A"), on its own.

    The check passes when ``interval`` excludes zero on the claimed side (``low > 0`` for
    ``side="positive"``, ``high < 0`` for ``"negative"``): :func:`bounds_hold` with the bound 0.
    The same data can never pass the claim and its negation. Whether the claim survives other
    seeds depends on how far the interval clears zero: the verdict's detail gives
    :func:`fresh_seed_failure`, the estimated chance that fresh seeds fail this check. A claim
    is written from a measurement where that chance is within :data:`RISK`; where it is not, use
    more seeds or say the sign is open.

    Parameters
    ----------
    interval
        The mean (or paired difference) with its Student-t interval.
    side
        ``"positive"`` or ``"negative"``.
    what
        The quantity in words, for the verdict ("He minus Glorot").

    Returns
    -------
    Verdict

    Raises
    ------
    ValueError
        If ``interval`` is not an :class:`Interval` of two or more values or ``side`` is not
        one of the two.
    """
    if side not in ("positive", "negative"):
        raise ValueError(f"side must be 'positive' or 'negative', got {side!r}")
    verdict = bounds_hold(interval, low=0.0 if side == "positive" else None,
                          high=0.0 if side == "negative" else None, what=what)
    return Verdict(f"{what} is {side}", verdict.holds, verdict.detail)


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
