"""Two-proportion comparison for A/B tests (docs/analytics.md, "Experiments"), in plain Python.

The z-test pools both samples for the p-value (the null hypothesis says the rates are equal);
the confidence interval of the difference uses the unpooled (Wald) standard error. Both are the
normal approximation, which needs enough users and enough conversions on each side: under
MIN_USERS users or MIN_EVENTS conversions or non-conversions in an arm the reading is "not
enough data" (the usual np >= 5 rule of thumb, and 100 users so one user moves a rate by 1 point
at most)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MIN_EVENTS", "MIN_USERS", "Comparison", "two_proportions"]

MIN_USERS = 100
MIN_EVENTS = 5
_Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


@dataclass(frozen=True)
class Comparison:
    rate_a: float
    rate_b: float
    difference: float  # rate_b - rate_a
    z: float
    p_value: float  # two-sided
    ci_low: float  # 95% interval of the difference
    ci_high: float
    enough_data: bool


def two_proportions(x_a: int, n_a: int, x_b: int, n_b: int) -> Comparison:
    """`x` conversions of `n` users in arms a (control) and b."""
    ra = x_a / n_a if n_a else 0.0
    rb = x_b / n_b if n_b else 0.0
    d = rb - ra
    enough = all(n >= MIN_USERS for n in (n_a, n_b)) and all(k >= MIN_EVENTS for k in (x_a, n_a - x_a, x_b, n_b - x_b))
    if not (n_a and n_b):
        return Comparison(ra, rb, d, 0.0, 1.0, -1.0, 1.0, False)
    pooled = (x_a + x_b) / (n_a + n_b)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    z = d / se0 if se0 > 0 else 0.0
    p = math.erfc(abs(z) / math.sqrt(2))  # = 2 * (1 - Phi(|z|))
    se = math.sqrt(ra * (1 - ra) / n_a + rb * (1 - rb) / n_b)
    return Comparison(ra, rb, d, z, p, d - _Z95 * se, d + _Z95 * se, enough)
