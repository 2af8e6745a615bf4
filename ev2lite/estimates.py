"""From result files to estimates: select the rows a claim names, evaluate its expression, and
give the value its uncertainty (seeds, a binomial error, or a timing's tie band).

These are the generic estimators behind :mod:`ev2lite.claims` (expressions of ``claims.csv``) and
the measure functions of :mod:`ev2lite.claim_measures`; the intervals themselves come from
:mod:`ev2lite.stats`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import pandas as pd

from .stats import CONFIDENCE, Estimate, binomial_interval, geometric_tie_band, t_interval, tie_band, welch_interval


class NoRows(ValueError):
    """A ``where`` / ``versus`` selection matched no row of its result file."""




def select_rows(frame: pd.DataFrame, query: str, claim: str, file: str) -> pd.DataFrame:
    """The rows of ``frame`` that ``query`` selects (all rows for an empty query). Raises
    :class:`NoRows` for an empty selection and ``ValueError`` naming the claim and the file's
    columns for a query that cannot run."""
    try:
        rows = frame.query(query) if query else frame
    except Exception as e:
        raise ValueError(f"claim {claim!r}: cannot select {query!r} in {file} ({type(e).__name__}: {e}); "
                         f"its columns are {list(frame.columns)}. Fix the claim in data/paper/claims.csv.") from e
    if rows.empty:
        raise NoRows(f"claim {claim!r}: no row of {file} matches {query!r}")
    return rows


def eval_rows(rows: pd.DataFrame, expr: str, claim: str, file: str) -> np.ndarray:
    """``expr`` evaluated on every row, as floats; ``ValueError`` naming the claim if it fails."""
    try:
        values = rows.eval(expr)
        return np.broadcast_to(np.asarray(values, dtype=float), (len(rows),)).copy()
    except Exception as e:
        raise ValueError(f"claim {claim!r}: cannot compute {expr!r} in {file} ({type(e).__name__}: {e}); "
                         f"its columns are {list(rows.columns)}. Fix the claim in data/paper/claims.csv.") from e


def affine_in(rows: pd.DataFrame, expr: str, column: str, claim: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``(a, b)`` with ``expr == a * column + b``; ``ValueError`` if ``expr`` is not
    affine in ``column`` (the rule that lets a standard deviation pass through it)."""
    if column not in rows.columns:
        raise ValueError(f"claim {claim!r}: {file} has no column {column!r} (spread/per_seed name it); "
                         f"its columns are {list(rows.columns)}")
    at0, at1 = (eval_rows(rows.assign(**{column: float(v)}), expr, claim, file) for v in (0, 1))
    a, b = at1 - at0, at0
    if not np.allclose(eval_rows(rows, expr, claim, file), a * rows[column].to_numpy(float) + b):
        raise ValueError(f"claim {claim!r}: {expr!r} must be affine in {column!r} to carry its spread")
    return a, b


