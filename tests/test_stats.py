"""utils.stats: intervals that cover, paired tests that agree with SciPy, honest tolerances.

Every coverage check is itself a Monte-Carlo estimate, so its tolerance is derived the same
way: an exceedance rate over R independent repetitions is a binomial proportion, with standard
error sqrt(p (1 - p) / R); we allow five of those.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from utils.stats import (KURTOSIS, Interval, mean_ci, mean_tolerance, paired_difference,
                         pointwise_mean_ci, require_finite, require_int, require_nonnegative,
                         require_positive, require_seed,
                         std_tolerance, sum_kurtosis, truncated_normal_moments,
                         variance_tolerance)


def binomial_tolerance(p: float, repetitions: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / repetitions)


def test_mean_ci_matches_scipy_t_interval():
    values = [1.0, 2.5, 2.0, 4.0]
    interval = mean_ci(values, confidence=0.9)
    low, high = stats.t.interval(0.9, df=3, loc=np.mean(values), scale=stats.sem(values))
    assert interval.mean == pytest.approx(np.mean(values))
    assert (interval.low, interval.high) == pytest.approx((low, high), rel=1e-12)
    assert interval.n == 4 and interval.confidence == 0.9
    assert interval.half_width == pytest.approx((high - low) / 2)
    assert np.mean(values) in interval and 100.0 not in interval
    assert str(interval).startswith("2.375 (90% CI")


def test_three_seeds_use_the_t_quantile_not_1_96():
    interval = mean_ci([0.0, 1.0, 2.0])
    # s = 1, n = 3: half-width t_{0.975,2} / sqrt(3) = 4.303 / 1.732
    assert interval.half_width == pytest.approx(stats.t.ppf(0.975, 2) / math.sqrt(3))
    assert interval.half_width > 1.96 / math.sqrt(3) * 2


def test_mean_ci_covers_the_true_mean_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    repetitions, n = 4000, 5
    draws = rng.normal(3.0, 2.0, size=(repetitions, n))
    covered = np.mean([3.0 in mean_ci(row) for row in draws])
    assert abs(covered - 0.95) <= binomial_tolerance(0.95, repetitions)


@pytest.mark.parametrize("bad, message", [
    ([1.0], "at least 2 values"),
    ([[1.0, 2.0], [3.0, 4.0]], "one-dimensional"),
    ([1.0, float("nan")], "finite"),
    ("abc", "sequence of numbers"),
])
def test_mean_ci_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        mean_ci(bad)


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1, True, "0.95"])
def test_mean_ci_rejects_bad_confidence(confidence):
    with pytest.raises(ValueError, match="confidence must be a number strictly between 0 and 1"):
        mean_ci([1.0, 2.0], confidence=confidence)


def test_paired_difference_agrees_with_scipy():
    a = np.array([2.30, 2.31, 2.29, 2.30, 2.32])
    b = np.array([1.10, 1.50, 1.30, 1.00, 1.40])
    result = paired_difference(a, b)
    reference = stats.ttest_rel(a, b)
    assert result.t_statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert result.wilcoxon_p_value == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert result.difference.mean == pytest.approx(np.mean(a - b))
    assert result.difference.low > 0
    assert "Wilcoxon p" in str(result)


def test_pairing_removes_the_shared_seed_effect():
    # Each seed shifts both arms by the same large amount; the treatment adds 0.1 to arm a.
    rng = np.random.default_rng(1)
    seed_effect = rng.normal(0, 1.0, size=6)
    a = seed_effect + 0.1 + rng.normal(0, 0.01, size=6)
    b = seed_effect + rng.normal(0, 0.01, size=6)
    paired = paired_difference(a, b)
    independent_a, independent_b = mean_ci(a), mean_ci(b)
    assert paired.difference.low > 0  # the paired interval sees the effect ...
    assert independent_a.low < independent_b.high  # ... two separate intervals overlap


def test_paired_difference_with_identical_or_constant_differences():
    same = paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.p_value == 1.0 and same.t_statistic == 0.0 and same.wilcoxon_p_value is None
    shifted = paired_difference([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.p_value == 0.0 and math.isinf(shifted.t_statistic)


def test_paired_difference_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="a and b must have the same length"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="b must hold at least 2 values"):
        paired_difference([1.0, 2.0], [1.0])


def test_mean_tolerance_has_the_normal_exceedance_rates():
    rng = np.random.default_rng(2)
    repetitions, n = 20_000, 400
    means = rng.exponential(1.0, size=(repetitions, n)).mean(axis=1)  # std 1, skewed draws
    error = np.abs(means - 1.0)
    two_sigma_rate = np.mean(error > mean_tolerance(1.0, n, sigmas=2))
    expected = 2 * stats.norm.sf(2)
    assert abs(two_sigma_rate - expected) <= binomial_tolerance(expected, repetitions)
    assert np.all(error <= mean_tolerance(1.0, n, sigmas=5))
    assert mean_tolerance(2.0, 100) == pytest.approx(5 * 2.0 / 10)


@pytest.mark.parametrize("name, draw", [
    ("normal", lambda rng, size: rng.normal(size=size)),
    ("uniform", lambda rng, size: rng.uniform(-1, 1, size=size)),
])
def test_variance_tolerance_formula_matches_simulation(name, draw):
    # Var[s^2]/sigma^4 = 2/(n-1) + (kappa-3)/n: check it against the spread of many s^2.
    rng = np.random.default_rng(3)
    repetitions, n = 20_000, 50
    samples = draw(rng, (repetitions, n))
    true_variance = 1.0 if name == "normal" else 1 / 3
    relative = samples.var(axis=1, ddof=1) / true_variance - 1
    predicted_sd = variance_tolerance(n, sigmas=1, kurtosis=KURTOSIS[name])
    # The s.d. of `relative` is itself estimated from R draws; s^2 of n=50 draws is close to
    # normal (kurtosis about 3 + 12/(n-1)), so its relative error is std_tolerance(R, 5, 3.3).
    assert abs(relative.std(ddof=1) / predicted_sd - 1) <= std_tolerance(repetitions, 5, 3.3)


def test_variance_tolerance_values_and_errors():
    assert variance_tolerance(101, sigmas=1) == pytest.approx(math.sqrt(2 / 100))
    assert variance_tolerance(100, 5, kurtosis=1.8) == pytest.approx(5 * math.sqrt(2 / 99 - 1.2 / 100))
    assert std_tolerance(101, 2) == pytest.approx(variance_tolerance(101, 2) / 2)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        variance_tolerance(1)
    with pytest.raises(ValueError, match="kurtosis must be a finite number >= 1"):
        variance_tolerance(10, kurtosis=0.5)
    with pytest.raises(ValueError, match="sigmas must be a positive finite number"):
        variance_tolerance(10, sigmas=0)
    with pytest.raises(ValueError, match="std must be a positive finite number"):
        mean_tolerance(-1.0, 10)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        mean_tolerance(1.0, 0)


def test_kurtosis_table_matches_scipy():
    assert KURTOSIS["normal"] == 3.0
    assert KURTOSIS["uniform"] == pytest.approx(stats.uniform.stats(moments="k") + 3)
    assert KURTOSIS["truncated_normal"] == pytest.approx(stats.truncnorm(-2, 2).stats(moments="k") + 3,
                                                         rel=1e-12)


def test_sum_kurtosis():
    assert sum_kurtosis(KURTOSIS["uniform"], 2) == pytest.approx(2.4)  # the triangular distribution
    assert sum_kurtosis(9.0, 1) == 9.0  # one exponential term
    assert sum_kurtosis(9.0, 1000) == pytest.approx(3.006)
    with pytest.raises(ValueError, match="term_kurtosis must be a number >= 1"):
        sum_kurtosis(0.2, 3)
    with pytest.raises(ValueError, match="n_terms must be an integer >= 1"):
        sum_kurtosis(3.0, 0)


def test_interval_is_a_plain_value():
    interval = Interval(1.0, 0.5, 1.5, 0.95, 3)
    assert interval.half_width == 0.5
    assert 0.5 in interval and 1.6 not in interval


def test_pointwise_mean_ci_is_mean_ci_at_every_point():
    runs = np.random.default_rng(4).normal(size=(5, 7))
    mean, low, high = pointwise_mean_ci(runs, confidence=0.9)
    for column in range(7):
        interval = mean_ci(runs[:, column], confidence=0.9)
        assert (mean[column], low[column], high[column]) == pytest.approx(
            (interval.mean, interval.low, interval.high), rel=1e-14)
    with pytest.raises(ValueError, match=r"runs must have shape \(n_runs >= 2, n_points\)"):
        pointwise_mean_ci(runs[:1])
    with pytest.raises(ValueError, match="runs must be finite"):
        pointwise_mean_ci([[1.0, np.nan], [2.0, 3.0]])
    with pytest.raises(ValueError, match="confidence must be a number strictly between 0 and 1"):
        pointwise_mean_ci(runs, confidence=1.0)


@pytest.mark.parametrize("low, high", [(-2, 2), (-1.5, 1.5), (1, 3), (-1, 4), (-100, 100),
                                       (-0.3, 0.2), (-math.inf, 0), (0, math.inf),
                                       (-math.inf, math.inf), (2.5, 4)])
def test_truncated_normal_moments_match_scipy(low, high):
    moments = truncated_normal_moments(low, high)
    mean, variance, kurtosis = stats.truncnorm.stats(low, high, moments="mvk")
    # closed forms against SciPy's: both accurate to ~1e-13 here; allow 1e-11
    assert moments.mean == pytest.approx(float(mean), rel=1e-11, abs=1e-14)
    assert moments.std == pytest.approx(math.sqrt(float(variance)), rel=1e-11)
    assert moments.kurtosis == pytest.approx(float(kurtosis) + 3, rel=1e-11)


def test_truncated_normal_moments_are_keras_constant_and_check_bounds():
    assert truncated_normal_moments().std == pytest.approx(0.87962566103423978, rel=1e-15)
    assert KURTOSIS["truncated_normal"] == truncated_normal_moments(-2, 2).kurtosis
    with pytest.raises(ValueError, match="low must be smaller than high"):
        truncated_normal_moments(1.0, 1.0)
    with pytest.raises(ValueError, match="high must be a number"):
        truncated_normal_moments(0.0, "2")
    with pytest.raises(ValueError, match="has probability 0"):
        truncated_normal_moments(50.0, 60.0)


def test_argument_checks():
    assert require_int(np.int64(3), "n") == 3 and require_int(0, "n", minimum=0) == 0
    assert require_positive(np.float32(0.5), "x") == 0.5
    assert require_seed(2**32 - 1) == 2**32 - 1
    for bad in (True, 2.0, 0, "3"):
        with pytest.raises(ValueError, match=r"count must be an integer >= 1, got"):
            require_int(bad, "count")
    for bad in (0, -1.0, math.inf, math.nan, True, "1"):
        with pytest.raises(ValueError, match="rate must be a positive finite number, got"):
            require_positive(bad, "rate")
    for bad in (-1, 2**32, 1.0, False):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            require_seed(bad)


def test_finite_and_nonnegative_checks():
    assert require_finite(np.float64(-2.5), "t") == -2.5 and require_nonnegative(0, "q") == 0.0
    for bad in (math.inf, -math.inf, math.nan, True, "1", None):
        with pytest.raises(ValueError, match="threshold must be a finite number, got"):
            require_finite(bad, "threshold")
    for bad in (-1e-12, math.inf, math.nan, False, "0"):
        with pytest.raises(ValueError, match="smoothing must be a finite number >= 0, got"):
            require_nonnegative(bad, "smoothing")


def test_risk_quantile_is_the_student_quantile_at_the_risk_budget():
    from scipy import stats

    from utils.stats import RISK, risk_quantile

    assert RISK == 1e-6
    for n in (2, 10, 100):
        q = risk_quantile(n)
        # by definition: the two tails beyond q hold exactly the risk
        assert 2 * stats.t.sf(q, n - 1) == pytest.approx(RISK, rel=1e-6)
    assert risk_quantile(10) > risk_quantile(100) > stats.norm.isf(RISK / 2)
    for bad in (1, 2.0, True):
        with pytest.raises(ValueError, match="n must be an integer >= 2"):
            risk_quantile(bad)
    with pytest.raises(ValueError, match="risk must be a probability"):
        risk_quantile(10, risk=1.0)


def _interval(mean, se, n, confidence=0.95):
    """An Interval with the given mean, standard error and count."""
    from scipy import stats

    from utils.stats import Interval

    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * se
    return Interval(mean, mean - half, mean + half, confidence, n)


def test_quote_holds_at_its_precision():
    from utils.stats import quote_holds, risk_quantile

    interval = _interval(0.42, 0.002, 20)  # slack 7.07 * 0.002 = 0.014, within 0.05
    slack = risk_quantile(20) * 0.002
    assert quote_holds(interval, "0.4")
    assert not quote_holds(interval, "0.5") and not quote_holds(interval, "-0.4")
    # the edge: a quote holds while |mean - quote| <= 0.05 + slack, and not beyond
    assert quote_holds(_interval(0.45 + slack - 0.001, 0.002, 20), "0.4")
    assert not quote_holds(_interval(0.45 + slack + 0.001, 0.002, 20), "0.4")


def test_quote_holds_rejects_an_under_supported_quote():
    from utils.stats import mean_ci, quote_holds

    # "about 40 %" from 3 seeds of sd 0.09: the slack (1000 * 0.052) dwarfs the quote's 0.05
    three = mean_ci([0.36, 0.45, 0.54])
    verdict = quote_holds(three, "0.4")
    assert not verdict and "under-supported" in verdict.detail
    # ... and its negation would have passed the old test, which only widened with the noise
    assert not quote_holds(three, "-0.4")
    # the same spread over 100 seeds supports one decimal but not two
    rng = np.random.default_rng(0)
    many = mean_ci(0.45 + 0.09 * rng.standard_normal(100))
    assert quote_holds(many, f"{many.mean:.1f}")
    assert "under-supported" in quote_holds(many, f"{many.mean:.2f}").detail


def test_a_quote_and_its_negation_never_both_hold():
    from utils.stats import quote_holds

    rng = np.random.default_rng(1)
    for _ in range(200):
        interval = _interval(rng.normal(0, 0.3), abs(rng.normal(0, 0.02)) + 1e-4,
                             int(rng.integers(2, 50)))
        for quoted in ("0.3", "0.1", "1.2"):
            assert not (quote_holds(interval, quoted) and quote_holds(interval, "-" + quoted))


def test_range_holds():
    from utils.stats import range_holds

    interval = _interval(0.45, 0.01, 10)  # slack 11.6 * 0.01 = 0.116
    assert range_holds(interval, "0.3", "0.6")
    assert not range_holds(interval, "0.6", "0.9")  # 0.45 < 0.6 - 0.116
    narrow = range_holds(interval, "0.4", "0.5")  # half-width 0.05 < slack
    assert not narrow and "under-supported" in narrow.detail
    with pytest.raises(ValueError, match="low must be smaller than high"):
        range_holds(interval, "0.6", "0.3")


def test_sign_holds_needs_the_interval_to_clear_zero_on_the_claimed_side():
    from utils.stats import sign_holds

    clear = _interval(0.3, 0.02, 10)
    assert sign_holds(clear, "positive") and not sign_holds(clear, "negative")
    open_sign = _interval(0.02, 0.02, 10)  # the interval covers zero
    assert not sign_holds(open_sign, "positive") and not sign_holds(open_sign, "negative")
    with pytest.raises(ValueError, match="side must be 'positive' or 'negative'"):
        sign_holds(clear, "up")


def test_fresh_seed_failure_is_the_noncentral_t_at_the_measured_effect():
    from scipy import stats

    from utils.stats import fresh_seed_failure

    # measured t = 15 on 10 seeds; a check needing t >= 2.262 (95 %) fails on fresh seeds when
    # the noncentral t (df 9, noncentrality 15) falls below 2.262
    assert fresh_seed_failure(15.0, 10, 2.262) == pytest.approx(stats.nct.cdf(2.262, 9, 15.0))
    assert fresh_seed_failure(15.0, 10, 2.262) < 1e-6 < fresh_seed_failure(5.0, 10, 2.262)
    assert fresh_seed_failure(-1.0, 10, 2.262) == 1.0


def test_assert_claims_prints_every_line_and_fails_with_the_detail(capsys):
    from utils.stats import assert_claims, claim

    good = claim("the ratio is 2.1", True, "2.094 vs 2.1 ± 0.03")
    bad = claim("the loss is log 10", np.bool_(False), "2.31 vs 2.303 ± 0.001")
    assert_claims(good)
    with pytest.raises(AssertionError, match="the loss is log 10: 2.31 vs 2.303"):
        assert_claims(good, bad)
    out = capsys.readouterr().out.splitlines()
    assert out == [str(good), str(good), str(bad)] and str(good).endswith(": holds")
    with pytest.raises(ValueError, match="at least one Verdict"):
        assert_claims()
    with pytest.raises(ValueError, match="must be a Verdict"):
        assert_claims(True)
    with pytest.raises(ValueError, match="holds must be one truth value"):
        claim("many", np.array([True, False]))
    with pytest.raises(ValueError, match="text must be the claim in words"):
        claim("", True)


@pytest.mark.parametrize("quoted, message", [(0.56, "quoted must be a decimal number"),
                                             ("about 0.5", "quoted must be a decimal number")])
def test_quote_holds_wants_the_quote_as_written(quoted, message):
    from utils.stats import mean_ci, quote_holds

    with pytest.raises(ValueError, match=message):
        quote_holds(mean_ci([1.0, 2.0, 3.0]), quoted)


def test_a_verdict_line_fits_the_page():
    from utils.stats import LINE_WIDTH, claim

    verdict = claim("a claim with a long description " * 3, True, "a long detail " * 8)
    lines = str(verdict).splitlines()
    assert len(lines) > 1 and all(len(line) <= LINE_WIDTH for line in lines)
    assert all(line.startswith("    ") for line in lines[1:])
    assert " ".join(part.strip() for part in lines).endswith(": holds")


def test_bounds_hold_checks_each_bound_as_a_sign():
    from utils.stats import bounds_hold, sign_holds

    interval = _interval(0.57, 0.01, 20)  # 95 % CI about 0.549 to 0.591
    assert bounds_hold(interval, 0.5, 0.65)
    assert not bounds_hold(interval, 0.56, 0.65)  # the interval reaches below 0.56
    assert not bounds_hold(interval, high=0.58)
    assert bounds_hold(interval, low=0.5) and "above 0.5" in bounds_hold(interval, low=0.5).claim
    # the same data never pass a bound and its negation
    assert not (bounds_hold(interval, low=0.57) and bounds_hold(interval, high=0.57))
    # a sign is the bound zero
    assert sign_holds(interval, "positive").holds == bounds_hold(interval, low=0.0).holds
    with pytest.raises(ValueError, match="give low, high or both"):
        bounds_hold(interval)
    with pytest.raises(ValueError, match="low must be smaller than high"):
        bounds_hold(interval, 0.7, 0.6)
