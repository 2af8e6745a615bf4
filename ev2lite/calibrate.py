"""Calibration: measure, on the machine at hand, which training-step settings run fastest.

Speed-ups measured on one CPU reverse on the next (issue 13): channels_last was 1.2-2.9x NCHW on
an Intel Xeon with AVX-512 and slower than NCHW on an AMD EPYC (Zen 3); ``torch.compile`` did
not pay for these models on either at CIFAR sizes. So the defaults of
:class:`~ev2lite.recipe.Recipe` come from a measurement here, not from a table:
``python -m ev2lite.calibrate`` times one training step of a CPU-scale model for each memory
layout x batch size x thread count, interleaved in one run (:func:`ev2lite.measure.
time_interleaved`), optionally eager against compiled, and writes the fastest settings to
:func:`ev2lite.cache.calibration_file` (one file per CPU, :func:`ev2lite.machine.cpu_id`, and torch version).
:func:`ev2lite.machine.default_channels_last` and :func:`ev2lite.machine.default_compile` read
it; ``Recipe(channels_last=..., compile=...)`` and ``$EV2LITE_CHANNELS_LAST`` override it.

Only settings that leave the arithmetic of a run unchanged become defaults (layout, threads,
compile). The fastest batch size is recorded as a recommendation: it changes what a run
learns, so studies keep their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from .cache import calibration_file
from .machine import cpu_flags, cpu_id, cpu_model
from .measure import TrainStep, machine_load, summarize, time_interleaved, was_busy
from .models import create_model

COMPILE_PAYS = 1.1  # a compiled step must be this much faster than eager to become the default


def _with_threads(step: Callable[[], None], threads: int) -> Callable[[], None]:
    def run():
        torch.set_num_threads(threads)
        step()
    return run


def calibrate(model: nn.Module, image_size: int, *, batch_sizes: tuple[int, ...] = (64, 128, 256),
              thread_counts: tuple[int, ...] | None = None, compile: bool = False,
              warmup: int = 2, repeats: int = 5) -> tuple[dict, pd.DataFrame]:
    """Time one training step (SGD, fp32, synthetic ``[B, 3, S, S]`` batches) of ``model`` at
    ``image_size`` px for every layout (NCHW, channels_last) x ``batch_sizes`` x
    ``thread_counts`` (default: 1 up to the cores), interleaved; with ``compile``, also the
    fastest eager setting compiled (its first step, the compilation, is excluded).

    Returns ``(best, table)``: ``best`` holds ``channels_last``, ``batch_size``, ``threads``
    (of the highest images/s), ``compile_speedup`` (compiled over eager images/s; absent
    without ``compile``), the machine (``cpu_model``, ``cpu_flags``, ``torch``) and the
    :func:`~ev2lite.measure.machine_load` record with its ``busy`` flag; ``table`` has one row
    per setting (``channels_last``, ``batch_size``, ``threads``, ``compiled``, ``pass``,
    ``median_s``, ``iqr_percent``, ``images_per_s``): ``pass`` is ``"grid"`` for the
    interleaved grid, ``"compile pair"`` for the best setting eager and compiled timed again
    side by side (``compile_speedup`` is that pair's ratio, so compare those two rows). The
    thread count in force before the call is restored.
    Raises ``ValueError`` for an empty candidate list.
    """
    cores = os.cpu_count() or 1
    thread_counts = thread_counts or tuple(range(1, cores + 1))
    if not batch_sizes or not thread_counts:
        raise ValueError("calibrate needs at least one batch size and one thread count")
    before = torch.get_num_threads()
    settings = {(layout, batch, threads): _with_threads(
        TrainStep(model, image_size, batch, channels_last=layout), threads)
        for layout in (False, True) for batch in batch_sizes for threads in thread_counts}
    try:
        with machine_load() as load:
            seconds = time_interleaved(settings, warmup=warmup, repeats=repeats)
        # the 1-thread settings can use only one core: judge the load by the mean threads in use
        load["expected_threads"] = (sum(key[2] * sum(s) for key, s in seconds.items())
                                    / sum(sum(s) for s in seconds.values()))
        load["busy"] = was_busy(load, load["expected_threads"])
        rows = [{"channels_last": layout, "batch_size": batch, "threads": threads, "compiled": False,
                 "pass": "grid", **_stats(seconds[(layout, batch, threads)], batch)}
                for layout, batch, threads in settings]
        best = max(rows, key=lambda r: r["images_per_s"])
        result = {k: best[k] for k in ("channels_last", "batch_size", "threads")}
        if compile:
            layout, batch, threads = best["channels_last"], best["batch_size"], best["threads"]
            pair = {"eager": settings[(layout, batch, threads)],
                    "compiled": _with_threads(TrainStep(model, image_size, batch, channels_last=layout,
                                                        compile=True), threads)}
            pair["compiled"]()  # the compilation, not timed
            timed = time_interleaved(pair, warmup=warmup, repeats=repeats)
            stats = {name: _stats(timed[name], batch) for name in pair}
            rows += [{"channels_last": layout, "batch_size": batch, "threads": threads,
                      "compiled": name == "compiled", "pass": "compile pair", **stats[name]}
                     for name in pair]
            result["compile_speedup"] = stats["compiled"]["images_per_s"] / stats["eager"]["images_per_s"]
    finally:
        torch.set_num_threads(before)
    result.update({"model": type(model).__name__ if not hasattr(model, "cfg") else model.cfg.name,
                   "image_size": image_size, "cpu_model": cpu_model(), "cpu_id": cpu_id(),
                   "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"}),
                   "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                   "load": load})
    return result, pd.DataFrame(rows)


def _stats(seconds: list[float], batch: int) -> dict:
    s = summarize(seconds, batch)
    return {"median_s": s["median_s"], "iqr_percent": s["iqr_percent"], "images_per_s": s["images_per_s"]}


def save_calibration(best: dict, table: pd.DataFrame, path: Path | None = None) -> Path:
    """Write ``best`` (with ``table`` as its ``settings`` list) to this machine's
    :func:`~ev2lite.cache.calibration_file` (or ``path``); refuses (``RuntimeError``) a
    calibration measured on a busy machine, since its winner would be noise."""
    if best["load"]["busy"]:
        raise RuntimeError(f"the machine was busy during calibration (load {best['load']['load_1min']:.1f}, "
                           f"{best['load']['cpu_per_wall']:.2f} CPU s per wall s): stop other jobs and run it again")
    path = path or calibration_file(best["cpu_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**best, "settings": table.to_dict("records")}, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m ev2lite.calibrate [--compile] [--quick]``: calibrate this machine (about a
    minute; ``--compile`` adds one compilation, 1-4 minutes on 2 cores)."""
    parser = argparse.ArgumentParser(prog="python -m ev2lite.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnetv2_cifar", help="a CPU-scale model (default %(default)s)")
    parser.add_argument("--image-size", type=int, default=32, help="px (default %(default)s)")
    parser.add_argument("--compile", action="store_true", help="also time the fastest setting compiled")
    parser.add_argument("--quick", action="store_true", help="two batch sizes, three repeats")
    args = parser.parse_args(argv)
    model = create_model(args.model, num_classes=10)
    best, table = calibrate(model, args.image_size, batch_sizes=(64, 128) if args.quick else (64, 128, 256),
                            compile=args.compile, repeats=3 if args.quick else 5)
    print(table.round(3).to_string(index=False))
    try:
        path = save_calibration(best, table)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"fastest here: channels_last={best['channels_last']}, batch {best['batch_size']}, "
          f"{best['threads']} threads" + (f", compiled {best['compile_speedup']:.2f}x eager"
                                           if "compile_speedup" in best else "") + f"; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
