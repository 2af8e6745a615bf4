"""The command line: train a registered model on CIFAR-10 or Imagenette with ``fit()``.

Examples::

    python -m ev2lite.train --model efficientnetv2_cifar --epochs 3 --out runs/c10
    ev2lite-train --config progressive.yaml --out runs/progressive
    torchrun --nproc_per_node=2 -m ev2lite.train --epochs 3 --out runs/ddp

A run is one fixed stage made from the stage flags (``--epochs``, ``--image-size``, ...), or the
``stages`` list of a ``--config`` file (YAML or JSON, the layout of ``metrics.json``'s
``config``). Flags given explicitly override the file; a stage flag overrides that field in
every stage. Every flag is generated from the fields of :class:`Run`, :class:`~ev2lite.recipe.Stage`
and :class:`~ev2lite.recipe.Recipe`, so the command line offers exactly what ``fit()`` takes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import typing
from dataclasses import MISSING, asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch
import yaml

from . import distributed
from .augment import MIX_MODES
from .data import DATASETS, CorruptDatasetError, DatasetNotFoundError
from .models import create_model, get_config
from .results import environment
from .study import load_pair
from .recipe import RECIPE_CHOICES, Recipe, Stage
from .seeds import seed_init
from .train import CheckpointError, check_sizes, fit, load_checkpoint


try:
    __version__ = version("ev2lite")
except PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "unknown"


@dataclass(frozen=True)
class Run:
    """What to train, and on which data: a name of ``list_models()``, a key of ``DATASETS``
    and optional class-stratified subset sizes (images; ``None`` = the whole split)."""

    model: str = "efficientnetv2_cifar"
    dataset: str = "cifar10"
    train_subset: int | None = None
    test_subset: int | None = None


# Help of every generated flag (units included); a field missing here fails the CLI's tests.
HELP = {
    Run: {
        "model": "model name, one of ev2lite.list_models()",
        "dataset": "dataset, found under $EV2LITE_DATA",
        "train_subset": "train on a class-stratified random subset of N images (default: all)",
        "test_subset": "test on a class-stratified random subset of N images (default: all)",
    },
    Stage: {
        "epochs": "epochs of training (required unless --config lists stages)",
        "image_size": "training image side in px (default: the dataset's, "
                      + ", ".join(f"{d.native_size} for {n}" for n, d in DATASETS.items()) + ")",
        "randaugment": "RandAugment magnitude on the paper's TF scale, 0-30 (10 = standard maximum; 0 = off)",
        "mixup_alpha": "mixup Beta(alpha, alpha) parameter (0 = off)",
        "cutmix_alpha": "CutMix Beta(alpha, alpha) parameter (0 = off)",
        "dropout": "dropout rate before the classifier, 0-1 (default: the model's)",
        "stochastic_depth": "stochastic-depth drop probability of the last block, 0-1 "
                            "(default: the model's)",
        "mix_mode": "with both mixup and CutMix on: choice (one per batch) or split (half a "
                    "batch each, the released code)",
        "random_crop": "train on random crops and flips (--no-random-crop: whole images "
                       "resized as at test time, for a fine-tune at the test resolution)",
    },
    Recipe: {
        "batch_size": "training images per step and process (global batch: x processes)",
        "optimizer": "sgd (Nesterov momentum) or rmsprop (TF-style, the paper's)",
        "lr": "peak learning rate, reached after warmup (scale it with the global batch)",
        "momentum": "momentum of SGD or RMSProp",
        "weight_decay": "L2 weight decay, not on norm and bias parameters",
        "lr_schedule": "after warmup: cosine to zero, or exponential (x lr-decay every "
                       "lr-decay-epochs), or constant (fine-tuning)",
        "warmup_epochs": "linear learning-rate warmup, in epochs (fractions allowed)",
        "lr_decay": "factor of the exponential schedule",
        "lr_decay_epochs": "epochs between two decays of the exponential schedule",
        "compile": "torch.compile the steps: off, on, or auto (only runs long enough to pay)",
        "lr_staircase": "exponential schedule in steps (as the released code) rather than smooth",
        "label_smoothing": "label smoothing, 0-1",
        "ema_decay": "decay per step of an EMA of the weights, e.g. 0.9999, whose test accuracy "
                     "is reported ('none' = off, the default)",
        "eval_size": "test image side in px (default: the last stage's)",
        "eval_batch_size": "test images per batch",
        "eval_every": "test after every N-th epoch (and after the last)",
        "eval_flip": "test-time augmentation: average each test image's logits with its mirror's",
        "precision": "fp32, or bf16 autocast",
        "channels_last": "channels_last memory format",
        "seed": "seed of the model's initialisation, the subsets, data order, augmentation "
                "and dropout",
    },
}
CHOICES = {**RECIPE_CHOICES, "dataset": tuple(DATASETS), "mix_mode": MIX_MODES}
METAVARS = {"int": "N", "float": "X", "str": "NAME"}


def _converter(hint) -> typing.Callable:
    """argparse ``type=`` for a field annotated ``hint`` (``int``, ``float | None``, ...); also
    converts config-file values. Optional fields take ``none``; a bool must be a bool."""
    kinds = typing.get_args(hint) or (hint,)
    kind, optional = kinds[0], type(None) in kinds

    def convert(value):
        if optional and (value is None or str(value).lower() == "none"):
            return None
        if kind is bool and not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return kind(value)

    convert.__name__ = kind.__name__  # argparse's message: "invalid float value: 'x'"
    return convert


def _add_fields(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for field in fields(cls):
        hint, text = hints[field.name], HELP[cls][field.name]
        if field.default not in (MISSING, None):
            text += f" (default: {field.default})"
        elif field.default_factory is not MISSING:  # a default that depends on the machine
            text += f" (default on this machine: {field.default_factory()})"
        flag = "--" + field.name.replace("_", "-")
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            convert, choices = _converter(hint), CHOICES.get(field.name)
            group.add_argument(flag, type=convert, choices=choices, help=text,
                               metavar=None if choices else METAVARS[convert.__name__])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser. Options not given are absent from the namespace (default
    ``SUPPRESS``), so that only explicit flags override a ``--config`` file."""
    parser = argparse.ArgumentParser(
        prog="ev2lite-train", argument_default=argparse.SUPPRESS,
        usage="%(prog)s [--config FILE] [--out DIR] [--model NAME] [--epochs N] [options]",
        description="Train an ev2lite model on CIFAR-10 or Imagenette with ev2lite.train.fit. "
                    "Multi-process: torchrun --nproc_per_node=N -m ev2lite.train ...")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="YAML or JSON file: {model, dataset, train_subset, test_subset, "
                             "recipe: {...}, stages: [{epochs, image_size, ...}, ...]}; "
                             "flags given explicitly override it")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write DIR/history.csv, DIR/metrics.json and DIR/checkpoint.pt "
                             "(the same command again resumes from it); default: write nothing")
    parser.add_argument("--download", action="store_true",
                        help="download the dataset with torchvision if it is not found "
                             "(needs a network)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars")
    _add_fields(parser, Run, "what to train")
    _add_fields(parser, Stage, "one fixed stage (with --config: overrides every stage)")
    _add_fields(parser, Recipe, "recipe (ev2lite.recipe.Recipe)")
    return parser


