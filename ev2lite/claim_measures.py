"""The measures of claims that a column expression cannot express: ``MEASURES`` maps a name
(the ``measure`` column of ``data/paper/claims.csv``) to a function of the result frames that
returns an :class:`~ev2lite.stats.Estimate`. Each function's docstring gives the paper's claim it
measures, its kind of uncertainty and the columns it reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats

from .counts import parameter_ratio
from .estimates import last_epochs, noted, seed_estimate, summary_estimate
from .stats import Estimate, geometric_tie_band, relative_iqr, t_interval, tie_band

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


def fused_early_minus_late(samples: pd.DataFrame) -> np.ndarray:
    """Per row of notebook 03's search table, its share of Fused-MBConv among stages 1-3 minus
    its share among stages 4-6 (-1 to +1; columns ``block_1`` ... ``block_6``)."""
    fused = samples[[f"block_{i}" for i in range(1, 7)]].eq("fused").to_numpy()
    return fused[:, :3].mean(axis=1) - fused[:, 3:].mean(axis=1)


@_measure
def fused_early_reward_correlation(search: pd.DataFrame, resamples: int = 9999) -> Estimate:
    """Does the search's reward prefer Fused-MBConv early and MBConv late (Section 3.3, Table 4)?
    Over the random samples, the Pearson correlation between each sample's share of Fused-MBConv
    among stages 1-3 minus its share among stages 4-6 (-1 to +1) and its reward: > 0 when models
    that fuse early and not late score higher, < 0 for the opposite preference. A test that can
    fail either way. Kind ``models``: the 95% bootstrap interval (BCa, samples resampled with
    their rewards, ``scipy.stats.bootstrap``, seeded); ``detail`` gives the one-sided
    permutation p-value (rewards shuffled among the samples, ``scipy.stats.permutation_test``)
    and the same correlation with accuracy and with step time alone. NaN (not measured) with
    fewer than 3 samples.

    ``search``: notebook 03's table, columns ``kind`` (``sample`` for searched models),
    ``reward``, ``accuracy``, ``step_time_s`` and ``block_1`` ... ``block_6`` (``fused`` or
    ``mbconv``).
    """
    samples = search[search.kind == "sample"]
    if len(samples) < 3:
        return Estimate(float("nan"))
    early_minus_late = fused_early_minus_late(samples)

    def corr(x, y):
        return np.corrcoef(x, y)[0, 1]

    reward = samples.reward.to_numpy(float)
    ci = stats.bootstrap((early_minus_late, reward), corr, paired=True, vectorized=False,
                         n_resamples=resamples, rng=np.random.default_rng(0)).confidence_interval
    p = stats.permutation_test((early_minus_late, reward), corr, permutation_type="pairings",
                               vectorized=False, alternative="greater", n_resamples=resamples,
                               rng=np.random.default_rng(0)).pvalue
    parts = ", ".join(f"with {name} alone r = {corr(early_minus_late, samples[col].to_numpy(float)):+.2f}"
                      for name, col in (("accuracy", "accuracy"), ("step time", "step_time_s")))
    return Estimate(corr(early_minus_late, reward), ci.low, ci.high, "models", len(samples),
                    f"{len(samples)} samples, bootstrap", f"permutation p = {p:.3f} (one-sided); {parts}")


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
        final = last_epochs(seeds, ["size", "magnitude", "seed"])
        acc = final.pivot_table(index="seed", columns=["size", "magnitude"], values="test_acc")
        per_seed = sum(w * acc[(s, m)] for s, m, w in corners).dropna()
        if len(per_seed) >= 2:
            return noted(t_interval(100 * per_seed), f"{len(per_seed)} seeds, paired")
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
    accuracy*, both tested at the native size, against *Native*: native training given the same
    fine-tune (REFERENCE.md section 4: the article's Figure 1 compares against Native; its
    un-fine-tuned Baseline mixes in the fine-tune's own gain, which notebook 09 measures as a
    separate ablation). The value is the accuracy difference in points (half + fine-tune minus
    native + fine-tune) with its seeds interval (:func:`seed_estimate`: per-seed rows of ``seeds`` paired,
    else Welch); ``detail`` gives the measured training-time and multiply-add ratios.

    ``res``: notebook 09's ``09_reduced_resolution`` (columns ``scheme``, ``train_size``,
    ``test_size``, ``finetuned``, ``top1``, ``top1_std``, ``total_train_s``, ``train_gmacs``);
    ``seeds``: its per-seed sweep (``scheme``, ``test_size``, ``finetuned``, ``seed``,
    ``test_acc``) or ``None``.
    """
    native = int(res.loc[res.scheme == "native", "train_size"].iloc[0])
    half = f'scheme == "half" and finetuned == True and test_size == {native}'
    base = f'scheme == "native" and finetuned == True and test_size == {native}'
    est = seed_estimate(res, half, base, "100 * top1", "top1", "top1_std", runs=seeds, run_col="test_acc")
    h, b = res.query(half).iloc[0], res.query(base).iloc[0]
    return replace(est, detail=f"native training took {b.total_train_s / h.total_train_s:.2f}x the time and "
                               f"{b.train_gmacs / h.train_gmacs:.2f}x the multiply-adds of half, both with the fine-tune")
