"""Uncertainty of a measured number: confidence intervals from seeds, binomial errors of single
runs, and tie bands of timing ratios.

Every number the claims table (:mod:`ev2lite.claims`) reports carries one :class:`Estimate`,
whose ``kind`` says where its interval comes from:

``seeds``
    a 95% Student-t interval over independent runs (seeds) with ``n - 1`` degrees of freedom
    (:func:`t_interval`), of paired differences where both arms share a seed; from summaries
    (mean, std, count per arm) a Welch-Satterthwaite interval (:func:`welch_interval`).
``models``
    the same t-interval over a sample of models (e.g. the searched models of a Pareto front).
``binomial``
    a single run's test accuracy ``p`` on ``n`` test images: standard error
    ``sqrt(p (1 - p) / n)``, 95% normal interval (:func:`binomial_interval`).
``iqr``
    a timing ratio ``r`` of two timings with relative interquartile spreads ``a`` and ``b``
    percent: the tie band ``r / (1 + s) .. r * (1 + s)``, ``s = (a + b) / 100``
    (:func:`tie_band`); the ratio is a tie when the band includes 1, i.e.
    ``|log r| <= log(1 + s)``.
``exact``
    a count (parameters, multiply-adds): no uncertainty.
``none``
    no interval could be made (one run and no test-set size, a spread that was not saved);
    ``note`` says why.

Intervals use ``scipy.stats`` (``t.ppf``, ``norm.ppf``). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
KINDS = ("seeds", "models", "binomial", "iqr", "exact", "none")
NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A measured value with its interval.

    ``value`` in the claim's unit; ``low``, ``high`` the interval at ``confidence`` (95%
    unless a design says otherwise, e.g. a two-look sequential design; ``kind`` ``seeds``,
    ``models``, ``binomial``), the tie band (``iqr``), ``value`` itself (``exact``) or NaN
    (``none``); ``n`` the number of seeds, models or test images behind it; ``note`` how the
    interval was made (or why there is none); ``detail`` other computed facts worth showing.
    """

    value: float
    low: float = NAN
    high: float = NAN
    kind: str = "none"
    n: int | None = None
    note: str = ""
    detail: str = ""
    confidence: float = CONFIDENCE

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind of uncertainty {self.kind!r}: one of {KINDS}")

    @property
    def has_interval(self) -> bool:
        """Whether both ends of the interval are numbers."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    def side(self, null: float) -> int:
        """Which side of ``null`` (the value of no effect) the whole interval lies on: ``1``
        above, ``-1`` below, ``0`` when it includes ``null`` or there is no interval (a tie)."""
        if not self.has_interval or self.low <= null <= self.high:
            return 0
        return 1 if self.low > null else -1

    def scaled(self, factor: float, offset: float = 0.0) -> "Estimate":
        """The same estimate of ``factor * x + offset`` (ends swapped for a negative factor)."""
        ends = sorted((factor * self.low + offset, factor * self.high + offset))
        return replace(self, value=factor * self.value + offset, low=ends[0], high=ends[1])


def t_interval(values: Sequence[float], *, kind: str = "seeds", note: str = "",
               confidence: float = CONFIDENCE) -> Estimate:
    """Mean of ``values`` with its Student-t interval (``n - 1`` degrees of freedom).

    With fewer than two values, or identical values (a spread that was not observed), the
    interval is NaN and ``kind`` becomes ``none`` (the note says so). Raises ``ValueError`` for
    an empty sequence or NaN values.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0 or np.isnan(x).any():
        raise ValueError(f"t_interval needs at least one number and no NaN; got {x.tolist()}")
    mean = float(x.mean())
    unit = {"seeds": "seed", "models": "model"}.get(kind, "value")
    if x.size < 2:
        return Estimate(mean, kind="none", n=int(x.size),
                        note=f"one {unit} only: no interval" + (f" ({note})" if note else ""))
    if np.ptp(x) == 0:  # identical values (e.g. every run at chance): the noise is not observed
        return Estimate(mean, kind="none", n=int(x.size),
                        note=f"{x.size} identical {unit} values: no spread, no interval")
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    what = f"{x.size} {unit}s" + (f", {note}" if note else "")
    return Estimate(mean, mean - half, mean + half, kind, int(x.size), what, confidence=confidence)


def seeds_to_decide(mean: float, std: float, *, confidence: float = CONFIDENCE,
                    at_most: int = 1000) -> float:
    """How many independent seeds a paired difference would need for its Student-t interval to
    exclude 0, if further seeds kept the observed ``mean`` and ``std`` (of the per-seed
    differences): the smallest ``n >= 2`` with ``t(0.5 + confidence / 2, n - 1) * std /
    sqrt(n) < |mean|``. A planning figure for "inconclusive at this budget", not a promise: the
    mean itself is uncertain. ``inf`` beyond ``at_most`` seeds or for a zero mean; NaN for a NaN
    input."""
    if math.isnan(mean) or math.isnan(std):
        return NAN
    if std == 0:
        return 2.0 if mean != 0 else math.inf
    for n in range(2, at_most + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) < abs(mean):
            return float(n)
    return math.inf


