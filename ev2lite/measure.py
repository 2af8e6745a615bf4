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
* :func:`peak_train_memory`: the memory a training step holds.
* Section 3.2's training bottlenecks: :func:`train_memory_fit` / :func:`memory_capacity`
  (memory per image, how many images fit a budget, Table 2), :func:`compare_train_steps`
  (throughput of several cases side by side), :func:`conv_cost_table` (time per multiply-add of depthwise, dense and 1x1 convolutions),
  :func:`stage_counts` / :func:`stage_costs` (each stage's parameters, multiply-adds and
  training time) and :func:`block_table` (a block's sub-modules and shapes, Figure 2).

Timings are medians of ``repeats`` calls after ``warmup`` untimed ones; on CUDA every call is
bracketed by ``torch.cuda.synchronize``. On a CPU shared with other processes, a step that uses
every core can stall for many times its length whenever another process holds a core (OpenMP
threads wait for each other): compare only timings taken side by side, and look at the spread.
"""

from __future__ import annotations

import copy
import time
import functools
from collections.abc import Callable, Iterable
from itertools import chain, repeat

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

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
        optimizer: ``"sgd"`` (Nesterov momentum 0.9, one momentum buffer per parameter, as the
            ev2lite recipe) or ``"rmsprop"`` (momentum 0.9: two buffers, the paper's optimizer).
        batches: optional iterable of ``(x, y)`` batches (e.g. a ``DataLoader``); it is iterated
            again whenever it is exhausted, and each step's time then includes producing its
            batch and moving it to ``device``.

    Raises:
        ValueError: unknown ``precision`` or ``optimizer``.
    """

    def __init__(self, model: nn.Module, image_size: int, batch_size: int, *,
                 channels_last: bool = True, precision: str = "fp32",
                 device: str | torch.device | None = None, optimizer: str = "sgd",
                 batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None):
        _check_precision(precision)
        self.device = torch.device(device) if device else default_device()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.precision = precision
        self.model = _prepared_copy(model, self.device, channels_last).train()
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9,
                                             nesterov=True, weight_decay=1e-5)
        elif optimizer == "rmsprop":
            self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=1e-4, alpha=0.9,
                                                 eps=1e-3, momentum=0.9, weight_decay=1e-5)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose 'sgd' or 'rmsprop'")
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
            logits = self.model(x)
        F.cross_entropy(logits.float(), y).backward()
        self.optimizer.step()


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


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
    return {**{f"{k}_{unit}": v * scale for k, v in stats.items()},
            "iqr_percent": 100 * (q75 - q25) / median, "images_per_s": batch_size / median,
            "repeats": len(seconds)}


def train_step_time(model: nn.Module, image_size: int, batch_size: int, *,
                    channels_last: bool = True, precision: str = "fp32", warmup: int = 3,
                    repeats: int = 10, device: str | torch.device | None = None,
                    optimizer: str = "sgd") -> dict:
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
                 device: str | torch.device | None = None):
        _check_precision(precision)
        self.device = torch.device(device) if device else default_device()
        self.precision = precision
        self.model = _prepared_copy(model, self.device, channels_last).eval()
        self.x = torch.randn(batch_size, 3, image_size, image_size, device=self.device).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def __call__(self) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16,
                                                    enabled=self.precision == "bf16"):
            return self.model(self.x)


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
                      device: str | torch.device | None = None, optimizer: str = "sgd") -> dict:
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


# --- Training bottlenecks (paper Section 3.2): memory capacity, convolution cost, stage cost ---

