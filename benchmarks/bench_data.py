"""Data-loading speed of ``ev2lite.data.Loader`` against the model's training speed.

    python benchmarks/bench_data.py [--quick | --tiny] [--out DIR]

ev2lite builds its batches in the training process, without ``DataLoader`` workers
(``ev2lite/data.py``). That is sound only while a batch costs a small part of a training step:
the ratio ``loader images/s / model training images/s`` should be at least 3, so that data take
at most a quarter of the training time.

Rows: CIFAR-10 train at 32 px, batch 128, against ``efficientnetv2_cifar``; Imagenette train at
128 px (random-resized crops of the 160 px images), batch 64, against
``efficientnetv2_imagenette``; each without and with RandAugment
(``ev2lite.augment.rand_augment(9)``: 2 operations per image, magnitude 9 on the paper's TF
scale). The loader runs in train mode with its defaults (crop, flip, normalization,
channels_last). The model step is ``ev2lite.measure.TrainStep`` with ev2lite's defaults
(channels_last, fp32, all threads) on a synthetic batch of the same shape. Loader batches and
model steps take turns (``ev2lite.measure.time_interleaved``). Data come from
``ev2lite.data.load_dataset`` (``$EV2LITE_DATA``).
"""

from __future__ import annotations

from itertools import chain, repeat

import pandas as pd
import torch

from _common import options, save
from ev2lite import create_model
from ev2lite.augment import rand_augment
from ev2lite.data import Loader, load_dataset
from ev2lite.measure import TrainStep, summarize, time_interleaved

CASES = [("cifar10", 32, 128, "efficientnetv2_cifar"),
         ("imagenette", 128, 64, "efficientnetv2_imagenette")]
AUGMENTS = {"none": None, "RandAugment(9)": rand_augment(9)}
SETTINGS = {"full": {"warmup": 2, "repeats": 20, "subset": None, "batch": None},
            "quick": {"warmup": 1, "repeats": 5, "subset": None, "batch": None},
            "tiny": {"warmup": 0, "repeats": 1, "subset": 64, "batch": 8}}
MIN_RATIO = 3


def main() -> None:
    args = options(__doc__.splitlines()[0])
    settings = SETTINGS[args.mode]
    torch.manual_seed(0)
    rows, raw = [], []
    for dataset, size, batch, model_name in CASES:
        batch = settings["batch"] or batch
        data = load_dataset(dataset, "train", progress=False)
        data = data.subset(settings["subset"]) if settings["subset"] else data
        steps = {}
        for augment, transform in AUGMENTS.items():
            loader = Loader(data, batch, train=True, image_size=size, augment=transform)
            batches = chain.from_iterable(repeat(loader))  # a new epoch whenever one ends
            steps[augment] = lambda batches=batches: next(batches)
        steps["model"] = TrainStep(create_model(model_name, num_classes=10), size, batch)
        seconds = time_interleaved(steps, warmup=settings["warmup"], repeats=settings["repeats"])
        stats = {name: summarize(s, batch) for name, s in seconds.items()}
        model_speed = stats["model"]["images_per_s"]
        for augment in AUGMENTS:
            loader_speed = stats[augment]["images_per_s"]
            rows.append({
                "dataset": dataset, "image_size": size, "batch": batch, "augment": augment,
                "loader_images_per_s": loader_speed, "loader IQR %": stats[augment]["iqr_percent"],
                "model": model_name, "model_train_images_per_s": model_speed,
                "model IQR %": stats["model"]["iqr_percent"], "ratio": loader_speed / model_speed,
                f"ratio >= {MIN_RATIO}": loader_speed >= MIN_RATIO * model_speed,
                "data % of time": 100 * model_speed / (loader_speed + model_speed)})
        raw += [{"dataset": dataset, "step": name, **stats[name], "seconds": s}
                for name, s in seconds.items()]
    table = pd.DataFrame(rows).round({"loader_images_per_s": 0, "loader IQR %": 0, "ratio": 1,
                                      "model_train_images_per_s": 0, "model IQR %": 0,
                                      "data % of time": 1})
    save("bench_data", table, args, settings, raw)


if __name__ == "__main__":
    main()