def welch_interval(means: Sequence[float], stds: Sequence[float], counts: Sequence[int],
                   weights: Sequence[float], *, confidence: float = CONFIDENCE) -> Estimate:
    """``sum(w_i * mean_i)`` over independent groups summarized by mean, standard deviation
    (``ddof=1``) and count, with a t-interval whose degrees of freedom follow Welch and
    Satterthwaite: ``(sum v_i)^2 / sum(v_i^2 / (n_i - 1))``, ``v_i = w_i^2 s_i^2 / n_i``.

    Used when only summaries were saved (no per-seed values): it ignores any pairing of the
    groups by seed, so it is wider than a paired interval. A group with fewer than two runs, or
    no spread in any group, leaves the interval NaN (kind ``none``). Raises ``ValueError`` for
    sequences of unequal length.
    """
    m, s, n, w = (np.asarray(v, dtype=float) for v in (means, stds, counts, weights))
    if not len(m) == len(s) == len(n) == len(w) or len(m) == 0:
        raise ValueError("welch_interval needs means, stds, counts and weights of one length")
    value = float((w * m).sum())
    if (n < 2).any():
        return Estimate(value, kind="none", n=int(n.min()),
                        note="a group has one run only: no interval from seeds")
    v = w ** 2 * s ** 2 / n
    total = v.sum()
    if total == 0:
        return Estimate(value, kind="none", n=int(n.min()),
                        note=f"{int(n.min())} seeds per group and no spread between them: no interval")
    df = total ** 2 / (v ** 2 / (n - 1)).sum()
    half = stats.t.ppf(0.5 + confidence / 2, df) * math.sqrt(total)
    counts_text = "/".join(str(int(c)) for c in sorted(set(n)))
    return Estimate(value, value - half, value + half, "seeds", int(n.min()),
                    f"{counts_text} seeds per group, Welch from mean and std (per-seed values "
                    f"not saved), {df:.1f} df")


def binomial_interval(accuracies: Sequence[float], n_test: int, weights: Sequence[float], *,
                      confidence: float = CONFIDENCE) -> Estimate:
    """``sum(w_i * p_i)`` of single-run test accuracies ``p_i`` (fractions, 0-1), each measured
    on ``n_test`` images, with the normal interval of the binomial standard errors
    ``sqrt(p_i (1 - p_i) / n_test)`` (independent test draws assumed; the same test images
    make a difference of two runs somewhat tighter than this). Raises ``ValueError`` for an
    accuracy outside 0-1 or ``n_test < 1``.
    """
    p, w = np.asarray(accuracies, dtype=float), np.asarray(weights, dtype=float)
    if n_test < 1 or ((p < 0) | (p > 1)).any():
        raise ValueError(f"binomial_interval needs accuracies in 0-1 and n_test >= 1; got {p.tolist()}, {n_test}")
    value = float((w * p).sum())
    se = math.sqrt(float((w ** 2 * p * (1 - p) / n_test).sum()))
    half = stats.norm.ppf(0.5 + confidence / 2) * se
    return Estimate(value, value - half, value + half, "binomial", int(n_test),
                    f"single runs, binomial error on {n_test} test images")


def tie_band(ratio: float, spreads_pct: Sequence[float], note: str = "") -> Estimate:
    """A timing ratio with its tie band ``ratio / (1 + s) .. ratio * (1 + s)``, where ``s`` is
    the sum of the relative interquartile spreads (percent of the median) of the timings in
    the ratio, over 100. NaN spreads (not saved) and zero spreads (a single repeat: not
    observed) give kind ``none``. Raises ``ValueError`` for a ratio that is not positive or a
    negative spread.
    """
    spreads = np.asarray(spreads_pct, dtype=float)
    if not ratio > 0 or (spreads < 0).any():
        raise ValueError(f"tie_band needs a positive ratio and spreads >= 0; got {ratio}, {spreads.tolist()}")
    if np.isnan(spreads).any() or spreads.size == 0:
        return Estimate(ratio, kind="none", note="the timings' spread was not saved: no tie band"
                        + (f" ({note})" if note else ""))
    if (spreads == 0).any():  # one repeat: a timing whose spread was not observed
        return Estimate(ratio, kind="none", note="a single timing (zero spread): no tie band"
                        + (f" ({note})" if note else ""))
    s = float(spreads.sum()) / 100
    return Estimate(ratio, ratio / (1 + s), ratio * (1 + s), "iqr", None,
                    f"±{100 * s:.0f}% interquartile spread" + (f", {note}" if note else ""))


def geometric_tie_band(ratios: Sequence[float], spreads_pct: Sequence[float], note: str = "") -> Estimate:
    """The geometric mean of several timing ratios (e.g. one per model pair), with the tie band
    of the *mean* relative spread ``s = mean(s_i)``, ``s_i`` the summed spreads of pair ``i``
    in percent (one pair's band, not narrowed by averaging: a conservative choice). Raises
    ``ValueError`` for unequal lengths or a ratio that is not positive.
    """
    r, s = np.asarray(ratios, dtype=float), np.asarray(spreads_pct, dtype=float)
    if len(r) != len(s) or len(r) == 0 or (r <= 0).any():
        raise ValueError(f"geometric_tie_band needs positive ratios and one spread each; got {r.tolist()}, {s.tolist()}")
    mean = float(np.exp(np.log(r).mean()))
    if len(r) == 1:
        return tie_band(mean, [s[0]], note)
    what = f"geometric mean of {len(r)} ratios" + (f", {note}" if note else "")
    return tie_band(mean, [float(s.mean())], what)


def relative_iqr(values: Sequence[float]) -> float:
    """Interquartile range over the median of ``values``, in percent (numpy's linear
    quantiles); NaN for fewer than two values. The spread measure of ``ev2lite.measure``'s
    ``iqr_percent``."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return NAN
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return float(100 * (q75 - q25) / q50)