def train_memory_fit(model: nn.Module, image_size: int, *, measured_at: int | None = None,
                     batch_size: int = 2, channels_last: bool = True, precision: str = "fp32",
                     device: str | torch.device | None = None, optimizer: str = "sgd") -> dict:
    """Training memory of ``model`` as ``fixed_mib + batch * per_image_mib`` at ``image_size`` px.

    :func:`peak_train_memory` is measured at ``measured_at`` px (default ``image_size``) with
    ``batch_size`` and ``2 * batch_size`` images; the difference is the memory of
    ``batch_size`` more images (the activations autograd keeps), the rest is fixed (weights,
    gradients, optimizer state, and e.g. the bf16 weight copies autocast keeps). Feature maps
    are ``H/stride x W/stride``, so the per-image part grows with the pixel count:
    ``per_image_mib`` is scaled by ``(image_size / measured_at) ** 2``, which predicts a large
    network's memory at the paper's sizes without computing a step there (exact when both sizes
    are multiples of the output stride). Returns ``image_size``, ``measured_at``, ``fixed_mib``,
    ``per_image_mib``. Raises ``ValueError`` for sizes or a batch below 1, and whatever
    :func:`peak_train_memory` raises.
    """
    measured_at = measured_at or image_size
    if image_size < 1 or measured_at < 1 or batch_size < 1:
        raise ValueError(f"need image sizes >= 1 px and batch_size >= 1, got {image_size}, "
                         f"{measured_at} and {batch_size}")
    small, large = (peak_train_memory(model, measured_at, b, channels_last=channels_last,
                                      precision=precision, device=device,
                                      optimizer=optimizer)["total_mib"]
                    for b in (batch_size, 2 * batch_size))
    per_image = (large - small) / batch_size
    return {"image_size": image_size, "measured_at": measured_at,
            "fixed_mib": small - batch_size * per_image,
            "per_image_mib": per_image * (image_size / measured_at) ** 2}


