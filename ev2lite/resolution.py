"""Reduced-resolution training: train small, then fine-tune the last layers at the test size.

Graphcore (REFERENCE.md section 4, seed article 003), after Touvron et al. 2019 ("FixRes"): train
at about half the native pixel count (EfficientNet-B0: 224 -> 160 px), then fine-tune only the
last layers for a short time (2 epochs) at the test resolution, choosing sizes with
``train_size % 32 == test_size % 32``. Random-resized crops make objects look larger in training
than in whole test images; training small and testing large cancels part of that, and the short
fine-tune adapts the last layers (and their normalization) to the test-size statistics.

:func:`finetune_last_layers` is ``ev2lite.train.fit`` with one :class:`~ev2lite.recipe.Stage` at
the test size, run inside :func:`only_last_layers`, which freezes everything else;
:func:`resolution_sweep` trains once and tests at several sizes, with and without the fine-tune.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .data import ImageDataset, Loader
from .models import EfficientNet
from .recipe import Recipe, Stage
from .train import evaluate, fit
from .study import run_key
from .transfer import pretrain, weights_id

TRAINABLE = {"head": ("head", "classifier"), "last_stage": ("last_stage", "head", "classifier")}
"""What :func:`only_last_layers` leaves trainable: the head (1x1 conv + norm) and classifier, or
also the last stage of blocks."""


def half_pixel_size(native: int, multiple: int = 32) -> int:
    """The training size with about half the pixels of ``native`` (side ``native / sqrt(2)``),
    rounded to the nearest size congruent to ``native`` modulo ``multiple`` (Graphcore's rule,
    so both sizes give the same feature-map alignment at output stride 32).

    ``half_pixel_size(224) == 160`` (0.51 of the pixels), ``half_pixel_size(128) == 96``,
    ``half_pixel_size(96) == 64``. Raises ``ValueError`` unless ``native > multiple >= 1``.
    """
    if not native > multiple >= 1:
        raise ValueError(f"need native > multiple >= 1 (px), got native={native}, "
                         f"multiple={multiple}")
    steps = round((native - native / math.sqrt(2)) / multiple)
    return native - max(1, steps) * multiple


def _parts(model: nn.Module, trainable: str) -> list[nn.Module]:
    if trainable not in TRAINABLE:
        raise ValueError(f"unknown trainable {trainable!r}: choose one of {sorted(TRAINABLE)}")
    if not isinstance(model, EfficientNet):
        raise TypeError(f"{type(model).__name__} is not an ev2lite EfficientNet: build it with "
                        "ev2lite.create_model")
    named = model.parts()
    named["last_stage"] = named[f"stage {len(model.stages)}"]
    return [named[name] for name in TRAINABLE[trainable]]


def _stay_in_eval(module: nn.Module, args: tuple) -> None:
    module.eval()  # returns None: the forward's inputs are left unchanged


@contextmanager
def only_last_layers(model: nn.Module, trainable: str = "head") -> Iterator[list[nn.Module]]:
    """Within the ``with`` block only the last layers of ``model`` train; yields the frozen
    top-level modules.

    ``trainable`` is a key of :data:`TRAINABLE`. Every other parameter gets
    ``requires_grad=False`` and every module holding one is kept in eval mode (a forward
    pre-hook calls ``.eval()`` even after ``model.train()``), so frozen BatchNorm layers neither
    use batch statistics nor update their running ones, and frozen blocks skip stochastic depth.
    On exit the ``requires_grad`` flags are restored and the hooks removed. Raises
    ``ValueError`` for an unknown ``trainable`` and ``TypeError`` for a model that is not an
    ev2lite EfficientNet.
    """
    keep = _parts(model, trainable)
    frozen = [m for m in model.parts().values() if m not in keep]
    flags = {p: p.requires_grad for p in model.parameters()}
    hooks = [m.register_forward_pre_hook(_stay_in_eval) for m in frozen]
    for m in frozen:
        m.requires_grad_(False)
    try:
        yield frozen
    finally:
        for hook in hooks:
            hook.remove()
        for p, flag in flags.items():
            p.requires_grad_(flag)


def finetune_last_layers(model: nn.Module, train_set: ImageDataset, test_set: ImageDataset,
                         image_size: int, epochs: int = 1, recipe: Recipe = Recipe(), *,
                         trainable: str = "head", progress: bool = False) -> pd.DataFrame:
    """Fine-tune the last layers of a trained ``model`` at ``image_size`` px and test there.

    Runs :func:`ev2lite.train.fit` for one ``Stage(epochs, image_size, random_crop=False)``
    (whole training images resized as at test time, shuffled; no crops, flips, RandAugment,
    mixup or CutMix: the test-style preprocessing Graphcore fine-tunes on, REFERENCE.md section
    4) with ``recipe`` evaluated at ``image_size``, inside :func:`only_last_layers`
    (``trainable``: ``"head"`` or ``"last_stage"``). Returns fit's history (its
    ``train_time_s`` is the fine-tune's own cost). Raises what :func:`only_last_layers` and
    ``fit`` raise.
    """
    with only_last_layers(model, trainable):
        return fit(model, train_set, test_set, [Stage(epochs, image_size, random_crop=False)],
                   replace(recipe, eval_size=image_size), progress=progress)


def resolution_sweep(make_model: Callable[[], nn.Module],
                     data: tuple[ImageDataset, ImageDataset], stages: list[Stage],
                     test_sizes: list[int], recipe: Recipe, seed: int, *,
                     finetune_epochs: int = 1, finetune_recipe: Recipe | None = None,
                     trainable: str = "head", cache: str | os.PathLike | None = None,
                     **labels) -> pd.DataFrame:
    """Train one seeded model through ``stages``, then test it at every size of ``test_sizes``
    (px) as trained and after :func:`finetune_last_layers` at that size (on a copy).

    The training is :func:`ev2lite.transfer.pretrain` (:func:`ev2lite.study.train_once`: the
    ``seed`` sets initialisation, data order and augmentation; with ``cache``, a folder, the
    trained run and its weights are kept there and read back, so an interrupted sweep resumes;
    ``labels`` name the run in its key and progress line, e.g. ``scheme="half"``; the tests and
    fine-tunes are kept there too, as ``<key>.sweep.csv`` keyed by the trained weights'
    :func:`~ev2lite.transfer.weights_id`, the test sizes and the fine-tuning settings);
    ``recipe`` trains, ``finetune_recipe`` (default ``recipe``, with ``seed``) fine-tunes.
    Returns one row per (test size, fine-tuned or not): ``train_size`` (the last stage's),
    ``test_size``, ``finetuned``, ``test_acc`` (0-1), ``train_time_s`` (the main training's
    seconds), ``finetune_time_s`` (0 without fine-tune) and ``seed``. Raises what ``fit`` raises.
    """
    train_set, test_set = data
    finetune_recipe = replace(finetune_recipe or recipe, seed=seed)
    model, history = pretrain(make_model, data, stages, recipe, seed, cache=cache, **labels)
    done = None
    if cache is not None:  # the sweep of these weights, as a run of its own: one stage per test size
        key = run_key(model, data, [Stage(finetune_epochs, size) for size in test_sizes], finetune_recipe,
                      {"sweep_of": weights_id(model.state_dict()), "trainable": trainable, **labels})
        done = Path(cache) / f"{key}.sweep.csv"
        if done.exists():
            return pd.read_csv(done)
    rows = []
    for size in test_sizes:
        loader = Loader(test_set, recipe.eval_batch_size, train=False, image_size=size,
                        channels_last=recipe.channels_last)
        rows.append({"test_size": size, "finetuned": False, "finetune_time_s": 0.0,
                     "test_acc": evaluate(model, loader, recipe.precision)[1]})
        tuned = finetune_last_layers(copy.deepcopy(model), train_set, test_set, size,
                                     finetune_epochs, finetune_recipe, trainable=trainable)
        rows.append({"test_size": size, "finetuned": True,
                     "finetune_time_s": tuned.train_time_s.iloc[-1],
                     "test_acc": tuned.test_acc.iloc[-1]})
    sweep = pd.DataFrame(rows).assign(train_size=stages[-1].image_size, seed=seed,
                                      train_time_s=history.train_time_s.iloc[-1])
    if done is not None:
        tmp = done.with_name(done.name + ".tmp")
        sweep.to_csv(tmp, index=False)
        os.replace(tmp, done)
    return sweep
