"""The project's cache folder and what lives in it: decoded datasets (:mod:`ev2lite.data`),
``torch.compile``'s graphs, and the per-machine calibration (:mod:`ev2lite.calibrate`).

Everything in it can be deleted; it is rebuilt when next needed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch


def cache_dir() -> Path:
    """Folder for the caches: ``$EV2LITE_CACHE`` if set, else ``~/.cache/ev2lite``."""
    env = os.environ.get("EV2LITE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "ev2lite"


def use_compile_cache() -> Path:
    """Point ``torch.compile``'s (inductor's) on-disk cache at ``cache_dir() / "inductor"``
    (unless ``TORCHINDUCTOR_CACHE_DIR`` is already set), so that compiled graphs outlive the
    process: a later run, seed or notebook at the same image size reuses them. Returns it."""
    folder = Path(os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor")))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def calibration_file(cpu: str) -> Path:
    """Where the calibration of a CPU (:func:`ev2lite.machine.cpu_id`: its ``/proc/cpuinfo``
    name, family and model) under this torch version is kept:
    ``cache_dir()/calibration/<cpu>-torch<version>.json``; another CPU or another torch gets
    its own file, so a calibration never travels to a machine it was not measured on."""
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-") or "unknown-cpu"
    return cache_dir() / "calibration" / f"{slug}-torch{torch.__version__.split('+')[0]}.json"
