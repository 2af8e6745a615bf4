"""The paper's claims (and Graphcore's) scored against ``results/``: each gets our value, its
uncertainty and a verdict from a fixed vocabulary.

:func:`claims_table` reads ``data/paper/claims.csv`` (the paper's and the article's claims) or
``data/paper/own_findings.csv`` (our own findings, scored the same way but not the paper's),
computes every row's :class:`~ev2lite.stats.Estimate` from the result files and gives it a
:func:`verdict`. :func:`claims_markdown` and :func:`claims_section` render it for the README;
``python -m ev2lite.claims`` regenerates ``results/10_claims.*``, ``results/10_own_findings.*``
and the README's claims section from the committed results.

**Verdicts** (:data:`VERDICTS`). Each row states its *band* (the magnitude that counts as the
claim reproduced) and its *null* (the value of no effect: 1 for ratios, 0 for differences, or
the non-inferiority margin of a "matches" claim, e.g. -1 point). The claim's direction is the
side of the null the band lies on. With the 95% interval (or, for timings, the tie band) of our
value:

* **not comparable**: the row names (``not_comparable``) which other quantity our number
  measures; no verdict on the claim.
* **inconclusive**: no interval could be made (``note`` says why: one seed, a spread not
  saved), or the interval includes the null: ``|effect| < ~2`` standard errors, or a timing
  ratio inside its tie band.
* **fails**: the whole interval lies on the wrong side of the null; or the magnitude is far
  outside the band with a tight interval: the whole interval's effect below a quarter of the
  band's lower end, or above 4x its upper end (:data:`FAR`).
* **holds**: right direction, clear of noise, and our value inside the band.
* **direction only**: right direction, clear of noise, value outside the band (not far).

Effects are compared on the scale where "0.5x-2x of the paper's effect" is symmetric: the log
of a ratio (unit ``x``), the difference from the null otherwise. Bands in ``claims.csv`` follow
one rule unless the row says otherwise: a paper ratio ``r`` (or range ``r1-r2``) gives the band
``sqrt(r1) .. r2^2`` (half to twice the paper's log effect), a difference ``d`` (or range
``d1-d2``) ``d1 / 2 .. 2 d2``; a qualitative claim's band is the whole side of the null; a
"matches or beats" claim is a non-inferiority test with null and band starting at the margin.

**Columns of the claims files** (text; lines starting with ``#`` are comments):

``id``, ``claim``, ``paper_value`` (as printed), ``source`` (section / table / article);
``result``
    result file(s) in ``results/`` (else ``results/quick/``), separated by spaces; each read
    with its JSON (``.attrs``). Empty: computed from the model definitions (a measure function
    taking no files).
``measure``
    the name of a function of :data:`MEASURES` (called with the result frames in order, the
    first filtered by ``where``; one with a ``seeds`` parameter also gets the ``per_seed``
    frame or ``None``; it returns an :class:`~ev2lite.stats.Estimate`), or a
    ``pandas.DataFrame.eval`` expression over the single result file's columns (e.g.
    ``100 * mean_acc``, ```x dense 3x3``` with back-quotes), averaged over the selected rows.
``where``, ``versus``
    ``DataFrame.query`` strings selecting the rows of our value and of its reference; also
    applied to the ``per_seed`` file, so they must name columns both files have.
``combine``
    with ``versus``: ``ratio`` (value / reference) or ``difference`` (value - reference).
``unit``
    ``x`` (ratio), ``points`` (accuracy points), ``%``, or empty (a plain number).
``uncertainty``
    one of :data:`ev2lite.stats.KINDS`: ``seeds``, ``models``, ``binomial``, ``iqr``,
    ``exact`` or ``none``; for a measure function, the kind it returns (``none`` allowed when
    the data for an interval are missing, with a note; ``binomial`` for ``seeds`` when there
    is one run per arm and the JSON records the number of test images).
``spread``
    which columns carry the uncertainty of an expression: ``seeds``: ``MEAN STD`` (the summary
    file's mean and standard-deviation columns; the count column is ``count``, else the number
    of ``seeds`` in the JSON metrics; the expression must be affine in ``MEAN``); ``binomial``:
    ``COLUMN N`` (the accuracy column, a fraction, and the number of test images or a key of
    the JSON metrics holding it); ``iqr``: ``COLUMN [by KEY]`` (the relative interquartile
    spread in percent; with ``versus`` the two rows' spreads add up; ``by KEY`` pairs the rows
    of ``where`` and ``versus`` on ``KEY`` and takes the geometric mean of the pair ratios).
``per_seed``
    ``seeds`` only: ``FILE COLUMN [by COL,COL]``: a file of per-seed results (one row per run,
    or per epoch with an ``epoch`` column: each run's last epoch counts) whose ``COLUMN``
    stands for ``MEAN``. When it exists, the interval is a t-interval over units (``seed`` and
    the ``by`` columns), paired where our value and the reference share every unit; when it
    does not, it falls back to the summary's mean, std and count (Welch). For a measure
    function: just the file name.
``band``
    ``LOW..HIGH`` in the unit (``inf`` / ``-inf`` allowed): see above.
``null``
    the value of no effect; empty: 1 for unit ``x``, else 0.
``not_comparable``
    empty, or what other quantity our number measures (the verdict is then *not comparable*).
``measured_as``
    what exactly we measured, in words.
"""

from __future__ import annotations

import argparse
import inspect
import io
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .counts import parameter_ratio
from .paper import PAPER_DIR
from .results import RESULTS_DIR, load_results, save_results
from .stats import (KINDS, Estimate, geometric_tie_band, relative_iqr, t_interval, tie_band,
                    binomial_interval, welch_interval)

