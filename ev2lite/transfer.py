"""Transfer learning (paper Section 5.3, Tables 8 and 9): pre-train, new classifier, fine-tune.

The paper pre-trains on ImageNet, replaces the final layer and fine-tunes every weight on
CIFAR-10, CIFAR-100, Flowers and Cars for 10,000 steps at batch 512 and learning rate 0.001.
The paper's text and the released code (google/automl ``efficientnetv2/datasets.py``,
``ImagenetFt`` / ``Cifar10Ft``) disagree on the details:

* paper: "cosine decay", no weight decay, "simple cutout data augmentation";
* released code: RMSProp, 5e-4 per 256 images (0.001 at 512) held *constant* after one
  warmup epoch, EMA of the weights with decay 0.9996, weight decay 1e-5, label smoothing 0.1,
  flip + cutout, training at the pre-trained model's evaluation image size;
* REFERENCE.md section 2 (this project's summary): the released code with no weight decay
  and RandAugment + cutout.

:func:`finetune_recipe` follows REFERENCE.md (constant schedule, no weight decay; ev2lite has
no cutout, so RandAugment is set on the :class:`~ev2lite.recipe.Stage`) and scales batch and
steps down to a CPU; ``lr_schedule="cosine"`` gives the paper's variant.

Every model kind works: ours (:func:`ev2lite.create_model`, :func:`ev2lite.from_torchvision`),
torchvision's and timm's classifiers; :func:`new_classifier` finds the final ``nn.Linear``.
Training itself is :func:`ev2lite.study.train_once` (and so :func:`ev2lite.train.fit`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from .data import ImageDataset
from .study import tensor_bytes, train_once
from .recipe import Recipe, Stage
from .weights import load_weights

# The fine-tuning recipe of REFERENCE.md section 2 at its original scale (see the module
# docstring for where the paper and the released code differ). The learning rate is per 256
# images: the released main.py uses lr_base * batch_size / 256.
OFFICIAL_FINETUNE = {"batch_size": 512, "lr_per_256": 5e-4, "steps": 10_000,
                     "warmup_epochs": 1.0, "ema_decay": 0.9996, "weight_decay": 0.0,
                     "label_smoothing": 0.1}


def classifier_name(model: nn.Module) -> str:
    """Dotted name of ``model``'s final layer: its last ``nn.Linear`` in registration order
    (``"classifier"`` for ours, ``"classifier.1"`` for torchvision's EfficientNets, ``"fc"`` for
    torchvision's and timm's ResNets). Raises ``TypeError`` if ``model`` has no ``nn.Linear``."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise TypeError(f"{type(model).__name__} has no nn.Linear classifier to replace: "
                        "new_classifier handles models that end in a linear layer")
    return names[-1]


