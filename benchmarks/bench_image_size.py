"""Does the cost of a training step follow the pixels? Images/s against image size, per layout.

    python benchmarks/bench_image_size.py [--quick | --tiny] [--out DIR]

Progressive learning (paper Section 4) saves time only if a step on small images is cheap: the
paper's premise is a cost proportional to pixels. This measures it for the CPU-scale models,
``efficientnetv2_cifar`` (stride-1 stem, batch 128) at 16-64 px and
``efficientnetv2_imagenette`` (batch 64) at 64-160 px: one ``ev2lite.measure.TrainStep`` per
size in channels_last and in NCHW, and (not ``--quick``) compiled with ``torch.compile`` at the
smallest and the largest size of the CIFAR model. All steps of one model take turns in one
``time_interleaved`` run. Columns: images/s per variant, ``pixel_ratio`` (the largest size's
pixels over this size's: the speed-up a cost proportional to pixels would give),
``speedup_vs_largest`` (this size's images/s over the largest size's, best layout), ``compile_s``
(seconds of the first, compiling call), and the machine's load (``load_1min``, ``busy``).
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from _common import options, save
from ev2lite import create_model
from ev2lite.measure import TrainStep, machine_load, summarize, time_interleaved

SETTINGS = {
    "full": {"models": {"efficientnetv2_cifar": ([16, 24, 32, 48, 64], 128),
                        "efficientnetv2_imagenette": ([64, 96, 128, 160], 64)},
             "compile": {"efficientnetv2_cifar": [16, 64]}, "warmup": 2, "repeats": 5},
    "quick": {"models": {"efficientnetv2_cifar": ([16, 32], 128),
                         "efficientnetv2_imagenette": ([64, 128], 64)},
              "compile": {}, "warmup": 1, "repeats": 3},
    "tiny": {"models": {"efficientnetv2_cifar": ([16, 24], 4)}, "compile": {}, "warmup": 0,
             "repeats": 1},
}
LAYOUTS = {"channels_last": True, "NCHW": False}


def main() -> None:
    args = options(__doc__.splitlines()[0])
    settings = SETTINGS[args.mode]
    torch.manual_seed(0)
    rows, raw = [], []
    for name, (sizes, batch) in settings["models"].items():
        model = create_model(name, num_classes=10)
        steps = {(size, layout): TrainStep(model, size, batch, channels_last=last)
                 for size in sizes for layout, last in LAYOUTS.items()}
        compile_s = {}
        for size in settings["compile"].get(name, []):
            step = TrainStep(model, size, batch, compile=True)
            start = time.perf_counter()
            step()  # compiles
            compile_s[size] = time.perf_counter() - start
            steps[size, "compiled"] = step
        with machine_load() as load:
            seconds = time_interleaved({f"{s} {v}": step for (s, v), step in steps.items()},
                                       warmup=settings["warmup"], repeats=settings["repeats"])
        speed = {key: summarize(seconds[f"{key[0]} {key[1]}"], batch) for key in steps}
        best = {s: max(speed[s, v]["images_per_s"] for v in LAYOUTS) for s in sizes}
        for size in sizes:
            row = {"model": name, "image_size": size, "batch": batch}
            for variant in [*LAYOUTS, "compiled"]:
                stats = speed.get((size, variant))
                row[f"{variant} images/s"] = stats["images_per_s"] if stats else float("nan")
                row[f"{variant} IQR %"] = stats["iqr_percent"] if stats else float("nan")
            row.update({"pixel_ratio": (max(sizes) / size) ** 2,
                        "speedup_vs_largest": best[size] / best[max(sizes)],
                        "channels_last/NCHW": speed[size, "channels_last"]["images_per_s"]
                        / speed[size, "NCHW"]["images_per_s"],
                        "compile_s": compile_s.get(size, float("nan")),
                        "load_1min": load["load_1min"], "cpu_per_wall": load["cpu_per_wall"],
                        "busy": load["busy"]})
            rows.append(row)
        raw += [{"model": name, "image_size": s, "variant": v, **speed[s, v],
                 "seconds": seconds[f"{s} {v}"]} for (s, v) in steps]
        print(f"{name}: " + ", ".join(f"{s} px {best[s]:.0f}/s" for s in sizes), flush=True)
    table = pd.DataFrame(rows).round(2)
    save("bench_image_size", table, args, settings, raw)


if __name__ == "__main__":
    main()