CLAIMS_CSV = PAPER_DIR / "claims.csv"
FINDINGS_CSV = PAPER_DIR / "own_findings.csv"
README = Path(__file__).resolve().parents[1] / "README.md"
CLAIM_COLUMNS = ("id", "claim", "paper_value", "source", "result", "where", "measure", "versus",
                 "combine", "unit", "uncertainty", "spread", "per_seed", "band", "null",
                 "not_comparable", "measured_as")
VERDICTS = ("holds", "direction only", "inconclusive", "fails", "not comparable")
NOT_MEASURED = "not measured yet"
FAR = 4.0  # "far outside the band": beyond a factor FAR of the band's ends, on the effect scale
LEGEND = ("*holds*: right direction, clear of noise, inside the row's band; *direction only*: "
          "clear of noise, magnitude outside the band; *inconclusive*: the 95% interval includes "
          "no effect (or a timing ratio lies inside its tie band), or no interval could be made; "
          "*fails*: wrong direction clear of noise, or far outside the band (beyond 4x its ends) "
          "with a tight interval; *not comparable*: our number measures another quantity (named).")
SECTION_START = "<!-- claims: generated by `python -m ev2lite.claims` from data/paper/*.csv and results/; do not edit by hand -->"
SECTION_END = "<!-- end of the generated claims -->"
_BAND = re.compile(r"\s*(-?(?:inf|\d+(?:\.\d+)?))\s*\.\.\s*(-?(?:inf|\d+(?:\.\d+)?))\s*")


class NoRows(ValueError):
    """A ``where`` / ``versus`` selection matched no row of its result file."""


# ---------------------------------------------------------------------------------------------
# Measures that a column expression cannot express: name -> function(*result frames) -> Estimate.
MEASURES: dict[str, Callable[..., Estimate]] = {}


def _measure(fn: Callable[..., Estimate]) -> Callable[..., Estimate]:
    MEASURES[fn.__name__] = fn
    return fn


@_measure
def parameter_ratio_resnet_rs_to_v2s() -> Estimate:
    """Parameters of ResNet-RS-350 (timm, Figure 1(b)'s 164M at 84.0%) over our EfficientNetV2-S
    (21,458,488), both counted on the meta device (Abstract, Figure 1(b): "up to 6.8x
    smaller"). Kind ``exact``."""
    ratio = parameter_ratio("ResNet-RS", "EfficientNetV2 (ours)")
    return Estimate(ratio, ratio, ratio, "exact", note="counted")


@_measure
def fixres_speedup(table2: pd.DataFrame) -> Estimate:
    """Notebook 01's FixRes pair (Section 3.2, Table 2): training images/s at the smaller image
    size over the larger, each at the largest batch that was timed for it (the trade Table 2
    makes: a smaller size lets a larger batch fit). Kind ``iqr``: the two timings' relative
    interquartile spreads (``iqr_percent``) make the tie band.

    ``table2``: columns ``image_size``, ``batch_size``, ``images_per_s`` (NaN where not
    timed), ``iqr_percent``, as notebook 01 saves ``01_table2_throughput_memory``.
    """
    timed = table2.dropna(subset=["images_per_s"])
    largest = timed.loc[timed.groupby("image_size").batch_size.idxmax()].sort_values("image_size")
    if len(largest) < 2:
        return Estimate(float("nan"))
    small, large = largest.iloc[0], largest.iloc[-1]
    est = tie_band(small.images_per_s / large.images_per_s, [small.iqr_percent, large.iqr_percent])
    pixels = (large.image_size / small.image_size) ** 2
    return replace(est, detail=f"{small.image_size:.0f} px at batch {small.batch_size:.0f} vs "
                               f"{large.image_size:.0f} px at batch {large.batch_size:.0f}: "
                               f"{pixels:.2f}x fewer pixels")


@_measure
def depthwise_time_per_mac(convs: pd.DataFrame) -> Estimate:
    """Time per multiply-add of a depthwise 3x3 convolution over a dense 3x3 convolution on the
    same input (Section 3.2: depthwise convolutions "cannot fully utilize modern
    accelerators"), from ``benchmarks/bench_convs.py``. Kind ``iqr``: the spreads of the two
    convolutions' repeated timings (``raw`` seconds in the JSON) make the tie band; ``none``
    without the JSON.

    ``convs``: the rows of one input shape, precision and memory format (``where``), columns
    ``H``, ``C``, ``conv`` (``depthwise 3x3``, ``dense 3x3``, ...), ``precision``, ``format``,
    ``ps/MAC``.
    """
    rows = convs.set_index("conv")
    if not {"depthwise 3x3", "dense 3x3"} <= set(rows.index) or rows.index.duplicated().any():
        raise ValueError("depthwise_time_per_mac needs exactly one 'depthwise 3x3' and one 'dense 3x3' "
                         f"row (select one shape, precision and format with 'where'); got {list(rows.index)}")
    dw, dense = rows.loc["depthwise 3x3"], rows.loc["dense 3x3"]
    ratio = float(dw["ps/MAC"] / dense["ps/MAC"])
    raw = convs.attrs.get("raw", [])

    def spread(row, conv):
        runs = [r["seconds"] for r in raw if r.get("conv") == conv and all(
            r.get(k) == row[k] for k in ("H", "C", "precision", "format"))]
        return relative_iqr(runs[0]) if runs else float("nan")

    return tie_band(ratio, [spread(dw, "depthwise 3x3"), spread(dense, "dense 3x3")])


