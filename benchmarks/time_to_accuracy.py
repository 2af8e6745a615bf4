"""Time to accuracy on CIFAR-10: a CPU-scale EfficientNetV2 beside a ResNet-18 at the same budget.

    python benchmarks/time_to_accuracy.py [--quick | --tiny] [--out DIR]

Issue 13's targets for a 2-core CPU: >= 85% test accuracy within 8 minutes of training and
>= 90% within 15. ``efficientnetv2_cifar`` (0.77M parameters, 32 px, stride-1 stem) trains
with the quickstart recipe: SGD with Nesterov momentum, LR 0.2 after a one-epoch warmup,
cosine decay, label smoothing 0.1, batch 128, random crops and flips; the test accuracy
averages each image's logits with its mirror's (flip test-time augmentation, as airbench and
the other CIFAR-10 speed records). The clock counts training only (``train_time_s``: the test
pass after each epoch is excluded, as in the speed records of REFERENCE.md section 5).

The reference is ResNet-18 adapted to 32 px (``ev2lite.baselines.resnet18(small_input=True)``,
11.2M parameters, the CIFAR-10 literature's ResNet-18) with the same data path and recipe, at
the *same wall-clock budget*: its number of epochs is the budget (the EfficientNet's measured
training time) times its own images/s, measured first by a few interleaved training steps of
both networks (``ev2lite.measure``), over the training-set size, so that its cosine schedule
ends when its budget does. Writes both per-epoch curves (``network`` column) to
``time_to_accuracy.csv`` and a plot beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import matplotlib.pyplot as plt
import pandas as pd
import torch

from _common import options, save
from ev2lite import create_model
from ev2lite.baselines import resnet18
from ev2lite.measure import TrainStep, machine_load, summarize, time_interleaved
from ev2lite.plots import save_figure
from ev2lite.recipe import Recipe, Stage
from ev2lite.study import load_pair
from ev2lite.train import fit

SETTINGS = {  # epochs of the EfficientNet, train/test subset, steps timed to size the reference
    "full": {"epochs": 9, "train_subset": None, "test_subset": None, "timing_repeats": 10},
    "quick": {"epochs": 3, "train_subset": None, "test_subset": None, "timing_repeats": 5},
    "tiny": {"epochs": 1, "train_subset": 256, "test_subset": 100, "timing_repeats": 1},
}
RECIPE = Recipe(batch_size=128, optimizer="sgd", lr=0.2, weight_decay=5e-5, label_smoothing=0.1,
                eval_flip=True)
TARGETS = {0.85: 8.0, 0.90: 15.0}  # test accuracy: minutes of training
NETWORKS = {"efficientnetv2_cifar": lambda: create_model("efficientnetv2_cifar", num_classes=10),
            "ResNet-18 (32 px)": lambda: resnet18(10, small_input=True)}


def step_rates(repeats: int) -> tuple[dict[str, float], dict]:
    """Images/s of one bare training step of each network (batch 128, 32 px), the two timed
    side by side (``time_interleaved``), and the machine's load during the timing."""
    torch.manual_seed(0)
    steps = {name: TrainStep(make(), 32, RECIPE.batch_size, channels_last=RECIPE.channels_last,
                             optimizer=RECIPE) for name, make in NETWORKS.items()}
    with machine_load() as load:
        seconds = time_interleaved(steps, warmup=1, repeats=repeats)
    rates = {name: summarize(s, RECIPE.batch_size)["images_per_s"] for name, s in seconds.items()}
    return rates, load


def main() -> None:
    args = options(__doc__.splitlines()[0])
    settings = SETTINGS[args.mode]
    data = load_pair("cifar10", settings["train_subset"], settings["test_subset"])
    curves, runs = [], {}
    torch.manual_seed(0)
    ours = fit(NETWORKS["efficientnetv2_cifar"](), *data, [Stage(settings["epochs"], 32)], RECIPE,
               progress=False)
    curves.append(ours.assign(network="efficientnetv2_cifar"))
    budget = float(ours.train_time_s.iloc[-1])
    rates, load = step_rates(settings["timing_repeats"])
    # the reference's training rate: its step rate, scaled by the EfficientNet's measured
    # training rate over its step rate (the share of the data path and the loop)
    train_rate = len(data[0]) // RECIPE.batch_size * RECIPE.batch_size * len(ours) / budget
    reference_rate = rates["ResNet-18 (32 px)"] * train_rate / rates["efficientnetv2_cifar"]
    epochs = max(1, math.floor(budget * reference_rate / len(data[0])))
    torch.manual_seed(0)
    reference = fit(NETWORKS["ResNet-18 (32 px)"](), *data, [Stage(epochs, 32)], RECIPE, progress=False)
    curves.append(reference.assign(network="ResNet-18 (32 px)"))
    history = pd.concat(curves, ignore_index=True)
    history["train_min"] = history.train_time_s / 60
    for name, curve in history.groupby("network", sort=False):
        for target, minutes in TARGETS.items():
            reached = curve[curve.test_acc >= target]
            at = float(reached.train_min.iloc[0]) if len(reached) else None
            runs[f"{name}: minutes to {target:.0%}"] = at
            print(f"{name}: {target:.0%} " + (f"after {at:.1f} min (target {minutes:g})" if at else
                  f"not reached (best {curve.test_acc.max():.1%} in {curve.train_min.iloc[-1]:.1f} min)"))
    save("time_to_accuracy", history, args,
         {**settings, "recipe": asdict(RECIPE), "targets": {str(k): v for k, v in TARGETS.items()},
          "budget_s": budget, "reference_epochs": epochs, "step_images_per_s": rates,
          "timing_load": load, **runs}, history.to_dict("records"))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, curve in history.groupby("network", sort=False):
        ax.plot(curve.train_min, 100 * curve.test_acc, marker="o", label=name)
    for target, minutes in TARGETS.items():
        ax.plot([minutes], [100 * target], "k*", markersize=10)
    ax.set(xlabel="training time (min, 2-core CPU)", ylabel="CIFAR-10 test accuracy (%)",
           title="time to accuracy (stars: issue 13's targets)")
    ax.legend(); ax.grid(alpha=0.3)
    save_figure(fig, args.out, "time_to_accuracy")


if __name__ == "__main__":
    main()
