"""Profiles: the sizes of each study at three scales, so the code path never changes.

``smoke`` keeps a notebook under a minute (CI), ``quick`` is the README's main job (minutes on a
2-core CPU, real data, trends visible), ``full`` produces the committed ``results/``. A notebook
asks ``settings("quickstart", PROFILE)`` and gets a plain dict.
"""

from __future__ import annotations

import os

PROFILE_NAMES = ("smoke", "quick", "full")

STUDIES: dict[str, dict[str, dict]] = {
    # 00_quickstart: a CPU-scale EfficientNetV2 on CIFAR-10 at 32 px.
    "quickstart": {
        "smoke": {"train_subset": 1000, "test_subset": 500, "epochs": 1, "batch_size": 100},
        "quick": {"train_subset": None, "test_subset": None, "epochs": 3, "batch_size": 128},
        "full": {"train_subset": None, "test_subset": None, "epochs": 15, "batch_size": 128},
    },
    # 05_progressive_learning, Table 5: image size x RandAugment magnitude on Imagenette.
    "progressive_learning": {
        "smoke": {"train_subset": 100, "test_subset": 100, "epochs": 1, "batch_size": 50,
                  "sizes": [64, 96], "magnitudes": [0, 9], "seeds": [0]},
        "quick": {"train_subset": 1500, "test_subset": 500, "epochs": 3, "batch_size": 64,
                  "sizes": [64, 128], "magnitudes": [0, 18], "seeds": [0]},
        "full": {"train_subset": None, "test_subset": None, "epochs": 5, "batch_size": 64,
                 "sizes": [64, 96, 128], "magnitudes": [0, 9, 18], "seeds": [0, 1, 2]},
    },
    # 06_adaptive_regularization, Table 13 and Figure 6: progressive / random resize, vanilla vs
    # adaptive regularization, on Imagenette with the CPU preset (64 -> 128 px).
    "adaptive_regularization": {
        "smoke": {"train_subset": 100, "test_subset": 100, "epochs": 2, "num_stages": 2,
                  "batch_size": 50, "seeds": [0]},
        "quick": {"train_subset": 1000, "test_subset": 500, "epochs": 4, "num_stages": 4,
                  "batch_size": 64, "seeds": [0, 1]},
        "full": {"train_subset": None, "test_subset": None, "epochs": 12, "num_stages": 4,
                 "batch_size": 64, "seeds": [0, 1, 2]},
    },
    # 07_progressive_other_networks, Table 12: a ResNet and an EfficientNet, fixed size vs
    # progressive, accuracy and wall-clock training time.
    "progressive_other_networks": {
        "smoke": {"train_subset": 100, "test_subset": 100, "epochs": 2, "num_stages": 2,
                  "batch_size": 50, "seeds": [0]},
        "quick": {"train_subset": 1000, "test_subset": 500, "epochs": 4, "num_stages": 4,
                  "batch_size": 64, "seeds": [0]},
        "full": {"train_subset": None, "test_subset": None, "epochs": 12, "num_stages": 4,
                 "batch_size": 64, "seeds": [0, 1]},
    },
}


def profile_name(profile: str | None = None) -> str:
    """``profile``, else ``$EV2LITE_PROFILE``, else ``"quick"``; ``ValueError`` if unknown,
    ``TypeError`` if ``profile`` is neither a string nor ``None`` (papermill passes parameters
    as Python literals: ``-p PROFILE smoke``, not ``-p PROFILE 3``)."""
    if profile is not None and not isinstance(profile, str):
        raise TypeError(f"PROFILE must be a string, one of {', '.join(PROFILE_NAMES)}; got "
                        f"{profile!r} ({type(profile).__name__})")
    name = profile or os.environ.get("EV2LITE_PROFILE") or "quick"
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}")
    return name


def settings(study: str, profile: str | None = None) -> dict:
    """The settings of ``study`` at ``profile`` (see :func:`profile_name`), as a new dict.

    Raises ``ValueError`` for an unknown study or profile, ``TypeError`` for a profile that is
    not a string.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}: one of {sorted(STUDIES)}")
    return dict(STUDIES[study][profile_name(profile)])
