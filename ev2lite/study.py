"""Small helpers that the study notebooks share: load a train/test pair, train one seeded run,
summarize repeated runs as mean and spread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd
import torch
from torch import nn

from .data import ImageDataset, load_dataset
from .recipe import Recipe, Stage
from .seeds import stream_seed
from .train import fit


def load_pair(name: str, train_subset: int | None = None, test_subset: int | None = None,
              seed: int = 0, *, download: bool = True,
              progress: bool = True) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``name``, optionally class-stratified subsets of the given sizes
    (each drawn from the ``"subset"`` stream of ``seed``).

    ``download`` defaults to ``True`` here, deliberately, unlike
    :func:`ev2lite.data.load_dataset`: this is how the notebooks (the main job, ``make``) load
    their data, so a new user with a network gets it fetched once where nothing is found
    locally. ``EV2LITE_OFFLINE=1`` refuses the download (the tests and CI set it). Raises the
    data module's ``DatasetNotFoundError`` (with where it looked and what to do).
    """
    train, test = (load_dataset(name, split, download=download, progress=progress)
                   for split in ("train", "test"))
    if train_subset:
        train = train.subset(train_subset, seed=seed)
    if test_subset:
        test = test.subset(test_subset, seed=seed)
    return train, test


def train_once(make_model: Callable[[], nn.Module], data: tuple[ImageDataset, ImageDataset],
               stages: list[Stage], recipe: Recipe, seed: int, *, report: bool = True,
               **labels) -> pd.DataFrame:
    """One seeded run: seed the initialisation, build the model, :func:`fit` it quietly.

    ``seed`` fixes initialisation (the ``"init"`` stream, :func:`ev2lite.seeds.stream_seed`),
    data order, augmentation and dropout (``Recipe.seed``). With ``report`` it prints one line
    when done (labels, seed, final test accuracy, training seconds), which the main job shows as
    its progress. Returns the history with the
    ``labels`` (e.g. ``size=128, magnitude=9``) and ``seed`` added as columns.
    """
    torch.manual_seed(stream_seed(seed, "init"))
    history = fit(make_model(), *data, stages, replace(recipe, seed=seed), progress=False)
    if report:
        last = history.iloc[-1]
        print(f"trained {', '.join(f'{k}={v}' for k, v in labels.items()) or 'run'}, seed {seed}: "
              f"test accuracy {last.test_acc:.1%} after {int(last.epoch)} epochs, "
              f"{last.train_time_s:.0f} s", flush=True)
    return history.assign(seed=seed, **labels)


def mean_std(runs: pd.DataFrame, by: list[str], value: str = "test_acc") -> pd.DataFrame:
    """Final-epoch ``value`` of each run, then mean, standard deviation and count per ``by`` group.

    ``runs`` holds the concatenated histories of :func:`train_once` (one run = one ``seed`` per
    group). Accuracy columns stay fractions (0-1); the std is 0 for a single seed.
    """
    final = runs.sort_values("epoch").groupby(by + ["seed"], as_index=False).last()
    stats = final.groupby(by)[value].agg(["mean", "std", "count"]).reset_index()
    return stats.fillna({"std": 0.0})


def paired_difference(runs: pd.DataFrame, by: str, arm: str, treatment: str, baseline: str,
                      value: str = "test_acc") -> pd.DataFrame:
    """Final-epoch ``value`` of the ``treatment`` run minus the ``baseline`` run of the same seed
    (same initialisation and data order), then mean, std and count over seeds per ``by`` group,
    in the units of ``value`` (Table 13's "adaptive minus vanilla"). Raises ``KeyError`` if an
    arm is missing."""
    final = runs.sort_values("epoch").groupby([by, arm, "seed"])[value].last().unstack(arm)
    return (final[treatment] - final[baseline]).groupby(by).agg(["mean", "std", "count"])


def time_to_reach(history: pd.DataFrame, accuracy: float) -> float:
    """Training seconds (``train_time_s``) at the end of the first epoch of one run (rows in
    epoch order, as :func:`ev2lite.train.fit` returns them) whose ``test_acc`` is at least
    ``accuracy`` (a fraction, 0-1); NaN if the run never reaches it."""
    reached = history.query("test_acc >= @accuracy")
    return float(reached.train_time_s.iloc[0]) if len(reached) else float("nan")


def speedup_at_equal_accuracy(runs: pd.DataFrame, by: str, arm: str, baseline: str,
                              faster: str) -> pd.DataFrame:
    """How much sooner the ``faster`` arm reaches the accuracy both arms reach (Table 12's claim).

    For each ``by`` group (e.g. the model) and seed of :func:`train_once` histories ``runs``, the
    common accuracy is the lower of the two arms' final test accuracies; each arm's time is
    :func:`time_to_reach` of it, and ``speedup_x`` = baseline seconds / faster seconds. Raises
    ``ValueError`` if an arm is missing from a group.
    """
    rows = []
    for (group, seed), run in runs.groupby([by, "seed"]):
        arms = {name: run[run[arm] == name].sort_values("epoch") for name in (baseline, faster)}
        if any(a.empty for a in arms.values()):
            raise ValueError(f"{by}={group!r}, seed {seed}: needs runs with {arm} = "
                             f"{baseline!r} and {faster!r}, got {sorted(run[arm].unique())}")
        accuracy = min(a.test_acc.iloc[-1] for a in arms.values())
        seconds = {name: time_to_reach(a, accuracy) for name, a in arms.items()}
        rows.append({by: group, "seed": seed, "accuracy": accuracy,
                     f"{baseline}_s": seconds[baseline], f"{faster}_s": seconds[faster],
                     "speedup_x": seconds[baseline] / seconds[faster]})
    return pd.DataFrame(rows)