@_measure
def fused_share_early_minus_late(search: pd.DataFrame) -> Estimate:
    """Among the searched models on the Pareto front, the share of Fused-MBConv stages among
    stages 1-3 minus among stages 4-6 (> 0: fused early, MBConv late, as in EfficientNetV2-S;
    Section 3.3). Kind ``models``: t-interval over the front's models, each contributing its
    own share difference. NaN (not measured) when the front holds no searched model.

    ``search``: notebook 03's table, columns ``kind`` (``sample`` for searched models),
    ``pareto`` (bool) and ``block_1`` ... ``block_6`` (``fused`` or ``mbconv``).
    """
    front = search[(search.kind == "sample") & search.pareto.astype(bool)]
    if front.empty:
        return Estimate(float("nan"))
    fused = front[[f"block_{i}" for i in range(1, 7)]].eq("fused").to_numpy()
    per_model = fused[:, :3].mean(axis=1) - fused[:, 3:].mean(axis=1)
    return t_interval(per_model, kind="models", note="searched models on the Pareto front")


@_measure
def strong_augmentation_gain_growth(table5: pd.DataFrame, seeds: pd.DataFrame | None = None) -> Estimate:
    """Table 5's pattern in one number, in accuracy points: what the strongest RandAugment
    magnitude gains over the weakest at the largest image size, minus what it gains at the
    smallest (> 0: larger images want stronger augmentation; the paper: 0.7 - (-0.6) = 1.3;
    Section 4.1). Kind ``seeds``: the contrast per seed, paired (``seeds``: notebook 05's runs,
    columns ``size``, ``magnitude``, ``seed``, ``epoch``, ``test_acc``); without them (or with
    one seed) from the four cells' mean, std and count (:func:`summary_estimate`: Welch, or the
    binomial error of single runs); ``none`` without a std column.

    ``table5``: columns ``magnitude``, ``size``, ``mean`` (accuracy, fraction) and optionally
    ``std``, ``count``, as notebook 05 saves it.
    """
    sizes, magnitudes = sorted(table5["size"].unique()), sorted(table5.magnitude.unique())
    corners = [(sizes[-1], magnitudes[-1], 1), (sizes[-1], magnitudes[0], -1),
               (sizes[0], magnitudes[-1], -1), (sizes[0], magnitudes[0], 1)]
    if seeds is not None:
        final = _last_epochs(seeds, ["size", "magnitude", "seed"])
        acc = final.pivot_table(index="seed", columns=["size", "magnitude"], values="test_acc")
        per_seed = sum(w * acc[(s, m)] for s, m, w in corners).dropna()
        if len(per_seed) >= 2:
            return _noted(t_interval(100 * per_seed), f"{len(per_seed)} seeds, paired")
    cells = table5.set_index(["size", "magnitude"])
    rows = [cells.loc[(s, m)] for s, m, _ in corners]
    if not {"std", "count"} <= set(table5.columns):
        return Estimate(100 * sum(w * r["mean"] for r, (*_, w) in zip(rows, corners)),
                        note="no std or count saved: no interval")
    return summary_estimate([r["mean"] for r in rows], [r["std"] for r in rows], [r["count"] for r in rows],
                            [100 * w for *_, w in corners], table5.attrs)


@_measure
def total_time_ratio(runs: pd.DataFrame) -> Estimate:
    """Total training time at equal epochs, fixed-size training over progressive training
    (Section 6.2, Table 12's TrainTime columns), the geometric mean over the (model, seed) pairs
    selected. Kind ``iqr``: the tie band of each pair adds the relative interquartile spreads
    of its two runs' per-epoch images/s at their final image size (epochs of equal work); with
    one epoch at that size a run has no spread (kind ``none``).

    ``runs``: notebook 07's histories, columns ``model``, ``seed``, ``training`` (``baseline``
    or ``progressive``), ``epoch``, ``image_size``, ``images_per_s``, ``train_time_s``.
    """
    ratios, spreads = [], []
    for _, pair in runs.groupby(["model", "seed"]):
        arms = {}
        for training, run in pair.groupby("training"):
            run = run.sort_values("epoch")
            final_size = run[run.image_size == run.image_size.iloc[-1]]
            arms[training] = (run.train_time_s.iloc[-1], relative_iqr(final_size.images_per_s))
        if {"baseline", "progressive"} <= set(arms):
            ratios.append(arms["baseline"][0] / arms["progressive"][0])
            spreads.append(arms["baseline"][1] + arms["progressive"][1])
    if not ratios:
        return Estimate(float("nan"))
    note = "per-epoch spread at the final size"
    if any(math.isnan(s) for s in spreads):
        return replace(geometric_tie_band(ratios, [0.0] * len(ratios)), low=float("nan"),
                       high=float("nan"), kind="none",
                       note="a run has one epoch at its final size: no spread, no tie band")
    return geometric_tie_band(ratios, spreads, note)


@_measure
def training_cpu_time_ratio(runs: pd.DataFrame) -> Estimate:
    """Total training CPU seconds at equal epochs, fixed-size training over progressive
    training (Section 6.2, Table 12's TrainTime columns), per (model, seed) pair; the geometric
    mean over the pairs selected. Kind ``seeds``: a Student-t 95% interval of the mean log
    ratio over the pairs, exponentiated (one pair: no interval). CPU seconds of a one-thread run
    count the work it did whatever else ran on the machine, so the arms need not run at quiet
    moments of equal load.

    ``runs``: notebook 07's histories, columns ``model``, ``seed``, ``training`` (``baseline``
    or ``progressive``) and ``cpu_s`` (CPU seconds of each epoch's training).
    """
    if "cpu_s" not in runs.columns:  # a run that predates the CPU-time record
        return Estimate(float("nan"))
    logs = []
    for _, pair in runs.groupby(["model", "seed"]):
        totals = pair.groupby("training").cpu_s.sum()
        if {"baseline", "progressive"} <= set(totals.index):
            logs.append(math.log(totals["baseline"] / totals["progressive"]))
    if not logs:
        return Estimate(float("nan"))
    est = t_interval(logs, kind="seeds", note="(model, seed) pairs, geometric mean")
    return replace(est, value=math.exp(est.value), low=math.exp(est.low), high=math.exp(est.high))


