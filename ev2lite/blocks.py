"""The building blocks of EfficientNet and EfficientNetV2 (paper Figure 2).

Anatomy and names follow timm's ``_efficientnet_blocks.py``: ``conv_pw`` (1x1 expansion),
``conv_dw`` (depthwise KxK), ``se`` (squeeze-and-excitation), ``conv_pwl`` (1x1 linear
projection), ``conv_exp`` (the regular KxK conv of Fused-MBConv). Every conv is followed by a
norm and, except the projection, an activation: :class:`ConvBNAct`. Parameters are registered in
the same order as torchvision's implementation, which lets ``ev2lite.weights`` load its weights.

All blocks map ``[B, C_in, H, W] -> [B, C_out, H / stride, W / stride]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from timm.layers import create_conv2d
from torchvision.ops import StochasticDepth

from .proxynorm import ProxyNormAct

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": lambda: nn.SiLU(inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": nn.GELU,
    "hardswish": lambda: nn.Hardswish(inplace=True),
}


NORMS = ("bn", "gn", "ln", "gn_pn", "ln_pn")
"""Norm names accepted by :class:`ConvBNAct` (``ModelConfig.norm``); ``"*_pn"`` adds Proxy Norm."""
GN_GROUPS = 4  # Graphcore's GroupNorm baseline (REFERENCE.md section 4)
PADDINGS = ("symmetric", "same")
"""Convolution paddings accepted by :class:`ConvBNAct` (``ModelConfig.padding``)."""


def make_norm(name: str, channels: int, eps: float = 1e-3, momentum: float = 0.1,
              affine: bool = True) -> nn.Module:
    """Normalization layer by name, over ``[B, channels, H, W]``.

    ``"bn"``: BatchNorm2d (the paper's); ``"gn"``: GroupNorm with 4 groups (Graphcore's
    baseline; ``gcd(4, channels)`` groups for widths not divisible by 4), batch-independent;
    ``"ln"``: LayerNorm over (C, H, W), i.e. GroupNorm with one group. ``affine=False`` leaves
    out the per-channel scale and shift (Proxy Norm brings its own). Raises ``ValueError`` for
    any other name (the ``"*_pn"`` names are built by :class:`ConvBNAct`).
    """
    if name == "bn":
        return nn.BatchNorm2d(channels, eps=eps, momentum=momentum, affine=affine)
    if name == "gn":
        return nn.GroupNorm(math.gcd(GN_GROUPS, channels), channels, eps=eps, affine=affine)
    if name == "ln":
        return nn.GroupNorm(1, channels, eps=eps, affine=affine)
    raise ValueError(f"unknown norm {name!r}: choose one of 'bn', 'gn', 'ln'")


def make_act(name: str) -> nn.Module:
    """Activation module by name (``silu`` is the paper's); ``ValueError`` lists the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvBNAct(nn.Module):
    """Conv (no bias) -> norm -> activation; ``act=None`` leaves the output linear.

    ``padding="symmetric"`` pads ``kernel // 2`` on every side (PyTorch-style, as torchvision and
    timm's non-``tf_`` models); ``"same"`` is TensorFlow's "SAME" (as timm's ``tf_`` models:
    timm's ``Conv2dSame`` pads from the input size at run time, the extra pixel at the bottom and
    right), which differs only at stride 2 on even sizes. ``groups=channels`` makes the conv
    depthwise. ``norm`` is one of :data:`NORMS`: with ``"ln_pn"`` / ``"gn_pn"``
    and an activation, ``bn`` is LayerNorm / GroupNorm without affine and ``act`` is
    :class:`~ev2lite.proxynorm.ProxyNormAct` (affine, activation, Proxy Norm; Graphcore's
    LN+PN); without an activation (the linear projection) it is the plain norm with affine, since
    Proxy Norm corrects what an activation does. Raises ``ValueError`` for an unknown norm,
    activation or padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, act: str | None = "silu", norm: str = "bn",
                 bn_eps: float = 1e-3, bn_momentum: float = 0.1, padding: str = "symmetric"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}: choose one of {', '.join(PADDINGS)}")
        base, _, proxy = norm.partition("_")
        proxy = bool(proxy and act)
        if padding == "same":
            self.conv = create_conv2d(in_channels, out_channels, kernel, stride=stride,
                                      padding="same", groups=groups, bias=False)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2,
                                  groups=groups, bias=False)
        self.bn = make_norm(base, out_channels, bn_eps, bn_momentum, affine=not proxy)
        if proxy:
            self.act = ProxyNormAct(out_channels, make_act(act))
        else:
            self.act = make_act(act) if act else nn.Identity()

    __jit_unused_properties__ = ["scale"]  # torch.jit.script compiles only forward

    @property
    def scale(self) -> nn.Parameter:
        """The per-channel scale of the output: the norm's weight, or Proxy Norm's ``g``
        (zeroing it zeroes the output either way, which ``zero_init_last`` relies on)."""
        return self.act.weight if isinstance(self.act, ProxyNormAct) else self.bn.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): channel gates from globally pooled features.

    ``channels`` is the width the gate acts on (the expanded width inside MBConv);
    ``squeeze_channels`` the bottleneck, which EfficientNet computes from the block's *input*
    channels: ``max(1, int(in_channels * se_ratio))`` (REFERENCE.md section 1).
    ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, squeeze_channels: int, act: str = "silu"):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = make_act(act)
        self.conv_expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = self.conv_expand(self.act(self.conv_reduce(scale)))
        return x * scale.sigmoid()


class _Residual(nn.Module):
    """Shared residual logic: identity shortcut only when stride is 1 and widths match.

    Stochastic depth (Huang et al. 2016) drops the residual branch of a whole sample with
    probability ``drop_prob`` while training ("row" mode) and rescales kept samples by
    ``1 / survival probability``; ``drop_prob`` is the live ``self.drop_path.p`` attribute, so
    a schedule may change it between stages.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_prob: float):
        super().__init__()
        self.has_skip = stride == 1 and in_channels == out_channels
        self.drop_path = StochasticDepth(drop_prob, "row")

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.has_skip:
            out = self.drop_path(out) + x
        return out