def new_classifier(model: nn.Module, num_classes: int) -> nn.Module:
    """Replace ``model``'s final linear layer by a zero-initialised one with ``num_classes``
    outputs, in place, and return ``model`` (logits ``[B, num_classes]``).

    Every other weight is untouched. The new layer keeps the old one's input width, bias,
    device and dtype; zero weights start fine-tuning at the uniform prediction (loss
    ``ln num_classes``) and let the pre-trained features, not a random head, set the first
    gradients. The released code likewise restores every pre-trained weight but the final
    layer. Timm models' ``num_classes`` attribute is updated. Raises ``ValueError`` for
    ``num_classes`` < 1 (or not an int) and ``TypeError`` for a model without ``nn.Linear``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1 (the classes of the target dataset), "
                         f"got {num_classes!r}")
    name = classifier_name(model)
    old = model.get_submodule(name)
    parent, _, child = name.rpartition(".")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    nn.init.zeros_(new.weight)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    setattr(model.get_submodule(parent), child, new)
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return model


def finetune_recipe(batch_size: int = 512, steps: int = 10_000, **changes) -> Recipe:
    """The released fine-tuning recipe (:data:`OFFICIAL_FINETUNE`) for ``batch_size`` images a
    step and a run of ``steps`` optimizer steps.

    RMSProp (TF style, momentum 0.9), learning rate ``5e-4 * batch_size / 256`` (1e-3 at the
    official 512), linear warmup over 1 epoch then ``"constant"``, no weight decay, label
    smoothing 0.1. The EMA decay keeps the official averaging horizon as a fraction of the run:
    ``0.9996 ** (10_000 / steps)`` (a horizon of ``1 / (1 - decay)`` = 25% of the steps; 0.9996
    at 10,000 steps, about 0.988 at 300). ``changes`` override any :class:`~ev2lite.recipe.Recipe`
    field (e.g. ``warmup_epochs=0.5``, ``eval_size=64``). The fine-tuning :class:`Stage` should
    use the pre-trained model's evaluation image size, as the released code does. Raises
    ``ValueError`` for ``batch_size`` or ``steps`` below 1 (and the Recipe's own checks).
    """
    if batch_size < 1 or steps < 1:
        raise ValueError(f"finetune_recipe needs batch_size >= 1 and steps >= 1, got "
                         f"batch_size={batch_size}, steps={steps}")
    official = OFFICIAL_FINETUNE
    settings = {"batch_size": batch_size, "optimizer": "rmsprop", "momentum": 0.9,
                "lr": official["lr_per_256"] * batch_size / 256, "lr_schedule": "constant",
                "warmup_epochs": official["warmup_epochs"],
                "ema_decay": official["ema_decay"] ** (official["steps"] / steps),
                "weight_decay": official["weight_decay"],
                "label_smoothing": official["label_smoothing"]}
    return Recipe(**{**settings, **changes})


def with_weights(make_model: Callable[[], nn.Module],
                 weights: dict[str, torch.Tensor] | str | os.PathLike | None = None
                 ) -> Callable[[], nn.Module]:
    """A builder: ``make_model()`` holding ``weights``.

    ``weights`` is a ``state_dict`` (e.g. of a model returned by :func:`pretrain`), the path of
    a weights file (a torchvision ``.pth`` such as ``efficientnet_b0_rwightman-7f5810bc.pth``
    or an ev2lite ``state_dict``, read by :func:`ev2lite.load_weights`), or ``None`` (the random
    initialisation: training from scratch). Raises ``TypeError`` for anything else; building
    raises ``FileNotFoundError`` / ``ValueError`` (from ``load_weights``) for a missing file or
    weights of another architecture.
    """
    if weights is not None and not isinstance(weights, (dict, str, os.PathLike)):
        raise TypeError(f"weights must be a state_dict, a file path or None, got "
                        f"{type(weights).__name__}")

    def build() -> nn.Module:
        model = make_model()
        if isinstance(weights, dict):
            model.load_state_dict(weights)
        elif weights is not None:
            load_weights(model, weights)
        return model

    return build


def pretrain(make_model: Callable[[], nn.Module], data: tuple[ImageDataset, ImageDataset],
             stages: list[Stage], recipe: Recipe, seed: int, *, cache: str | os.PathLike | None = None,
             **labels) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``make_model()`` on the source ``data`` (:func:`ev2lite.study.train_once`) and
    return the trained model with its history (``labels`` and ``seed`` as columns).

    ``cache`` (a folder): the run and its trained weights are kept there
    (``train_once(..., keep_weights=True)``), so a pre-training already done is read back,
    weights included, and an interrupted one resumes from its last epoch."""
    built: list[nn.Module] = []

    def build() -> nn.Module:
        built.append(make_model())
        return built[-1]

    history = train_once(build, data, stages, recipe, seed, cache=cache,
                         keep_weights=cache is not None, **labels)
    return built[0], history


def weights_id(state_dict: dict[str, torch.Tensor]) -> str:
    """A 12-hex-digit fingerprint of ``state_dict``'s names and values: the label that ties a
    fine-tuning run to the pre-trained weights it started from (so a cached fine-tuning of
    other weights is another run, :func:`ev2lite.study.run_key`)."""
    digest = hashlib.sha1()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()[:12]


def finetune_once(make_model: Callable[[], nn.Module], data: tuple[ImageDataset, ImageDataset],
                  stages: list[Stage], recipe: Recipe, seed: int, *,
                  cache: str | os.PathLike | None = None, **labels) -> pd.DataFrame:
    """Fine-tune ``make_model()`` (pre-trained, e.g. through :func:`with_weights`, or random:
    training from scratch) on the target ``data`` with a :func:`new_classifier` for its
    classes; one seeded run of :func:`ev2lite.study.train_once`, whose history it returns.

    ``seed`` fixes the data order and augmentation (and the initialisation of a random model);
    pre-trained weights stay as given, so repeated seeds measure the spread of fine-tuning
    alone, as the paper's five runs per entry of Table 8 do. ``cache``: as in ``train_once``
    (resumable, keyed by the configuration and ``labels``; label the run with the
    :func:`weights_id` of its initial weights so that other weights are another run).
    """
    num_classes = len(data[0].classes)
    return train_once(lambda: new_classifier(make_model(), num_classes), data, stages, recipe,
                      seed, cache=cache, **labels)
