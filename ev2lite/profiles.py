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
}


def profile_name(profile: str | None = None) -> str:
    """``profile``, else ``$EV2LITE_PROFILE``, else ``"quick"``; ``ValueError`` if unknown."""
    name = profile or os.environ.get("EV2LITE_PROFILE") or "quick"
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}")
    return name


def settings(study: str, profile: str | None = None) -> dict:
    """The settings of ``study`` at ``profile`` (see :func:`profile_name`), as a new dict.

    Raises ``ValueError`` for an unknown study or profile.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}: one of {sorted(STUDIES)}")
    return dict(STUDIES[study][profile_name(profile)])