@_measure
def half_resolution_comparable(res: pd.DataFrame, seeds: pd.DataFrame | None = None) -> Estimate:
    """Graphcore's reduced-resolution claim as the one claim it is: training at about half the
    pixels, then fine-tuning the last layers at the native size, is faster *at comparable
    accuracy*, both tested at the native size, against the article's baseline (native training,
    no fine-tune). The value is the accuracy difference in points (half + fine-tune minus
    native) with its seeds interval (:func:`seed_estimate`: per-seed rows of ``seeds`` paired,
    else Welch); ``detail`` gives the measured training-time and multiply-add ratios.

    ``res``: notebook 09's ``09_reduced_resolution`` (columns ``scheme``, ``train_size``,
    ``test_size``, ``finetuned``, ``top1``, ``top1_std``, ``total_train_s``, ``train_gmacs``);
    ``seeds``: its per-seed sweep (``scheme``, ``test_size``, ``finetuned``, ``seed``,
    ``test_acc``) or ``None``.
    """
    native = int(res.loc[res.scheme == "native", "train_size"].iloc[0])
    half = f'scheme == "half" and finetuned == True and test_size == {native}'
    base = f'scheme == "native" and finetuned == False and test_size == {native}'
    est = seed_estimate(res, half, base, "100 * top1", "top1", "top1_std", runs=seeds, run_col="test_acc")
    h, b = res.query(half).iloc[0], res.query(base).iloc[0]
    return replace(est, detail=f"native training took {b.total_train_s / h.total_train_s:.2f}x the time and "
                               f"{b.train_gmacs / h.train_gmacs:.2f}x the multiply-adds of half + fine-tune")


# ---------------------------------------------------------------------------------------------
# Generic estimates of an expression over selected rows.
def _select(frame: pd.DataFrame, query: str, claim: str, file: str) -> pd.DataFrame:
    """The rows of ``frame`` that ``query`` selects (all rows for an empty query). Raises
    :class:`NoRows` for an empty selection and ``ValueError`` naming the claim and the file's
    columns for a query that cannot run."""
    try:
        rows = frame.query(query) if query else frame
    except Exception as e:
        raise ValueError(f"claim {claim!r}: cannot select {query!r} in {file} ({type(e).__name__}: {e}); "
                         f"its columns are {list(frame.columns)}. Fix the claim in {CLAIMS_CSV.name}.") from e
    if rows.empty:
        raise NoRows(f"claim {claim!r}: no row of {file} matches {query!r}")
    return rows


def _eval(rows: pd.DataFrame, expr: str, claim: str, file: str) -> np.ndarray:
    """``expr`` evaluated on every row, as floats; ``ValueError`` naming the claim if it fails."""
    try:
        values = rows.eval(expr)
        return np.broadcast_to(np.asarray(values, dtype=float), (len(rows),)).copy()
    except Exception as e:
        raise ValueError(f"claim {claim!r}: cannot compute {expr!r} in {file} ({type(e).__name__}: {e}); "
                         f"its columns are {list(rows.columns)}. Fix the claim in {CLAIMS_CSV.name}.") from e


