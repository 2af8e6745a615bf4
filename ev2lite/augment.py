"""Regularization by data augmentation at a given strength (thin wrappers on timm and torchvision).

Progressive learning (paper Section 4) changes these strengths between stages, so each
function takes the strength and returns a callable, or ``None`` when the strength is 0.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data.auto_augment import RandAugment, rand_augment_ops
from torchvision.transforms import v2


MAX_MAGNITUDE = 30  # on the paper's TF scale: 10 = each operation's standard maximum


def rand_augment(magnitude: float, num_ops: int = 2) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """RandAugment (Cubuk et al. 2020) on the paper's scale, ``num_ops`` operations per image.

    Returns a callable mapping a uint8 batch ``[B, 3, H, W]`` to an augmented one of the same
    shape, or ``None`` for ``magnitude == 0``. The operations are timm's RandAugment
    (``rand_augment_ops`` with ``magnitude_max`` 30, the ``"rand-m{magnitude}-n2-mmax30"`` of
    its ``rand_augment_transform``), which follows the official TF code: magnitude ``m`` scales each operation's distortion as ``m / 10`` of its
    maximum (rotate 30 degrees, shear 0.3, translate 45% of the side, ...), and values above 10
    extrapolate beyond it as in TF, so Table 6's ranges (S 5-15, M 5-20, L 5-25) and Table 5's
    magnitudes (5, 10, 15) mean what they mean in the paper. Each operation is applied with
    probability 0.5, its choice drawn per image. Draws come from the global torch RNG (which
    :class:`ev2lite.data.Loader` seeds per batch): timm's Python and NumPy draws are seeded from
    it and their states restored. Raises ``ValueError`` for ``magnitude`` outside
    ``[0, MAX_MAGNITUDE]`` or ``num_ops < 1``. The callable's ``transform`` attribute is the
    timm transform it applies per image.
    """
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise ValueError(f"RandAugment magnitude must be in [0, {MAX_MAGNITUDE}] (the paper's TF scale, "
                         f"10 = standard maximum), got {magnitude}")
    if num_ops < 1:
        raise ValueError(f"RandAugment needs num_ops >= 1, got {num_ops}")
    if magnitude == 0:
        return None
    ops = rand_augment_ops(round(magnitude), hparams={"img_mean": (128, 128, 128),  # TF's grey fill
                                                      "magnitude_max": MAX_MAGNITUDE})
    for o in ops:
        if o.name == "Posterize":
            o.aug_fn = _posterize  # keeps 0 bits (magnitude < 2.5) as TF does
    op = RandAugment(ops, num_ops)

    def apply(images: torch.Tensor) -> torch.Tensor:
        seed = int(torch.randint(2**31, (1,)))
        python_state, numpy_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            pixels = images.permute(0, 2, 3, 1).numpy()
            out = np.stack([np.asarray(op(Image.fromarray(img))) for img in pixels])
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

    apply.transform = op  # timm's transform, for inspection
    return apply


def _posterize(image: Image.Image, bits: int, **_) -> Image.Image:
    """Keep the ``bits`` most significant bits of each channel, as the TF code: 8 or more keep
    the image, 0 or fewer leave it black (Pillow accepts only 1-8)."""
    if bits >= 8:
        return image
    return ImageOps.posterize(image, bits) if bits >= 1 else Image.new(image.mode, image.size)


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
