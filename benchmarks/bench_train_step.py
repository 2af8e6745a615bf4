"""Training-step speed: ev2lite against torchvision, timm and torchvision "out of the box".

    python benchmarks/bench_train_step.py [--quick | --tiny] [--out DIR]

EfficientNetV2-S, EfficientNetV2-B0 and EfficientNet-B0 (1000 classes), batch 32, at 64 and
128 px (``--quick``: 64 px only, fewer repeats). A step is ``ev2lite.measure.TrainStep``:
forward, cross-entropy, backward, SGD step with Nesterov momentum. Columns give images/s (median
over the repeats) of:

=================  ===========================================================================
ev2lite            ``ev2lite.create_model``, fp32, eager, in this machine's default layout
                   (``ev2lite.machine.default_channels_last``: its calibration, else
                   channels_last): ev2lite's defaults; a copy of one of the next two columns
ev2lite CL         the same in channels_last, the default of every machine before issue 13
ev2lite NCHW       the same in the default memory format
ev2lite bf16       the default layout with bfloat16 autocast
ev2lite 1 thread   the default layout with ``torch.set_num_threads(1)`` during the step
torchvision        ``torchvision.models.efficientnet_v2_s`` / ``efficientnet_b0``, channels_last,
                   fp32 (torchvision has no EfficientNetV2-B0: n/a)
timm               channels_last, fp32; ``timm.create_model`` of ``efficientnetv2_s`` (the
                   architecture of ``tf_efficientnetv2_s`` with PyTorch's symmetric padding),
                   ``tf_efficientnetv2_b0`` with ``pad_type=""`` (timm registers no non-``tf_``
                   V2-B0; ``pad_type=""`` replaces TF "SAME" padding, an extra pad at every
                   stride-2 conv, by the symmetric padding the other implementations use), and
                   ``efficientnet_b0``. Not ``efficientnetv2_rw_*``: a different architecture.
out of the box     the torchvision model as tutorials train it: default memory format, fp32,
                   batches from ``DataLoader(num_workers=0, shuffle=True)`` over PIL images with
                   torchvision's RandomResizedCrop + RandomHorizontalFlip + ToTensor + Normalize,
                   so the data time counts. ``num_workers=0`` (the default): on 2 cores a worker
                   process would take CPU from the two compute threads. The images are
                   Imagenette train images decoded once (no JPEG decoding per step), which
                   favours this column.
=================  ===========================================================================

All implementations of one (model, size) are measured side by side: their steps take turns
(``ev2lite.measure.time_interleaved``), so background load hits all of them alike. The ratio
columns divide images/s (``default/old default`` is ev2lite over ev2lite CL: what measuring the
layout per machine bought); ``max IQR %`` is the largest interquartile range among the row's
implementations, in percent of its median (the noise of the row).
"""

from __future__ import annotations

import pandas as pd
import timm
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from torch.utils.data import DataLoader, Dataset

from _common import options, save
from ev2lite import create_model
from ev2lite.data import NORMALIZATION, load_dataset
from ev2lite.machine import default_channels_last
from ev2lite.measure import (TrainStep, count_params, summarize, time_interleaved,
                             training_multiply_adds)

TORCHVISION = {"efficientnetv2_s": "efficientnet_v2_s", "efficientnetv2_b0": None,
               "efficientnet_b0": "efficientnet_b0"}
TIMM = {"efficientnetv2_s": ("efficientnetv2_s", {}),
        "efficientnetv2_b0": ("tf_efficientnetv2_b0", {"pad_type": ""}),
        "efficientnet_b0": ("efficientnet_b0", {})}
SETTINGS = {
    "full": {"models": list(TIMM), "sizes": [64, 128], "batch": 32, "warmup": 2, "repeats": 5},
    "quick": {"models": list(TIMM), "sizes": [64], "batch": 32, "warmup": 1, "repeats": 3},
    "tiny": {"models": ["efficientnetv2_b0", "efficientnet_b0"], "sizes": [32], "batch": 2,
             "warmup": 0, "repeats": 1},
}
COLUMNS = ["ev2lite", "ev2lite CL", "ev2lite NCHW", "ev2lite bf16", "ev2lite 1 thread", "torchvision", "timm",
           "out of the box"]