def memory_capacity(model: nn.Module, image_size: int, budget_mib: float, **fit) -> dict:
    """How many images of ``image_size`` px one training step of ``model`` fits in ``budget_mib``.

    The paper's first bottleneck (Section 3.2, Table 2): memory is fixed, so large images leave
    room only for small batches (its "OOM" cells). ``fit`` are the keyword arguments of
    :func:`train_memory_fit` (``measured_at``, ``batch_size``, ``precision``...), whose dict is
    returned with ``budget_mib``, ``capacity`` (images that fit, a float:
    ``(budget - fixed) / per_image``, 0 when not even the fixed part fits) and ``max_batch``
    (its floor). Raises ``ValueError`` for a non-positive budget and whatever
    :func:`train_memory_fit` raises.
    """
    if budget_mib <= 0:
        raise ValueError(f"need budget_mib > 0, got {budget_mib}")
    memory = train_memory_fit(model, image_size, **fit)
    capacity = max(0.0, (budget_mib - memory["fixed_mib"]) / memory["per_image_mib"])
    return {**memory, "budget_mib": budget_mib, "capacity": capacity, "max_batch": int(capacity)}


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
    throughput in images/s). Raises ``ValueError`` for no cases or an unknown ``baseline``.
    """
    if not cases or (baseline is not None and baseline not in cases):
        raise ValueError(f"need at least one case and a baseline among them, got "
                         f"{list(cases)} and baseline {baseline!r}")
    steps = {name: TrainStep(model, size, batch, channels_last=channels_last,
                             precision=precision, device=device)
             for name, (model, size, batch) in cases.items()}
    seconds = time_interleaved(steps, warmup=warmup, repeats=repeats)
    rows = []
    for name, (_, size, batch) in cases.items():
        stats = summarize(seconds[name], batch)
        rows.append({"case": name, "image_size": size, "batch_size": batch,
                     "median_s": stats["median_s"], "iqr_percent": stats["iqr_percent"],
                     "images_per_s": stats["images_per_s"]})
    table = pd.DataFrame(rows)
    if baseline is not None:
        table["speedup"] = table.images_per_s / table.set_index("case").images_per_s[baseline]
    return table


CONV_KINDS = ("depthwise 3x3", "dense 3x3", "1x1")
MEMORY_FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def make_conv(kind: str, channels: int) -> nn.Conv2d:
    """A ``channels -> channels`` convolution of ``kind`` (one of :data:`CONV_KINDS`), stride 1,
    no bias. Raises ``ValueError`` for another kind."""
    if kind not in CONV_KINDS:
        raise ValueError(f"unknown convolution {kind!r}: choose one of {CONV_KINDS}")
    kernel = 1 if kind == "1x1" else 3
    groups = channels if kind == "depthwise 3x3" else 1
    return nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups, bias=False)


def _backward_step(module: nn.Module, x: torch.Tensor, precision: str) -> Callable[[], None]:
    """A callable running ``module(x)`` forward and backward to the weights and, when it requires
    grad, to ``x`` (as inside a network), with a fixed random output gradient."""
    bf16 = precision == "bf16"
    inputs = ([x] if x.requires_grad else []) + [p for p in module.parameters() if p.requires_grad]
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        grad = torch.randn_like(module(x))

    def run() -> None:
        with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
            y = module(x)
        torch.autograd.grad(y, inputs, grad)
    return run


def conv_cost_table(pairs: Iterable[tuple[int, int]], *, batch: int = 32, warmup: int = 2,
                    repeats: int = 10, precisions: Iterable[str] = PRECISIONS,
                    formats: Iterable[str] = tuple(MEMORY_FORMATS),
                    device: str | torch.device | None = None) -> pd.DataFrame:
    """Time per multiply-add of depthwise 3x3, dense 3x3 and 1x1 convolutions, forward + backward.

    The paper's second bottleneck (Section 3.2): depthwise convolutions have few multiply-adds
    but use hardware poorly, so they are slow in early layers (large maps, few channels). For
    each ``(H, C)`` of ``pairs`` (a map side in px and a channel count, e.g. the depthwise layers
    of each stage), a ``C -> C`` convolution of each kind in :data:`CONV_KINDS` runs on a batch
    ``[batch, C, H, H]`` forward and backward (gradients of the input and the weight), for every
    precision (``"fp32"``, ``"bf16"`` autocast) and memory format (``"NCHW"``,
    ``"channels_last"``); the variants of one pair take turns (:func:`time_interleaved`).

    Returns one row per pair x kind x precision x format: ``H``, ``C``, ``conv``, ``precision``,
    ``format``, ``MMAC`` (millions of multiply-adds of the forward + backward pass of the batch:
    3 x forward, counted by :func:`multiply_adds`), ``ms`` (median), ``GMAC/s``, ``ps/MAC``
    (picoseconds per multiply-add), ``x dense 3x3`` (ps/MAC relative to the dense 3x3
    convolution at the same pair, precision and format) and ``seconds`` (the raw times).
    Raises ``ValueError`` for an unknown precision or format, or bad ``warmup``/``repeats``.
    """
    precisions, formats = list(precisions), list(formats)
    for precision in precisions:
        _check_precision(precision)
    if not set(formats) <= set(MEMORY_FORMATS):
        raise ValueError(f"unknown memory format in {formats}: choose from {list(MEMORY_FORMATS)}")
    device = torch.device(device) if device else default_device()
    rows = []
    for size, channels in pairs:
        steps = {}
        for kind in CONV_KINDS:
            for fmt in formats:
                conv = make_conv(kind, channels).to(device, memory_format=MEMORY_FORMATS[fmt])
                x = torch.randn(batch, channels, size, size, device=device)
                x = x.contiguous(memory_format=MEMORY_FORMATS[fmt]).requires_grad_()
                for precision in precisions:
                    steps[kind, precision, fmt] = _backward_step(conv, x, precision)
        seconds = time_interleaved(steps, warmup=warmup, repeats=repeats)
        for (kind, precision, fmt), s in seconds.items():
            macs = 3 * batch * multiply_adds(make_conv(kind, channels), size, in_channels=channels)
            median = summarize(s, batch)["median_s"]
            rows.append({"H": size, "C": channels, "conv": kind, "precision": precision,
                         "format": fmt, "MMAC": macs / 1e6, "ms": 1e3 * median,
                         "GMAC/s": macs / median / 1e9, "ps/MAC": 1e12 * median / macs,
                         "seconds": s})
    table = pd.DataFrame(rows)
    keys = ["H", "C", "precision", "format"]
    dense = table.loc[table.conv == "dense 3x3", keys + ["ps/MAC"]]
    table = table.merge(dense.rename(columns={"ps/MAC": "dense"}), on=keys)
    table.insert(table.columns.get_loc("seconds"), "x dense 3x3", table["ps/MAC"] / table.dense)
    return table.drop(columns="dense")


def conv_cost_wide(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`conv_cost_table` as one row per ``(H, C, conv)``: picoseconds per multiply-add in
    each ``"<precision> <format>"`` column, plus ``bf16 speedup (CL)`` (fp32 / bf16 time, in
    channels_last) and ``CL speedup (fp32)`` (NCHW / channels_last time, in fp32) where both
    settings were measured."""
    wide = table.pivot_table(index=["H", "C", "conv"], columns=["precision", "format"],
                             values="ps/MAC", sort=False)
    wide.columns = [" ".join(c) for c in wide.columns]
    if {"fp32 channels_last", "bf16 channels_last"} <= set(wide.columns):
        wide["bf16 speedup (CL)"] = wide["fp32 channels_last"] / wide["bf16 channels_last"]
    if {"fp32 NCHW", "fp32 channels_last"} <= set(wide.columns):
        wide["CL speedup (fp32)"] = wide["fp32 NCHW"] / wide["fp32 channels_last"]
    return wide


