"""Time per multiply-add of depthwise 3x3, dense 3x3 and 1x1 convolutions, forward + backward.

    python benchmarks/bench_convs.py [--quick | --tiny] [--out DIR]

The paper's argument for Fused-MBConv (Section 3.2): depthwise convolutions have few
multiply-adds but cannot use modern accelerators fully, so they are slow in early layers (large
maps, few channels). This script measures it on the device at hand: for each (resolution,
channels) pair, a C -> C convolution at stride 1 on a batch ``[32, C, H, H]`` runs forward and
backward (gradients of the input and the weight, as inside a network), in fp32 and with bfloat16
autocast, in NCHW and channels_last. The pairs are EfficientNet-B0's depthwise layers (expanded
widths) at 128 px input: (64, 32), (32, 144), (16, 240), (8, 480), (4, 1152).

Columns: multiply-adds of the forward + backward pass (3 x forward, counted by
``ev2lite.measure.multiply_adds``), median ms, achieved G multiply-adds/s and picoseconds per
multiply-add, and ``x dense 3x3``: how many times more a multiply-add costs than one of the dense
3x3 convolution at the same size and settings. The variants of one pair take turns
(``ev2lite.measure.time_interleaved``). A first printed table puts ps per multiply-add of the
four settings side by side, with the speedups of bf16 and of channels_last.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from _common import options, save
from ev2lite.measure import PRECISIONS, default_device, multiply_adds, summarize, time_interleaved

CONVS = ("depthwise 3x3", "dense 3x3", "1x1")
FORMATS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
SETTINGS = {
    "full": {"pairs": [(64, 32), (32, 144), (16, 240), (8, 480), (4, 1152)], "batch": 32,
             "warmup": 2, "repeats": 10},
    "quick": {"pairs": [(64, 32), (16, 240), (4, 1152)], "batch": 32, "warmup": 1, "repeats": 5},
    "tiny": {"pairs": [(8, 16)], "batch": 2, "warmup": 0, "repeats": 1},
}


def make_conv(name: str, channels: int) -> nn.Conv2d:
    """A ``channels -> channels`` convolution of kind ``name`` (a member of ``CONVS``), stride 1."""
    kernel = 1 if name == "1x1" else 3
    groups = channels if name == "depthwise 3x3" else 1
    return nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=groups, bias=False)


def conv_step(conv: nn.Conv2d, x: torch.Tensor, precision: str):
    """A callable running ``conv`` forward and backward to the input and the weight."""
    bf16 = precision == "bf16"
    with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
        grad = torch.randn_like(conv(x))

    def run():
        with torch.autocast(x.device.type, torch.bfloat16, enabled=bf16):
            y = conv(x)
        torch.autograd.grad(y, (x, conv.weight), grad)
    return run


def main() -> None:
    args = options(__doc__.splitlines()[0])
    settings = SETTINGS[args.mode]
    device, batch = default_device(), settings["batch"]
    torch.manual_seed(0)
    rows, raw = [], []
    for size, channels in settings["pairs"]:
        steps = {}
        for name in CONVS:
            for fmt_name, fmt in FORMATS.items():
                conv = make_conv(name, channels).to(device, memory_format=fmt)
                x = torch.randn(batch, channels, size, size, device=device)
                x = x.contiguous(memory_format=fmt).requires_grad_()
                for precision in PRECISIONS:
                    steps[name, precision, fmt_name] = conv_step(conv, x, precision)
        seconds = time_interleaved(steps, warmup=settings["warmup"], repeats=settings["repeats"])
        for (name, precision, fmt_name), s in seconds.items():
            macs = 3 * batch * multiply_adds(make_conv(name, channels), size, in_channels=channels)
            median = summarize(s, batch)["median_s"]
            rows.append({"H": size, "C": channels, "conv": name, "precision": precision,
                         "format": fmt_name, "MMAC": macs / 1e6, "ms": 1e3 * median,
                         "GMAC/s": macs / median / 1e9, "ps/MAC": 1e12 * median / macs})
            raw.append({**rows[-1], "seconds": s})
    table = pd.DataFrame(rows)
    keys = ["H", "C", "precision", "format"]
    dense = table.loc[table.conv == "dense 3x3", keys + ["ps/MAC"]]
    table = table.merge(dense.rename(columns={"ps/MAC": "dense"}), on=keys)
    table["x dense 3x3"] = table["ps/MAC"] / table.pop("dense")
    wide = table.pivot_table(index=["H", "C", "conv"], columns=["precision", "format"],
                             values="ps/MAC", sort=False)
    wide.columns = [" ".join(c) for c in wide.columns]
    wide["bf16 speedup (CL)"] = wide["fp32 channels_last"] / wide["bf16 channels_last"]
    wide["CL speedup (fp32)"] = wide["fp32 NCHW"] / wide["fp32 channels_last"]
    print("picoseconds per multiply-add, forward + backward:")
    print(wide.round(2).to_string())
    save("bench_convs", table.round({"MMAC": 1, "ms": 2, "GMAC/s": 1, "ps/MAC": 1,
                                     "x dense 3x3": 2}), args, settings, raw)


if __name__ == "__main__":
    main()
