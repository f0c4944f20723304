"""The appendix "How this course checks a claim" (book/checking.md): its numbers, computed.

The page quotes a few numbers of the course's rules; each is recomputed here from the code the
rules live in, so the page cannot drift from ``utils.stats``.
"""
from __future__ import annotations

from pathlib import Path

from scipy import stats

from utils.stats import RISK, risk_quantile

# the page's text with line breaks as spaces, as a reader sees it
PAGE = " ".join((Path(__file__).resolve().parent.parent / "book" / "checking.md").read_text()
                .split())


def test_the_risk_quantiles_the_page_quotes():
    assert "11.6 for 10 seeds, 7.1 for 20, 5.2 for 100" in PAGE
    for n, text in {10: "11.6", 20: "7.1", 100: "5.2"}.items():
        assert f"{risk_quantile(n):.1f}" == text
    assert f"{stats.norm.isf(RISK / 2):.1f}" == "4.9" and "4.9 (the normal's)" in PAGE
    assert round(risk_quantile(3), -1) == 1000 and "$q$ is 1000" in PAGE


def test_five_sigma_is_inside_the_budget_as_the_page_says():
    tail = 2 * stats.norm.sf(5)
    assert f"{tail:.1e}" == "5.7e-07" and "$5.7 \\times 10^{-7}$" in PAGE and tail < RISK


def test_the_page_states_the_budget_as_the_code_does():
    assert RISK == 1e-6 and "$10^{-6}$" in PAGE and "once in a million runs" in PAGE


def test_about_forty_percent_from_three_seeds_is_under_supported_and_from_a_hundred_is_not():
    # the page's example: accuracies spread by 0.09 (their standard deviation)
    from utils.stats import Interval, quote_holds

    def interval(n):
        se = 0.09 / n**0.5
        half = stats.t.ppf(0.975, n - 1) * se
        return Interval(0.4, 0.4 - half, 0.4 + half, 0.95, n)

    assert "under-supported" in quote_holds(interval(3), "0.4").detail
    assert quote_holds(interval(100), "0.4")
    assert "from three seeds whose accuracies spread by 0.09 is under-supported" in PAGE
