"""Stage tables of EfficientNet (V1) and EfficientNetV2, one line per stage.

Each table reads like the paper's Table 4 (EfficientNetV2-S) and like the block strings of the
official code (``r2_k3_s1_e1_i24_o24_c1``...); ``../shared/REFERENCE.md`` section 1 lists them.
A :class:`ModelConfig` holds a base table plus the scaling coefficients; ``ev2lite.models``
turns it into modules. Nothing here builds a tensor.

Sources: EfficientNetV2 paper Table 4 (V2-S), the released ``effnetv2_configs.py`` (V2-M/L/XL and
the V2-B0..B3 base), EfficientNet paper Table 1 and ``efficientnet_builder.py`` (V1 B0..B7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

MBCONV, FUSED = "mbconv", "fused"


@dataclass(frozen=True)
class StageConfig:
    """One stage: ``repeats`` blocks of one type; only the first block strides and changes width.

    ``block`` is ``"mbconv"`` (1x1 expand, depthwise KxK, SE, 1x1 project) or ``"fused"``
    (Fused-MBConv: one regular KxK expand conv, 1x1 project; paper Figure 2).
    ``se_ratio`` is the squeeze width as a fraction of the block's *input* channels (0 = no SE).
    """

    block: str
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int
    se_ratio: float = 0.0


def S(block, e, k, s, i, o, r, se=0.0):  # noqa: N802 -- a short constructor keeps tables one line per stage
    return StageConfig(block, e, k, s, i, o, r, se)


# fmt: off
#          block   e  k  s   in  out   r   se
V2_S = (
    S(FUSED,  1, 3, 1,  24,  24,  2),
    S(FUSED,  4, 3, 2,  24,  48,  4),
    S(FUSED,  4, 3, 2,  48,  64,  4),
    S(MBCONV, 4, 3, 2,  64, 128,  6, 0.25),
    S(MBCONV, 6, 3, 1, 128, 160,  9, 0.25),
    S(MBCONV, 6, 3, 2, 160, 256, 15, 0.25),
)
V2_M = (
    S(FUSED,  1, 3, 1,  24,  24,  3),
    S(FUSED,  4, 3, 2,  24,  48,  5),
    S(FUSED,  4, 3, 2,  48,  80,  5),
    S(MBCONV, 4, 3, 2,  80, 160,  7, 0.25),
    S(MBCONV, 6, 3, 1, 160, 176, 14, 0.25),
    S(MBCONV, 6, 3, 2, 176, 304, 18, 0.25),
    S(MBCONV, 6, 3, 1, 304, 512,  5, 0.25),
)
V2_L = (
    S(FUSED,  1, 3, 1,  32,  32,  4),
    S(FUSED,  4, 3, 2,  32,  64,  7),
    S(FUSED,  4, 3, 2,  64,  96,  7),
    S(MBCONV, 4, 3, 2,  96, 192, 10, 0.25),
    S(MBCONV, 6, 3, 1, 192, 224, 19, 0.25),
    S(MBCONV, 6, 3, 2, 224, 384, 25, 0.25),
    S(MBCONV, 6, 3, 1, 384, 640,  7, 0.25),
)
V2_XL = (
    S(FUSED,  1, 3, 1,  32,  32,  4),
    S(FUSED,  4, 3, 2,  32,  64,  8),
    S(FUSED,  4, 3, 2,  64,  96,  8),
    S(MBCONV, 4, 3, 2,  96, 192, 16, 0.25),
    S(MBCONV, 6, 3, 1, 192, 256, 24, 0.25),
    S(MBCONV, 6, 3, 2, 256, 512, 32, 0.25),
    S(MBCONV, 6, 3, 1, 512, 640,  8, 0.25),
)
V2_BASE = (  # EfficientNetV2-B0; B1..B3 scale it
    S(FUSED,  1, 3, 1,  32,  16,  1),
    S(FUSED,  4, 3, 2,  16,  32,  2),
    S(FUSED,  4, 3, 2,  32,  48,  2),
    S(MBCONV, 4, 3, 2,  48,  96,  3, 0.25),
    S(MBCONV, 6, 3, 1,  96, 112,  5, 0.25),
    S(MBCONV, 6, 3, 2, 112, 192,  8, 0.25),
)
V1_BASE = (  # EfficientNet-B0 (Tan & Le 2019, Table 1); B1..B7 scale it
    S(MBCONV, 1, 3, 1,  32,  16,  1, 0.25),
    S(MBCONV, 6, 3, 2,  16,  24,  2, 0.25),
    S(MBCONV, 6, 5, 2,  24,  40,  2, 0.25),
    S(MBCONV, 6, 3, 2,  40,  80,  3, 0.25),
    S(MBCONV, 6, 5, 1,  80, 112,  3, 0.25),
    S(MBCONV, 6, 5, 2, 112, 192,  4, 0.25),
    S(MBCONV, 6, 3, 1, 192, 320,  1, 0.25),
)
# fmt: on


@dataclass(frozen=True)
class ModelConfig:
    """Everything the builder needs for one named model.

    Channels of every stage, the stem and the head are multiplied by ``width_mult`` and rounded
    with :func:`round_channels`; repeats by ``depth_mult`` and rounded up (compound scaling,
    Tan & Le 2019). ``train_size``/``eval_size`` are the paper's image sizes in pixels.
    ``stem_stride`` 2 gives the standard output stride of 32; the CPU-scale variants use 1.
    ``bn_eps``/``bn_momentum`` follow the released weights (PyTorch momentum convention).
    ``round_limit`` is V1's 10% round-down guard of :func:`round_channels` (0.9); V2's code has
    none (0.0), which is what makes EfficientNetV2-B3 exactly 14,358,406 parameters.
    ``zero_init_last`` starts every residual branch at zero (its last norm's scale) and the
    classifier at zero (Goyal et al. 2017); off for the published models, whose initialisation
    follows the official code.
    Graphcore's practical variants (REFERENCE.md section 4), off by default: ``norm`` is one of
    ``ev2lite.blocks.NORMS`` (``"bn"``; batch-independent ``"gn"``, ``"ln"``; with Proxy Norm
    ``"gn_pn"``, ``"ln_pn"``); ``group_size`` is the channels per group of MBConv's spatial conv
    (1 = depthwise; 16 = G16); ``expand_ratio``, when set, replaces the expand ratio of every
    MBConv stage whose ratio is above 1 (G16-EfficientNet lowers 6 to 4; :data:`G16`).
    ``in_chans`` is the input's channels (3 for RGB). ``padding`` is ``"symmetric"`` (PyTorch's
    ``kernel // 2``, as torchvision and timm's non-``tf_`` models) or ``"same"`` (TensorFlow's
    "SAME", as timm's ``tf_`` models: needed to use weights ported from TensorFlow).
    How images are prepared for the model (``EfficientNet.pretrained_cfg``, read by
    ``timm.data.resolve_data_config``): ``dataset`` names the mean/std (``"imagenet"``, or a key
    of ``ev2lite.data.NORMALIZATION``); evaluation resizes the shorter side to
    ``eval_size / crop_pct`` with ``interpolation``, then centre-crops ``eval_size``.
    """

    name: str
    stages: tuple[StageConfig, ...]
    width_mult: float = 1.0
    depth_mult: float = 1.0
    head_channels: int = 1280
    stem_stride: int = 2
    dropout: float = 0.2
    stochastic_depth: float = 0.2
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1
    round_limit: float = 0.0
    train_size: int = 224
    eval_size: int = 224
    norm: str = "bn"
    act: str = "silu"
    zero_init_last: bool = False
    group_size: int = 1
    expand_ratio: int | None = None
    in_chans: int = 3
    padding: str = "symmetric"
    dataset: str = "imagenet"
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    notes: str = field(default="", compare=False)

    @property
    def min_size(self) -> int:
        """Smallest input side (px) that leaves at least one pixel after every stride."""
        return math.prod([self.stem_stride] + [s.stride for s in self.stages])


def round_channels(channels: float, round_limit: float = 0.0, divisor: int = 8) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (official ``round_filters``).

    ``max(divisor, int(c + divisor/2) // divisor * divisor)``, plus ``divisor`` when that rounds
    down by more than ``1 - round_limit`` (V1: 0.9, i.e. 10%); V2's default 0 has no guard.
    """
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < round_limit * channels:
        rounded += divisor
    return rounded


def scaled_stages(cfg: ModelConfig) -> list[StageConfig]:
    """The stage table after width and depth scaling (and ``cfg.expand_ratio``, if set, in
    MBConv stages that expand): what the builder actually builds."""

    def width(c: int) -> int:
        return round_channels(c * cfg.width_mult, cfg.round_limit)

    def expand(s: StageConfig) -> int:
        override = cfg.expand_ratio and s.block == MBCONV and s.expand_ratio > 1
        return cfg.expand_ratio if override else s.expand_ratio

    return [
        replace(s, in_channels=width(s.in_channels), out_channels=width(s.out_channels),
                repeats=math.ceil(s.repeats * cfg.depth_mult), expand_ratio=expand(s))
        for s in cfg.stages
    ]


G16 = {"group_size": 16, "expand_ratio": 4}
"""Graphcore's G16-EfficientNet as ``create_model`` overrides: spatial convs of MBConv with 16
channels per group, MBConv expand ratio 6 lowered to 4 (REFERENCE.md section 4)."""


def _crop_pct(eval_size: int) -> float:
    """Evaluation crop of V1 and V2-B0..B3: the central ``eval_size / (eval_size + 32)`` of the
    shorter side, resized to ``eval_size`` (V1's released ``preprocessing.py``,
    ``CROP_PADDING = 32``; timm's configs of the ported official weights, ``tf_*``). V2-S/M/L/XL
    take the whole image (crop 1.0, as timm's ``tf_efficientnetv2_*`` and torchvision's V2)."""
    return eval_size / (eval_size + 32)


def _v1(name, width, depth, train_size, dropout, **kw) -> ModelConfig:
    kw = {"bn_eps": 1e-5, "crop_pct": _crop_pct(train_size), **kw}
    return ModelConfig(name, V1_BASE, width, depth, train_size=train_size, eval_size=train_size,
                       dropout=dropout, round_limit=0.9, **kw)


def _v2b(name, width, depth, train_size, eval_size, dropout) -> ModelConfig:
    return ModelConfig(name, V2_BASE, width, depth, train_size=train_size, eval_size=eval_size,
                       dropout=dropout, crop_pct=_crop_pct(eval_size))


# V1 B0-B4 follow torchvision's BatchNorm defaults (eps 1e-5); B5-B7 were ported with the TF
# values (eps 1e-3, TF momentum 0.99 = PyTorch 0.01). Sizes and dropout: Tan & Le 2019.
_V1_TF_BN = {"bn_eps": 1e-3, "bn_momentum": 0.01}
CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (
    ModelConfig("efficientnetv2_s", V2_S, train_size=300, eval_size=384, dropout=0.2),
    ModelConfig("efficientnetv2_m", V2_M, train_size=384, eval_size=480, dropout=0.3),
    ModelConfig("efficientnetv2_l", V2_L, train_size=384, eval_size=480, dropout=0.4),
    ModelConfig("efficientnetv2_xl", V2_XL, train_size=384, eval_size=512, dropout=0.4),
    _v2b("efficientnetv2_b0", 1.0, 1.0, 192, 224, 0.2),
    _v2b("efficientnetv2_b1", 1.0, 1.1, 192, 240, 0.2),
    _v2b("efficientnetv2_b2", 1.1, 1.2, 208, 260, 0.3),
    _v2b("efficientnetv2_b3", 1.2, 1.4, 240, 300, 0.3),
    _v1("efficientnet_b0", 1.0, 1.0, 224, 0.2),
    _v1("efficientnet_b1", 1.0, 1.1, 240, 0.2),
    _v1("efficientnet_b2", 1.1, 1.2, 260, 0.3),
    _v1("efficientnet_b3", 1.2, 1.4, 300, 0.3),
    _v1("efficientnet_b4", 1.4, 1.8, 380, 0.4),
    _v1("efficientnet_b5", 1.6, 2.2, 456, 0.4, **_V1_TF_BN),
    _v1("efficientnet_b6", 1.8, 2.6, 528, 0.5, **_V1_TF_BN),
    _v1("efficientnet_b7", 2.0, 3.1, 600, 0.5, **_V1_TF_BN),
)}

