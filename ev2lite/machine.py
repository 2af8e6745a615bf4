"""The machine at hand: CPU model and feature flags, native bfloat16, and the defaults that
depend on them.

Speed-ups measured on one CPU can reverse on the next (REFERENCE.md section 5; issue 13 of this
project): channels_last made an EfficientNet training step 1.3-1.46x faster on an Intel Sapphire
Rapids CPU (AVX-512, AMX) and 0.8-0.95x on an AMD EPYC (Zen 3, AVX2, no AVX-512); bf16 autocast
pays only where the CPU computes bf16 natively. So these facts are read off the machine, never
assumed, and recorded with every timing (:func:`ev2lite.results.environment`).
"""

from __future__ import annotations

import functools
import json
import os
import platform
from pathlib import Path

import torch

from .cache import calibration_file


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    return _cpuinfo_fields().get("model name") or platform.processor() or "unknown"


@functools.cache
def cpu_id() -> str:
    """The CPU's model name with its family and model numbers (``/proc/cpuinfo``), e.g.
    ``"AMD EPYC, family 26 model 2"`` (a Zen 5) or just the name where the numbers are not
    shown. The name alone is not enough: virtual machines show several AMD generations as
    "AMD EPYC", and they differ in what runs fast (an AVX2-only Zen 3 and an AVX-512 Zen 5
    both ran this project), so calibrations are kept per :func:`cpu_id`."""
    fields = _cpuinfo_fields()
    if "cpu family" in fields and "model" in fields:
        return f"{cpu_model()}, family {fields['cpu family']} model {fields['model']}"
    return cpu_model()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo`` on Linux; empty elsewhere), e.g. ``avx512f``,
    ``amx_bf16``, ``avx512_bf16``."""
    return frozenset(_cpuinfo_fields().get("flags", "").split())


def native_bf16(device: str | torch.device | None = None) -> bool:
    """Whether ``device`` (default: CUDA when available, else CPU) computes bfloat16 natively:
    on CPU, AMX-BF16 or AVX-512-BF16 (without them torch emulates bf16 and it runs slower than
    fp32); on CUDA, ``torch.cuda.is_bf16_supported()``. Native is not the same as fast: on a
    Xeon with AVX-512-BF16 and no AMX, bf16 autocast ran EfficientNet training steps at
    0.38-0.78x fp32 (``results/bench_train_step.csv``, 2026-12-02), so measure before choosing
    it (``benchmarks/bench_train_step.py``'s bf16 column)."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def calibration() -> dict | None:
    """This machine's calibration (``python -m ev2lite.calibrate``: the fastest layout, batch
    size, thread count and whether compiling paid, measured here), or ``None`` when this CPU
    (:func:`cpu_id`) under this torch version was never calibrated (or the file is
    unreadable)."""
    path = calibration_file(cpu_id())
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def default_channels_last() -> bool:
    """The default memory format of training on this machine, in this order:
    ``$EV2LITE_CHANNELS_LAST`` (``1`` or ``0``), else the layout this machine's
    :func:`calibration` measured faster, else ``channels_last``. The CPU's flags do not decide
    it: channels_last trained faster on three of the four CPUs measured (an Intel Sapphire
    Rapids, an Intel Xeon with AVX-512, 1.3-1.5x, and an AMD EPYC with AVX2 only, 1.1-1.5x)
    and slower on another AMD EPYC with the same name and flags (NCHW 1.06-1.25x), so without a
    measurement channels_last risks the smaller loss. ``Recipe(channels_last=...)`` overrides
    it."""
    env = os.environ.get("EV2LITE_CHANNELS_LAST")
    if env is not None:
        return env.strip().lower() in ("1", "true", "yes", "on")
    measured = calibration()
    if measured is not None and "channels_last" in measured:
        return bool(measured["channels_last"])
    return True


def default_compile() -> str:
    """``Recipe.compile``'s default on this machine: ``"auto"`` (compile runs long enough to
    pay) on a GPU, or where this machine's :func:`calibration` measured a compiled training
    step at least 10% faster than eager; else ``"off"`` (also when compiling was not
    calibrated)."""
    measured = calibration() or {}
    pays = torch.cuda.is_available() or measured.get("compile_speedup", 0.0) >= 1.1
    return "auto" if pays else "off"


def default_precision() -> str:
    """``Recipe.precision``'s default: ``"bf16"`` (autocast) on a CUDA device with native
    bfloat16, ``"fp32"`` on every CPU (this project's results are fp32; bf16 on CPUs with
    AVX-512-BF16 or AMX is measured per study, e.g. notebook 02)."""
    return "bf16" if torch.cuda.is_available() and native_bf16("cuda") else "fp32"


def _cpuinfo_fields() -> dict[str, str]:
    """The ``key : value`` fields of the first processor in ``/proc/cpuinfo`` (empty elsewhere)."""
    fields: dict[str, str] = {}
    for line in _cpuinfo():
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.exists() else []