RATIOS = {"ev2lite/torchvision": ("ev2lite", "torchvision"),
          "ev2lite/timm": ("ev2lite", "timm"),
          "ev2lite/out of the box": ("ev2lite", "out of the box"),
          "default/old default": ("ev2lite", "ev2lite CL"),
          "channels_last/NCHW": ("ev2lite CL", "ev2lite NCHW"),
          "bf16/fp32": ("ev2lite bf16", "ev2lite"),
          "2/1 threads": ("ev2lite", "ev2lite 1 thread")}


class PILImages(Dataset):
    """Imagenette train images as PIL images, transformed on access as torchvision tutorials do."""

    def __init__(self, count: int, image_size: int):
        data = load_dataset("imagenette", "train", progress=False).subset(count)
        self.images = [TF.to_pil_image(image) for image in data.images]
        self.labels = data.labels.tolist()
        self.transform = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(),
                                    T.ToTensor(), T.Normalize(*NORMALIZATION["imagenette"])])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), self.labels[i]


def on_one_thread(step):
    """``step`` wrapped to run with ``torch.set_num_threads(1)`` (restored afterwards)."""
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            step()
        finally:
            torch.set_num_threads(threads)
    return run


def implementations(name: str, size: int, batch: int, layout: bool) -> dict:
    """The steps to compare for one model and image size, by column name; ``layout`` is the
    machine's default (True: channels_last) for the bf16 and 1-thread columns."""
    model = create_model(name)
    timm_name, timm_kwargs = TIMM[name]
    steps = {"ev2lite CL": TrainStep(model, size, batch, channels_last=True),
             "ev2lite NCHW": TrainStep(model, size, batch, channels_last=False),
             "ev2lite bf16": TrainStep(model, size, batch, channels_last=layout,
                                       precision="bf16"),
             "ev2lite 1 thread": on_one_thread(TrainStep(model, size, batch,
                                                         channels_last=layout)),
             "timm": TrainStep(timm.create_model(timm_name, **timm_kwargs), size, batch)}
    if TORCHVISION[name]:
        reference = getattr(torchvision.models, TORCHVISION[name])()
        loader = DataLoader(PILImages(8 * batch, size), batch, shuffle=True, num_workers=0)
        steps["torchvision"] = TrainStep(reference, size, batch)
        steps["out of the box"] = TrainStep(reference, size, batch, channels_last=False,
                                            batches=loader)
    return steps


def main() -> None:
    args = options(__doc__.splitlines()[0])
    settings = SETTINGS[args.mode]
    torch.manual_seed(0)
    rows, raw = [], []
    layout = default_channels_last()
    default = "ev2lite CL" if layout else "ev2lite NCHW"  # the column "ev2lite" copies
    for name in settings["models"]:
        for size in settings["sizes"]:
            steps = implementations(name, size, settings["batch"], layout)
            seconds = time_interleaved(steps, warmup=settings["warmup"],
                                       repeats=settings["repeats"])
            stats = {impl: summarize(s, settings["batch"]) for impl, s in seconds.items()}
            speed = {c: stats[c]["images_per_s"] if c in stats else float("nan") for c in COLUMNS}
            speed["ev2lite"] = speed[default]
            rows.append({
                "model": name, "image_size": size, "batch": settings["batch"],
                "params_M": count_params(steps["ev2lite CL"].model) / 1e6,
                "train_GMAC_per_image": training_multiply_adds(name, size) / 1e9,
                **speed, **{r: speed[a] / speed[b] for r, (a, b) in RATIOS.items()},
                "max IQR %": max(s["iqr_percent"] for s in stats.values())})
            raw += [{"model": name, "image_size": size, "implementation": impl, **stats[impl],
                     "seconds": s} for impl, s in seconds.items()]
            print(f"{name} {size} px, images/s: "
                  + ", ".join(f"{c} {v:.1f}" for c, v in speed.items()), flush=True)
    table = pd.DataFrame(rows).round({**dict.fromkeys(COLUMNS, 1), **dict.fromkeys(RATIOS, 2),
                                      "params_M": 2, "train_GMAC_per_image": 3, "max IQR %": 0})
    save("bench_train_step", table, args, settings, raw)


if __name__ == "__main__":
    main()
