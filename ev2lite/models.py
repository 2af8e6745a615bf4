"""One builder for the whole EfficientNet family, and the registry behind ``create_model``.

``EfficientNet(cfg)`` turns a :class:`~ev2lite.configs.ModelConfig` (a stage table plus scaling
coefficients) into ``stem -> stages -> head -> pool -> dropout -> classifier``, exactly as the
official code, torchvision and timm do; parameter counts match theirs to the unit for all 16
published models (``tests/test_models.py``).

The models speak timm's model API (``num_classes``, ``num_features``, ``forward_features``,
``forward_head``, ``get_classifier``, ``reset_classifier``, ``set_grad_checkpointing``,
``pretrained_cfg``, ``feature_info``) and ``create_model`` takes timm's keywords
(``tests/test_timm_contract.py``), so they drop into timm training scripts, ``timm.data``
transforms and detection backbones. They trace with ``torch.fx`` and torchvision's
``create_feature_extractor`` (with ``padding="same"``, pass timm's ``Conv2dSame`` as a leaf
module) and keep the image-size check; ``torch.jit.script`` (deprecated by torch) compiles them,
raising the size error as ``torch.jit.Error``; ``torch.jit.trace`` (and the ONNX exporter built
on it) checks the size once, while tracing, not in the traced graph.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import fields, replace
from fnmatch import fnmatchcase

import pandas as pd
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import create_classifier
from timm.models import FeatureListNet, checkpoint_seq
from torch import nn

from .blocks import BLOCK_TYPES, ConvBNAct
from .configs import (FUSED, MBCONV, CONFIGS, SMALL_CONFIGS, ModelConfig, round_channels,
                      scaled_stages)
from .data import NORMALIZATION


@torch.fx.wrap  # one call node in fx graphs; it returns x, so dead-code elimination keeps it
def check_image_size(x: torch.Tensor, min_size: int, name: str) -> torch.Tensor:
    """``x`` unchanged (``[B, C, H, W]``), or ``ValueError`` when ``H`` or ``W`` is below
    ``min_size`` px, the model's output stride: smaller images leave no pixel for the last
    stages."""
    if min(x.shape[-2:]) < min_size:
        raise ValueError(
            f"{name} needs images of at least {min_size}x{min_size} px (its output stride), got "
            f"{x.shape[-2]}x{x.shape[-1]}: upscale the images or use a small-input variant such "
            "as 'efficientnetv2_cifar' (see list_models())")
    return x


def pretrained_cfg(cfg: ModelConfig, num_classes: int) -> dict:
    """How to prepare images for a model of ``cfg``, as timm's ``pretrained_cfg`` dict.

    ``input_size`` is the paper's training size, ``test_input_size`` its evaluation size (px,
    channels first); ``pool_size`` the final feature map at ``input_size``; ``mean``/``std``
    those of ``cfg.dataset`` (ImageNet's, or ``ev2lite.data.NORMALIZATION``); ``crop_pct`` and
    ``interpolation`` from ``cfg``. ``timm.data.resolve_data_config(model=model)`` reads it.
    torchvision's ``efficientnet_v2_l`` weights are the exception: they expect mean = std = 0.5.
    Raises ``ValueError`` for a ``cfg.dataset`` with no statistics.
    """
    stats = {"imagenet": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), **NORMALIZATION}
    if cfg.dataset not in stats:
        raise ValueError(f"no mean/std for dataset {cfg.dataset!r}: choose one of {sorted(stats)}")
    mean, std = stats[cfg.dataset]
    pool = -(-cfg.train_size // cfg.min_size)  # ceil: every stride pads kernel // 2
    return {"architecture": cfg.name, "num_classes": num_classes,
            "input_size": (cfg.in_chans, cfg.train_size, cfg.train_size),
            "test_input_size": (cfg.in_chans, cfg.eval_size, cfg.eval_size),
            "min_input_size": (cfg.in_chans, cfg.min_size, cfg.min_size),
            "fixed_input_size": False, "pool_size": (pool, pool), "crop_pct": cfg.crop_pct,
            "crop_mode": "center", "interpolation": cfg.interpolation, "mean": tuple(mean),
            "std": tuple(std), "first_conv": "stem.conv", "classifier": "classifier"}


class EfficientNet(nn.Module):
    """EfficientNet / EfficientNetV2 classifier built from a stage table.

    Input ``[B, cfg.in_chans, H, W]`` float (normalized), output logits ``[B, num_classes]``
    (``num_classes=0``: the pooled features ``[B, num_features]``). ``H, W`` must be at least
    ``cfg.min_size`` (32 for the standard output stride); smaller inputs raise ``ValueError``
    rather than failing inside a convolution. ``global_pool`` is a pooling of timm's
    ``SelectAdaptivePool2d`` (``"avg"``, ``"max"``, ``"avgmax"``, ``"catavgmax"``; ``""``, no
    pooling, only with ``num_classes=0``).

    Stochastic depth: the drop probability of block ``i`` of ``n`` (counted over all stages) is
    ``cfg.stochastic_depth * i / n`` (REFERENCE.md section 1; survival probability
    ``1 - that``). ``self.stages`` is an ``nn.Sequential`` of ``nn.Sequential`` stages so a reader
    can index ``model.stages[3][0]`` as "stage 4, block 1" of Table 4 (stage 0 is the stem).
    ``feature_info`` lists the multi-scale features (timm's format: ``num_chs``, ``reduction``
    in px, ``module``): the last stage at each resolution, as timm's EfficientNets.
    """

    def __init__(self, cfg: ModelConfig, num_classes: int = 1000, global_pool: str = "avg"):
        super().__init__()
        if cfg.expand_ratio is not None and not (isinstance(cfg.expand_ratio, int)
                                                 and cfg.expand_ratio >= 1):
            raise ValueError(f"expand_ratio must be None (keep the table's) or an int >= 1, "
                             f"got {cfg.expand_ratio!r}")
        self.cfg = cfg
        self.min_size, self.arch = cfg.min_size, cfg.name  # plain attributes for TorchScript
        stages = scaled_stages(cfg)
        nk = {"norm": cfg.norm, "bn_eps": cfg.bn_eps, "bn_momentum": cfg.bn_momentum,
              "padding": cfg.padding}
        self.stem = ConvBNAct(cfg.in_chans, stages[0].in_channels, 3, cfg.stem_stride,
                              act=cfg.act, **nk)
        self.stages = nn.Sequential()
        for s in stages:
            groups = {"group_size": cfg.group_size} if s.block == MBCONV else {}
            self.stages.append(nn.Sequential(*(
                BLOCK_TYPES[s.block](s.in_channels if r == 0 else s.out_channels, s.out_channels,
                                     s.kernel, s.stride if r == 0 else 1, s.expand_ratio,
                                     s.se_ratio, act=cfg.act, **nk, **groups)
                for r in range(s.repeats))))
        self.num_features = round_channels(cfg.head_channels * cfg.width_mult, cfg.round_limit)
        self.head = ConvBNAct(stages[-1].out_channels, self.num_features, 1, act=cfg.act, **nk)
        self.num_classes = self._check_head(num_classes, global_pool)
        pool, classifier = create_classifier(self.num_features, num_classes, global_pool)
        dropout = nn.Dropout(cfg.dropout, inplace=True)
        self.pool, self.dropout, self.classifier = pool, dropout, classifier  # forward order
        self.head_hidden_size = self.num_features * self.pool.feat_mult()
        self.pretrained_cfg = self.default_cfg = pretrained_cfg(cfg, num_classes)
        self.feature_info = self._feature_info(cfg.stem_stride, stages)
        self.grad_checkpointing = False
        self.set_regularization(stochastic_depth=cfg.stochastic_depth)
        self._init_weights(self.modules())
        if cfg.zero_init_last:
            for block in (b for stage in self.stages for b in stage):
                last = block.conv_pwl if isinstance(block.conv_pwl, ConvBNAct) else block.conv_exp
                if block.has_skip:
                    nn.init.zeros_(last.scale)

    @staticmethod
    def _feature_info(stem_stride: int, stages) -> list[dict]:
        """The output of the last module (stem or stage) before each stride, and the last one."""
        taps = [("stem", stages[0].in_channels, stem_stride)] + [
            (f"stages.{i}", s.out_channels, s.stride) for i, s in enumerate(stages)]
        info, reduction = [], 1
        for (name, channels, stride), next_stride in zip(taps, [t[2] for t in taps[1:]] + [2]):
            reduction *= stride
            if next_stride > 1:
                info.append({"num_chs": channels, "reduction": reduction, "module": name})
        return info

    def _init_weights(self, modules) -> None:
        # torchvision's initialisation: He (fan-out) for convs, uniform +-1/sqrt(classes) for FC
        # (zero with cfg.zero_init_last).
        for m in modules:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.out_features ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)
                if self.cfg.zero_init_last:
                    nn.init.zeros_(m.weight)

    @staticmethod
    def _check_head(num_classes: int, global_pool: str) -> int:
        """``num_classes``, checked: an int >= 0, and 0 when ``global_pool`` is ``""``."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0: no classifier, the pooled "
                             f"features), got {num_classes!r}")
        if global_pool == "" and num_classes:
            raise ValueError("global_pool='' (no pooling) needs num_classes=0: a linear "
                             "classifier needs pooled features")
        return num_classes

    def set_regularization(self, dropout: float | None = None,
                           stochastic_depth: float | None = None) -> None:
        """Change the live dropout rate before the classifier and/or the stochastic-depth rate.

        Progressive learning (paper Section 4, Algorithm 1) raises both between stages; block
        ``i`` of ``n`` gets drop probability ``stochastic_depth * i / n``. ``None`` keeps a value.
        """
        if dropout is not None:
            self.dropout.p = dropout
        if stochastic_depth is not None:
            blocks = [b for stage in self.stages for b in stage]
            for i, block in enumerate(blocks):
                block.drop_path.p = stochastic_depth * i / len(blocks)

    def parts(self) -> dict[str, nn.Module]:
        """The model's parts with parameters, by name, in the order the forward pass runs them.

        Keys ``"stem"``, ``"stage 1"`` ... ``"stage N"`` (Table 4's numbering: ``"stage i"`` is
        ``self.stages[i - 1]``), ``"head"`` (the 1x1 convolution and its norm) and
        ``"classifier"``. The forward pass is stem, stages, head, pool, flatten, dropout,
        classifier; pooling, flattening and dropout hold no parameters, so the parts' parameters
        are all of the model's. The values are the model's own modules, not copies.
        """
        return {"stem": self.stem, **{f"stage {i}": s for i, s in enumerate(self.stages, 1)},
                "head": self.head, "classifier": self.classifier}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The final layer (timm's API): ``nn.Linear``, or ``nn.Identity`` with no classes."""
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a freshly initialised one with ``num_classes`` outputs (0:
        none, the model returns pooled features) and, unless ``None``, the pooling (``""``: no
        pooling, with ``num_classes=0``). timm's API; raises ``ValueError`` for a negative
        ``num_classes`` or ``""`` with classes. ``pretrained_cfg`` keeps its values."""
        global_pool = self.pool.pool_type if global_pool is None else global_pool
        self.num_classes = self._check_head(num_classes, global_pool)
        pool, classifier = create_classifier(self.num_features, num_classes, global_pool)
        weight = self.head.conv.weight
        self.pool = pool.train(self.training)
        self.classifier = classifier.to(weight.device, weight.dtype).train(self.training)
        self.head_hidden_size = self.num_features * self.pool.feat_mult()
        self._init_weights(self.classifier.modules())

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them
        (timm's ``checkpoint_seq``): less memory, about one more forward pass of time. BatchNorm
        running statistics are updated twice per step, as in timm."""
        self.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_chans, H, W] -> [B, num_features, H / stride, W / stride]`` (before pooling;
        stride ``cfg.min_size``, rounded up). ``ValueError`` for images below ``cfg.min_size``."""
        x = self.stem(check_image_size(x, self.min_size, self.arch))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x, flatten=True)
        else:
            x = self.stages(x)
        return self.head(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Features ``[B, num_features, h, w]`` -> pool -> dropout -> classifier: logits
        ``[B, num_classes]``, or with ``pre_logits=True`` the pooled features
        ``[B, head_hidden_size]`` the classifier takes (timm's API)."""
        x = self.dropout(self.pool(x))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_REGISTRY: dict[str, ModelConfig] = {**CONFIGS, **SMALL_CONFIGS}