def _affine(rows: pd.DataFrame, expr: str, column: str, claim: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row, ``(a, b)`` with ``expr == a * column + b``; ``ValueError`` if ``expr`` is not
    affine in ``column`` (the rule that lets a standard deviation pass through it)."""
    if column not in rows.columns:
        raise ValueError(f"claim {claim!r}: {file} has no column {column!r} (spread/per_seed name it); "
                         f"its columns are {list(rows.columns)}")
    at0, at1 = (_eval(rows.assign(**{column: float(v)}), expr, claim, file) for v in (0, 1))
    a, b = at1 - at0, at0
    if not np.allclose(_eval(rows, expr, claim, file), a * rows[column].to_numpy(float) + b):
        raise ValueError(f"claim {claim!r}: {expr!r} must be affine in {column!r} to carry its spread")
    return a, b


def _last_epochs(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of each run's last epoch (per ``keys`` group) when ``runs`` has an ``epoch``
    column (a history); ``runs`` itself otherwise."""
    if "epoch" not in runs.columns:
        return runs
    return runs[runs.epoch == runs.groupby(keys).epoch.transform("max")]


def _unit_values(runs: pd.DataFrame, query: str, expr: str, mean_col: str, run_col: str,
                 by: list[str], claim: str, file: str) -> pd.Series:
    """``expr`` per unit (``seed`` and ``by``) of a per-seed file, ``mean_col`` standing for
    ``run_col``: each run's last epoch, averaged over the unit's rows."""
    keys = ["seed", *by]
    rows = _last_epochs(_select(runs, query, claim, file), keys)
    if run_col not in rows.columns or not set(keys) <= set(rows.columns):
        raise ValueError(f"claim {claim!r}: {file} needs the columns {[run_col, *keys]}; it has {list(rows.columns)}")
    values = _eval(rows.assign(**{mean_col: rows[run_col]}), expr, claim, file)
    return pd.Series(values, index=pd.MultiIndex.from_frame(rows[keys])).groupby(level=keys).mean()


def _noted(est: Estimate, what: str) -> Estimate:
    """``est`` with ``what`` (e.g. ``3 seeds, paired``) as its note, keeping the reason when it
    has no interval."""
    return replace(est, note=what if est.has_interval else f"{what}: {est.note}")


def _counts(rows: pd.DataFrame, attrs: dict) -> np.ndarray:
    """Runs behind each summary row: its ``count`` column, else the number of ``seeds`` in the
    result's JSON metrics. Raises ``ValueError`` when neither exists."""
    if "count" in rows.columns:
        return rows["count"].to_numpy(float)
    seeds = attrs.get("metrics", {}).get("seeds")
    if seeds is None:
        raise ValueError("a summary without a 'count' column needs 'seeds' in its JSON metrics")
    return np.full(len(rows), float(len(seeds)))


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
    (``std_col``) and count (:func:`_counts`), Welch-Satterthwaite over the rows, the selected
    rows of each side averaged; single runs use the binomial error when the JSON metrics give
    ``test_subset`` (the number of test images), else there is no interval. ``expr`` must be
    affine in ``mean_col``. Raises :class:`NoRows` or ``ValueError`` (named claim).
    """
    by = list(by)
    if runs is not None:
        a = _unit_values(runs, where, expr, mean_col, run_col, by, claim, file)
        b = _unit_values(runs, versus, expr, mean_col, run_col, by, claim, file) if versus else None
        units = f"{len(a)} {'seeds' if not by else 'units (' + ', '.join(['seed', *by]) + ')'}"
        if not versus and len(a) >= 2:
            return _noted(t_interval(a.to_numpy()), units)
        if versus and set(a.index) == set(b.index) and len(a) >= 2:
            return _noted(t_interval((a - b.loc[a.index]).to_numpy()), f"{units}, paired")
        if versus and min(len(a), len(b)) >= 2:
            est = welch_interval([a.mean(), b.mean()], [a.std(ddof=1), b.std(ddof=1)], [len(a), len(b)], [1, -1])
            return replace(est, note=est.note.replace("Welch from mean and std (per-seed values not saved)",
                                                      "Welch, unpaired (the arms share no seeds)"))
        # one run per side: the summary's binomial error below, if it records the test-set size
    sides = [(where, 1.0)] + ([(versus, -1.0)] if versus else [])
    means, stds, counts, weights, offset = [], [], [], [], 0.0
    for query, sign in sides:
        rows = _select(summary, query, claim, file)
        a, b = _affine(rows, expr, mean_col, claim, file)
        if std_col not in rows.columns:
            raise ValueError(f"claim {claim!r}: {file} has no column {std_col!r}; its columns are {list(rows.columns)}")
        w = sign / len(rows)
        means += list(rows[mean_col])
        stds += list(rows[std_col])
        counts += list(_counts(rows, summary.attrs))
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
        rows = _select(frame, query, claim, file)
        spread = rows[spread_col].to_numpy(float) if spread_col in rows.columns else np.full(len(rows), np.nan)
        return rows, _eval(rows, expr, claim, file), spread

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


# ---------------------------------------------------------------------------------------------
def _parse_band(text: str) -> tuple[float, float] | None:
    m = _BAND.fullmatch(text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def _null(c) -> float:
    return float(c.null) if c.null else (1.0 if c.unit == "x" else 0.0)


def _arity(measure: str) -> int:
    """How many result frames the :data:`MEASURES` function ``measure`` takes (its positional
    parameters without defaults)."""
    return sum(p.default is inspect.Parameter.empty for p in inspect.signature(MEASURES[measure]).parameters.values())


def _takes_seeds(measure: str) -> bool:
    return "seeds" in inspect.signature(MEASURES[measure]).parameters


def load_claims(path: str | Path = CLAIMS_CSV) -> pd.DataFrame:
    """A claims file as a DataFrame of strings (empty cells as ``""``), checked.

    Raises ``ValueError`` naming the claim and what to fix: missing columns, a duplicate id, an
    unknown kind of uncertainty, a band that is not ``LOW..HIGH`` or straddles the null,
    ``versus`` without ``combine`` (or the reverse), a ``spread`` / ``per_seed`` that does not
    fit the kind, a :data:`MEASURES` function given the wrong number of result files, a
    ``versus`` or ``spread``, several result files without a :data:`MEASURES` function.
    """
    lines = [line for line in Path(path).read_text().splitlines(True) if not line.startswith("#")]
    claims = pd.read_csv(io.StringIO("".join(lines)), dtype=str, keep_default_na=False)
    missing = set(CLAIM_COLUMNS) - set(claims.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}; it needs {list(CLAIM_COLUMNS)}")
    claims = claims.apply(lambda col: col.str.strip())
    duplicated = claims.id[claims.id.duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: claim ids must be unique; repeated: {duplicated}")
    for c in claims.itertuples():
        _check(c)
    return claims


def _check(c) -> None:
    """Raise ``ValueError`` naming claim ``c`` if its row is malformed (see :func:`load_claims`)."""
    def bad(why):
        raise ValueError(f"claim {c.id!r}: {why}")

    if c.uncertainty not in KINDS:
        bad(f"uncertainty {c.uncertainty!r} must be one of {KINDS}")
    band = _parse_band(c.band)
    if band is None or band[0] > band[1]:
        bad(f"band {c.band!r} must be LOW..HIGH (numbers or inf), e.g. '1.48..7.84'")
    try:
        null = _null(c)
    except ValueError:
        bad(f"null {c.null!r} must be a number (or empty)")
    if band[0] < null < band[1]:
        bad(f"band {c.band!r} straddles the null {null:g}: it must lie on one side (the claim's direction)")
    if bool(c.versus) != bool(c.combine) or c.combine not in ("", "ratio", "difference"):
        bad(f"give 'versus' (a row query) together with 'combine' (ratio or difference), or neither; "
            f"got combine={c.combine!r}")
    files = len(c.result.split())
    if c.measure in MEASURES:
        if files != _arity(c.measure):
            bad(f"{c.measure}() reads {_arity(c.measure)} result file(s), but 'result' names {files}")
        if c.versus or c.spread:
            bad(f"{c.measure}() computes its own reference and spread; leave 'versus' and 'spread' empty")
        if c.per_seed and (len(c.per_seed.split()) != 1 or not _takes_seeds(c.measure)):
            bad(f"{c.measure}() takes {'one per-seed file name' if _takes_seeds(c.measure) else 'no per-seed file'}; "
                f"got per_seed {c.per_seed!r}")
        return
    if files != 1 or not c.measure:
        bad(f"an expression reads exactly one result file (several need a measure function of "
            f"ev2lite.claims.MEASURES: {sorted(MEASURES)}); got result {c.result!r}, measure {c.measure!r}")
    words = c.spread.split()
    if c.uncertainty == "seeds":
        if len(words) != 2 or c.combine == "ratio":
            bad(f"seeds needs spread 'MEAN STD' and no ratio (a difference or a single value); got "
                f"spread {c.spread!r}, combine {c.combine!r}")
        if c.per_seed and not re.fullmatch(r"\S+\.csv \S+( by \S+)?", c.per_seed):
            bad(f"per_seed {c.per_seed!r} must be 'FILE.csv COLUMN' or 'FILE.csv COLUMN by COL,COL'")
    elif c.per_seed:
        bad("per_seed belongs to uncertainty 'seeds' only")
    if c.uncertainty == "binomial" and len(words) != 2:
        bad(f"binomial needs spread 'COLUMN N' (accuracy column, test images or a metrics key); got {c.spread!r}")
    if c.uncertainty == "iqr" and (not (len(words) == 1 or (len(words) == 3 and words[1] == "by"))
                                   or c.combine == "difference"):
        bad(f"iqr needs spread 'COLUMN' or 'COLUMN by KEY' and a ratio; got {c.spread!r}, combine {c.combine!r}")
    if c.uncertainty in ("exact", "none") and c.spread:
        bad(f"uncertainty {c.uncertainty!r} takes no spread; got {c.spread!r}")
    if c.uncertainty == "models":
        bad("uncertainty 'models' comes from a measure function only")


def _find(results_dir: Path, name: str) -> Path | None:
    """``results_dir/name`` (a full run), else ``results_dir/quick/name``, else ``None``."""
    return next((p for p in (results_dir / name, results_dir / "quick" / name) if p.is_file()), None)


def _read(path: Path) -> pd.DataFrame:
    """A result CSV with its JSON (command, metrics, environment, raw data) in ``.attrs``."""
    return load_results(path.stem, path.parent)


def estimate(claim, results_dir: str | Path = RESULTS_DIR) -> tuple[Estimate | None, str]:
    """Our :class:`~ev2lite.stats.Estimate` for one claim (a row of :func:`load_claims`) and the
    result file(s) it came from (relative to ``results_dir``); ``(None, "")`` when not measured
    yet (a result file does not exist yet, or the measure gives NaN).

    Raises :class:`NoRows` when a selection matches nothing, ``ValueError`` when the files exist
    but the claim does not fit them, or a measure function returns another kind of uncertainty
    than the row declares.
    """
    results_dir = Path(results_dir)
    paths = [_find(results_dir, n) for n in claim.result.split()]
    if None in paths:
        return None, ""
    used = " ".join(str(p.relative_to(results_dir)) for p in paths)
    frames = [_read(p) for p in paths]
    seeds_file = claim.per_seed.split()[0] if claim.per_seed else ""
    seeds_path = _find(results_dir, seeds_file) if seeds_file else None
    if claim.measure in MEASURES:
        if frames and claim.where:
            frames[0] = _select(frames[0], claim.where, claim.id, used).copy()
            frames[0].attrs = _read(paths[0]).attrs
        kwargs = {"seeds": _read(seeds_path) if seeds_path else None} if _takes_seeds(claim.measure) else {}
        est = MEASURES[claim.measure](*frames, **kwargs)
        allowed = {claim.uncertainty, "none"} | ({"binomial"} if claim.uncertainty == "seeds" else set())
        if not isinstance(est, Estimate) or est.kind not in allowed:
            raise ValueError(f"claim {claim.id!r}: {claim.measure}() returned "
                             f"{getattr(est, 'kind', type(est).__name__)!r}, not the declared {claim.uncertainty!r}")
    else:
        est = _expression_estimate(claim, frames[0], used, _read(seeds_path) if seeds_path else None)
    if math.isnan(est.value):
        return None, ""
    return est, used + (f" {seeds_path.relative_to(results_dir)}" if seeds_path else "")


def _expression_estimate(c, frame: pd.DataFrame, file: str, runs: pd.DataFrame | None) -> Estimate:
    """The estimate of an expression row (see the module docstring for each kind)."""
    words = c.spread.split()
    if c.uncertainty == "seeds":
        run_col, by = (c.per_seed.split() + [""])[1], []
        if " by " in c.per_seed:
            by = c.per_seed.split(" by ")[1].split(",")
        return seed_estimate(frame, c.where, c.versus, c.measure, words[0], words[1], runs=runs,
                             run_col=run_col, by=by, claim=c.id, file=file)
    if c.uncertainty == "iqr":
        return iqr_estimate(frame, c.where, c.versus, c.measure, words[0], words[2] if len(words) == 3 else "",
                            claim=c.id, file=file)
    a = _select(frame, c.where, c.id, file)
    value = float(_eval(a, c.measure, c.id, file).mean())
    reference = float(_eval(_select(frame, c.versus, c.id, file), c.measure, c.id, file).mean()) if c.versus else None
    if c.uncertainty == "binomial":
        column, n = words
        n_test = int(n) if n.isdigit() else frame.attrs.get("metrics", {}).get(n)
        if not n_test:
            return Estimate(value, note=f"the number of test images ({n!r}) is not recorded: no interval")
        sides = [(a, 1.0)] + ([(_select(frame, c.versus, c.id, file), -1.0)] if c.versus else [])
        p, w, offset = [], [], 0.0
        for rows, sign in sides:
            slope, intercept = _affine(rows, c.measure, column, c.id, file)
            p += list(rows[column])
            w += list(sign * slope / len(rows))
            offset += float((sign * intercept).sum() / len(rows))
        return binomial_interval(p, int(n_test), w).scaled(1, offset)
    if reference is not None:
        value = value / reference if c.combine == "ratio" else value - reference
    if c.uncertainty == "exact":
        return Estimate(value, value, value, "exact", note="exact")
    return Estimate(value, note="no uncertainty recorded")


# ---------------------------------------------------------------------------------------------
def _effect(x: float, null: float, log: bool) -> float:
    """The size of an effect on the scale where bands are symmetric: ``log(x / null)`` for
    ratios (``-inf`` for ``x <= 0``), ``x - null`` otherwise."""
    if log:
        return math.log(x / null) if x > 0 else -math.inf
    return x - null


def verdict(est: Estimate, band: tuple[float, float], null: float, unit: str = "x",
            not_comparable: str = "") -> tuple[str, str]:
    """The verdict of :data:`VERDICTS` for our estimate of a claim, and why (one line).

    ``band`` (low, high) is the magnitude that reproduces the claim, in ``unit`` (ratios,
    ``x``, are compared as log ratios); ``null`` the value of no effect; the band's side of the
    null is the claim's direction. The rules are the module docstring's. Raises ``ValueError``
    for a band that straddles the null.
    """
    if not_comparable:
        return "not comparable", not_comparable
    lo_band, hi_band = band
    if lo_band < null < hi_band:
        raise ValueError(f"band {band} straddles the null {null}")
    if not est.has_interval:
        return "inconclusive", "no interval could be made (see ours)"
    log = unit == "x"
    d = 1.0 if lo_band >= null else -1.0
    lo, hi = sorted(d * _effect(x, null, log) for x in (est.low, est.high))
    value = d * _effect(est.value, null, log)
    b1, b2 = sorted(d * _effect(x, null, log) if math.isfinite(x) else math.inf for x in band)
    if lo <= 0 <= hi:
        margin = " (the margin)" if null != (1.0 if log else 0.0) else ""
        return "inconclusive", ("the ratio lies inside its tie band" if est.kind == "iqr" else
                                f"the 95% interval includes {_format_end(null, unit, True, True)}{margin}")
    band_text = format_band(band, unit)
    if hi < 0:
        return "fails", f"the opposite direction, clear of noise (band {band_text})"
    if b1 <= value <= b2:
        return "holds", f"inside the band {band_text}"
    if hi < b1 / FAR or lo > b2 * FAR:
        return "fails", f"far outside the band {band_text}, with a tight interval"
    return "direction only", f"clear of noise, outside the band {band_text}"


def _format_value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "points":
        return f"{value:+.2f} points"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:.3g}"


def _format_end(value: float, unit: str, with_unit: bool = False, exact: bool = False) -> str:
    """An interval's end (``2.02x``, ``+0.4``, ``-3.3``) or, with ``exact``, a band's or null's
    stated value (``16x``, ``-1``, ``0``); ``with_unit`` adds `` points``."""
    if unit == "x":
        return f"{value:g}x" if exact else f"{value:.2f}x"
    if unit == "points":
        text = "0" if value == 0 else (f"{value:+g}" if exact else f"{value:+.1f}")
        return text + (" points" if with_unit else "")
    text = f"{value:g}" if exact else f"{value:.2g}"
    return text + ("%" if unit == "%" else "")


def format_band(band: tuple[float, float], unit: str) -> str:
    """``(1.48, 7.84), "x"`` -> ``1.48x to 7.84x``; ``(0.4, 1.6), "points"`` -> ``+0.4 to +1.6
    points``; an open end as ``at least`` / ``at most``."""
    lo, hi = band
    if math.isinf(hi):
        return f"at least {_format_end(lo, unit, True, True)}"
    if math.isinf(lo):
        return f"at most {_format_end(hi, unit, True, True)}"
    return f"{_format_end(lo, unit, exact=True)} to {_format_end(hi, unit, True, True)}"


def format_estimate(est: Estimate | None, unit: str) -> str:
    """Our value with its interval, for a table cell: ``+3.10 points (95% CI -2.2 to +8.4; 3
    seeds, paired by seed)``, ``3.67x (tie band 3.34x-4.03x; ...)``, ``7.64x (exact)``; ``-``
    when not measured yet."""
    if est is None:
        return "-"
    text = _format_value(est.value, unit)
    if est.kind == "exact":
        text += f" ({est.note or 'exact'})"
    elif est.kind == "iqr":
        text += f" (tie band {_format_end(est.low, unit)}-{_format_end(est.high, unit)}; {est.note})"
    elif est.has_interval:
        text += f" (95% CI {_format_end(est.low, unit)} to {_format_end(est.high, unit)}; {est.note})"
    else:
        text += f" ({est.note})"
    return text + (f"; {est.detail}" if est.detail else "")


def claims_table(results_dir: str | Path = RESULTS_DIR, claims: str | Path | pd.DataFrame = CLAIMS_CSV, *,
                 strict: bool = True) -> pd.DataFrame:
    """Every claim with the paper's value, ours with its uncertainty, and its verdict.

    Columns: ``id``, ``claim``, ``paper``, ``ours`` (:func:`format_estimate`), ``value``,
    ``low``, ``high`` (floats, NaN if none), ``uncertainty`` (the kind), ``band`` (formatted),
    ``verdict`` (one of :data:`VERDICTS`, or ``not measured yet``), ``why``, ``source``,
    ``measured_as``, ``result`` (the file(s) read, relative to ``results_dir``; ``quick/...``
    where only a quick-profile result exists). ``claims`` is a claims file or an already loaded
    table. With ``strict=False`` a selection that matches no row (a study run at a smaller
    profile) is *not measured yet* instead of an error. Raises ``ValueError`` from
    :func:`load_claims` or :func:`estimate` for a malformed claim.
    """
    if not isinstance(claims, pd.DataFrame):
        claims = load_claims(claims)
    rows = []
    for c in claims.itertuples():
        try:
            est, used = estimate(c, results_dir)
        except NoRows:
            if strict:
                raise
            est, used = None, ""
        band = _parse_band(c.band)
        verdict_, why = ((NOT_MEASURED, "no result yet") if est is None else
                         verdict(est, band, _null(c), c.unit, c.not_comparable))
        rows.append({"id": c.id, "claim": c.claim, "paper": c.paper_value, "ours": format_estimate(est, c.unit),
                     "value": np.nan if est is None else est.value, "low": np.nan if est is None else est.low,
                     "high": np.nan if est is None else est.high,
                     "uncertainty": "" if est is None else est.kind, "band": format_band(band, c.unit),
                     "verdict": verdict_, "why": why, "source": c.source, "measured_as": c.measured_as,
                     "result": used})
    return pd.DataFrame(rows, columns=["id", "claim", "paper", "ours", "value", "low", "high", "uncertainty",
                                       "band", "verdict", "why", "source", "measured_as", "result"])


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many rows of :func:`claims_table` got each verdict (all of :data:`VERDICTS`, then
    ``not measured yet`` if any)."""
    counts = table.verdict.value_counts()
    order = list(VERDICTS) + ([NOT_MEASURED] if NOT_MEASURED in counts else [])
    return {v: int(counts.get(v, 0)) for v in order}


def claims_markdown(table: pd.DataFrame, columns: Iterable[str] = ("claim", "paper", "ours", "verdict", "measured_as", "source"),
                    headers: dict[str, str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``columns`` of :func:`claims_table` (for the README),
    the verdict cell with its reason; ``headers`` renames columns. Raises ``KeyError`` for a
    column the table lacks.
    """
    columns = list(columns)
    headers = {"paper": "paper", "ours": "ours (95% CI or tie band)", "measured_as": "what we measured"} | (headers or {})
    cells = table[columns].astype(str).copy()
    if "verdict" in columns and "why" in table.columns:
        cells["verdict"] = "**" + table.verdict + "**: " + table.why
    cells = cells.apply(lambda col: col.str.replace("|", r"\|", regex=False))
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def claims_section(claims: pd.DataFrame, findings: pd.DataFrame) -> str:
    """The README's generated claims section: the verdict counts, the legend, the claims table
    and the list of our own findings (not claims of the paper), between the markers
    :data:`SECTION_START` and :data:`SECTION_END`."""
    counts = ", ".join(f"{n} *{v}*" for v, n in verdict_counts(claims).items())
    items = [f"- {r.claim}: {r.ours}. **{r.verdict}** ({r.why}). Measured: {r.measured_as}."
             for r in findings.itertuples()]
    return "\n".join([SECTION_START, "", f"**Verdicts of the {len(claims)} claims: {counts}.**", "",
                      f"Legend: {LEGEND}", "", claims_markdown(claims).rstrip("\n"), "",
                      "**Our own findings** (not claims of the paper or the article, scored by the same rules):", "",
                      *items, "", SECTION_END])


def replace_section(text: str, section: str) -> str:
    """``text`` with the part from :data:`SECTION_START` to :data:`SECTION_END` replaced by
    ``section``. Raises ``ValueError`` if the markers are missing."""
    start, end = text.find(SECTION_START), text.find(SECTION_END)
    if start < 0 or end < start:
        raise ValueError(f"the README lacks the markers {SECTION_START!r} ... {SECTION_END!r}")
    return text[:start] + section + text[end + len(SECTION_END):]


def write_results(table: pd.DataFrame, name: str, results_dir: str | Path = RESULTS_DIR) -> list[Path]:
    """Write ``<name>.csv`` and ``<name>.json`` (verdict counts, the regenerating command, the
    environment: the provenance layout of :func:`ev2lite.results.save_results`) into
    ``results_dir``; returns the paths."""
    return save_results(name, table, {"verdicts": verdict_counts(table)}, profile="full",
                        out_dir=results_dir, command="python -m ev2lite.claims")


def main(argv: list[str] | None = None) -> int:
    """``python -m ev2lite.claims``: score the claims and our own findings against the committed
    ``results/`` (re-scored, nothing re-run), write ``results/10_claims.*`` and
    ``results/10_own_findings.*`` and regenerate the README's claims section."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="results folder (default results/)")
    parser.add_argument("--readme", type=Path, default=README, help="README to update (default README.md)")
    parser.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    args = parser.parse_args(argv)
    claims, findings = claims_table(args.results), claims_table(args.results, FINDINGS_CSV)
    section = claims_section(claims, findings)
    if args.no_write:
        print(section)
        return 0
    write_results(claims, "10_claims", args.results)
    write_results(findings, "10_own_findings", args.results)
    args.readme.write_text(replace_section(args.readme.read_text(), section))
    print(f"verdicts: {verdict_counts(claims)}; wrote {args.results}/10_claims.* and 10_own_findings.*, "
          f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
