"""Small helpers that the study notebooks share: load a train/test pair and draw each seed's
subset, train one seeded run (cached on disk, so that a long profile resumes run by run), check
that a study reached the regime its claim needs, summarize repeated runs (mean and spread, paired
differences with their intervals)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .data import ImageDataset, load_dataset
from .recipe import Recipe, Stage
from .seeds import seed_init
from .stats import CONFIDENCE, seeds_to_decide, t_interval
from .train import fit, save_atomic


def load_pair(name: str, train_subset: int | None = None, test_subset: int | None = None,
              seed: int = 0, *, download: bool = True,
              progress: bool = True) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``name``, optionally class-stratified subsets of the given sizes
    (each drawn from the ``"subset"`` stream of ``seed``).

    ``download`` defaults to ``True`` here, deliberately, unlike
    :func:`ev2lite.data.load_dataset`: this is how the notebooks (the main job, ``make``) load
    their data, so a new user with a network gets it fetched once where nothing is found
    locally. ``EV2LITE_OFFLINE=1`` refuses the download (the tests and CI set it). Raises the
    data module's ``DatasetNotFoundError`` (with where it looked and what to do).
    """
    train, test = (load_dataset(name, split, download=download, progress=progress)
                   for split in ("train", "test"))
    return draw(train, test, train_subset, test_subset, seed)


