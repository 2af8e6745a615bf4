"""Resource guard: before training, warn when a training step would not fit in memory.

:func:`ev2lite.train.fit` calls :func:`check_train_memory` once, at the largest image size of the
run, so that a run too big for the machine says so in its first second instead of swapping or
being killed by the out-of-memory killer hours later. The estimate measures one small step
(:func:`ev2lite.measure.peak_train_memory` at batch 2, well under a second for the CPU-scale
models) and scales the activations linearly to the real batch size.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from .measure import MIB, peak_train_memory

if TYPE_CHECKING:
    from .recipe import Recipe

# Python hides ResourceWarning by default; show ours (once per place, the "default" action).
warnings.filterwarnings("default", category=ResourceWarning, module=r"ev2lite\.guard")

PROBE_BATCH = 2  # images of the measured step


def available_memory(device: torch.device) -> int | None:
    """Bytes that a new allocation can use on ``device``, or ``None`` where unknown.

    CUDA: free memory of the device (``torch.cuda.mem_get_info``). CPU: ``MemAvailable`` of
    ``/proc/meminfo`` (free plus reclaimable caches, Linux), else free physical pages
    (``os.sysconf``), else ``None`` (e.g. macOS).
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the file counts kB
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def train_memory_estimate(model: nn.Module, image_size: int, recipe: Recipe,
                          device: torch.device) -> int:
    """Bytes one training step of ``model`` needs at ``image_size`` px and ``recipe.batch_size``.

    Weights, gradients and optimizer state as measured, plus the activations saved for the
    backward pass of a step at batch :data:`PROBE_BATCH`, times ``batch_size / PROBE_BATCH``.
    The probe trains a copy (``model`` is unchanged) and draws from the global RNG, which
    ``fit`` reseeds every epoch. Raises ``ValueError`` for an input the model rejects.
    """
    parts = peak_train_memory(model, image_size, PROBE_BATCH, channels_last=recipe.channels_last,
                              precision=recipe.precision, device=device,
                              optimizer=recipe)
    fixed = parts["weights_mib"] + parts["gradients_mib"] + parts["optimizer_mib"]
    return round((fixed + parts["activations_mib"] * recipe.batch_size / PROBE_BATCH) * MIB)


def check_train_memory(model: nn.Module, image_size: int, recipe: Recipe,
                       device: torch.device) -> None:
    """Warn (``ResourceWarning``) if :func:`train_memory_estimate` exceeds
    :func:`available_memory`; the message gives both in MiB and what to lower."""
    available = available_memory(device)
    if available is None:
        return
    needed = train_memory_estimate(model, image_size, recipe, device)
    if needed > available:
        warnings.warn(
            f"a training step at batch {recipe.batch_size} and {image_size} px needs about "
            f"{needed / MIB:,.0f} MiB but only {available / MIB:,.0f} MiB is available on "
            f"{device}: lower the batch size (--batch-size) or the largest image size",
            ResourceWarning)