def _convert_fields(cls: type, values, where: str) -> dict:
    """Config mapping ``values`` checked against the fields of ``cls`` and converted to their
    types; ``ValueError`` naming ``where`` for an unknown key or a bad value."""
    hints = typing.get_type_hints(cls)
    if not isinstance(values, dict) or set(values) - set(hints):
        raise ValueError(f"{where} must be a mapping with keys among {', '.join(hints)}, "
                         f"got {values!r}")
    try:
        return {key: _converter(hints[key])(value) for key, value in values.items()}
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from error


def read_config(path: str | Path) -> dict:
    """Read a run from a YAML or JSON file.

    Layout: the fields of :class:`Run` at the top level, ``recipe`` (a mapping of
    :class:`Recipe` fields) and ``stages`` (a list of mappings of :class:`Stage` fields); every
    key is optional. Returns the same layout with values converted to the fields' types.
    Raises ``ValueError`` for an unreadable file, an unknown key or a bad value.
    """
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}  # JSON is YAML too
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read --config {path}: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping, got {config!r}")
    run = {key: value for key, value in config.items() if key not in ("recipe", "stages")}
    stages = config.get("stages", [{}])
    if not isinstance(stages, list) or not stages:
        raise ValueError(f"{path}: stages must be a non-empty list, got {stages!r}")
    return {**_convert_fields(Run, run, f"{path} (besides recipe and stages)"),
            "recipe": _convert_fields(Recipe, config.get("recipe", {}), f"{path}: recipe"),
            "stages": [_convert_fields(Stage, row, f"{path}: stages[{i}]")
                       for i, row in enumerate(stages)]}


def _given(cls: type, values: dict) -> dict:
    """The entries of ``values`` that are fields of ``cls``."""
    return {f.name: values[f.name] for f in fields(cls) if f.name in values}