def draw(train: ImageDataset, test: ImageDataset, train_subset: int | None = None,
         test_subset: int | None = None, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """The class-stratified subsets of ``train`` and ``test`` that ``seed`` trains and tests on
    (the ``"subset"`` stream of ``seed``; ``None`` or 0 keeps a whole split). A study whose seeds
    are independent draws each seed's training subset with this, from the splits loaded once.
    Raises ``ValueError`` for a subset larger than its split."""
    return (train.subset(train_subset, seed=seed) if train_subset else train,
            test.subset(test_subset, seed=seed) if test_subset else test)


def train_once(make_model: Callable[[], nn.Module], data: tuple[ImageDataset, ImageDataset],
               stages: list[Stage], recipe: Recipe, seed: int, *, cache: str | Path | None = None,
               keep_weights: bool = False, report: bool = True, **labels) -> pd.DataFrame:
    """One seeded run: seed the initialisation, build the model, :func:`fit` it quietly.

    ``seed`` fixes initialisation (the ``"init"`` stream, :func:`ev2lite.seeds.stream_seed`),
    data order, augmentation and dropout (``Recipe.seed``). With ``report`` it prints one line
    when done (labels, seed, final test accuracy, training seconds), which the main job shows as
    its progress. Returns the history with the
    ``labels`` (e.g. ``size=128, magnitude=9``) and ``seed`` added as columns.

    ``cache`` (a folder): the run is keyed by its configuration (:func:`run_key`: the model's
    architecture and parameter count, stages, recipe, seed, the data and the labels); a run
    already finished there is read back instead of trained, and an interrupted one resumes from
    its last epoch (``fit``'s checkpoint, deleted once the history is saved). So a long profile
    that is killed continues where it stopped, in a later sitting too. Delete the folder to
    train everything again. A run being trained holds a lock file (``<key>.lock``, its process
    id); another process on the same machine that reaches the same run waits for its history
    instead of training it twice, so two copies of a profile (one thread each, in different
    orders) can share the work; a lock left by a process that died is taken over.

    ``keep_weights`` (with ``cache``): the trained model's ``state_dict`` is saved beside the
    history (``<key>.weights.pt``) and loaded back into the model built on a cache hit, for a
    run whose weights are used later (a pre-training, :func:`ev2lite.transfer.pretrain`); a
    cached history without its weights file is trained again.
    """
    seed_init(seed)
    model, recipe = make_model(), replace(recipe, seed=seed)
    done = checkpoint = weights = None
    if cache is not None:
        folder = Path(cache)
        folder.mkdir(parents=True, exist_ok=True)
        key = run_key(model, data, stages, recipe, labels)
        done, checkpoint = folder / f"{key}.csv", folder / f"{key}.pt"
        weights = folder / f"{key}.weights.pt" if keep_weights else None
    lock = None if done is None else _lock_or_wait(done.with_suffix(".lock"), done)
    if done is not None and done.exists() and (weights is None or weights.exists()):
        history, how = pd.read_csv(done), "read from the cache"
        if weights is not None:
            model.load_state_dict(torch.load(weights, weights_only=True))
    else:
        try:
            history = fit(model, *data, stages, recipe, checkpoint=checkpoint, progress=False)
            how = f"{history.train_time_s.iloc[-1]:.0f} s"
            if done is not None:
                if weights is not None:
                    save_atomic(model.state_dict(), weights)
                tmp = done.with_suffix(".tmp")
                history.to_csv(tmp, index=False)
                os.replace(tmp, done)
                checkpoint.unlink(missing_ok=True)
        finally:
            if lock is not None:
                lock.unlink(missing_ok=True)
    if report:
        last = history.iloc[-1]
        print(f"trained {', '.join(f'{k}={v}' for k, v in labels.items()) or 'run'}, seed {seed}: "
              f"test accuracy {last.test_acc:.1%} after {int(last.epoch)} epochs, {how}", flush=True)
    return history.assign(seed=seed, **labels)


LOCK_POLL_S = 10.0  # how often a process waiting for another's run looks again, in seconds


def run_jobs(jobs: list[Callable[[], pd.DataFrame]], *, reverse: bool = False) -> pd.DataFrame:
    """Call every job (e.g. a :func:`train_once` run) and concatenate what they return, in the
    order of ``jobs`` whatever order they ran in. With ``reverse`` the jobs run last first: a
    second copy of a notebook started beside the first (``REVERSED = True``, one thread each)
    then trains the runs the first has not reached, and waits for the one the first is training
    (:func:`train_once`'s lock), so the two share a cached profile. Raises ``ValueError`` for an
    empty job list."""
    if not jobs:
        raise ValueError("run_jobs needs at least one job")
    order = range(len(jobs) - 1, -1, -1) if reverse else range(len(jobs))
    done = {i: jobs[i]() for i in order}
    return pd.concat([done[i] for i in range(len(jobs))], ignore_index=True)


def _lock_or_wait(lock: Path, done: Path) -> Path | None:
    """Take ``lock`` (create it holding this process id) unless ``done`` exists; while a live
    process holds it, wait. Returns the lock taken, or ``None`` once ``done`` exists."""
    while not done.exists():
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _alive(lock):
                lock.unlink(missing_ok=True)  # its process died: take the run over
            else:
                time.sleep(LOCK_POLL_S)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return lock
    return None


def _alive(lock: Path) -> bool:
    """Whether the process whose id ``lock`` holds still runs (an empty or unreadable lock is
    being written: counted as alive)."""
    try:
        pid = int(lock.read_text())
        os.kill(pid, 0)
    except (ValueError, FileNotFoundError, PermissionError):
        return True
    except ProcessLookupError:
        return False
    return True


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """The raw bytes of ``tensor``'s values in row-major order, any shape, dtype or device
    (a bf16 tensor of N values gives 2N bytes): what :func:`run_key` and
    :func:`ev2lite.transfer.weights_id` hash."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def run_key(model: nn.Module, data: tuple[ImageDataset, ImageDataset], stages: list[Stage],
            recipe: Recipe, labels: dict) -> str:
    """A 16-hex-digit key of one run's configuration: ``model``'s architecture (its ``repr``)
    and parameter count, the ``stages``, the ``recipe`` (seed included), the labels, and each
    split's name, size and a hash of its images and labels (so another subset is another run)."""
    def split_id(split: ImageDataset) -> str:
        digest = hashlib.sha1(tensor_bytes(split.images))
        digest.update(tensor_bytes(split.labels))
        return f"{split.name}/{split.split}/{len(split)}/{digest.hexdigest()}"

    config = {"model": repr(model), "parameters": sum(p.numel() for p in model.parameters()),
              "stages": [asdict(s) for s in stages], "recipe": asdict(recipe),
              "data": [split_id(split) for split in data], "labels": labels}
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class RegimeError(AssertionError):
    """A study at the ``full`` (or ``gpu``) profile did not reach the regime its claim needs."""


@dataclass(frozen=True)
class Regime:
    """The outcome of one regime check (issue 14's rule 1): ``what`` was measured, its ``value``
    (in ``unit``), the ``threshold`` it must reach (at least it, or at most it when not
    ``at_least``), and whether it did (``reached``; also the object's truth value).
    :meth:`record` is what a study saves with its results, so that the claims table can tell a
    verdict measured outside its regime (:mod:`ev2lite.claims`)."""

    what: str
    value: float
    threshold: float
    unit: str = "points"
    at_least: bool = True

    @property
    def reached(self) -> bool:
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    def __bool__(self) -> bool:
        return self.reached

    def record(self) -> dict:
        """A JSON-ready dict: the fields and ``reached``."""
        return {**asdict(self), "reached": self.reached}

    def text(self) -> str:
        sign = ">=" if self.at_least else "<="
        return f"{self.what} = {self.value:.1f} {self.unit} (needs {sign} {self.threshold:g})"


def regime_check(what: str, value: float, threshold: float, *, profile: str | None = None,
                 unit: str = "points", at_least: bool = True) -> Regime:
    """Print whether a study reached the regime its claim needs, e.g. ``regime_check("train-test
    gap at 32 px without RandAugment", 21.4, 15)`` (issue 14's rule 1: a regularization claim
    needs a baseline that overfits), and return the :class:`Regime`. With ``profile``, a missed
    regime at ``full`` or ``gpu`` raises :class:`RegimeError` at once (:func:`enforce`); a study
    that saves its results first passes no profile, saves ``regime.record()`` with them, then
    calls :func:`enforce`. At ``smoke`` and ``quick`` it is only printed, since they run the
    same design at a scale too small to reach it."""
    regime = Regime(what, float(value), threshold, unit, at_least)
    print(f"regime check: {regime.text()}: {'reached' if regime else 'NOT reached'}", flush=True)
    if profile is not None:
        enforce([regime], profile)
    return regime


def enforce(regimes: list[Regime], profile: str) -> None:
    """Raise :class:`RegimeError` for the first missed regime when ``profile`` is ``full`` or
    ``gpu`` (the committed results must come from the regime their claim needs)."""
    missed = [r for r in regimes if not r.reached]
    if missed and profile in ("full", "gpu"):
        raise RegimeError(f"{missed[0].text()}: the {profile} profile did not reach the regime its "
                          "claim needs; change the design (more epochs, fewer images) and say so "
                          "in the notebook")


def mean_std(runs: pd.DataFrame, by: list[str], value: str = "test_acc") -> pd.DataFrame:
    """Final-epoch ``value`` of each run, then mean, standard deviation and count per ``by`` group.

    ``runs`` holds the concatenated histories of :func:`train_once` (one run = one ``seed`` per
    group). Accuracy columns stay fractions (0-1); the std is 0 for a single seed.
    """
    final = runs.sort_values("epoch").groupby(by + ["seed"], as_index=False).last()
    stats = final.groupby(by)[value].agg(["mean", "std", "count"]).reset_index()
    return stats.fillna({"std": 0.0})


def paired_difference(runs: pd.DataFrame, by: str, arm: str, treatment: str, baseline: str,
                      value: str = "test_acc", *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Final-epoch ``value`` of the ``treatment`` run minus the ``baseline`` run of the same seed
    (same subset, initialisation and data order), then per ``by`` group: ``mean``, ``std``,
    ``count`` (seeds) and ``low``, ``high``, the Student-t interval of the mean at
    ``confidence`` (95% unless the design fixed another level; NaN with one seed;
    :func:`ev2lite.stats.t_interval`), in the units of ``value`` (Table 13's "adaptive minus
    vanilla"), and ``seeds_to_decide``, how many seeds would put that interval clear of 0 if
    the observed mean and spread held (:func:`ev2lite.stats.seeds_to_decide`). Seeds missing
    either arm are left out. Raises ``KeyError`` if an arm is missing altogether."""
    final = runs.sort_values("epoch").groupby([by, arm, "seed"])[value].last().unstack(arm)
    rows = {}
    for group, diff in (final[treatment] - final[baseline]).dropna().groupby(level=by):
        est = t_interval(diff.to_numpy(), confidence=confidence)
        rows[group] = {"mean": est.value, "std": diff.std(), "count": len(diff),
                       "low": est.low, "high": est.high,
                       "seeds_to_decide": seeds_to_decide(est.value, diff.std(),
                                                          confidence=confidence)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(by)
