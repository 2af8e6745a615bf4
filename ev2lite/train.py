"""The one training loop, ``fit()``: stages in, a per-epoch history out.

A run is a list of :class:`Stage` (epochs, image size and the regularization strengths of that
stage) plus a :class:`Recipe` (optimizer, learning rate schedule, label smoothing, EMA, ...).
Fixed-size training is a single stage; progressive learning (paper Section 4, Algorithm 1) is a
longer list, and only the list changes: weights, optimizer state and the learning rate schedule
carry across stage boundaries, as in the official code.

Every epoch ends with a checkpoint (written atomically) when ``checkpoint=`` is given; calling
``fit`` again with the same arguments resumes after the last finished epoch and produces the
same history and weights as an unbroken run, because each epoch's randomness (data order,
augmentation, dropout) is seeded from ``(seed, epoch)`` alone.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from timm.optim import RMSpropTF
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import distributed, guard
from .augment import MAX_MAGNITUDE, MIX_MODES, mixup_cutmix, rand_augment
from .data import ImageDataset, Loader


def _check_rules(obj, rules: dict[str, tuple[Callable[[float], bool], str]]) -> None:
    """``ValueError`` for the first field of ``obj`` (a Stage or Recipe) breaking its rule in
    ``rules`` (``{field: (test, text)}``; ``None`` values pass), e.g. "Stage needs epochs >= 1"."""
    for name, (allowed, text) in rules.items():
        value = getattr(obj, name)
        if value is not None and not allowed(value):
            raise ValueError(f"{type(obj).__name__} needs {name} {text}, got {value!r}")


def _at_least(low):
    return lambda value: value >= low


def _fraction(value):
    return 0 <= value < 1


# Possible values of Stage's and Recipe's numeric fields: {field: (test, the rule in words)}.
STAGE_RULES = {
    "epochs": (_at_least(1), ">= 1"),
    "image_size": (_at_least(1), ">= 1 (px)"),
    "randaugment": (lambda m: 0 <= m <= MAX_MAGNITUDE,
                    f"in [0, {MAX_MAGNITUDE}] (torchvision's scale, about 3x the paper's; 0 = off)"),
    "mixup_alpha": (_at_least(0), ">= 0 (0 = off)"),
    "cutmix_alpha": (_at_least(0), ">= 0 (0 = off)"),
    "dropout": (_fraction, "in [0, 1)"),
    "stochastic_depth": (_fraction, "in [0, 1)"),
}


@dataclass(frozen=True)
class Stage:
    """One stage of training: ``epochs`` at ``image_size`` px with these regularization strengths.

    ``randaugment``: RandAugment magnitude (torchvision 0-30 scale, 0 = off); ``mixup_alpha`` and
    ``cutmix_alpha``: Beta-distribution alphas (0 = off); ``dropout``: rate before the classifier
    and ``stochastic_depth``: largest drop probability of the last block (``None`` keeps the
    model's); ``mix_mode``: with both mixup and CutMix on, ``"choice"`` (one per batch) or
    ``"split"`` (half a batch each, the released code); ``random_crop``: training images are
    random crops and flips (``True``) or whole images resized as at test time (``False``, for a
    short fine-tune at the test resolution: Graphcore's reduced-resolution training, FixRes).
    Raises ``ValueError`` for impossible values (``STAGE_RULES``, ``MIX_MODES``).
    """

    epochs: int
    image_size: int
    randaugment: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    dropout: float | None = None
    stochastic_depth: float | None = None
    mix_mode: str = "choice"
    random_crop: bool = True

    def __post_init__(self):
        _check_rules(self, STAGE_RULES)
        if self.mix_mode not in MIX_MODES:
            raise ValueError(f"mix_mode must be one of {MIX_MODES}, got {self.mix_mode!r}")


# Allowed values of Recipe's string fields (the command line offers the same).
RECIPE_CHOICES = {"optimizer": ("sgd", "rmsprop"),
                  "lr_schedule": ("cosine", "exponential", "constant"),
                  "precision": ("fp32", "bf16")}
# ... and of its numeric fields, as STAGE_RULES.
RECIPE_RULES = {
    "batch_size": (_at_least(1), ">= 1 (images per step and process)"),
    "lr": (lambda lr: lr > 0, "> 0 (the peak learning rate, e.g. 0.1)"),
    "momentum": (_fraction, "in [0, 1)"),
    "weight_decay": (_at_least(0), ">= 0 (0 = off)"),
    "warmup_epochs": (_at_least(0), ">= 0 (0 = no warmup)"),
    "lr_decay": (lambda d: 0 < d <= 1, "in (0, 1]"),
    "lr_decay_epochs": (lambda e: e > 0, "> 0"),
    "label_smoothing": (_fraction, "in [0, 1)"),
    "ema_decay": (_fraction, "in [0, 1), e.g. 0.9999 (None or 0 = off)"),
    "eval_size": (_at_least(1), ">= 1 (px; None = the last stage's)"),
    "eval_batch_size": (_at_least(1), ">= 1"),
    "seed": (_at_least(0), ">= 0"),
}


@dataclass(frozen=True)
class Recipe:
    """Optimization settings of a run (everything but the stages).

    ``optimizer``: ``"sgd"`` (Nesterov momentum) or ``"rmsprop"`` (TF-style RMSProp, eps inside
    the square root, as the paper; decay 0.9, eps 1e-3). ``lr_schedule``: linear warmup over
    ``warmup_epochs`` then ``"cosine"`` to zero, ``"exponential"`` (x ``lr_decay`` every
    ``lr_decay_epochs``, the paper's 0.97 / 2.4) or ``"constant"`` (the official fine-tuning
    recipe, REFERENCE.md section 2; see :mod:`ev2lite.transfer`). Weight decay skips norm and
    bias parameters.
    ``ema_decay``: keep an exponential moving average of the weights (``None`` = off) and report
    test accuracy of the average. ``eval_size``: test image size (default: the last stage's).
    ``eval_flip``: test-time augmentation by horizontal flip: the test logits are the mean of each
    image's and its mirror's (as the CIFAR-10 speed records do, REFERENCE.md section 5).
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast). ``seed`` fixes data order, augmentation
    and dropout draws. ``batch_size`` is per process: under ``torchrun`` the global batch is
    ``batch_size * world_size``. Raises ``ValueError`` for a value outside ``RECIPE_CHOICES``
    or breaking ``RECIPE_RULES``.
    """

    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    lr_schedule: str = "cosine"
    warmup_epochs: float = 1.0
    lr_decay: float = 0.97
    lr_decay_epochs: float = 2.4
    label_smoothing: float = 0.1
    ema_decay: float | None = None
    eval_size: int | None = None
    eval_batch_size: int = 500
    eval_flip: bool = False
    precision: str = "fp32"
    channels_last: bool = True
    seed: int = 0

    def __post_init__(self):
        for name, allowed in RECIPE_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        _check_rules(self, RECIPE_RULES)

    @classmethod
    def paper(cls, batch_size: int = 4096, **changes) -> Recipe:
        """The paper's ImageNet recipe (Section 5.1): RMSProp, LR 0.256 per 4096 images warmed up
        over 5 epochs, then x0.97 every 2.4 epochs; weight decay 1e-5; EMA 0.9999; label
        smoothing 0.1. The LR scales linearly with ``batch_size``."""
        return cls(batch_size=batch_size, optimizer="rmsprop", lr=0.256 * batch_size / 4096,
                   weight_decay=1e-5, lr_schedule="exponential", warmup_epochs=5,
                   ema_decay=0.9999, **changes)


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, truncated, or belongs to a different run."""


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer, without weight decay on 1-d parameters (norms, biases)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    if recipe.optimizer == "rmsprop":
        return RMSpropTF(groups, lr=recipe.lr, alpha=0.9, eps=1e-3, momentum=recipe.momentum)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}: choose 'sgd' or 'rmsprop'")


def lr_factor(step: int, steps_per_epoch: int, total_steps: int, recipe: Recipe) -> float:
    """Multiplier of ``recipe.lr`` at optimizer step ``step`` (0-based): warmup, then decay."""
    warmup = recipe.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if recipe.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
    if recipe.lr_schedule == "exponential":
        return recipe.lr_decay ** ((step - warmup) / (recipe.lr_decay_epochs * steps_per_epoch))
    if recipe.lr_schedule == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {recipe.lr_schedule!r}: one of "
                     f"{', '.join(RECIPE_CHOICES['lr_schedule'])}")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader, precision: str = "fp32",
             flip: bool = False) -> tuple[float, float]:
    """Mean cross-entropy loss and top-1 accuracy (fraction, 0-1) of ``model`` on ``loader``;
    with ``flip``, of the mean logits of each image (N, C, H, W) and its horizontal mirror."""
    model.eval()
    device = next(model.parameters()).device
    loss, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
            if flip:
                logits = (logits + model(x.flip(3))) / 2
        loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    return loss / count, correct / count


