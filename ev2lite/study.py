"""Small helpers that the study notebooks share: load a train/test pair, train one seeded run,
summarize repeated runs as mean and spread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd
import torch
from torch import nn

from .data import ImageDataset, load_dataset
from .train import Recipe, Stage, fit


def load_pair(name: str, train_subset: int | None = None, test_subset: int | None = None,
              seed: int = 0, *, download: bool = True,
              progress: bool = True) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``name``, optionally class-stratified subsets of the given sizes.

    ``download`` fetches the data only where nothing is found locally (and a network exists).
    Raises the data module's ``DatasetNotFoundError`` (with where it looked and what to do).
    """
    train, test = (load_dataset(name, split, download=download, progress=progress)
                   for split in ("train", "test"))
    if train_subset:
        train = train.subset(train_subset, seed=seed)
    if test_subset:
        test = test.subset(test_subset, seed=seed)
    return train, test


def train_once(make_model: Callable[[], nn.Module], data: tuple[ImageDataset, ImageDataset],
               stages: list[Stage], recipe: Recipe, seed: int, **labels) -> pd.DataFrame:
    """One seeded run: ``torch.manual_seed(seed)``, build the model, :func:`fit` it quietly.

    ``seed`` fixes initialisation, data order and augmentation. Returns the history with the
    ``labels`` (e.g. ``size=128, magnitude=9``) and ``seed`` added as columns.
    """
    torch.manual_seed(seed)
    history = fit(make_model(), *data, stages, replace(recipe, seed=seed), progress=False)
    return history.assign(seed=seed, **labels)


def mean_std(runs: pd.DataFrame, by: list[str], value: str = "test_acc") -> pd.DataFrame:
    """Final-epoch ``value`` of each run, then mean, standard deviation and count per ``by`` group.

    ``runs`` holds the concatenated histories of :func:`train_once` (one run = one ``seed`` per
    group). Accuracy columns stay fractions (0-1); the std is 0 for a single seed.
    """
    final = runs.sort_values("epoch").groupby(by + ["seed"], as_index=False).last()
    stats = final.groupby(by)[value].agg(["mean", "std", "count"]).reset_index()
    return stats.fillna({"std": 0.0})
