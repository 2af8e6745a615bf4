"""The one training loop, ``fit()``: stages in, a per-epoch history out.

A run is a list of :class:`~ev2lite.recipe.Stage` (epochs, image size and the regularization
strengths of that stage) plus a :class:`~ev2lite.recipe.Recipe` (optimizer, learning rate
schedule, label smoothing, EMA, ...), both defined in :mod:`ev2lite.recipe`.
Fixed-size training is a single stage; progressive learning (paper Section 4, Algorithm 1) is a
longer list, and only the list changes: weights, optimizer state and the learning rate schedule
carry across stage boundaries, as in the official code.

Every epoch ends with a checkpoint (written atomically) when ``checkpoint=`` is given; calling
``fit`` again with the same arguments resumes after the last finished epoch and produces the
same history and weights as an unbroken run, because each epoch's randomness (data order,
augmentation, dropout) has its own stream keyed by ``(seed, purpose, epoch, rank)``
(:func:`ev2lite.seeds.stream_seed`).

The file reads top-down: :func:`fit` first, then what it calls.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from . import distributed, guard
from .machine import native_bf16
from .augment import mixup_cutmix, rand_augment
from .cache import use_compile_cache
from .data import ImageDataset, Loader
from .recipe import Recipe, Stage, lr_factor, make_optimizer
from .seeds import stream_seed


# History columns that measure the machine rather than the run: they differ between two equal runs.
TIMING_COLUMNS = ["images_per_s", "train_time_s", "compile_s", "cpu_s", "load_1min"]


def fit(model: nn.Module, train_set: ImageDataset, test_set: ImageDataset, stages: list[Stage],
        recipe: Recipe = Recipe(), *, checkpoint: str | Path | None = None,
        progress: bool = True, device: str | torch.device | None = None) -> pd.DataFrame:
    """Train ``model`` through ``stages`` and return the per-epoch history.

    History columns: ``epoch`` (1-based), ``stage`` (0-based), ``image_size`` (px), ``lr`` (at the
    epoch's end), ``train_loss``, ``train_acc`` (0-1, against the argmax of mixed labels),
    ``test_loss``, ``test_acc`` (0-1, of the EMA weights when enabled; NaN in epochs that
    ``recipe.eval_every`` skips), ``images_per_s`` (training
    throughput of the epoch), ``train_time_s`` (cumulative training seconds, evaluation and
    compilation excluded), ``compile_s`` (seconds of the epoch's first step at an image size not
    compiled before, nearly all of it compilation; 0 when eager), ``cpu_s`` (CPU seconds of the
    epoch's training, all threads of all processes) and ``load_1min`` (load average at the
    epoch's end, the highest over the machines): a ``cpu_s`` well below ``threads x`` the epoch's seconds, or a load above the
    cores, marks an epoch timed on a busy machine. ``device`` defaults to CUDA when available. With ``checkpoint`` (a file path) the
    state is saved after every epoch and a later call with the same arguments resumes from it;
    a checkpoint of another run or a corrupt one raises :class:`CheckpointError`. Before
    training, :func:`check_run` refuses impossible runs (``ValueError``) and, unless the
    checkpoint says the run is finished, :func:`ev2lite.guard.check_train_memory` warns
    (``ResourceWarning``) when a step at the largest image size would not fit in memory.

    Under ``torchrun`` (a process group initialised, see :mod:`ev2lite.distributed`) each rank
    trains on its shard of ``train_set`` (``recipe.batch_size`` images a step) through
    ``DistributedDataParallel`` and evaluates the whole ``test_set``. The weights (BatchNorm
    statistics averaged over the ranks after every epoch) and the history (train columns and
    ``images_per_s`` over all ranks together) are identical on every rank; only rank 0 reads
    and writes ``checkpoint`` and shows progress.

    ``recipe.compile`` (:func:`wants_compile`) runs the training and evaluation steps through
    ``torch.compile`` (inductor), with its cache on disk under the project's cache folder so
    that a later process reuses what an earlier one compiled; one graph is compiled per image
    size and kept for the rest of the run.
    """
    rank, world_size = distributed.rank_and_world_size()
    check_run(model, train_set, stages, recipe, world_size)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    net = DistributedDataParallel(model) if world_size > 1 else model  # the train step's model
    num_classes = len(train_set.classes)
    train = Loader(train_set, recipe.batch_size, train=True, seed=recipe.seed,
                   channels_last=recipe.channels_last, rank=rank, world_size=world_size)
    test = Loader(test_set, recipe.eval_batch_size, train=False,
                  image_size=recipe.eval_size or stages[-1].image_size,
                  channels_last=recipe.channels_last)
    steps_per_epoch, total_epochs = len(train), sum(s.epochs for s in stages)
    total_steps = steps_per_epoch * total_epochs
    optimizer = make_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, total_steps, recipe))
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay),
                         use_buffers=True) if recipe.ema_decay else None)
    tested = ema.module if ema else model  # the weights evaluate() scores

    history, done, train_time = [], 0, 0.0
    checkpoint = Path(checkpoint) if checkpoint else None
    fingerprint = _fingerprint(model, stages, recipe, len(train_set), world_size)
    state = None
    if checkpoint and checkpoint.exists() and rank == 0:
        state = load_checkpoint(checkpoint, fingerprint)
    state = distributed.broadcast_object(state)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history, done = state["history"], state["epoch"]
        train_time = history[-1]["train_time_s"] if history else 0.0
    if done < total_epochs:
        guard.check_train_memory(model, max(s.image_size for s in stages), recipe, device)
        if recipe.precision == "bf16" and not native_bf16(device):
            warnings.warn(f"precision='bf16' on {device}, which has no native bfloat16 (no AMX or "
                          "AVX-512-BF16): it is emulated and slower than fp32 here")
    compiled = wants_compile(recipe, (total_epochs - done) * steps_per_epoch)
    if compiled:
        use_compile_cache()
        net, tested = torch.compile(net), torch.compile(tested)
    compiled_sizes = set()

    bar = tqdm(total=total_steps, initial=done * steps_per_epoch, disable=not progress or rank > 0,
               unit="step", desc="fit")
    epoch = 0
    for stage_index, stage in enumerate(stages):
        for _ in range(stage.epochs):
            epoch += 1
            if epoch <= done:
                continue
            # dropout, stochastic depth and mixup draw from the global RNG: one stream per epoch and rank
            torch.manual_seed(stream_seed(recipe.seed, "dropout", epoch, rank))
            train.set_epoch(epoch)
            train.image_size = stage.image_size
            train.augment = rand_augment(stage.randaugment)
            train.random_crop = stage.random_crop
            mix = mixup_cutmix(stage.mixup_alpha, stage.cutmix_alpha, num_classes, stage.mix_mode)
            _set_regularization(model, stage)
            model.train()
            start, cpu_start = time.perf_counter(), time.process_time()
            loss_sum, correct, seen, compile_s, untimed = 0.0, 0, 0, 0.0, 0
            compiling = compiled and stage.image_size not in compiled_sizes  # this epoch's first step
            for x, y in train:
                step_start = time.perf_counter() if compiling else 0.0
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x, target = (x, y) if mix is None else mix(x, y)
                with torch.autocast(device.type, torch.bfloat16, enabled=recipe.precision == "bf16"):
                    logits = net(x)
                loss = F.cross_entropy(logits.float(), target, label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                loss_sum += loss.item() * len(y)
                hard = target if target.ndim == 1 else target.argmax(1)
                correct += (logits.argmax(1) == hard).sum().item()
                seen += len(y)
                if compiling:  # this step compiled the graph for this size: not training time
                    compile_s, untimed, compiling = time.perf_counter() - step_start, len(y), False
                    compiled_sizes.add(stage.image_size)
                bar.update()
            seconds, cpu_s = time.perf_counter() - start - compile_s, time.process_time() - cpu_start
            loss_sum, correct, seen, cpu_s = distributed.all_reduce([loss_sum, correct, seen, cpu_s])
            seconds, compile_s, load = distributed.all_reduce([seconds, compile_s, os.getloadavg()[0]],
                                                              "max")  # the slowest rank's
            distributed.average_buffers(model, *([ema] if ema else []))  # BatchNorm statistics
            train_time += seconds
            test_loss, test_acc = (evaluate(tested, test, recipe.precision, recipe.eval_flip)
                                   if epoch % recipe.eval_every == 0 or epoch == total_epochs
                                   else (float("nan"), float("nan")))
            history.append({
                "epoch": epoch, "stage": stage_index, "image_size": stage.image_size,
                "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / seen,
                "train_acc": correct / seen, "test_loss": test_loss, "test_acc": test_acc,
                "images_per_s": (seen - untimed * world_size) / seconds, "train_time_s": train_time,
                "compile_s": compile_s, "cpu_s": cpu_s, "load_1min": load})
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", test_acc=f"{test_acc:.3f}")
            if checkpoint and rank == 0:
                save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(),
                              "ema": ema.state_dict() if ema else None, "history": history,
                              "epoch": epoch, "fingerprint": fingerprint}, checkpoint)
    bar.close()
    return pd.DataFrame(history)


# Below this many training steps a compile is unlikely to pay for itself on a CPU: compiling an
# EfficientNet step took about 250 s on a 2-core CPU for a 1.8x faster step (REFERENCE.md 5),
# and at best 1.3x at batch 128 on CIFAR sizes (issue 13's measurements), so it takes thousands
# of steps to win back. "auto" compiles only above it.
MIN_COMPILE_STEPS = 3000


def wants_compile(recipe: Recipe, steps: int) -> bool:
    """Whether :func:`fit` compiles, for ``recipe.compile`` and the ``steps`` left to train:
    ``"off"`` never, ``"on"`` always, ``"auto"`` when ``steps >= MIN_COMPILE_STEPS``; a run
    that asks for ``"auto"`` and is too short says so (``UserWarning``) and trains eagerly."""
    if recipe.compile == "auto" and steps < MIN_COMPILE_STEPS:
        warnings.warn(f"compile='auto': {steps} steps are too few for torch.compile to pay for its "
                      f"compilation (< {MIN_COMPILE_STEPS}); training eagerly (compile='on' forces it)")
        return False
    return recipe.compile != "off" and steps > 0


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, truncated, or belongs to a different run."""


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Loader, precision: str = "fp32",
             flip: bool = False) -> tuple[float, float]:
    """Mean cross-entropy loss and top-1 accuracy (fraction, 0-1) of ``model`` on ``loader``;
    with ``flip``, of the mean logits of each image (N, C, H, W) and its horizontal mirror."""
    model.eval()
    device = next(model.parameters()).device
    loss, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            logits = model(x)
            if flip:
                logits = (logits + model(x.flip(3))) / 2
        loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    return loss / count, correct / count


def _set_regularization(model: nn.Module, stage: Stage) -> None:
    if hasattr(model, "set_regularization"):
        model.set_regularization(stage.dropout, stage.stochastic_depth)
    elif stage.dropout is not None or stage.stochastic_depth is not None:
        raise ValueError(f"{type(model).__name__} has no set_regularization(dropout, "
                         "stochastic_depth): leave Stage.dropout and stochastic_depth as None")


def _fingerprint(model: nn.Module, stages: list[Stage], recipe: Recipe, n_train: int,
                 world_size: int) -> str:
    params = sum(p.numel() for p in model.parameters())
    return repr(([asdict(s) for s in stages], asdict(recipe), n_train, params, world_size))


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save(obj, path)`` through a temporary file and ``os.replace``, so that a process
    killed while writing never leaves a truncated ``path`` (checkpoints, cached weights)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, fingerprint: str | None) -> dict:
    """Read a checkpoint written by :func:`fit`; ``CheckpointError`` if corrupt or foreign
    (``fingerprint`` ``None``: any run's checkpoint is accepted)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({e}); delete it to "
                              "start the run afresh") from e
    if fingerprint is not None and state.get("fingerprint") != fingerprint:
        raise CheckpointError(f"checkpoint {path} belongs to a different run (other stages, "
                              "recipe, data, model or number of processes); delete it or choose "
                              "another path")
    return state


def check_run(model: nn.Module, train_set: ImageDataset, stages: list[Stage], recipe: Recipe,
              world_size: int = 1) -> None:
    """Refuse, before any training, a run that cannot train: ``ValueError`` (one line: what is
    wrong, what to change) for no stages, ``recipe.batch_size`` above a process's share of
    ``train_set`` (no full batch: no step), or a stage's image size or ``recipe.eval_size``
    below the model's ``cfg.min_size`` (models without ``cfg`` are not size-checked)."""
    if not stages:
        raise ValueError("fit needs at least one Stage")
    share = len(train_set) // world_size
    if recipe.batch_size > share:
        raise ValueError(f"batch_size {recipe.batch_size} is larger than the {share} training "
                         "images of each process: lower batch_size or train on more images")
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        check_sizes(cfg, stages, recipe)


def check_sizes(cfg, stages: list[Stage], recipe: Recipe) -> None:
    """``ValueError`` (what and how to fix it) for a stage's image size or ``recipe.eval_size``
    below ``cfg.min_size`` (px; the output stride of the model whose :class:`~ev2lite.configs.
    ModelConfig` is ``cfg``); the command line calls it before reading any data."""
    sizes = {f"stages[{i}].image_size": s.image_size for i, s in enumerate(stages)}
    if recipe.eval_size:
        sizes["Recipe.eval_size"] = recipe.eval_size
    for where, size in sizes.items():
        if size < cfg.min_size:
            raise ValueError(f"{where} is {size} px but {cfg.name} needs at least {cfg.min_size} "
                             "px (its output stride): raise it or use a small-input variant "
                             "such as 'efficientnetv2_cifar'")


if __name__ == "__main__":  # python -m ev2lite.train: the command line (ev2lite/cli.py)
    import sys

    from ev2lite.cli import main

    sys.exit(main())
