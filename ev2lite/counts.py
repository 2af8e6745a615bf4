"""Counting the architectures behind the paper's Table 1 and Figure 1(b): parameters and
multiply-adds on the meta device (no memory, no weights), ours and timm's.

The paper's "FLOPs" are multiply-adds of one forward pass per image. :func:`count_models`
counts any set of models named as in :data:`TABLE1_MODELS`; notebook 10 compares the counts
with the printed numbers, and the claims table (:mod:`ev2lite.claims`) uses them for
"up to 6.8x smaller".
"""

from __future__ import annotations

import pandas as pd

from .measure import count_params, meta_model, multiply_adds

# The architectures behind the paper's Table 1 and Figure 1(b), each with the image size at which
# its multiply-adds are counted (its evaluation size; None: parameters only). "timm:NAME" = a timm
# architecture.
TABLE1_MODELS = {"EfficientNet-B6": ("efficientnet_b6", 528), "ResNet-RS-420": ("timm:resnetrs420", 320),
                 "NFNet-F1": ("timm:nfnet_f1", 320)}
FIGURE1B_MODELS = {"EfficientNet": ("efficientnet_b6", None), "ResNet-RS": ("timm:resnetrs350", None),
                   "DeiT/ViT": ("timm:deit_base_patch16_384", None),
                   "EfficientNetV2 (ours)": ("efficientnetv2_s", None)}


def count_models(models: dict[str, tuple[str, int | None]]) -> pd.DataFrame:
    """Parameters and multiply-adds of architectures named as in :data:`TABLE1_MODELS`
    (``label -> (meta_model name, image size in px or None)``), counted on the meta device.

    Columns: ``model`` (the label), ``architecture``, ``image_size``, ``params``,
    ``multiply_adds`` (per image, one forward pass: the paper's "FLOPs"; NaN without a size).
    Raises ``ValueError`` (from :func:`ev2lite.measure.meta_model`) for an unknown architecture.
    """
    rows = []
    for label, (name, size) in models.items():
        model = meta_model(name)
        rows.append({"model": label, "architecture": name, "image_size": size, "params": count_params(model),
                     "multiply_adds": multiply_adds(model, size) if size else None})
    return pd.DataFrame(rows)


def parameter_ratio(larger: str, smaller: str, models: dict[str, tuple[str, int | None]] = FIGURE1B_MODELS) -> float:
    """Parameters of ``models[larger]`` over ``models[smaller]`` (labels of ``models``), both
    counted (Figure 1(b): ResNet-RS-350's 164M over EfficientNetV2-S, "up to 6.8x smaller").
    Raises ``KeyError`` for an unknown label."""
    counted = count_models({k: models[k] for k in (larger, smaller)}).set_index("model").params
    return float(counted[larger] / counted[smaller])
