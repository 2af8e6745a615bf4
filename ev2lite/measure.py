"""Measuring models: parameters, multiply-adds, training and inference speed, training memory.

The paper judges architectures by *training speed*, not only by FLOPs and parameters (Section 3.2:
depthwise convolutions in early layers are slow; Table 7 reports parameters, FLOPs and
training/inference speed side by side). This module measures all of them on the device at hand,
CPU or CUDA:

* :func:`count_params` and :func:`multiply_adds` (the paper's "FLOPs" are multiply-adds), counted
  on the meta device, so even EfficientNetV2-XL at 512 px costs nothing;
* :class:`TrainStep` (one SGD step of a copy of a model), :class:`InferenceStep` (one forward
  pass in eval mode) and :func:`time_interleaved`, which times several steps in turn so
  background load hits all of them equally; :func:`summarize` turns the seconds into median,
  quartiles and images/s; :func:`train_step_time` and :func:`inference_latency` combine them for
  one model;
* :func:`peak_train_memory`: the memory a training step holds;
* :func:`compare_train_steps`: the training throughput of several cases, timed side by side.

Section 3.2's training bottlenecks (memory, convolution and stage cost): :mod:`ev2lite.bottlenecks`.

Timings are medians of ``repeats`` calls after ``warmup`` untimed ones; on CUDA every call is
bracketed by ``torch.cuda.synchronize``. On a CPU shared with other processes, a step that uses
every core can stall for many times its length whenever another process holds a core (OpenMP
threads wait for each other): compare only timings taken side by side, and look at the spread.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from .cache import use_compile_cache
from .stats import relative_iqr
from .recipe import RECIPE_CHOICES, Recipe, make_optimizer

PRECISIONS = ("fp32", "bf16")
MIB = 2 ** 20


@functools.lru_cache(maxsize=None)
def meta_model(name: str) -> nn.Module:
    """An ``ev2lite.create_model`` name, or ``timm:<name>`` for a timm architecture, built on the
    meta device (shapes only: no memory, no weights) once per process (building a large timm
    model takes seconds: its weight initialisation runs even on the meta device). Treat the
    returned module as read-only: it is shared. Raises ``ValueError`` for an unknown name."""
    with torch.device("meta"):
        if not name.startswith("timm:"):
            from .models import create_model
            return create_model(name)
        import timm
        if not timm.is_model(name[5:]):
            raise ValueError(f"timm has no model {name[5:]!r} (see timm.list_models())")
        return timm.create_model(name[5:], pretrained=False)


def count_params(model: nn.Module | str) -> int:
    """Number of parameters of ``model`` (trainable or not).

    ``model`` is a module or a name for ``ev2lite.create_model`` (built on the meta device, so
    even EfficientNetV2-XL costs no memory). EfficientNetV2-S: 21,458,488 (the paper's Table 7
    rounds it to 22M). Raises ``ValueError`` for an unknown model name.
    """
    if isinstance(model, str):
        model = meta_model(model)
    return sum(p.numel() for p in model.parameters())


def multiply_adds(model: nn.Module | str, image_size: int, batch: int = 1, *,
                  in_channels: int = 3) -> int:
    """Multiply-adds per image of one forward pass at ``image_size`` x ``image_size``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products;
    norms, activations and pooling are not counted, as in the paper) while the model runs on the
    meta device: its parameters and buffers are replaced by meta tensors through
    ``torch.func.functional_call``, so nothing is computed or allocated. FLOPs / 2 = multiply-adds,
    which is what the paper calls "FLOPs" (Table 7: 8.8B for V2-S at its 384 px eval size; this
    count gives 8.366e9, the same as torchvision publishes).

    Args:
        model: a module (left unchanged; eval mode is used while counting) or a name for
            ``ev2lite.create_model``, built directly on the meta device.
        image_size: input side in pixels.
        batch: batch size of the counted pass (the result is per image either way).
        in_channels: channels of the input ``[batch, in_channels, image_size, image_size]``.

    Raises:
        ValueError: whatever the model raises for an input it cannot take (e.g. images smaller
            than an ev2lite model's output stride), or an unknown model name.
    """
    if isinstance(model, str):
        model = meta_model(model)
    tensors = chain(model.named_parameters(), model.named_buffers())
    meta = {name: t.to("meta") for name, t in tensors}
    x = torch.empty(batch, in_channels, image_size, image_size, device="meta")
    training = model.training
    model.eval()  # train-mode BatchNorm rejects 1x1 maps of a single image
    try:
        with FlopCounterMode(display=False) as counter:
            functional_call(model, meta, (x,))
    finally:
        model.train(training)
    return counter.get_total_flops() // (2 * batch)


def training_multiply_adds(model: nn.Module | str, image_size: int, batch: int = 1) -> int:
    """Multiply-adds per image of one training step (forward + backward) = 3 x forward.

    The backward pass costs two forward passes (gradients of the inputs and of the weights). We do
    not count it with ``FlopCounterMode`` because in current torch it overcounts the backward of
    grouped and depthwise convolutions (it counts them as if dense), which would make MBConv
    networks look far more expensive than they are. Arguments and errors as :func:`multiply_adds`.
    """
    return 3 * multiply_adds(model, image_size, batch)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {PRECISIONS}")


def _prepared_copy(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """A copy of ``model`` on ``device`` in the chosen memory format (the caller's is untouched)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return copy.deepcopy(model).to(device, memory_format=fmt)


class TrainStep:
    """One training step (forward, cross-entropy, backward, optimizer step) of a copy of a model.

    Calling the object runs one step on the next batch; ``self.model`` and ``self.optimizer`` are
    the copy and its optimizer (the model passed in is never changed).

    Args:
        model: the model to copy.
        image_size, batch_size: shape of the synthetic batch ``[batch_size, 3, S, S]`` (standard
            normal inputs, all labels 0), used when ``batches`` is None.
        channels_last: memory format of the model and of the batches (``torch.channels_last``) or
            the default NCHW (``torch.contiguous_format``).
        precision: ``"fp32"``, or ``"bf16"`` for bfloat16 autocast of the forward pass (the loss
            is computed in fp32, as in ``ev2lite.train.fit``).
        device: default CUDA when available, else CPU.
        optimizer: a :class:`~ev2lite.recipe.Recipe`, whose optimizer is built by
            :func:`ev2lite.recipe.make_optimizer` exactly as :func:`ev2lite.train.fit` builds it
            (weight-decay groups included), or the name of one: ``"sgd"`` (Nesterov momentum
            0.9, one buffer per parameter) or ``"rmsprop"`` (timm's ``RMSpropTF``, momentum 0.9:
            two buffers, the paper's optimizer), with a small learning rate (random data).
        batches: optional iterable of ``(x, y)`` batches (e.g. a ``DataLoader``); it is iterated
            again whenever it is exhausted, and each step's time then includes producing its
            batch and moving it to ``device``.
        compile: run the forward pass through ``torch.compile`` as :func:`ev2lite.train.fit`
            does with ``Recipe(compile="on")`` (the first call compiles: warm up before timing).

    Raises:
        ValueError: unknown ``precision`` or ``optimizer``.
    """

    def __init__(self, model: nn.Module, image_size: int, batch_size: int, *,
                 channels_last: bool = True, precision: str = "fp32",
                 device: str | torch.device | None = None, optimizer: str | Recipe = "sgd",
                 batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
                 compile: bool = False):
        _check_precision(precision)
        self.device = torch.device(device) if device else default_device()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.precision = precision
        self.model = _prepared_copy(model, self.device, channels_last).train()
        self.optimizer = make_optimizer(self.model, timing_recipe(optimizer))
        self.forward = _compiled(self.model) if compile else self.model
        if batches is None:
            x = torch.randn(batch_size, 3, image_size, image_size, device=self.device)
            x = x.contiguous(memory_format=self.memory_format)  # so __call__ does not convert it
            batches = [(x, torch.zeros(batch_size, dtype=torch.long, device=self.device))]
        self.batches = chain.from_iterable(repeat(batches))  # re-iterates, does not cache

    def __call__(self) -> None:
        x, y = next(self.batches)
        x = x.to(self.device, memory_format=self.memory_format, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)  # frees the last gradients before the forward
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.forward(x)
        F.cross_entropy(logits.float(), y).backward()
        self.optimizer.step()


def _compiled(model: nn.Module) -> Callable:
    use_compile_cache()
    return torch.compile(model)


def timing_recipe(optimizer: str | Recipe) -> Recipe:
    """``optimizer`` itself if it is a :class:`~ev2lite.recipe.Recipe`, else a Recipe with that
    optimizer name and a small learning rate (1e-3 SGD, 1e-4 RMSProp; weight decay 1e-5), so
    that steps on random data stay finite. Raises ``ValueError`` for an unknown name."""
    if isinstance(optimizer, Recipe):
        return optimizer
    if optimizer not in RECIPE_CHOICES["optimizer"]:
        raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {RECIPE_CHOICES['optimizer']}")
    return Recipe(optimizer=optimizer, lr=1e-3 if optimizer == "sgd" else 1e-4, weight_decay=1e-5)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def machine_load() -> Iterator[dict]:
    """Record how busy the machine was while the ``with`` block ran, to judge its timings.

    Yields a dict filled on exit: ``wall_s`` and ``cpu_s`` (this process's CPU seconds, all its
    threads), ``cpu_per_wall`` (about the thread count when nothing else competed),
    ``load_1min`` (1-minute load average at the end; it counts this process too), ``cores``,
    ``threads`` (torch's intra-op threads) and ``busy``: ``True`` when the load exceeded the
    cores by more than half a core, or the process got under 75% of the CPU its threads could
    use (``cpu_s < 0.75 * wall_s * min(threads, cores)``): timings taken then are not to be
    reported as they are.
    """
    record: dict = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield record
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    record.update(wall_s=wall, cpu_s=cpu, cpu_per_wall=cpu / wall if wall else float("nan"),
                  load_1min=load, cores=cores, threads=threads)
    record["busy"] = was_busy(record)


def was_busy(record: dict, threads: float | None = None) -> bool:
    """:func:`machine_load`'s verdict on its ``record``: the load exceeded the cores by more
    than half a core, or the process got under 75% of the CPU that ``threads`` (default the
    record's; a block that ran some steps on fewer threads passes their time-weighted mean)
    could use."""
    threads = record["threads"] if threads is None else threads
    return bool(record["load_1min"] > record["cores"] + 0.5
                or record["cpu_s"] < 0.75 * record["wall_s"] * min(threads, record["cores"]))


def time_interleaved(steps: dict[str, Callable[[], object]], *, warmup: int = 3,
                     repeats: int = 10) -> dict[str, list[float]]:
    """Wall-clock seconds of ``repeats`` calls of each step, the steps taking turns.

    Each step is first called ``warmup`` times untimed (allocator, oneDNN/cuDNN algorithm choice).
    Then repeat ``r`` calls every step once, starting with step ``r mod len(steps)``, so that
    background load and cache effects hit all steps alike. On CUDA each call is bracketed by
    ``torch.cuda.synchronize()``.

    Returns ``{name: [seconds of repeat 0, ..., repeat repeats-1]}``. Raises ``ValueError`` for
    ``repeats < 1`` or ``warmup < 0``.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    for step in steps.values():
        for _ in range(warmup):
            step()
    names, seconds = list(steps), {name: [] for name in steps}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            _synchronize()
            start = time.perf_counter()
            steps[name]()
            _synchronize()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def summarize(seconds: list[float], batch_size: int, unit: str = "s") -> dict:
    """Median and spread of per-call times, and throughput.

    Returns ``median_<unit>``, ``q25_<unit>``, ``q75_<unit>`` (quartiles), ``min_<unit>``,
    ``max_<unit>`` with ``unit`` ``"s"`` or ``"ms"``, ``iqr_percent`` (interquartile range in
    percent of the median: the noise), ``images_per_s`` (``batch_size`` / median seconds) and
    ``repeats``. Raises ``ValueError`` for an unknown unit or no times.
    """
    scale = {"s": 1.0, "ms": 1e3}.get(unit)
    if scale is None or not seconds:
        raise ValueError(f"need unit 's' or 'ms' and at least one time, got {unit!r}, {seconds}")
    q25, median, q75 = (float(q) for q in np.percentile(seconds, [25, 50, 75]))
    stats = {"median": median, "q25": q25, "q75": q75, "min": min(seconds), "max": max(seconds)}
    spread = relative_iqr(seconds) if len(seconds) > 1 else 0.0  # one time: no spread seen
    return {**{f"{k}_{unit}": v * scale for k, v in stats.items()},
            "iqr_percent": spread, "images_per_s": batch_size / median,
            "repeats": len(seconds)}


def train_step_time(model: nn.Module, image_size: int, batch_size: int, *,
                    channels_last: bool = True, precision: str = "fp32", warmup: int = 3,
                    repeats: int = 10, device: str | torch.device | None = None,
                    optimizer: str | Recipe = "sgd") -> dict:
    """Time of one training step on a synthetic batch ``[batch_size, 3, S, S]``.

    The step is :class:`TrainStep` (forward, loss, backward, optimizer step of a copy of
    ``model``), what the paper's training-speed comparisons time (Figure 3: step time on TPUv3;
    Table 3: images/s per TPU core and per V100 GPU).
    Returns :func:`summarize`'s dict in seconds per step (``median_s``, ``q25_s``, ``q75_s``,
    ``min_s``, ``max_s``) plus ``images_per_s``. Raises ``ValueError`` for an unknown precision
    or optimizer, bad ``warmup``/``repeats``, or an input the model rejects.
    """
    step = TrainStep(model, image_size, batch_size, channels_last=channels_last,
                     precision=precision, device=device, optimizer=optimizer)
    seconds = time_interleaved({"train": step}, warmup=warmup, repeats=repeats)["train"]
    return summarize(seconds, batch_size)


class InferenceStep:
    """One forward pass of a copy of a model in eval mode, under ``torch.inference_mode``.

    The inference counterpart of :class:`TrainStep`, so that :func:`time_interleaved` can time
    training and inference of several models side by side (paper Table 11: inference
    throughput; Table 7: latency). Calling the object runs the copy ``self.model`` on a fixed
    synthetic batch ``[batch_size, 3, image_size, image_size]`` and returns the logits
    ``[batch_size, num_classes]``. Arguments as :class:`TrainStep` (no optimizer, no batches).

    Raises:
        ValueError: unknown ``precision``.
    """

    def __init__(self, model: nn.Module, image_size: int, batch_size: int, *,
                 channels_last: bool = True, precision: str = "fp32",
                 device: str | torch.device | None = None, compile: bool = False):
        _check_precision(precision)
        self.device = torch.device(device) if device else default_device()
        self.precision = precision
        self.model = _prepared_copy(model, self.device, channels_last).eval()
        self.forward = _compiled(self.model) if compile else self.model
        self.x = torch.randn(batch_size, 3, image_size, image_size, device=self.device).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def __call__(self) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.forward(self.x)


def inference_latency(model: nn.Module, image_size: int, batch_size: int, *,
                      channels_last: bool = True, precision: str = "fp32", warmup: int = 3,
                      repeats: int = 10, device: str | torch.device | None = None) -> dict:
    """Latency of one forward pass of a copy of ``model`` in eval mode (``torch.inference_mode``).

    Returns :func:`summarize`'s dict in milliseconds per batch (``median_ms``, ``q25_ms``,
    ``q75_ms``, ``min_ms``, ``max_ms``) plus ``images_per_s`` (the paper's Table 7 and Figure 5
    report inference latency at batch 16 on a V100 GPU in FP16, with timm). Raises
    ``ValueError`` for an unknown precision, bad ``warmup``/``repeats``, or an input the model
    rejects.
    """
    step = InferenceStep(model, image_size, batch_size, channels_last=channels_last,
                         precision=precision, device=device)
    seconds = time_interleaved({"forward": step}, warmup=warmup, repeats=repeats)["forward"]
    return summarize(seconds, batch_size, unit="ms")


def _nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_train_memory(model: nn.Module, image_size: int, batch_size: int, *,
                      channels_last: bool = True, precision: str = "fp32",
                      device: str | torch.device | None = None, optimizer: str | Recipe = "sgd") -> dict:
    """Memory of one training step (:class:`TrainStep` on a synthetic batch), in MiB.

    Components (MiB): ``weights_mib`` (parameters and buffers), ``gradients_mib``,
    ``optimizer_mib`` (optimizer state: 1 buffer per parameter for SGD with momentum, 2 for
    RMSProp), ``activations_mib``: the tensors autograd saves for the backward pass, recorded with
    ``torch.autograd.graph.saved_tensors_hooks`` and counted once per storage (weights saved by a
    layer are not counted again). ``total_mib``: on CPU the sum of the four, an estimate of the
    peak (a little high, since gradients are created while the backward pass frees saved
    tensors; a little low, since temporary buffers inside single operations are left out); on
    CUDA ``torch.cuda.max_memory_allocated`` over two steps, minus what was allocated before.
    ``method`` names which. This is the paper's memory argument (Section 3.2, "Training with
    very large image sizes is slow", Table 2: large images leave room only for small batches).

    Raises ``ValueError`` for an unknown precision or optimizer, or an input the model rejects.
    """
    device = torch.device(device) if device else default_device()
    if device.type == "cuda":
        _synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    step = TrainStep(model, image_size, batch_size, channels_last=channels_last,
                     precision=precision, device=device, optimizer=optimizer)
    step()  # the first step creates the gradients and the optimizer state
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    params = list(step.model.parameters())
    for p in params:
        saved.pop(p.untyped_storage().data_ptr(), None)
    parts = {
        "weights_mib": _nbytes(chain(params, step.model.buffers())) / MIB,
        "gradients_mib": _nbytes(p.grad for p in params if p.grad is not None) / MIB,
        "optimizer_mib": _nbytes(v for state in step.optimizer.state.values()
                                 for v in state.values() if torch.is_tensor(v)) / MIB,
        "activations_mib": sum(saved.values()) / MIB,
    }
    if device.type == "cuda":
        _synchronize()
        return {**parts, "total_mib": (torch.cuda.max_memory_allocated(device) - base) / MIB,
                "method": "cuda max_memory_allocated"}
    return {**parts, "total_mib": sum(parts.values()), "method": "sum of live tensors"}

def compare_train_steps(cases: dict[str, tuple[nn.Module, int, int]], *, baseline: str | None = None,
                        warmup: int = 2, repeats: int = 10, channels_last: bool = True,
                        precision: str = "fp32", device: str | torch.device | None = None,
                        ) -> pd.DataFrame:
    """Training throughput of several (model, image size, batch size) cases, timed side by side.

    ``cases`` maps a label to ``(model, image_size, batch_size)``; each becomes a
    :class:`TrainStep` and all take turns in one :func:`time_interleaved` run, so a ratio between
    two rows is a measurement rather than a comparison across moments of different load.
    Returns one row per case: ``case``, ``image_size``, ``batch_size``, ``median_s`` (seconds per
    step), ``iqr_percent``, ``images_per_s`` and, with ``baseline`` (a label of ``cases``),
    ``speedup``: images/s relative to that case (paper Table 2 and Table 3 compare training
    throughput in images/s), and the :func:`machine_load` of the run: ``load_1min``,
    ``cpu_per_wall`` and ``busy`` (the same on every row). Raises ``ValueError`` for no cases or
    an unknown ``baseline``.
    """
    if not cases or (baseline is not None and baseline not in cases):
        raise ValueError(f"need at least one case and a baseline among them, got "
                         f"{list(cases)} and baseline {baseline!r}")
    steps = {name: TrainStep(model, size, batch, channels_last=channels_last,
                             precision=precision, device=device)
             for name, (model, size, batch) in cases.items()}
    with machine_load() as load:
        seconds = time_interleaved(steps, warmup=warmup, repeats=repeats)
    rows = []
    for name, (_, size, batch) in cases.items():
        stats = summarize(seconds[name], batch)
        rows.append({"case": name, "image_size": size, "batch_size": batch,
                     "median_s": stats["median_s"], "iqr_percent": stats["iqr_percent"],
                     "images_per_s": stats["images_per_s"]})
    table = pd.DataFrame(rows).assign(**{k: load[k] for k in ("load_1min", "cpu_per_wall", "busy")})
    if baseline is not None:
        table["speedup"] = table.images_per_s / table.set_index("case").images_per_s[baseline]
    return table