def _parts(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """An ev2lite EfficientNet cut into stem, its stages and the head (conv, pool, classifier)."""
    missing = [a for a in ("stem", "stages", "head", "pool", "classifier") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"stage_costs needs an ev2lite EfficientNet (from create_model), got a "
                        f"{type(model).__name__} without {missing}")
    head = nn.Sequential(model.head, model.pool, nn.Flatten(), model.classifier)
    return ([("stem", model.stem)] + [(f"stage {i}", s) for i, s in enumerate(model.stages, 1)]
            + [("head", head)])


def stage_counts(model: nn.Module, image_size: int) -> pd.DataFrame:
    """Shapes, parameters and multiply-adds of each stage of an ev2lite EfficientNet.

    The model is cut into ``stem``, ``stage 1`` ... ``stage N`` (Table 4's numbering) and
    ``head`` (1x1 conv, pooling, classifier); one forward pass at ``image_size`` on the meta
    device (nothing computed) records each part's input and output. Returns one row per part:
    ``part``, ``blocks``, ``in_shape`` and ``out_shape`` (``C, H, W``; the head's output is
    ``(num_classes,)``), ``expanded`` (the widest convolution output inside the part: MBConv's
    expanded width), ``params`` and ``MMAC`` (millions of forward multiply-adds per image).
    Raises ``TypeError`` for a model that is not an ev2lite EfficientNet and ``ValueError`` for
    an image it cannot take.
    """
    parts = _parts(model)
    inputs: dict[str, tuple[int, ...]] = {}
    outputs: dict[str, tuple[int, ...]] = {}
    ends = {name: (part, part) for name, part in parts[:-1]}
    ends["head"] = (model.head, model.classifier)  # the head runs as separate modules
    hooks = [h for name, (first, last) in ends.items() for h in (
        first.register_forward_pre_hook(
            lambda m, args, name=name: inputs.update({name: tuple(args[0].shape[1:])})),
        last.register_forward_hook(
            lambda m, args, out, name=name: outputs.update({name: tuple(out.shape[1:])})))]
    try:
        multiply_adds(model, image_size)  # one meta-device forward pass records the shapes
    finally:
        for hook in hooks:
            hook.remove()
    return pd.DataFrame([{
        "part": name, "blocks": len(part) if name.startswith("stage") else 1,
        "in_shape": inputs[name], "out_shape": outputs[name],
        "expanded": max(m.out_channels for m in part.modules() if isinstance(m, nn.Conv2d)),
        "params": count_params(part),
        "MMAC": multiply_adds(part, inputs[name][1], in_channels=inputs[name][0]) / 1e6,
    } for name, part in parts])


def stage_costs(model: nn.Module, image_size: int, batch_size: int = 8, *, warmup: int = 2,
                repeats: int = 10, channels_last: bool = True, precision: str = "fp32",
                device: str | torch.device | None = None) -> pd.DataFrame:
    """Training time of each stage of an ev2lite EfficientNet, beside its parameters and
    multiply-adds (:func:`stage_counts`).

    The paper's third bottleneck (Section 3.2, "equally scaling up every stage is
    sub-optimal"): stages differ in what they cost. Every part runs forward and backward
    (gradients of its weights and, except the stem, of its input, as inside the network) on a
    random batch ``[batch_size, C, H, W]`` of its input shape at ``image_size``, in train mode,
    all parts taking turns (:func:`time_interleaved`).

    Returns :func:`stage_counts`'s table plus ``ms`` (median time of one forward + backward of
    the batch), ``iqr_percent``, the shares ``time_pct``, ``params_pct``, ``macs_pct`` (percent
    of the sum over parts) and ``ps/MAC`` (picoseconds per training multiply-add, 3 x forward).
    Raises ``TypeError`` for a model that is not an ev2lite EfficientNet and ``ValueError`` for
    an image it cannot take, an unknown precision or bad ``warmup``/``repeats``.
    """
    _check_precision(precision)
    device = torch.device(device) if device else default_device()
    table = stage_counts(model, image_size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    steps = {}
    for (name, part), (c, h, w) in zip(_parts(model), table.in_shape):
        x = torch.randn(batch_size, c, h, w, device=device).contiguous(memory_format=fmt)
        steps[name] = _backward_step(_prepared_copy(part, device, channels_last).train(),
                                     x.requires_grad_(name != "stem"), precision)
    seconds = time_interleaved(steps, warmup=warmup, repeats=repeats)
    stats = [summarize(seconds[name], batch_size, unit="ms") for name in table.part]
    table["ms"] = [s["median_ms"] for s in stats]
    table["iqr_percent"] = [s["iqr_percent"] for s in stats]
    for col, share in (("ms", "time_pct"), ("params", "params_pct"), ("MMAC", "macs_pct")):
        table[share] = 100 * table[col] / table[col].sum()
    table["ps/MAC"] = 1e12 * table.ms / 1e3 / (3 * batch_size * table.MMAC * 1e6)
    return table


def _operator(module: nn.Module) -> str:
    """Paper-style name of a block's sub-module: ``"Depthwise Conv3x3, BN, SiLU"``, ``"SE"``..."""
    from .blocks import ConvBNAct, SqueezeExcite
    if isinstance(module, ConvBNAct):
        conv = module.conv
        k, stride = conv.kernel_size[0], conv.stride[0]
        name = f"{'Depthwise ' if conv.groups > 1 and conv.groups == conv.in_channels else ''}Conv{k}x{k}"
        name += f" /{stride}" if stride > 1 else ""
        name += ", " + {"BatchNorm2d": "BN", "GroupNorm": "GN"}.get(type(module.bn).__name__,
                                                                    type(module.bn).__name__)
        return name + ("" if isinstance(module.act, nn.Identity) else f", {type(module.act).__name__}")
    if isinstance(module, SqueezeExcite):
        return f"SE ({module.conv_expand.out_channels} -> {module.conv_reduce.out_channels} -> " \
               f"{module.conv_expand.out_channels})"
    return type(module).__name__


def block_table(block: nn.Module, input_shape: tuple[int, int, int]) -> pd.DataFrame:
    """The sub-modules of a block in the order they run, with their output shapes (paper Figure 2).

    ``block`` is an :class:`ev2lite.blocks.MBConv` or :class:`~ev2lite.blocks.FusedMBConv` (or
    any module whose children run in registration order); ``input_shape`` is ``(C, H, W)``. One
    forward pass of a batch of one on the meta device (nothing computed) records each child's
    output. Identity children (a skipped expansion or SE) and stochastic depth are left out.
    Returns rows ``part`` (attribute name: ``conv_pw``, ``conv_dw``, ``se``, ``conv_pwl`` /
    ``conv_exp``, ...), ``operator`` (e.g. ``"Depthwise Conv3x3, BN, SiLU"``), ``out_shape``
    (``C, H, W``) and ``params``; ``block.has_skip`` tells whether a residual adds the input.
    Raises ``ValueError`` when ``input_shape`` is not three positive integers.
    """
    if len(input_shape) != 3 or min(input_shape) < 1 or input_shape[1] != input_shape[2]:
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes and H == W, got "
                         f"{input_shape}")
    from torchvision.ops import StochasticDepth
    children = [(name, m) for name, m in block.named_children()
                if not isinstance(m, (nn.Identity, StochasticDepth))]
    shapes = {}
    hooks = [m.register_forward_hook(lambda m, args, out, name=name: shapes.update(
        {name: tuple(out.shape[1:])})) for name, m in children]
    try:
        multiply_adds(block, input_shape[1], in_channels=input_shape[0])
    finally:
        for hook in hooks:
            hook.remove()
    return pd.DataFrame([{"part": name, "operator": _operator(m), "out_shape": shapes[name],
                          "params": count_params(m)} for name, m in children])
