"""Profiles: the sizes of each study at four scales, so the code path never changes.

``smoke`` keeps a notebook under a minute (CI), ``quick`` is the README's main job (minutes on a
2-core CPU, real data, trends visible), ``full`` produces the committed ``results/``, and ``gpu``
is for a user with a CUDA device: the ``full`` design at a scale where the paper's effects show
plainly (whole datasets, tens of epochs, more seeds; :data:`GPU_SCALE`), trained with the
device's defaults (bf16 autocast, channels_last, ``torch.compile`` for long runs:
:mod:`ev2lite.machine`). The ``gpu`` profile is untested on a GPU: its code path is the one the
other profiles run, and no number of it is claimed until measured on one. A notebook asks
``settings("quickstart", PROFILE)`` and gets a plain dict.
"""

from __future__ import annotations

import os

PROFILE_NAMES = ("smoke", "quick", "full", "gpu")

# Notebook 04: EfficientNet B0-B7 then EfficientNetV2 S/M/L/XL; Table 11's pairs (V1, then the
# V2 model of similar accuracy).
_V1_AND_V2 = ([f"efficientnet_b{i}" for i in range(8)]
              + [f"efficientnetv2_{s}" for s in ("s", "m", "l", "xl")])
# Table 10: V1-B7 against V2-M, "with the same (progressive) training settings".
_TABLE10_PAIR = ["efficientnet_b7", "efficientnetv2_m"]
_TABLE11_PAIRS = [["efficientnet_b1", "efficientnetv2_b0"],
                  ["efficientnet_b2", "efficientnetv2_b1"],
                  ["efficientnet_b4", "efficientnetv2_b3"],
                  ["efficientnet_b5", "efficientnetv2_s"]]

