"""A run's settings: its :class:`Stage` list and :class:`Recipe`, their rules, and the two
things a recipe builds, the optimizer (:func:`make_optimizer`) and the learning-rate schedule
(:func:`lr_factor`).

Everything that trains or times a training step takes its settings from here: the loop
(:func:`ev2lite.train.fit`), the step timer (:class:`ev2lite.measure.TrainStep`), the memory
guard, the command line, progressive learning, transfer and NAS. So the step that is timed is
the step that is trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from timm.optim import RMSpropTF
from torch import nn

from .augment import MAX_MAGNITUDE, MIX_MODES
from .machine import default_channels_last, default_compile, default_precision


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
                    f"in [0, {MAX_MAGNITUDE}] (the paper's TF scale: Table 6 uses 5-25; 0 = off)"),
    "mixup_alpha": (_at_least(0), ">= 0 (0 = off)"),
    "cutmix_alpha": (_at_least(0), ">= 0 (0 = off)"),
    "dropout": (_fraction, "in [0, 1)"),
    "stochastic_depth": (_fraction, "in [0, 1)"),
}


@dataclass(frozen=True)
class Stage:
    """One stage of training: ``epochs`` at ``image_size`` px with these regularization strengths.

    ``randaugment``: RandAugment magnitude on the paper's TF scale (10 = each operation's
    standard maximum, Table 6 goes to 25; 0 = off; :func:`ev2lite.augment.rand_augment`); ``mixup_alpha`` and
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
                  "precision": ("fp32", "bf16"),
                  "compile": ("off", "auto", "on")}
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
    "eval_every": (_at_least(1), ">= 1 (epochs; the last epoch is always evaluated)"),
    "seed": (_at_least(0), ">= 0"),
}


@dataclass(frozen=True)
class Recipe:
    """Optimization settings of a run (everything but the stages).

    ``optimizer``: ``"sgd"`` (Nesterov momentum) or ``"rmsprop"`` (TF-style RMSProp, eps inside
    the square root, as the paper; decay 0.9, eps 1e-3). ``lr_schedule``: linear warmup over
    ``warmup_epochs`` then ``"cosine"`` to zero, ``"exponential"`` (x ``lr_decay`` every
    ``lr_decay_epochs``, the paper's 0.97 / 2.4: a staircase as in the released code, or smooth
    with ``lr_staircase=False``) or ``"constant"`` (the official fine-tuning recipe,
    REFERENCE.md section 2; see :mod:`ev2lite.transfer`); :func:`lr_factor` gives the values.
    Weight decay skips norm and bias parameters (:func:`make_optimizer`).
    ``ema_decay``: keep an exponential moving average of the weights (``None`` = off) and report
    test accuracy of the average. ``eval_size``: test image size (default: the last stage's).
    ``eval_every``: evaluate after every ``eval_every``-th epoch and after the last (a long run on
    a few images, tested on the full test set, spends less time testing than training).
    ``eval_flip``: test-time augmentation by horizontal flip: the test logits are the mean of each
    image's and its mirror's (as the CIFAR-10 speed records do, REFERENCE.md section 5).
    ``precision``: ``"fp32"`` or ``"bf16"`` (autocast); default ``"bf16"`` on a CUDA device
    with native bfloat16, ``"fp32"`` on CPUs (:func:`ev2lite.machine.default_precision`).
    ``compile``: run the steps through ``torch.compile``: ``"off"``, ``"on"``, or ``"auto"``
    (only for runs long enough to win back the compilation, :func:`ev2lite.train.wants_compile`);
    its default is the machine's (:func:`ev2lite.machine.default_compile`: ``"auto"`` on a GPU
    or where ``python -m ev2lite.calibrate --compile`` measured that compiling pays, else
    ``"off"``). ``channels_last``: memory format; its default is the machine's
    (:func:`ev2lite.machine.default_channels_last`: the calibrated layout, else on).
    ``seed`` fixes data order, augmentation and dropout draws. ``batch_size`` is per process:
    under ``torchrun`` the global batch is ``batch_size * world_size``. Raises ``ValueError`` for a value outside ``RECIPE_CHOICES``
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
    lr_staircase: bool = True
    label_smoothing: float = 0.1
    ema_decay: float | None = None
    eval_size: int | None = None
    eval_batch_size: int = 500
    eval_every: int = 1
    eval_flip: bool = False
    precision: str = field(default_factory=default_precision)
    channels_last: bool = field(default_factory=default_channels_last)
    compile: str = field(default_factory=default_compile)
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


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer for ``model``'s parameters: the one factory behind both training
    (:func:`ev2lite.train.fit`) and timing (:class:`ev2lite.measure.TrainStep`).

    ``"sgd"``: ``torch.optim.SGD`` with Nesterov momentum ``recipe.momentum``; ``"rmsprop"``:
    timm's ``RMSpropTF`` (TF-style, eps inside the square root; decay 0.9, eps 1e-3, momentum
    ``recipe.momentum``; paper Section 5.1). Two parameter groups: weight decay
    ``recipe.weight_decay`` on weights of 2 or more dimensions, none on 1-d parameters (norm
    scales and shifts, biases), as the official code. Raises ``ValueError`` for an unknown
    optimizer.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    if recipe.optimizer == "rmsprop":
        return RMSpropTF(groups, lr=recipe.lr, alpha=0.9, eps=1e-3, momentum=recipe.momentum)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}: choose 'sgd' or 'rmsprop'")


def lr_factor(step: int, steps_per_epoch: int, total_steps: int, recipe: Recipe) -> float:
    """Multiplier of ``recipe.lr`` at optimizer step ``step`` (0-based): warmup, then decay.

    Warmup: ``(step + 1) / warmup_steps`` for the first ``warmup_epochs * steps_per_epoch``
    steps. Then ``"cosine"``: half a cosine from 1 to 0 over the remaining steps;
    ``"exponential"``: ``lr_decay ** floor(step / decay_steps)`` with ``decay_steps =
    lr_decay_epochs * steps_per_epoch`` counted from step 0, as the released code's
    ``tf.train.exponential_decay(..., staircase=True)`` under its warmup (``lr_staircase=False``:
    the smooth ``lr_decay ** (step / decay_steps)``); ``"constant"``: 1.
    """
    warmup = recipe.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    if recipe.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))
    if recipe.lr_schedule == "exponential":
        periods = step / (recipe.lr_decay_epochs * steps_per_epoch)
        return recipe.lr_decay ** (math.floor(periods) if recipe.lr_staircase else periods)
    if recipe.lr_schedule == "constant":
        return 1.0
    raise ValueError(f"unknown lr_schedule {recipe.lr_schedule!r}: one of "
                     f"{', '.join(RECIPE_CHOICES['lr_schedule'])}")