def last_epochs(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of each run's last epoch (per ``keys`` group) when ``runs`` has an ``epoch``
    column (a history); ``runs`` itself otherwise."""
    if "epoch" not in runs.columns:
        return runs
    return runs[runs.epoch == runs.groupby(keys).epoch.transform("max")]


def unit_values(runs: pd.DataFrame, query: str, expr: str, mean_col: str, run_col: str,
                 by: list[str], claim: str, file: str) -> pd.Series:
    """``expr`` per unit (``seed`` and ``by``) of a per-seed file, ``mean_col`` standing for
    ``run_col``: each run's last epoch, averaged over the unit's rows."""
    keys = ["seed", *by]
    rows = last_epochs(select_rows(runs, query, claim, file), keys)
    if run_col not in rows.columns or not set(keys) <= set(rows.columns):
        raise ValueError(f"claim {claim!r}: {file} needs the columns {[run_col, *keys]}; it has {list(rows.columns)}")
    values = eval_rows(rows.assign(**{mean_col: rows[run_col]}), expr, claim, file)
    return pd.Series(values, index=pd.MultiIndex.from_frame(rows[keys])).groupby(level=keys).mean()


def noted(est: Estimate, what: str) -> Estimate:
    """``est`` with ``what`` (e.g. ``3 seeds, paired``) as its note, keeping the reason when it
    has no interval."""
    return replace(est, note=what if est.has_interval else f"{what}: {est.note}")


def run_counts(rows: pd.DataFrame, attrs: dict) -> np.ndarray:
    """Runs behind each summary row: its ``count`` column, else the number of ``seeds`` in the
    result's JSON metrics. Raises ``ValueError`` when neither exists."""
    if "count" in rows.columns:
        return rows["count"].to_numpy(float)
    seeds = attrs.get("metrics", {}).get("seeds")
    if seeds is None:
        raise ValueError("a summary without a 'count' column needs 'seeds' in its JSON metrics")
    return np.full(len(rows), float(len(seeds)))


def design_confidence(attrs: dict) -> tuple[float, str]:
    """The confidence level a study's design fixed for its per-seed intervals, and why, from its
    result JSON (``metrics.interval``: ``{"confidence": 0.975, "why": "..."}``, e.g. the second
    look of a two-look sequential design tested at 97.5% so that both looks together keep a
    false "holds" under 5%); ``(0.95, "")`` when the study does not say."""
    interval = (attrs or {}).get("metrics", {}).get("interval") or {}
    if "confidence" not in interval:
        return CONFIDENCE, ""
    return float(interval["confidence"]), f"; {interval.get('why', 'the design says so')}"


def seed_estimate(summary: pd.DataFrame, where: str, versus: str, expr: str, mean_col: str, std_col: str, *,
                  runs: pd.DataFrame | None = None, run_col: str = "test_acc", by: Iterable[str] = (),
                  claim: str = "?", file: str = "?") -> Estimate:
    """``expr`` over the ``where`` rows (minus the ``versus`` rows, if given: a difference) with
    its uncertainty from seeds.

    With ``runs`` (one row per run or per epoch, ``mean_col`` standing for ``run_col``): values
    per unit (``seed`` and ``by``), then a paired t-interval of the differences when both sides
    hold the same units, an unpaired Welch interval otherwise, a t-interval without ``versus``
    (with a single run per side, the summary path below).
    Without ``runs``: from the summary rows' mean (``mean_col``), standard deviation
    (``std_col``) and count (:func:`run_counts`), Welch-Satterthwaite over the rows, the selected
    rows of each side averaged; single runs use the binomial error when the JSON metrics give
    ``test_subset`` (the number of test images), else there is no interval. ``expr`` must be
    affine in ``mean_col``. Raises :class:`NoRows` or ``ValueError`` (named claim).
    """
    by = list(by)
    if runs is not None:
        a = unit_values(runs, where, expr, mean_col, run_col, by, claim, file)
        b = unit_values(runs, versus, expr, mean_col, run_col, by, claim, file) if versus else None
        units = f"{len(a)} {'seeds' if not by else 'units (' + ', '.join(['seed', *by]) + ')'}"
        level, why = design_confidence(runs.attrs)
        if not versus and len(a) >= 2:
            return noted(t_interval(a.to_numpy(), confidence=level), units + why)
        if versus and set(a.index) == set(b.index) and len(a) >= 2:
            return noted(t_interval((a - b.loc[a.index]).to_numpy(), confidence=level),
                         f"{units}, paired{why}")
        if versus and min(len(a), len(b)) >= 2:
            est = welch_interval([a.mean(), b.mean()], [a.std(ddof=1), b.std(ddof=1)], [len(a), len(b)], [1, -1])
            return replace(est, note=est.note.replace("Welch from mean and std (per-seed values not saved)",
                                                      "Welch, unpaired (the arms share no seeds)"))
        # one run per side: the summary's binomial error below, if it records the test-set size
    sides = [(where, 1.0)] + ([(versus, -1.0)] if versus else [])
    means, stds, counts, weights, offset = [], [], [], [], 0.0
    for query, sign in sides:
        rows = select_rows(summary, query, claim, file)
        a, b = affine_in(rows, expr, mean_col, claim, file)
        if std_col not in rows.columns:
            raise ValueError(f"claim {claim!r}: {file} has no column {std_col!r}; its columns are {list(rows.columns)}")
        w = sign / len(rows)
        means += list(rows[mean_col])
        stds += list(rows[std_col])
        counts += list(run_counts(rows, summary.attrs))
        weights += list(w * a)
        offset += float((w * b).sum())
    return summary_estimate(means, stds, counts, weights, summary.attrs).scaled(1, offset)


def summary_estimate(means, stds, counts, weights, attrs: dict) -> Estimate:
    """``sum(w_i * mean_i)`` of summarized groups (mean, std and count of runs each; accuracy
    fractions for single runs) with its interval: Welch-Satterthwaite when every group has
    several runs (:func:`ev2lite.stats.welch_interval`), the binomial error when every group is
    one run and the result's JSON metrics record the number of test images (``test_images``, or
    ``test_subset``), else none (the note says why)."""
    counts = np.asarray(counts, dtype=float)
    if (counts >= 2).all():
        return welch_interval(means, stds, counts, weights)
    metrics = attrs.get("metrics", {})
    n_test = metrics.get("test_images") or metrics.get("test_subset")
    if (counts == 1).all() and n_test:
        return binomial_interval(means, int(n_test), weights)
    return Estimate(float(np.dot(means, weights)), n=int(counts.min()),
                    note="one run and no number of test images recorded: no interval"
                    if (counts == 1).all() else "groups with one run and with several: no interval")


def iqr_estimate(frame: pd.DataFrame, where: str, versus: str, expr: str, spread_col: str, by: str = "",
                 *, claim: str = "?", file: str = "?") -> Estimate:
    """A timing ratio with its tie band: ``expr`` over the ``where`` rows over ``expr`` over
    the ``versus`` rows, the two sides' relative spreads (``spread_col``, percent) added; with
    ``by``, the sides are paired on that column and the pair ratios' geometric mean taken
    (:func:`ev2lite.stats.geometric_tie_band`). Without ``versus``, ``expr`` is itself a ratio
    whose total spread is ``spread_col``. A missing ``spread_col`` gives kind ``none`` (the
    spread was not saved). Raises :class:`NoRows` or ``ValueError`` (named claim).
    """
    def side(query):
        rows = select_rows(frame, query, claim, file)
        spread = rows[spread_col].to_numpy(float) if spread_col in rows.columns else np.full(len(rows), np.nan)
        return rows, eval_rows(rows, expr, claim, file), spread

    rows_a, va, sa = side(where)
    missing = f"no spread: {file} has no column {spread_col!r}"
    rows_b, vb, sb = side(versus) if versus else (None, np.ones(1), np.zeros(1))
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        return Estimate(float("nan"))  # a timing this run did not make (a smaller profile)
    saved = spread_col in frame.columns
    if not versus:
        est = tie_band(float(va.mean()), [float(sa.mean())])
        return est if saved else replace(est, note=missing)
    if by:
        a = pd.DataFrame({"v": va, "s": sa}, index=rows_a[by].to_numpy())
        b = pd.DataFrame({"v": vb, "s": sb}, index=rows_b[by].to_numpy())
        keys = [k for k in a.index if k in b.index]
        if not keys:
            raise NoRows(f"claim {claim!r}: no {by!r} shared by the where and versus rows of {file}")
        est = geometric_tie_band([a.v[k] / b.v[k] for k in keys], [a.s[k] + b.s[k] for k in keys],
                                 f"pairs matched on {by!r}")
    else:
        est = tie_band(float(va.mean() / vb.mean()), [float(sa.mean()), float(sb.mean())])
    return est if saved else replace(est, note=missing)