# CPU-scale variants for this project's experiments. EfficientNets downsample 32x, so a 32 px
# CIFAR-10 image would leave a 1x1 map for the last stage (and V2 rejects sides under 32 px):
# the CIFAR variants use a stride-1 stem (output stride 16, a 2x2 final map at 32 px) instead of
# upscaling images 4x, which would cost 16x the compute. The Imagenette variants keep the
# standard stride of 32 (64-160 px inputs give 2x2 to 5x5 final maps). All are the paper's B0
# tables at half width and half depth (~0.8M parameters with 10 classes): chosen by measured
# training speed on a 2-core CPU, ~700 images/s at 32 px with channels_last.
# They start from zero_init_last: the official classifier init, uniform +-1/sqrt(num_classes),
# gives 10-class logits of std ~3 (initial loss above ln 10) and full-strength residual branches
# destabilise high-LR starts; measured on 5,000 CIFAR-10 images, 3 epochs at LR 0.2: 45% test
# accuracy with it, 26% without.
# Their images are prepared as ev2lite.data does: the whole image resized (bilinear, no crop) and
# normalized with the dataset's statistics.
_HALF = {"width_mult": 0.5, "depth_mult": 0.5, "dropout": 0.1, "zero_init_last": True}
_CIFAR = {"stem_stride": 1, "dataset": "cifar10", "crop_pct": 1.0, "interpolation": "bilinear"}
_NETTE = {"dataset": "imagenette", "crop_pct": 1.0, "interpolation": "bilinear"}
SMALL_CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (
    ModelConfig("efficientnetv2_cifar", V2_BASE, train_size=32, eval_size=32, **_HALF, **_CIFAR),
    ModelConfig("efficientnetv2_imagenette", V2_BASE, train_size=128, eval_size=160, **_HALF,
                **_NETTE),
    _v1("efficientnet_cifar", 0.5, 0.5, 32, 0.1, zero_init_last=True, **_CIFAR),
    _v1("efficientnet_imagenette", 0.5, 0.5, 128, 0.1, zero_init_last=True, **_NETTE),
)}