def _set_regularization(model: nn.Module, stage: Stage) -> None:
    if hasattr(model, "set_regularization"):
        model.set_regularization(stage.dropout, stage.stochastic_depth)
    elif stage.dropout is not None or stage.stochastic_depth is not None:
        raise ValueError(f"{type(model).__name__} has no set_regularization(dropout, "
                         "stochastic_depth): leave Stage.dropout and stochastic_depth as None")


def _fingerprint(model: nn.Module, stages: list[Stage], recipe: Recipe, n_train: int,
                 world_size: int) -> str:
    params = sum(p.numel() for p in model.parameters())
    return repr(([asdict(s) for s in stages], asdict(recipe), n_train, params, world_size))


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, fingerprint: str) -> dict:
    """Read a checkpoint written by :func:`fit`; ``CheckpointError`` if corrupt or foreign."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({e}); delete it to "
                              "start the run afresh") from e
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(f"checkpoint {path} belongs to a different run (other stages, "
                              "recipe, data, model or number of processes); delete it or choose "
                              "another path")
    return state


def check_run(model: nn.Module, train_set: ImageDataset, stages: list[Stage], recipe: Recipe,
              world_size: int = 1) -> None:
    """Refuse, before any training, a run that cannot train: ``ValueError`` (one line: what is
    wrong, what to change) for no stages, ``recipe.batch_size`` above a process's share of
    ``train_set`` (no full batch: no step), or a stage's image size or ``recipe.eval_size``
    below the model's ``cfg.min_size`` (models without ``cfg`` are not size-checked)."""
    if not stages:
        raise ValueError("fit needs at least one Stage")
    share = len(train_set) // world_size
    if recipe.batch_size > share:
        raise ValueError(f"batch_size {recipe.batch_size} is larger than the {share} training "
                         "images of each process: lower batch_size or train on more images")
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return
    sizes = {f"stages[{i}].image_size": s.image_size for i, s in enumerate(stages)}
    if recipe.eval_size:
        sizes["Recipe.eval_size"] = recipe.eval_size
    for where, size in sizes.items():
        if size < cfg.min_size:
            raise ValueError(f"{where} is {size} px but {cfg.name} needs at least {cfg.min_size} "
                             "px (its output stride): raise it or use a small-input variant "
                             "such as 'efficientnetv2_cifar'")