def train_from_args(args: dict, rank: int, device: torch.device) -> tuple[pd.DataFrame, dict]:
    """Resolve parsed flags ``args`` with their ``--config``, load the data, build the model and
    :func:`~ev2lite.train.fit` it (checkpointing to ``args["out"]``, if given, which rank 0
    creates). Returns the history and the metrics of :func:`main`.

    Raises ``ValueError`` (bad config or value, unknown model or dataset),
    ``DatasetNotFoundError``, ``CorruptDatasetError`` or ``CheckpointError``.
    """
    config = read_config(args["config"]) if "config" in args else {"recipe": {}, "stages": [{}]}
    run = Run(**{**_given(Run, config), **_given(Run, args)})
    recipe = Recipe(**{**config["recipe"], **_given(Recipe, args)})
    model_config = get_config(run.model)  # an unknown name fails here, naming close matches
    if run.dataset not in DATASETS:
        raise ValueError(f"unknown dataset {run.dataset!r}: choose one of {', '.join(DATASETS)}")
    # every value is checked before any data is read
    rows = [{"image_size": DATASETS[run.dataset].native_size, **row, **_given(Stage, args)}
            for row in config["stages"]]
    if any("epochs" not in row for row in rows):
        raise ValueError("how many epochs? Give --epochs, or a --config whose stages set epochs")
    stages = [Stage(**row) for row in rows]
    check_sizes(model_config, stages, recipe)
    resolved = {**asdict(run), "recipe": asdict(recipe), "stages": [asdict(s) for s in stages]}
    out = args.get("out")
    if out and finished(out, resolved):
        raise AlreadyComplete(f"{out} already holds this finished run ({out / 'metrics.json'}); "
                              "delete the folder or choose another --out to train again")
    progress = args.get("progress", True) and rank == 0
    download = args.get("download", False)
    train_set, test_set = load_pair(run.dataset, run.train_subset, run.test_subset, recipe.seed,
                                    download=download, progress=progress)
    seed_init(recipe.seed)  # as ev2lite.study.train_once
    model = create_model(run.model, num_classes=len(train_set.classes))
    if out and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    history = fit(model, train_set, test_set, stages, recipe, progress=progress,
                  checkpoint=out / "checkpoint.pt" if out else None, device=device)
    final = history.iloc[-1]
    return history, {
        "test_acc": float(final.test_acc), "test_loss": float(final.test_loss),
        "train_time_s": float(final.train_time_s),
        "images_per_s": float(history.images_per_s.median()), "epochs": int(final.epoch),
        "params": sum(p.numel() for p in model.parameters()), "seed": recipe.seed,
        "config": resolved}


class AlreadyComplete(Exception):
    """The ``--out`` folder already holds the finished run that was asked for."""


def finished(out: Path, config: dict) -> bool:
    """Whether ``out`` holds a finished run of exactly ``config`` (the resolved run, recipe and
    stages of :func:`train_from_args`): its ``metrics.json`` records that config and its
    ``checkpoint.pt`` reads and has trained every epoch (a damaged checkpoint is left to
    :func:`~ev2lite.train.fit` to report)."""
    out = Path(out)
    try:
        if json.loads((out / "metrics.json").read_text()).get("config") != json.loads(json.dumps(config)):
            return False
        state = load_checkpoint(out / "checkpoint.pt", None)
    except (OSError, ValueError, CheckpointError):  # missing, unreadable or truncated: not finished
        return False
    return state.get("epoch") == sum(stage["epochs"] for stage in config["stages"])


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns 0 on success.

    Trains through :func:`~ev2lite.train.fit` (sharded over the ranks under ``torchrun``, see
    :func:`~ev2lite.distributed.init_from_env`). With ``--out DIR``, rank 0 writes
    ``history.csv`` (one row per epoch), ``checkpoint.pt`` (after every epoch) and
    ``metrics.json``: final ``test_acc`` (0-1) and ``test_loss``, ``train_time_s`` (s),
    ``images_per_s`` (median over epochs, all processes together), ``epochs``, ``params``,
    ``seed``, the resolved ``config`` (a valid ``--config`` file), ``command``, ``world_size``
    and ``environment`` (:func:`~ev2lite.results.environment`: versions, device, threads).
    Every value is checked before any data is read. Bad input (an unknown model or dataset, a
    missing dataset, a bad config or value, a checkpoint of another run) prints one error line
    and exits with status 2 (``SystemExit``). An ``--out`` that already holds the same finished
    run says so and returns 0 without loading anything.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    rank, world_size, device = distributed.init_from_env()
    try:
        history, metrics = train_from_args(args, rank, device)
    except AlreadyComplete as done:
        if rank == 0:
            print(done)
        return 0
    except (ValueError, DatasetNotFoundError, CorruptDatasetError, CheckpointError) as error:
        parser.error(" ".join(str(error).split()))  # one line, exit status 2
    finally:
        distributed.shutdown()
    if rank > 0:
        return 0
    metrics.update(command=shlex.join(["ev2lite-train", *argv]), world_size=world_size,
                   environment=environment())
    out = args.get("out")
    if out:
        history.to_csv(out / "history.csv", index=False)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    config = metrics["config"]
    print(f"{config['model']} on {config['dataset']}: test accuracy "
          f"{100 * metrics['test_acc']:.1f}% after {metrics['epochs']} epochs, "
          f"{metrics['train_time_s'] / 60:.1f} min of training at "
          f"{metrics['images_per_s']:.0f} images/s" + (f"; wrote {out}" if out else ""))
    return 0
