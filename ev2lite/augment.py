"""Regularization by data augmentation at a given strength (thin wrappers on torchvision).

Progressive learning (paper Section 4) changes these strengths between stages, so each
function takes the strength and returns a callable, or ``None`` when the strength is 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2


MAX_MAGNITUDE = 30  # the top of torchvision's RandAugment scale (num_magnitude_bins=31)


def rand_augment(magnitude: float, num_ops: int = 2) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """RandAugment (Cubuk et al. 2020) with ``num_ops`` operations per image, independently drawn.

    Returns a callable mapping a uint8 batch ``[B, 3, H, W]`` to an augmented one of the same
    shape, or ``None`` for ``magnitude == 0``. ``magnitude`` is on torchvision's 0-30 scale
    (``num_magnitude_bins=31``); the official TF code uses 0-10 with the same maximum
    distortions per operation, so TF magnitude ``m`` is about torchvision ``3 m`` (the paper's
    5-15 would be 15-45, where torchvision's scale stops at 30). Raises ``ValueError`` outside
    ``[0, 30]``. Per-image draws need a loop over the batch; at 32 px this costs far less than
    a training step.
    """
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"RandAugment magnitude must be in [0, {MAX_MAGNITUDE}] (torchvision scale), "
                         f"got {magnitude}")
    if magnitude == 0:
        return None
    op = v2.RandAugment(num_ops=num_ops, magnitude=round(magnitude))

    def apply(images: torch.Tensor) -> torch.Tensor:
        return torch.stack([op(img) for img in images])

    return apply


def mixup_cutmix(mixup_alpha: float, cutmix_alpha: float, num_classes: int, mode: str = "choice"):
    """Mixup (Zhang et al. 2018) and/or CutMix (Yun et al. 2019) on a float batch.

    Returns a callable ``(x [B, C, H, W], y [B] int64) -> (x, y_soft [B, num_classes])`` or
    ``None`` when both alphas are 0. With both on, ``mode="choice"`` draws one of the two per
    batch (torchvision's recommended ``RandomChoice``) and ``mode="split"`` mixes the first half
    of the batch with mixup and the second half with CutMix, as the released EfficientNetV2 code
    does. Raises ``ValueError`` for negative alphas or an unknown mode.
    """
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
    if mode not in MIX_MODES:
        raise ValueError(f"mix mode must be one of {MIX_MODES}, got {mode!r}")
    ops = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []) + \
          ([v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else [])
    if not ops:
        return None
    if len(ops) == 1:
        return ops[0]
    if mode == "choice":
        return v2.RandomChoice(ops)

    def split(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = len(x) // 2
        (xa, ya), (xb, yb) = ops[0](x[:half], y[:half]), ops[1](x[half:], y[half:])
        return torch.cat([xa, xb]), torch.cat([ya, yb])

    return split


MIX_MODES = ("choice", "split")