def fit(model: nn.Module, train_set: ImageDataset, test_set: ImageDataset, stages: list[Stage],
        recipe: Recipe = Recipe(), *, checkpoint: str | Path | None = None,
        progress: bool = True, device: str | torch.device | None = None) -> pd.DataFrame:
    """Train ``model`` through ``stages`` and return the per-epoch history.

    History columns: ``epoch`` (1-based), ``stage`` (0-based), ``image_size`` (px), ``lr`` (at the
    epoch's end), ``train_loss``, ``train_acc`` (0-1, against the argmax of mixed labels),
    ``test_loss``, ``test_acc`` (0-1, of the EMA weights when enabled), ``images_per_s`` (training
    throughput of the epoch), ``train_time_s`` (cumulative training seconds, evaluation
    excluded). ``device`` defaults to CUDA when available. With ``checkpoint`` (a file path) the
    state is saved after every epoch and a later call with the same arguments resumes from it;
    a checkpoint of another run or a corrupt one raises :class:`CheckpointError`. Before
    training, :func:`check_run` refuses impossible runs (``ValueError``) and, unless the
    checkpoint says the run is finished, :func:`ev2lite.guard.check_train_memory` warns
    (``ResourceWarning``) when a step at the largest image size would not fit in memory.

    Under ``torchrun`` (a process group initialised, see :mod:`ev2lite.distributed`) each rank
    trains on its shard of ``train_set`` (``recipe.batch_size`` images a step) through
    ``DistributedDataParallel`` and evaluates the whole ``test_set``. The weights (BatchNorm
    statistics averaged over the ranks after every epoch) and the history (train columns and
    ``images_per_s`` over all ranks together) are identical on every rank; only rank 0 reads
    and writes ``checkpoint`` and shows progress.
    """
    rank, world_size = distributed.rank_and_world_size()
    check_run(model, train_set, stages, recipe, world_size)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    net = DistributedDataParallel(model) if world_size > 1 else model  # the train step's model
    num_classes = len(train_set.classes)
    train = Loader(train_set, recipe.batch_size, train=True, seed=recipe.seed,
                   channels_last=recipe.channels_last, rank=rank, world_size=world_size)
    test = Loader(test_set, recipe.eval_batch_size, train=False,
                  image_size=recipe.eval_size or stages[-1].image_size,
                  channels_last=recipe.channels_last)
    steps_per_epoch, total_epochs = len(train), sum(s.epochs for s in stages)
    total_steps = steps_per_epoch * total_epochs
    optimizer = make_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, total_steps, recipe))
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay),
                         use_buffers=True) if recipe.ema_decay else None)

    history, done, train_time = [], 0, 0.0
    checkpoint = Path(checkpoint) if checkpoint else None
    fingerprint = _fingerprint(model, stages, recipe, len(train_set), world_size)
    state = None
    if checkpoint and checkpoint.exists() and rank == 0:
        state = load_checkpoint(checkpoint, fingerprint)
    state = distributed.broadcast_object(state)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history, done = state["history"], state["epoch"]
        train_time = history[-1]["train_time_s"] if history else 0.0
    if done < total_epochs:
        guard.check_train_memory(model, max(s.image_size for s in stages), recipe, device)

    bar = tqdm(total=total_steps, initial=done * steps_per_epoch, disable=not progress or rank > 0,
               unit="step", desc="fit")
    epoch = 0
    for stage_index, stage in enumerate(stages):
        for _ in range(stage.epochs):
            epoch += 1
            if epoch <= done:
                continue
            # dropout, mixup, RandAugment: one stream per (seed, epoch, rank)
            torch.manual_seed((recipe.seed * 1_000_003 + epoch) * world_size + rank)
            train.set_epoch(epoch)
            train.image_size = stage.image_size
            train.augment = rand_augment(stage.randaugment)
            train.random_crop = stage.random_crop
            mix = mixup_cutmix(stage.mixup_alpha, stage.cutmix_alpha, num_classes, stage.mix_mode)
            _set_regularization(model, stage)
            model.train()
            start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
            for x, y in train:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x, target = (x, y) if mix is None else mix(x, y)
                with torch.autocast(device.type, torch.bfloat16, enabled=recipe.precision == "bf16"):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), target, label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                loss_sum += loss.item() * len(y)
                hard = target if target.ndim == 1 else target.argmax(1)
                correct += (logits.argmax(1) == hard).sum().item()
                seen += len(y)
                bar.update()
            seconds = time.perf_counter() - start
            loss_sum, correct, seen = distributed.all_reduce([loss_sum, correct, seen])
            (seconds,) = distributed.all_reduce([seconds], "max")  # the slowest rank's
            distributed.average_buffers(model, *([ema] if ema else []))  # BatchNorm statistics
            train_time += seconds
            test_loss, test_acc = evaluate(ema.module if ema else model, test, recipe.precision,
                                           recipe.eval_flip)
            history.append({
                "epoch": epoch, "stage": stage_index, "image_size": stage.image_size,
                "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                "train_acc": correct / seen, "test_loss": test_loss, "test_acc": test_acc,
                "images_per_s": seen / seconds, "train_time_s": train_time})
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", test_acc=f"{test_acc:.3f}")
            if checkpoint and rank == 0:
                _save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(),
                              "ema": ema.state_dict() if ema else None, "history": history,
                              "epoch": epoch, "fingerprint": fingerprint}, checkpoint)
    bar.close()
    return pd.DataFrame(history)


if __name__ == "__main__":  # python -m ev2lite.train: the command line (ev2lite/cli.py)
    import sys

    from ev2lite.cli import main

    sys.exit(main())
