"""One builder for the whole EfficientNet family, and the registry behind ``create_model``.

``EfficientNet(cfg)`` turns a :class:`~ev2lite.configs.ModelConfig` (a stage table plus scaling
coefficients) into ``stem -> stages -> head -> pool -> dropout -> classifier``, exactly as the
official code, torchvision and timm do; parameter counts match theirs to the unit for all 16
published models (``tests/test_models.py``).
"""

from __future__ import annotations

import difflib
from dataclasses import fields, replace

import pandas as pd
import torch
from torch import nn

from .blocks import BLOCK_TYPES, ConvBNAct
from .configs import (FUSED, MBCONV, CONFIGS, SMALL_CONFIGS, ModelConfig, round_channels,
                      scaled_stages)


class EfficientNet(nn.Module):
    """EfficientNet / EfficientNetV2 classifier built from a stage table.

    Input ``[B, 3, H, W]`` float (normalized), output logits ``[B, num_classes]``. ``H, W`` must
    be at least ``cfg.min_size`` (32 for the standard output stride); smaller inputs raise
    ``ValueError`` rather than failing inside a convolution.

    Stochastic depth: the drop probability of block ``i`` of ``n`` (counted over all stages) is
    ``cfg.stochastic_depth * i / n`` (REFERENCE.md section 1; survival probability
    ``1 - that``). ``self.stages`` is a ``ModuleList`` of ``nn.Sequential`` stages so a reader can
    index ``model.stages[3][0]`` as "stage 4, block 1" of Table 4 (stage 0 is the stem).
    """

    def __init__(self, cfg: ModelConfig, num_classes: int = 1000):
        super().__init__()
        if cfg.expand_ratio is not None and not (isinstance(cfg.expand_ratio, int)
                                                 and cfg.expand_ratio >= 1):
            raise ValueError(f"expand_ratio must be None (keep the table's) or an int >= 1, "
                             f"got {cfg.expand_ratio!r}")
        self.cfg = cfg
        stages = scaled_stages(cfg)
        nk = {"norm": cfg.norm, "bn_eps": cfg.bn_eps, "bn_momentum": cfg.bn_momentum}
        self.stem = ConvBNAct(3, stages[0].in_channels, 3, cfg.stem_stride, act=cfg.act, **nk)
        self.stages = nn.ModuleList()
        for s in stages:
            groups = {"group_size": cfg.group_size} if s.block == MBCONV else {}
            self.stages.append(nn.Sequential(*(
                BLOCK_TYPES[s.block](s.in_channels if r == 0 else s.out_channels, s.out_channels,
                                     s.kernel, s.stride if r == 0 else 1, s.expand_ratio,
                                     s.se_ratio, act=cfg.act, **nk, **groups)
                for r in range(s.repeats))))
        self.num_features = round_channels(cfg.head_channels * cfg.width_mult, cfg.round_limit)
        self.head = ConvBNAct(stages[-1].out_channels, self.num_features, 1, act=cfg.act, **nk)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout, inplace=True)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.set_regularization(stochastic_depth=cfg.stochastic_depth)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation: He (fan-out) for convs, uniform +-1/sqrt(classes) for FC.
        for m in self.modules():
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
            nn.init.zeros_(self.classifier.weight)
            for block in (b for stage in self.stages for b in stage):
                last = block.conv_pwl if isinstance(block.conv_pwl, ConvBNAct) else block.conv_exp
                if block.has_skip:
                    nn.init.zeros_(last.scale)

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

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W] -> [B, num_features, H / 32, W / 32]`` (before pooling)."""
        if min(x.shape[-2:]) < self.cfg.min_size:
            raise ValueError(
                f"{self.cfg.name} needs images of at least {self.cfg.min_size}x{self.cfg.min_size}"
                f" px (its output stride), got {tuple(x.shape[-2:])}: upscale the images or use a"
                " small-input variant such as 'efficientnetv2_cifar' (see list_models())")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.forward_features(x)).flatten(1)
        return self.classifier(self.dropout(x))


_REGISTRY: dict[str, ModelConfig] = {**CONFIGS, **SMALL_CONFIGS}
_OVERRIDES = {f.name for f in fields(ModelConfig)} - {"name", "stages", "notes"}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`: the 16 published models, then CPU-scale ones."""
    return list(_REGISTRY)


def get_config(name: str, **overrides) -> ModelConfig:
    """The :class:`ModelConfig` of ``name`` with ``overrides`` applied (see :func:`create_model`)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ValueError(f"unknown model {name!r}: {hint}ev2lite.list_models() lists all "
                         f"{len(_REGISTRY)} names")
    unknown = set(overrides) - _OVERRIDES
    if unknown:
        raise TypeError(f"unknown override(s) {sorted(unknown)} for create_model: "
                        f"valid ones are {sorted(_OVERRIDES)}")
    return replace(_REGISTRY[name], **overrides)


def create_model(name: str, num_classes: int = 1000, **overrides) -> EfficientNet:
    """Build a registered model, randomly initialised.

    ``overrides`` replace fields of its config, e.g. ``width_mult=0.5``, ``depth_mult=0.5``,
    ``dropout=0.3``, ``stochastic_depth=0.1`` (the largest drop probability, paper "survival
    probability 0.8" = 0.2), ``act="relu"``, ``stem_stride=1``, and Graphcore's practical
    variants (REFERENCE.md section 4): ``norm="gn"`` (GroupNorm, 4 groups), ``"ln"``,
    ``"ln_pn"`` / ``"gn_pn"`` (Proxy Norm); ``group_size=16, expand_ratio=4`` (G16-EfficientNet,
    also ``**ev2lite.configs.G16``).
    Raises ``ValueError`` for an unknown name (listing close matches) and ``TypeError`` for an
    unknown override.

    >>> create_model("efficientnetv2_s")(torch.randn(1, 3, 384, 384)).shape
    torch.Size([1, 1000])
    """
    return EfficientNet(get_config(name, **overrides), num_classes)


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