def with_fused_stages(cfg: ModelConfig, n: int, *, kernel: int | None = None,
                      se: bool = False) -> ModelConfig:
    """``cfg`` with MBConv replaced by Fused-MBConv in its first ``n`` stages (paper Table 3).

    The paper's Table 3 replaces the MBConv blocks of EfficientNet-B4 stage by stage: "Fused
    stage1-3" is ``n=3`` (its caption's stages {2, 3, 4} count the stem as stage 1), "stage 1-7"
    is ``n=7`` (every stage). Widths, strides, repeats and expand ratios are kept; a Fused-MBConv
    with expand ratio 1 is a single KxK conv (REFERENCE.md section 1). Two choices the paper
    leaves open are arguments:

    * ``kernel``: the fused conv's kernel. ``None`` (default) keeps each stage's kernel (B4 has
      5x5 stages), as implementations that build a fused block from a stage's block string do
      (timm's and Keras's EfficientNetV2); 3 follows Section 3.2's words, "a single regular
      conv3x3".
    * ``se``: keep the stage's squeeze-and-excitation in the fused blocks. Figure 2 draws SE in
      Fused-MBConv; the released V2 configs never use it, so the default drops it.

    The defaults reproduce Table 3's "stage1-5" and "stage 1-7" rows to 0.3% in parameters;
    its "stage1-3" row matches ``kernel=3`` instead (notebook 02 compares all four conventions
    stage by stage). ``n=0`` returns ``cfg`` itself. The returned config is named
    ``"<name>_fused<n>"``. Raises ``TypeError`` when ``n`` is not an int and ``ValueError`` when
    it is outside ``0..len(cfg.stages)`` or a stage to replace is already Fused-MBConv.
    """
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int (how many leading stages to fuse), got {n!r}")
    if not 0 <= n <= len(cfg.stages):
        raise ValueError(f"n must be in 0..{len(cfg.stages)} ({cfg.name} has {len(cfg.stages)} "
                         f"stages), got {n}")
    if n == 0:
        return cfg
    fused = [i + 1 for i, s in enumerate(cfg.stages[:n]) if s.block != MBCONV]
    if fused:
        raise ValueError(f"stage(s) {fused} of {cfg.name} are already Fused-MBConv: fuse only "
                         "MBConv stages (e.g. a V1 EfficientNet)")
    stages = tuple(replace(s, block=FUSED, kernel=kernel or s.kernel,
                           se_ratio=s.se_ratio if se else 0.0) for s in cfg.stages[:n])
    return replace(cfg, name=f"{cfg.name}_fused{n}", stages=stages + cfg.stages[n:])