_OVERRIDES = {f.name for f in fields(ModelConfig)} - {"name", "stages", "notes"}
TIMM_ALIASES = {"drop_rate": "dropout", "drop_path_rate": "stochastic_depth"}
"""timm's keyword for a ``ModelConfig`` field, accepted by :func:`create_model`."""


def list_models(filter: str | Sequence[str] = "",  # noqa: A002 -- timm's keyword
                exclude_filters: str | Sequence[str] = "") -> list[str]:
    """Names accepted by :func:`create_model`: the 16 published models, then CPU-scale ones.

    As ``timm.list_models``: ``filter`` keeps names matching a wildcard pattern (or any of a
    list, e.g. ``"efficientnetv2_*"``), ``exclude_filters`` drops names matching any of theirs.
    """
    def patterns(p):
        return [p] if isinstance(p, str) else list(p)

    keep, drop = [p for p in patterns(filter) if p], patterns(exclude_filters)
    return [name for name in _REGISTRY
            if (not keep or any(fnmatchcase(name, p) for p in keep))
            and not any(fnmatchcase(name, p) for p in drop if p)]


def get_config(name: str, **overrides) -> ModelConfig:
    """The :class:`ModelConfig` of ``name`` with ``overrides`` applied (see :func:`create_model`)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"unknown model {name!r}: {hint}ev2lite.list_models() lists all "
                         f"{len(_REGISTRY)} names")
    unknown = set(overrides) - _OVERRIDES
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)} for create_model: valid ones "
                        f"are {sorted(_OVERRIDES | set(TIMM_ALIASES))} and create_model's own")
    return replace(_REGISTRY[name], **overrides)


def create_model(name: str, num_classes: int | None = 1000, *, pretrained: bool = False,
                 global_pool: str | None = "avg", features_only: bool = False,
                 out_indices: int | Sequence[int] | None = None, **overrides) -> nn.Module:
    """Build a registered model, randomly initialised.

    ``overrides`` replace fields of its config, e.g. ``width_mult=0.5``, ``depth_mult=0.5``,
    ``dropout=0.3``, ``stochastic_depth=0.1`` (the largest drop probability, paper "survival
    probability 0.8" = 0.2), ``act="relu"``, ``stem_stride=1``, ``in_chans=1``,
    ``padding="same"`` (TensorFlow's, for weights ported from TF), and Graphcore's practical
    variants (REFERENCE.md section 4): ``norm="gn"`` (GroupNorm, 4 groups), ``"ln"``,
    ``"ln_pn"`` / ``"gn_pn"`` (Proxy Norm); ``group_size=16, expand_ratio=4`` (G16-EfficientNet,
    also ``**ev2lite.configs.G16``).

    timm's keywords work as in ``timm.create_model``: ``drop_rate`` (= ``dropout``),
    ``drop_path_rate`` (= ``stochastic_depth``), ``in_chans``, ``global_pool`` (see
    :class:`EfficientNet`), ``num_classes=0`` (a pooled feature extractor), keywords set to
    ``None`` are ignored, and ``features_only=True`` returns timm's ``FeatureListNet``: a list of
    ``[B, num_chs, H / reduction, W / reduction]`` maps, one per ``out_indices`` entry (default:
    all) of its ``feature_info``, running only the modules those need (no size check);
    ``ValueError`` for an index out of range.
    ``pretrained=True`` raises ``ValueError``: nothing is downloaded; load torchvision's weights
    with :func:`ev2lite.from_torchvision` or :func:`ev2lite.load_weights`.
    Raises ``ValueError`` for an unknown name (listing close matches) and ``TypeError`` for an
    unknown override.

    >>> create_model("efficientnetv2_s")(torch.randn(1, 3, 384, 384)).shape
    torch.Size([1, 1000])
    """
    if pretrained:
        raise ValueError("ev2lite downloads no weights: build the model, then load torchvision's "
                         "with ev2lite.from_torchvision(...) or ev2lite.load_weights(model, path)")
    overrides = {TIMM_ALIASES.get(k, k): v for k, v in overrides.items() if v is not None}
    num_classes = 1000 if num_classes is None else num_classes
    model = EfficientNet(get_config(name, **overrides), 0 if features_only else num_classes,
                         "avg" if global_pool is None else global_pool)
    if not features_only:
        return model
    levels = len(model.feature_info)
    indices = tuple(range(levels)) if out_indices is None else out_indices
    if not all(-levels <= i < levels
               for i in (range(-indices, 0) if isinstance(indices, int) else indices)):
        raise ValueError(f"out_indices {indices!r} out of range: {name} has {levels} feature "
                         "levels (feature_info); an int n takes the last n")
    features = FeatureListNet(model, indices, flatten_sequential=True)
    features.pretrained_cfg = features.default_cfg = {
        k: v for k, v in model.pretrained_cfg.items() if k not in ("num_classes", "classifier")}
    return features


def stage_table(cfg: ModelConfig) -> pd.DataFrame:
    """The architecture in the layout of the paper's Table 4: one row per stage.

    Columns ``stage, operator, stride, channels, layers``; operators are named as in the paper
    (``"Fused-MBConv4, k3x3"``, ``"MBConv6, k3x3, SE0.25"``), after width and depth scaling.
    """
    stages = scaled_stages(cfg)
    rows = [(0, "Conv3x3", str(cfg.stem_stride), stages[0].in_channels, 1)]
    for i, s in enumerate(stages, 1):
        op = f"{'Fused-MBConv' if s.block == FUSED else 'MBConv'}{s.expand_ratio}, k{s.kernel}x{s.kernel}"
        op += f", SE{s.se_ratio:g}" if s.se_ratio else ""
        op += f", G{cfg.group_size}" if s.block == MBCONV and cfg.group_size > 1 else ""
        rows.append((i, op, str(s.stride), s.out_channels, s.repeats))
    head = round_channels(cfg.head_channels * cfg.width_mult, cfg.round_limit)
    rows.append((len(stages) + 1, "Conv1x1 & Pooling & FC", "-", head, 1))
    return pd.DataFrame(rows, columns=["stage", "operator", "stride", "channels", "layers"])