STUDIES: dict[str, dict[str, dict]] = {
    # 10_paper_figures: reads the committed results (no training), so every profile is the same;
    # results_dir None = the repository's results/ (or point it at another run's folder).
    "paper_figures": {
        "smoke": {"results_dir": None},
        "quick": {"results_dir": None},
        "full": {"results_dir": None},
    },
    # 00_quickstart: a CPU-scale EfficientNetV2 on CIFAR-10 at 32 px.
    "quickstart": {
        "smoke": {"train_subset": 1000, "test_subset": 500, "epochs": 1, "batch_size": 100},
        "quick": {"train_subset": None, "test_subset": None, "epochs": 3, "batch_size": 128},
        "full": {"train_subset": None, "test_subset": None, "epochs": 15, "batch_size": 128},
    },
    # 05_progressive_learning, Table 5: image size x RandAugment magnitude (TF scale) on CIFAR-10
    # at 16/24/32 px, in an overfitting regime (few images, many epochs), plus a magnitude-0
    # control at the largest size (the regime check); every seed draws its own training subset,
    # the full test set at full; runs cached under OUTPUT_DIR/runs (resumable).
    "progressive_learning": {
        "smoke": {"train_subset": 200, "test_subset": 200, "epochs": 2, "batch_size": 50,
                  "sizes": [16, 32], "magnitudes": [5, 15], "seeds": [0]},
        "quick": {"train_subset": 1000, "test_subset": 2000, "epochs": 10, "batch_size": 128,
                  "sizes": [16, 24, 32], "magnitudes": [5, 15], "seeds": [0, 1]},
        "full": {"train_subset": 2000, "test_subset": None, "epochs": 40, "batch_size": 128,
                 "sizes": [16, 24, 32], "magnitudes": [5, 10, 15], "seeds": [0, 1, 2]},
    },
    # 06_adaptive_regularization, Table 13 and Figure 6: progressive / random resize with vanilla
    # (constant strong), weak (constant weak) and adaptive regularization, paired by seed, on
    # CIFAR-10 with Table 6's V2-S plan scaled to 16 -> 32 px (RandAugment 0 -> 10); notebook
    # 05's 2,000 images, trained 80 epochs so that progressive resizing overfits (second design).
    "adaptive_regularization": {
        "smoke": {"train_subset": 200, "test_subset": 200, "epochs": 2, "num_stages": 2,
                  "batch_size": 50, "seeds": [0]},
        "quick": {"train_subset": 1000, "test_subset": 2000, "epochs": 8, "num_stages": 4,
                  "batch_size": 128, "seeds": [0, 1]},
        "full": {"train_subset": 2000, "test_subset": None, "epochs": 80, "num_stages": 4,
                 "batch_size": 128, "seeds": [0, 1, 2, 3, 4]},  # two looks: seeds 0-2, then 0-4
    },
    # 07_progressive_other_networks, Table 12: a half-width ResNet-18 and a CPU-scale EfficientNet
    # (V1) on CIFAR-10, fixed 32 px vs progressive 16 -> 32 px at equal epochs, paired by seed;
    # timed in CPU seconds on one thread; runs cached under OUTPUT_DIR/runs (resumable).
    "progressive_other_networks": {
        "smoke": {"train_subset": 200, "test_subset": 200, "epochs": 2, "num_stages": 2,
                  "batch_size": 50, "seeds": [0]},
        "quick": {"train_subset": 1000, "test_subset": 2000, "epochs": 6, "num_stages": 3,
                  "batch_size": 128, "seeds": [0, 1]},
        "full": {"train_subset": 2000, "test_subset": None, "epochs": 30, "num_stages": 4,
                 "batch_size": 128, "seeds": [0, 1, 2]},
    },
    # 04_architecture_and_scaling, Table 7 / Figure 5 (inference latency) and Table 11 (V2 vs V1
    # training and inference throughput, pairs timed side by side; table10_pair: Table 10's B7
    # vs V2-M, timed the same way). Images are timed at size_scale x each model's own size (1.0,
    # the paper's sizes, at full: about 3 min on an idle 2-core CPU); counts are always exact.
    "architecture_and_scaling": {
        "smoke": {"count_models": ["efficientnet_b0", "efficientnetv2_s"],
                  "latency_models": ["efficientnet_b0", "efficientnetv2_s"],
                  "latency_batch": 1, "size_scale": 0.25,
                  "pairs": [["efficientnet_b1", "efficientnetv2_b0"]], "table10_pair": _TABLE10_PAIR,
                  "train_batch": 2, "infer_batch": 2, "warmup": 0, "repeats": 2},
        "quick": {"count_models": _V1_AND_V2[:6] + _V1_AND_V2[8:10],
                  "latency_models": _V1_AND_V2[:6] + _V1_AND_V2[8:10],
                  "latency_batch": 1, "size_scale": 0.4, "pairs": _TABLE11_PAIRS,
                  "table10_pair": _TABLE10_PAIR,
                  "train_batch": 2, "infer_batch": 2, "warmup": 1, "repeats": 2},
        "full": {"count_models": _V1_AND_V2, "latency_models": _V1_AND_V2,
                 "latency_batch": 1, "size_scale": 1.0, "pairs": _TABLE11_PAIRS,
                 "table10_pair": _TABLE10_PAIR,
                 "train_batch": 2, "infer_batch": 2, "warmup": 1, "repeats": 3},
    },
    # 08_transfer_learning, Table 8: pre-train on Imagenette, fine-tune on CIFAR-10 at 64 px
    # with the scaled official fine-tuning recipe, against training from scratch; at full the
    # sources must reach 80% Imagenette top-1 (third design: 100 epochs), each fine-tuning seed
    # draws its own subset, tested on all 10,000 CIFAR-10 test images; runs cached (resumable).
    "transfer_learning": {
        "smoke": {"pretrain_subset": 100, "pretrain_test_subset": 50, "pretrain_epochs": 1,
                  "train_subset": 100, "test_subset": 50, "epochs": 1, "image_size": 64,
                  "randaugment": 2, "batch_size": 50, "seeds": [0]},
        "quick": {"pretrain_subset": 2000, "pretrain_test_subset": 500, "pretrain_epochs": 2,
                  "train_subset": 1000, "test_subset": 1000, "epochs": 2, "image_size": 64,
                  "randaugment": 2, "batch_size": 64, "seeds": [0]},
        "full": {"pretrain_subset": None, "pretrain_test_subset": None, "pretrain_epochs": 100,
                 "train_subset": 4000, "test_subset": None, "epochs": 3, "image_size": 64,
                 "randaugment": 2, "batch_size": 64, "seeds": [0, 1, 2]},
    },
    # 03_training_aware_nas, Section 3.3 and Figure 3: random search around the CPU-scale V2-B0
    # backbone on CIFAR-10, each candidate trained briefly; step time measured on this machine.
    "training_aware_nas": {
        "smoke": {"train_subset": 200, "test_subset": 100, "epochs": 1, "batch_size": 50,
                  "num_samples": 2, "timing_repeats": 2, "ablation_repeats": 2},
        "quick": {"train_subset": 1000, "test_subset": 500, "epochs": 2, "batch_size": 64,
                  "num_samples": 4, "timing_repeats": 3, "ablation_repeats": 10},
        "full": {"train_subset": 2500, "test_subset": 1000, "epochs": 3, "batch_size": 64,
                 "num_samples": 24, "timing_repeats": 5, "ablation_repeats": 30},
    },
    # 01_training_bottlenecks, Section 3.2 and Table 2: throughput and memory vs image size and
    # batch (EfficientNet-B0 standing in for B6), convolution cost per stage, B4's stage costs.
    "training_bottlenecks": {
        "smoke": {"sizes": [64, 48], "batches": [4, 8], "b6_measured_at": 32, "conv_batch": 2,
                  "stage_size": 64, "stage_batch": 2, "warmup": 0, "repeats": 1},
        "quick": {"sizes": [128, 96], "batches": [12, 24], "b6_measured_at": 64,
                  "conv_batch": 8, "stage_size": 96, "stage_batch": 4, "warmup": 1,
                  "repeats": 3},
        "full": {"sizes": [128, 96], "batches": [12, 24], "b6_measured_at": 128,
                 "conv_batch": 16, "stage_size": 128, "stage_batch": 8, "warmup": 1,
                 "repeats": 7},
    },
    # 02_fused_mbconv, Table 3: EfficientNet-B4 with Fused-MBConv in its first 0/3/5/7 stages;
    # throughput at CPU scale (speed_width: B4's width multiplier times this; 1.0 = the real
    # B4), accuracy of the half-size variants on CIFAR-10 at 32 px.
    "fused_mbconv": {
        "smoke": {"speed_width": 0.25, "speed_size": 64, "speed_batch": 2,
                  "precisions": ["fp32"], "warmup": 0, "repeats": 1, "train_subset": 500,
                  "test_subset": 200, "epochs": 1, "batch_size": 100, "seeds": [0]},
        "quick": {"speed_width": 0.5, "speed_size": 96, "speed_batch": 4,
                  "precisions": ["fp32"], "warmup": 1, "repeats": 3, "train_subset": 2000,
                  "test_subset": 1000, "epochs": 2, "batch_size": 128, "seeds": [0]},
        # accuracy in the regime the claim needs (the unfused network >= 75%): every CIFAR-10
        # image, 8 epochs, all 10,000 test images, 3 seeds paired across the variants
        "full": {"speed_width": 1.0, "speed_size": 64, "speed_batch": 4,
                 "precisions": ["fp32", "bf16"], "warmup": 1, "repeats": 3,
                 "train_subset": None, "test_subset": None, "epochs": 8, "batch_size": 128,
                 "seeds": [0, 1, 2]},
    },
    # 09_practical_efficiency, Graphcore (REFERENCE.md section 4), second design (the notebook's
    # design section): G1 vs G16 vs G1 widened to G16's multiply-adds; BN vs GN vs LN+PN at
    # per-device batches 4 and 16, each norm at the learning rate a search (at the larger batch,
    # on held-out training images) picks; native vs half-resolution training, both with the same
    # head fine-tune; on Imagenette with the CPU-scale EfficientNet (V1); runs cached under
    # OUTPUT_DIR/runs/09 (a full run takes about 3 hours here: resumable over sittings).
    "practical_efficiency": {
        "smoke": {"train_subset": 100, "test_subset": 100, "epochs": 1, "batch_size": 50,
                  "image_size": 64, "norm_subset": 100, "norm_epochs": 1, "batch_sizes": [10, 50],
                  "lr_factors": [0.5, 1.0], "val_images": 50, "search_seed": 100,
                  "native_size": 96, "test_sizes": [64, 96], "finetune_epochs": 1,
                  "timing_batch": 8, "timing_warmup": 1, "timing_repeats": 2, "seeds": [0]},
        "quick": {"train_subset": 1000, "test_subset": 500, "epochs": 2, "batch_size": 32,
                  "image_size": 64, "norm_subset": 300, "norm_epochs": 2, "batch_sizes": [4, 16],
                  "lr_factors": [0.5, 1.0], "val_images": 200, "search_seed": 100,
                  "native_size": 96, "test_sizes": [64, 96, 128], "finetune_epochs": 1,
                  "timing_batch": 32, "timing_warmup": 1, "timing_repeats": 4, "seeds": [0]},
        "full": {"train_subset": None, "test_subset": None, "epochs": 15, "batch_size": 32,
                 "image_size": 64, "norm_subset": None, "norm_epochs": 4, "batch_sizes": [4, 16],
                 "lr_factors": [0.25, 0.5, 1.0], "val_images": 1000, "search_seed": 100,
                 "native_size": 96, "test_sizes": [64, 96, 128], "finetune_epochs": 2,
                 "timing_batch": 32, "timing_warmup": 2, "timing_repeats": 6, "seeds": [0, 1, 2]},
    },
}


