"""Move weights between ev2lite models and torchvision's (and timm's) EfficientNets.

torchvision ships ImageNet weights for ``efficientnet_v2_s/m/l`` and ``efficientnet_b0..b7``.
Our blocks register their parameters and buffers in the same order as torchvision's modules
(stem, every block's expand / depthwise / SE / project, head, classifier), so the two state dicts
pair up entry by entry; every pair is checked for shape before anything is copied. In eval mode
the outputs then agree to float rounding (``tests/test_weights.py``), both ways:
:func:`from_torchvision` and :func:`to_torchvision`.

timm's EfficientNets register theirs in the same order too, so :func:`load_state_dict_by_order`
(and :func:`load_weights` for a file) loads their state dicts. timm's ``tf_*`` weights, ported
from TensorFlow, need TensorFlow's "SAME" padding: build the model with ``padding="same"``
(and ``bn_eps=1e-3`` for V1, whose TF weights use it), e.g.
``create_model("efficientnetv2_b0", padding="same")`` for ``tf_efficientnetv2_b0``; outputs
then equal timm's exactly (``tests/test_weights.py``).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch
import torchvision
from torch import nn

from .models import EfficientNet, create_model, get_config

# torchvision builder name -> ev2lite name
TORCHVISION_NAMES = {
    "efficientnet_v2_s": "efficientnetv2_s",
    "efficientnet_v2_m": "efficientnetv2_m",
    "efficientnet_v2_l": "efficientnetv2_l",
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
}


def load_state_dict_by_order(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Copy ``state_dict`` into ``model`` pairing entries by position, not by name.

    Raises ``ValueError`` naming the first mismatch when the number of entries or any shape
    differs: the weights belong to another architecture (check the model name and
    ``num_classes``).
    """
    ours = model.state_dict()
    if len(ours) != len(state_dict):
        raise ValueError(f"incompatible weights: {len(state_dict)} tensors given, the model has "
                         f"{len(ours)}; were they saved from the same architecture?")
    mapped = {}
    for (name, mine), (src_name, theirs) in zip(ours.items(), state_dict.items()):
        if mine.shape != theirs.shape:
            raise ValueError(f"incompatible weights: {src_name} {tuple(theirs.shape)} does not fit "
                             f"{name} {tuple(mine.shape)}; check the model name and num_classes")
        mapped[name] = theirs
    model.load_state_dict(mapped)


def from_torchvision(tv_model: nn.Module, name: str | None = None) -> EfficientNet:
    """An ev2lite model holding the weights of a torchvision EfficientNet.

    ``tv_model`` is e.g. ``torchvision.models.efficientnet_v2_s(weights=...)``; ``name`` is our
    model name, inferred from the classifier width and structure when omitted (pass it when two
    architectures could match). Returns the model in the same train/eval mode. Raises
    ``ValueError`` when no ev2lite model fits the weights.
    """
    state = tv_model.state_dict()
    num_classes = tv_model.classifier[-1].out_features
    candidates = [name] if name else list(TORCHVISION_NAMES.values())
    for candidate in candidates:
        with torch.device("meta"):
            probe = create_model(candidate, num_classes)
        shapes = [t.shape for t in probe.state_dict().values()]
        if shapes == [t.shape for t in state.values()]:
            model = create_model(candidate, num_classes)
            load_state_dict_by_order(model, state)
            return model.train(tv_model.training)
    raise ValueError(f"no ev2lite model matches these weights (tried {candidates}); "
                     f"torchvision models supported: {sorted(TORCHVISION_NAMES)}")


def to_torchvision(model: EfficientNet) -> nn.Module:
    """torchvision's EfficientNet holding ``model``'s weights (the inverse of
    :func:`from_torchvision`), on ``model``'s device and in its train/eval mode.

    ``model`` must be one of torchvision's architectures unchanged (:data:`TORCHVISION_NAMES`;
    only ``dropout`` and ``stochastic_depth`` may differ, and are passed on) with a linear
    classifier on average pooling. Raises ``ValueError`` otherwise.
    """
    cfg = model.cfg
    tv_names = {ours: theirs for theirs, ours in TORCHVISION_NAMES.items()}
    if cfg.name not in tv_names:
        raise ValueError(f"torchvision has no {cfg.name}: to_torchvision takes "
                         f"{', '.join(sorted(tv_names))}")
    reference = get_config(cfg.name, dropout=cfg.dropout, stochastic_depth=cfg.stochastic_depth)
    changed = [f.name for f in fields(cfg) if getattr(cfg, f.name) != getattr(reference, f.name)]
    if changed or not model.num_classes or model.pool.pool_type != "avg":
        what = f"changed {changed}" if changed else "no linear classifier on average pooling"
        raise ValueError(f"{cfg.name} with {what} has no torchvision counterpart")
    tv = getattr(torchvision.models, tv_names[cfg.name])(
        num_classes=model.num_classes, dropout=cfg.dropout,
        stochastic_depth_prob=cfg.stochastic_depth)
    load_state_dict_by_order(tv, model.state_dict())
    return tv.to(model.head.conv.weight.device).train(model.training)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a weights file (a ``state_dict`` saved by torchvision or ev2lite) into ``model``.

    Files from torchvision (``efficientnet_v2_s-dd5fe13b.pth`` and friends) are paired by
    position; ev2lite checkpoints by name. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` for weights of another architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found: download it where a network "
                                "exists (torchvision's weights URLs) and pass its path")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    if set(state) == set(model.state_dict()):
        model.load_state_dict(state)
    else:
        load_state_dict_by_order(model, state)
    return model
