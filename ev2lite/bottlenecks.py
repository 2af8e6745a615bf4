"""The paper's training bottlenecks (Section 3.2, "Understanding Training Efficiency", Table 2).

EfficientNetV2 starts from three observations about training EfficientNet (V1); this module holds
the measurements that test them on the device at hand (notebooks 01 and 02 use it):

* *Training with very large image sizes is slow*: memory is fixed, so large images leave room
  only for small batches (Table 2's "OOM" cells). :func:`train_memory_fit` splits a training
  step's memory into a fixed part and a part per image; :func:`memory_capacity` says how many
  images fit a budget.
* *Depthwise convolutions are slow in early layers*: few multiply-adds, but poor use of the
  hardware on large maps with few channels. :func:`conv_cost_table` / :func:`conv_cost_wide`
  time depthwise 3x3, dense 3x3 and 1x1 convolutions per multiply-add (:func:`make_conv`,
  :data:`CONV_KINDS`, :data:`MEMORY_FORMATS`).
* *Equally scaling up every stage is sub-optimal*: stages differ in what they cost.
  :func:`stage_counts` / :func:`stage_costs` give each stage's shapes, parameters,
  multiply-adds and training time; :func:`block_table` lists a block's sub-modules and shapes
  (Figure 2: MBConv and Fused-MBConv).

Everything is built on the general toolkit of :mod:`ev2lite.measure` (counts on the meta device,
:func:`~ev2lite.measure.time_interleaved`, :func:`~ev2lite.measure.peak_train_memory`); its
remarks on timing a shared CPU hold here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd
import torch
from torch import nn

from .measure import (PRECISIONS, _check_precision, _prepared_copy, count_params, default_device,
                      multiply_adds, peak_train_memory, summarize, time_interleaved)
from .models import EfficientNet


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
    """An ev2lite EfficientNet cut into stem, its stages and the head (conv, pool, classifier):
    :meth:`~ev2lite.models.EfficientNet.parts` with the classifier run inside the head."""
    if not isinstance(model, EfficientNet):
        raise TypeError(f"stage_costs needs an ev2lite EfficientNet (from create_model), got a "
                        f"{type(model).__name__}")
    parts = model.parts()
    classifier = parts.pop("classifier")
    parts["head"] = nn.Sequential(parts["head"], model.pool, nn.Flatten(), classifier)
    return list(parts.items())


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
