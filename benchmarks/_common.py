"""Plumbing shared by the benchmark scripts: command-line options, printing and saving results.

Every script takes ``--quick`` (fewer sizes and repeats), ``--tiny`` (the smallest settings, only
to check that it runs, used by ``tests/test_benchmarks.py``; on one thread, since on a shared
2-core machine two OpenMP threads can stall for seconds per step while another process holds a
core) and ``--out`` (default ``results/``). It prints its table and writes ``<out>/<name>.csv``
and ``<out>/<name>.json`` (command line, settings, load average, machine and the raw times).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
import torch

from ev2lite.results import RESULTS_DIR, environment

BUSY_LOAD = 0.5  # 1-minute load average above which timings are noisy on a 2-core machine


def options(description: str) -> argparse.Namespace:
    """Parse ``--quick``, ``--tiny`` and ``--out``; ``args.mode`` is "full", "quick" or "tiny"."""
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    size.add_argument("--tiny", action="store_true",
                      help="smallest settings, one thread: only checks that it runs")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR,
                        help=f"folder for the CSV and JSON (default {RESULTS_DIR})")
    args = parser.parse_args()
    args.mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    if args.tiny:
        torch.set_num_threads(1)
    args.load_at_start = os.getloadavg()
    if args.load_at_start[0] > BUSY_LOAD:
        print(f"warning: load average {args.load_at_start[0]:.2f} > {BUSY_LOAD}: other processes "
              "share the CPU, timings will be noisy", file=sys.stderr)
    return args


def save(name: str, table: pd.DataFrame, args: argparse.Namespace, settings: dict,
         raw: list[dict]) -> None:
    """Print ``table`` and write it to ``<args.out>/<name>.csv``, provenance to ``<name>.json``."""
    print(table.to_string(index=False, na_rep="n/a"))
    meta = {"name": name, "command": shlex.join(["python", *sys.argv]), "mode": args.mode,
            "settings": settings,
            "load_average_1_5_15_min": {"start": args.load_at_start, "end": os.getloadavg()},
            "environment": environment(),  # CPU model, cores, threads, load, CPU seconds
            "raw": raw}
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{name}.csv", index=False, na_rep="n/a")
    (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    print(f"wrote {args.out / name}.csv and .json")
