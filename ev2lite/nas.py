"""Training-aware neural architecture search at CPU scale (paper Section 3.3, Figure 3).

The paper's search space is stage-based and factorized (after MnasNet, Tan et al. 2019): every
stage of an EfficientNet backbone picks its block type (MBConv or Fused-MBConv), number of
layers, kernel size (3x3 or 5x5) and expand ratio (1, 4 or 6), while channels and strides stay
the backbone's. The paper samples up to 1000 models, trains each for about 10 epochs at a
reduced image size and ranks them by the reward ``A * S**w * P**v`` (accuracy, normalized
training step time, parameters; ``w = -0.07``, ``v = -0.05``).

Here the search is random, the backbone is a CPU-scale stage table (e.g. ``efficientnetv2_cifar``:
EfficientNetV2-B0 at half width and depth) and the step time is measured on the machine at hand,
so the operators the search prefers are this machine's, not a TPU's.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import pandas as pd

from .blocks import BLOCK_TYPES
from .configs import FUSED, MBCONV, ModelConfig, scaled_stages
from .data import ImageDataset
from .measure import compare_train_steps, count_params, multiply_adds
from .models import EfficientNet
from .study import train_once
from .recipe import Recipe, Stage
from .stats import tie_band

W_STEP_TIME, V_PARAMS = -0.07, -0.05  # the paper's reward exponents (Section 3.3)


@dataclass(frozen=True)
class SearchSpace:
    """The per-stage choices of the paper's search space on top of a backbone.

    ``base``: the backbone; its stage table fixes every stage's channels (scaled by
    ``base.width_mult``) and stride. Each stage chooses one of ``blocks``, ``kernels`` and
    ``expand_ratios``, and a number of layers: the backbone's (after ``base.depth_mult``) plus one
    of ``layer_deltas`` (MnasNet's "0, +1, -1"), at least 1. MBConv stages get squeeze-and-
    excitation with ``se_ratio``, Fused-MBConv stages none, as in EfficientNetV2 (Table 4).

    Raises ``TypeError`` if ``base`` is not a ``ModelConfig`` and ``ValueError`` for an unknown
    block type, an even or non-positive kernel, an expand ratio below 1 or no layer delta.
    """

    base: ModelConfig
    blocks: tuple[str, ...] = (FUSED, MBCONV)
    kernels: tuple[int, ...] = (3, 5)
    expand_ratios: tuple[int, ...] = (1, 4, 6)
    layer_deltas: tuple[int, ...] = (-1, 0, 1)
    se_ratio: float = 0.25

    def __post_init__(self):
        if not isinstance(self.base, ModelConfig):
            raise TypeError(f"base must be a ModelConfig (e.g. ev2lite.get_config("
                            f"'efficientnetv2_cifar')), got {type(self.base).__name__}")
        if not self.blocks or not set(self.blocks) <= set(BLOCK_TYPES):
            raise ValueError(f"blocks must be a non-empty subset of {sorted(BLOCK_TYPES)}, "
                             f"got {self.blocks}")
        if not self.kernels or any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd sizes >= 1 such as (3, 5), got {self.kernels}")
        if not self.expand_ratios or any(e < 1 for e in self.expand_ratios):
            raise ValueError(f"expand_ratios must be >= 1 such as (1, 4, 6), "
                             f"got {self.expand_ratios}")
        if not self.layer_deltas:
            raise ValueError("layer_deltas needs at least one value, e.g. (-1, 0, 1)")

    def layer_choices(self) -> list[tuple[int, ...]]:
        """The allowed numbers of layers of each stage (sorted, distinct, at least 1)."""
        return [tuple(sorted({max(1, s.repeats + d) for d in self.layer_deltas}))
                for s in scaled_stages(self.base)]


def space_size(space: SearchSpace) -> int:
    """Number of distinct architectures in ``space``: the product over stages of
    blocks x kernels x expand ratios x layer counts."""
    per_stage = len(space.blocks) * len(space.kernels) * len(space.expand_ratios)
    return math.prod(per_stage * len(layers) for layers in space.layer_choices())


def sample(space: SearchSpace, num: int, seed: int = 0) -> list[ModelConfig]:
    """``num`` architectures drawn uniformly from ``space``; the same ``seed`` gives the same list.

    Each is a ``ModelConfig`` (named ``sample_00``, ``sample_01``, ...) that
    ``ev2lite.EfficientNet(cfg, num_classes)`` builds: the backbone's config with a new stage
    table and ``depth_mult=1`` (its layer counts are final). Raises ``ValueError`` for ``num < 0``.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rng = random.Random(seed)
    configs = []
    for i in range(num):
        stages = []
        for stage, layers in zip(space.base.stages, space.layer_choices()):
            block = rng.choice(space.blocks)
            stages.append(replace(stage, block=block, kernel=rng.choice(space.kernels),
                                  expand_ratio=rng.choice(space.expand_ratios),
                                  repeats=rng.choice(layers),
                                  se_ratio=space.se_ratio if block == MBCONV else 0.0))
        configs.append(replace(space.base, name=f"sample_{i:02d}", stages=tuple(stages),
                               depth_mult=1.0))
    return configs


def reward(accuracy, step_time, params, w: float = W_STEP_TIME, v: float = V_PARAMS):
    """The search reward ``A * S**w * P**v`` (paper Section 3.3; w = -0.07, v = -0.05).

    ``accuracy`` A (fraction), ``step_time`` S (normalized training step time) and ``params`` P
    (parameter count) are numbers or equal-length arrays/Series; the result has their type.
    Scaling S or P by a constant scales every reward alike, so the ranking does not depend on
    the normalization. Raises ``ValueError`` if any input is zero or negative.
    """
    for name, value in (("accuracy", accuracy), ("step_time", step_time), ("params", params)):
        if np.any(np.asarray(value, dtype=float) <= 0):
            raise ValueError(f"reward needs {name} > 0 (the reward is a product of powers), "
                             f"got {value!r}")
    return accuracy * step_time ** w * params ** v


def pareto_front(table: pd.DataFrame, maximize: tuple[str, ...] = ("accuracy",),
                 minimize: tuple[str, ...] = ("step_time_s", "params")) -> pd.DataFrame:
    """The rows of ``table`` that no other row dominates.

    Row a dominates row b when a is at least as good in every column (higher in ``maximize``,
    lower in ``minimize``) and strictly better in one. Returns those rows, in table order.
    Raises ``ValueError`` naming any column the table lacks.
    """
    missing = [c for c in (*maximize, *minimize) if c not in table]
    if missing:
        raise ValueError(f"table has no column(s) {missing}; it has {list(table.columns)}")
    cost = np.hstack([-table[list(maximize)].to_numpy(float),
                      table[list(minimize)].to_numpy(float)])  # lower is better everywhere
    dominated = [((cost <= row).all(1) & (cost < row).any(1)).any() for row in cost]
    return table[~np.array(dominated, dtype=bool)]


def architecture(cfg: ModelConfig) -> str:
    """A one-line description of the stage table as built, e.g. ``F1k3x1 F4k3x1 ... M6k3x4``:
    block (F = Fused-MBConv, M = MBConv), expand ratio, kernel, number of layers."""
    return " ".join(f"{'F' if s.block == FUSED else 'M'}{s.expand_ratio}k{s.kernel}x{s.repeats}"
                    for s in scaled_stages(cfg))


def search(space: SearchSpace, num_samples: int, data: tuple[ImageDataset, ImageDataset],
           stages: list[Stage], recipe: Recipe, *, seed: int = 0,
           references: dict[str, ModelConfig] | None = None, num_classes: int = 10,
           timing_repeats: int = 10, timing_warmup: int = 2) -> pd.DataFrame:
    """Random training-aware search: train and time the backbone, the references and
    ``num_samples`` samples of ``space`` (seeded by ``seed``), and score them.

    Every model trains the same way (``ev2lite.study.train_once`` with ``stages``, ``recipe`` and
    ``seed``). Then one training step of each (``recipe.batch_size`` synthetic images at the last
    stage's size) is timed, all models taking turns (:func:`ev2lite.measure.compare_train_steps`,
    ``timing_repeats`` rounds), so that background load hits every model alike.

    Returns one row per model: ``name``, ``kind`` (backbone / reference / sample),
    ``architecture`` (see :func:`architecture`), ``accuracy`` (final test accuracy, 0-1),
    ``step_time_s`` (median seconds per step), ``step_iqr_percent`` (its spread), ``norm_step_time``
    (S: step time / the backbone's), ``params``, ``train_time_s`` (the run's training seconds),
    ``reward`` (:func:`reward` of accuracy, S and params) and per-stage choices ``block_i``,
    ``kernel_i``, ``expand_i``, ``layers_i`` (``i`` = 1, 2, ...; stage 0 is the stem).
    Raises ``ValueError`` (from ``fit``) for a run that cannot train, e.g. an image size below
    the models' output stride.
    """
    configs = {space.base.name: space.base, **(references or {})}
    configs.update({c.name: c for c in sample(space, num_samples, seed)})
    size = stages[-1].image_size
    rows, cases = [], {}
    for name, cfg in configs.items():
        history = train_once(partial(EfficientNet, cfg, num_classes), data, stages, recipe, seed)
        model = EfficientNet(cfg, num_classes)
        cases[name] = (model, size, recipe.batch_size)
        kind = ("backbone" if name == space.base.name else
                "reference" if name in (references or {}) else "sample")
        row = {"name": name, "kind": kind, "architecture": architecture(cfg),
               "accuracy": history.test_acc.iloc[-1], "params": count_params(model),
               "train_time_s": history.train_time_s.iloc[-1]}
        for i, s in enumerate(scaled_stages(cfg), 1):
            row.update({f"block_{i}": s.block, f"kernel_{i}": s.kernel,
                        f"expand_{i}": s.expand_ratio, f"layers_{i}": s.repeats})
        rows.append(row)
    timing = compare_train_steps(cases, baseline=space.base.name, warmup=timing_warmup,
                                 repeats=timing_repeats, channels_last=recipe.channels_last,
                                 precision=recipe.precision)
    table = pd.DataFrame(rows)
    table.insert(4, "step_time_s", timing.median_s)
    table.insert(5, "step_iqr_percent", timing.iqr_percent)
    table.insert(6, "norm_step_time", 1 / timing.speedup)  # S: step time / the backbone's
    table.insert(9, "reward", reward(table.accuracy, table.norm_step_time, table.params))
    return table


def preferences(table: pd.DataFrame, value: str = "reward") -> pd.DataFrame:
    """Mean ``value`` of the rows that chose each option, per stage and per choice.

    ``table`` is (a part of) :func:`search`'s result, usually its samples. Returns columns
    ``stage``, ``choice`` (block / kernel / expand), ``option``, ``mean``, ``count``, by stage
    (options sorted). Because the samples are drawn uniformly, the other stages' choices average
    out, and the difference between two options' means estimates what choosing one over the
    other does to ``value``.
    """
    rows = []
    for column in table.columns:
        match = re.fullmatch(r"(block|kernel|expand)_(\d+)", column)
        if match:
            for option, group in table.groupby(column):
                rows.append({"stage": int(match[2]), "choice": match[1], "option": option,
                             "mean": group[value].mean(), "count": len(group)})
    return pd.DataFrame(rows, columns=["stage", "choice", "option", "mean", "count"])


def stage_swaps(space: SearchSpace) -> dict[str, ModelConfig]:
    """The backbone of ``space`` and, for each stage ``i``, the backbone with only that stage's
    block switched (Fused-MBConv <-> MBConv; expand ratio, kernel, layers, channels and stride
    kept; SE ``space.se_ratio`` on MBConv, none on Fused-MBConv, the space's rule), named
    ``stage<i>_fused`` or ``stage<i>_mbconv``: a stage-by-stage ablation of the block choice
    (the question of the paper's Table 3, asked one stage at a time). The backbone comes first,
    under its own name."""
    base = space.base
    configs = {base.name: base}
    for i, stage in enumerate(base.stages):
        block = MBCONV if stage.block == FUSED else FUSED
        stages = list(base.stages)
        stages[i] = replace(stage, block=block, se_ratio=space.se_ratio if block == MBCONV else 0.0)
        name = f"stage{i + 1}_{'mbconv' if block == MBCONV else 'fused'}"
        configs[name] = replace(base, name=name, stages=tuple(stages))
    return configs


def stage_block_ablation(space: SearchSpace, image_size: int, batch_size: int, *,
                         num_classes: int = 10, warmup: int = 2, repeats: int = 10,
                         channels_last: bool = True, precision: str = "fp32") -> pd.DataFrame:
    """Which block trains faster in each stage, on this machine: the backbone and its
    :func:`stage_swaps` take turns in one interleaved timing of a training step
    (:func:`ev2lite.measure.compare_train_steps`, synthetic ``[batch_size, 3, S, S]`` batches).

    Returns one row per stage: ``stage`` (1, 2, ...), ``backbone_block``, ``fused_step_ms`` and
    ``mbconv_step_ms`` (median ms per step of the model with that stage fused / MBConv, the rest
    as the backbone), ``fused_over_mbconv`` (their ratio; below 1: Fused-MBConv is faster there)
    with its tie band ``band_low``, ``band_high`` (:func:`ev2lite.stats.tie_band` of the two
    interquartile spreads), ``faster`` (``"Fused-MBConv"`` or ``"MBConv"`` when the band
    excludes 1, else ``"tie"``), ``fused_over_mbconv_macs`` and ``fused_over_mbconv_params``
    (forward multiply-adds per image and parameters of the two models), and the run's
    ``load_1min``, ``cpu_per_wall`` and ``busy``. The paper's Section 3.2 predicts Fused-MBConv
    faster in the early stages (large maps, few channels) and slower late. Raises
    ``ValueError`` for an image size the backbone cannot take.
    """
    configs = stage_swaps(space)
    models = {name: EfficientNet(cfg, num_classes) for name, cfg in configs.items()}
    timing = compare_train_steps({name: (m, image_size, batch_size) for name, m in models.items()},
                                 warmup=warmup, repeats=repeats, channels_last=channels_last,
                                 precision=precision).set_index("case")
    base = space.base.name
    rows = []
    for i, (name, stage) in enumerate(zip(list(configs)[1:], space.base.stages), 1):
        fused, mbconv = (base, name) if stage.block == FUSED else (name, base)
        band = tie_band(timing.median_s[fused] / timing.median_s[mbconv],
                        [timing.iqr_percent[fused], timing.iqr_percent[mbconv]])
        faster = {0: "tie", -1: "Fused-MBConv", 1: "MBConv"}[band.side(1.0)]
        rows.append({"stage": i, "backbone_block": stage.block,
                     "fused_step_ms": 1000 * timing.median_s[fused],
                     "mbconv_step_ms": 1000 * timing.median_s[mbconv],
                     "fused_over_mbconv": band.value, "band_low": band.low, "band_high": band.high,
                     "faster": faster,
                     "fused_over_mbconv_macs": multiply_adds(models[fused], image_size)
                     / multiply_adds(models[mbconv], image_size),
                     "fused_over_mbconv_params": count_params(models[fused]) / count_params(models[mbconv])})
    load = timing[["load_1min", "cpu_per_wall", "busy"]].iloc[0].to_dict()
    return pd.DataFrame(rows).assign(**load)


def stage_pattern_verdict(ablation: pd.DataFrame, early: int = 3) -> tuple[str, str]:
    """The verdict on "Fused-MBConv early, MBConv late" for speed from a
    :func:`stage_block_ablation` table, and why: *holds* when Fused-MBConv is faster (clear of
    the tie band) in every stage up to ``early`` and in no later stage; *fails* when MBConv is
    faster in an early stage or Fused-MBConv in a late one; else *inconclusive* (ties where the
    pattern needs a difference)."""
    first, rest = ablation[ablation.stage <= early], ablation[ablation.stage > early]
    against = ([f"MBConv faster in stage {s}" for s in first.stage[first.faster == "MBConv"]]
               + [f"Fused-MBConv faster in stage {s}" for s in rest.stage[rest.faster == "Fused-MBConv"]])
    if against:
        return "fails", "; ".join(against)
    ties = list(first.stage[first.faster == "tie"])
    if ties:
        return "inconclusive", f"tie in early stage(s) {', '.join(map(str, ties))}"
    return "holds", (f"Fused-MBConv faster in stages 1-{early}, not faster in stages "
                     f"{early + 1}-{int(ablation.stage.max())}")