# The gpu profile: each study's full settings with these changes (the scale only; the design and
# its regime checks are the full profile's).
_FIVE_SEEDS = {"seeds": [0, 1, 2, 3, 4]}
GPU_SCALE: dict[str, dict] = {
    "paper_figures": {},
    "quickstart": {"epochs": 30},
    "progressive_learning": {"train_subset": 10000, "epochs": 100, **_FIVE_SEEDS},
    "adaptive_regularization": {"train_subset": 10000, "epochs": 100, **_FIVE_SEEDS},
    "progressive_other_networks": {"train_subset": None, "test_subset": None, "epochs": 30,
                                   **_FIVE_SEEDS},
    "architecture_and_scaling": {"train_batch": 32, "infer_batch": 32, "repeats": 10},
    "transfer_learning": {"pretrain_subset": None, "pretrain_test_subset": None,
                          "pretrain_epochs": 100, "train_subset": None, "test_subset": None,
                          "epochs": 10, **_FIVE_SEEDS},
    "training_aware_nas": {"train_subset": None, "test_subset": None, "epochs": 10,
                           "num_samples": 100},
    "training_bottlenecks": {"batches": [64, 128], "repeats": 20},
    "fused_mbconv": {"speed_batch": 32, "train_subset": None, "test_subset": None, "epochs": 30,
                     **_FIVE_SEEDS},
    "practical_efficiency": {"train_subset": None, "test_subset": None, "epochs": 30,
                             **_FIVE_SEEDS},
}


def profile_name(profile: str | None = None) -> str:
    """``profile``, else ``$EV2LITE_PROFILE``, else ``"quick"``; ``ValueError`` if unknown,
    ``TypeError`` if ``profile`` is neither a string nor ``None`` (papermill passes parameters
    as Python literals: ``-p PROFILE smoke``, not ``-p PROFILE 3``)."""
    if profile is not None and not isinstance(profile, str):
        raise TypeError(f"PROFILE must be a string, one of {', '.join(PROFILE_NAMES)}; got "
                        f"{profile!r} ({type(profile).__name__})")
    name = profile or os.environ.get("EV2LITE_PROFILE") or "quick"
    if name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}")
    return name


def settings(study: str, profile: str | None = None) -> dict:
    """The settings of ``study`` at ``profile`` (see :func:`profile_name`), as a new dict.

    Raises ``ValueError`` for an unknown study or profile, ``TypeError`` for a profile that is
    not a string.
    """
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}: one of {sorted(STUDIES)}")
    name = profile_name(profile)
    if name == "gpu":
        return {**STUDIES[study]["full"], **GPU_SCALE[study]}
    return dict(STUDIES[study][name])
