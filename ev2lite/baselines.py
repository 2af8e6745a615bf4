"""Reference networks that are not EfficientNets: the ResNets that Table 12 of the paper (and
the CIFAR-10 speed records of REFERENCE.md section 5) compare against.

Built from timm's ``ResNet`` (He et al., 2016), so that the blocks are a well-kept library's and
only the small-input adaptation is ours.
"""

from __future__ import annotations

from timm.models.resnet import BasicBlock, ResNet
from torch import nn

HALF_WIDTH = (32, 64, 128, 256)  # notebook 07's ResNet-18: about as fast as the CPU-scale EfficientNets


def resnet18(num_classes: int = 10, *, channels: tuple[int, int, int, int] = (64, 128, 256, 512),
             small_input: bool = False, stem_stride: int = 1) -> ResNet:
    """ResNet-18: timm's ``ResNet`` with ``BasicBlock`` x [2, 2, 2, 2] and stage widths
    ``channels`` (default the paper's 64-512: 11,181,642 parameters with 10 classes, as
    torchvision's ``resnet18``); :data:`HALF_WIDTH` gives 2,817,546.

    ``small_input``: the usual CIFAR-10 adaptation: a 3x3 stride-1 stem convolution and no
    max-pooling (output stride 8, a 4x4 final map at 32 px; 11,173,962 parameters at full width,
    the ResNet-18 of the CIFAR-10 literature); the ImageNet stem (7x7 stride 2, then max-pooling,
    output stride 32) would leave a 1x1 map at 32 px. ``stem_stride=2`` (with ``small_input``)
    halves the maps instead (output stride 16, a 2x2 final map at 32 px, as the CPU-scale
    EfficientNets' stride-1 stems give): a quarter of the multiply-adds, same parameters. Input
    ``[N, 3, H, W]``, output ``[N, num_classes]`` logits. Raises ``ValueError`` for a width
    below 1 or a stem stride other than 1 or 2.
    """
    if min(channels) < 1 or stem_stride not in (1, 2):
        raise ValueError(f"need positive widths and stem_stride 1 or 2, got {channels} and {stem_stride}")
    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, channels=channels)
    if small_input:
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, 3, stride=stem_stride, padding=1, bias=False)
        model.maxpool = nn.Identity()
    return model
