"""Time per multiply-add of depthwise 3x3, dense 3x3 and 1x1 convolutions, forward + backward.

    python benchmarks/bench_convs.py [--quick | --tiny] [--out DIR]

The paper's argument for Fused-MBConv (Section 3.2): depthwise convolutions have few
multiply-adds but cannot use modern accelerators fully, so they are slow in early layers (large
maps, few channels). This script measures it on the device at hand with
``ev2lite.bottlenecks.conv_cost_table`` (notebook 01 calls the same function): for each (resolution,
channels) pair, a C -> C convolution at stride 1 on a batch ``[32, C, H, H]`` runs forward and
backward (gradients of the input and the weight, as inside a network), in fp32 and with bfloat16
autocast, in NCHW and channels_last. The pairs are EfficientNet-B0's depthwise layers (expanded
widths) at 128 px input: (64, 32), (32, 144), (16, 240), (8, 480), (4, 1152).

Columns: multiply-adds of the forward + backward pass (3 x forward), median ms, achieved G
multiply-adds/s and picoseconds per multiply-add, and ``x dense 3x3``: how many times more a
multiply-add costs than one of the dense 3x3 convolution at the same size and settings. The
variants of one pair take turns (``ev2lite.measure.time_interleaved``). A first printed table
puts ps per multiply-add of the four settings side by side, with the speedups of bf16 and of
channels_last (``ev2lite.bottlenecks.conv_cost_wide``).
"""

from __future__ import annotations

import torch

from _common import options, save
from ev2lite.bottlenecks import conv_cost_table, conv_cost_wide

SETTINGS = {
    "full": {"pairs": [(64, 32), (32, 144), (16, 240), (8, 480), (4, 1152)], "batch": 32,
             "warmup": 2, "repeats": 10},
    "quick": {"pairs": [(64, 32), (16, 240), (4, 1152)], "batch": 32, "warmup": 1, "repeats": 5},
    "tiny": {"pairs": [(8, 16)], "batch": 2, "warmup": 0, "repeats": 1},
}


def main() -> None:
    args = options(__doc__.splitlines()[0])
    settings = SETTINGS[args.mode]
    torch.manual_seed(0)
    table = conv_cost_table(**settings)
    print("picoseconds per multiply-add, forward + backward:")
    print(conv_cost_wide(table).round(2).to_string())
    raw = table.to_dict("records")
    save("bench_convs", table.drop(columns="seconds").round(
        {"MMAC": 1, "ms": 2, "GMAC/s": 1, "ps/MAC": 1, "x dense 3x3": 2}), args, settings, raw)


if __name__ == "__main__":
    main()