class MBConv(_Residual):
    """Mobile inverted bottleneck (Sandler et al. 2018) with SE, as in EfficientNet.

    1x1 expand to ``mid = in_channels * expand_ratio`` (skipped when the ratio is 1) -> spatial
    ``kernel`` x ``kernel`` conv with the stride -> SE -> 1x1 linear projection; residual when
    ``stride == 1`` and ``in_channels == out_channels``. The spatial conv has ``group_size``
    channels per group: 1 is depthwise (EfficientNet), 16 is Graphcore's G16-EfficientNet
    (``mid // 16`` groups; REFERENCE.md section 4). Raises ``ValueError`` when ``group_size`` is
    not a positive divisor of ``mid``.
    ``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 expand_ratio: int = 6, se_ratio: float = 0.25, drop_prob: float = 0.0,
                 act: str = "silu", norm: str = "bn", bn_eps: float = 1e-3,
                 bn_momentum: float = 0.1, group_size: int = 1, padding: str = "symmetric"):
        super().__init__(in_channels, out_channels, stride, drop_prob)
        mid = in_channels * expand_ratio
        if not (isinstance(group_size, int) and group_size >= 1 and mid % group_size == 0):
            raise ValueError(
                f"group_size {group_size!r} does not divide the {mid} channels of an MBConv "
                f"spatial conv ({in_channels} in x expand ratio {expand_ratio}): choose a "
                "positive divisor of every MBConv width (1 = depthwise, 16 = Graphcore's G16)")
        nk = {"norm": norm, "bn_eps": bn_eps, "bn_momentum": bn_momentum, "padding": padding}
        self.conv_pw = (ConvBNAct(in_channels, mid, 1, act=act, **nk) if expand_ratio != 1
                        else nn.Identity())
        self.conv_dw = ConvBNAct(mid, mid, kernel, stride, groups=mid // group_size, act=act,
                                 **nk)
        self.se = (SqueezeExcite(mid, max(1, int(in_channels * se_ratio)), act) if se_ratio > 0
                   else nn.Identity())
        self.conv_pwl = ConvBNAct(mid, out_channels, 1, act=None, **nk)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))


class FusedMBConv(_Residual):
    """Fused-MBConv (Gupta & Tan 2019; EfficientNetV2 Figure 2).

    One regular ``kernel`` x ``kernel`` conv with the stride expands to
    ``in_channels * expand_ratio`` (replacing MBConv's 1x1 expansion and depthwise conv), then a
    1x1 linear projection; with ``expand_ratio == 1`` the KxK conv maps straight to
    ``out_channels`` and there is no projection. Optional SE (Figure 2 draws it; no released
    config uses it). Same residual rule as :class:`MBConv`.
    ``[B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 expand_ratio: int = 4, se_ratio: float = 0.0, drop_prob: float = 0.0,
                 act: str = "silu", norm: str = "bn", bn_eps: float = 1e-3,
                 bn_momentum: float = 0.1, padding: str = "symmetric"):
        super().__init__(in_channels, out_channels, stride, drop_prob)
        mid = in_channels * expand_ratio if expand_ratio != 1 else out_channels
        nk = {"norm": norm, "bn_eps": bn_eps, "bn_momentum": bn_momentum, "padding": padding}
        self.conv_exp = ConvBNAct(in_channels, mid, kernel, stride, act=act, **nk)
        self.se = (SqueezeExcite(mid, max(1, int(in_channels * se_ratio)), act) if se_ratio > 0
                   else nn.Identity())
        self.conv_pwl = (ConvBNAct(mid, out_channels, 1, act=None, **nk) if expand_ratio != 1
                         else nn.Identity())

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_pwl(self.se(self.conv_exp(x)))


BLOCK_TYPES: dict[str, type[_Residual]] = {"mbconv": MBConv, "fused": FusedMBConv}
"""Block class of each ``StageConfig.block`` name."""
