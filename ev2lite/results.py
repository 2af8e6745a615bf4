"""Writing and reading measured results, with what is needed to reproduce them.

Every notebook saves its measurements with :func:`save_results` into its run's output folder
(``out/PROFILE/`` for the main job), never straight into the repository. The committed
``results/`` change only through an explicit step, :func:`publish` (``make results``, or
``python -m ev2lite.results out/full``), which copies the ``full``-profile results of a run
there. Each result records the command that made it, the seed, library versions, the CPU
(model, threads, load average) and the process CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torchvision

from .machine import cpu_flags, cpu_id, cpu_model, native_bf16

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def environment() -> dict:
    """Versions, device, CPU model (and :func:`~ev2lite.machine.cpu_id`, with its family and
    model numbers) and its relevant flags (AVX2, AVX-512, AVX-512-BF16, AMX),
    native bf16, thread count, the 1/5/15-minute load averages and this process's CPU seconds so far (recorded beside every result: a run whose load average
    exceeded the cores was taken on a busy machine)."""
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "machine": platform.machine(),
        "processor": platform.processor() or "unknown", "cpu_model": cpu_model(), "cpu_id": cpu_id(),
        "cores": os.cpu_count(), "native_bf16": native_bf16("cpu"),
        "cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "process_cpu_s": time.process_time(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def save_results(name: str, table: pd.DataFrame, metrics: dict, *, profile: str,
                 out_dir: str | Path, notebook: str | None = None,
                 command: str | None = None) -> list[Path]:
    """Write ``out_dir/<name>.csv`` (the table) and ``out_dir/<name>.json`` (metrics plus
    provenance: profile, the command that reproduces the result, and :func:`environment`).
    The command is ``command`` if given, else the runbook's for ``notebook`` (its file name).
    Returns the two paths. Raises ``ValueError`` without either.

    Notebooks write to their run's folder; only :func:`publish` (and the re-scoring of
    ``python -m ev2lite.claims``, which passes ``results/`` itself) write the committed results.
    """
    if command is None and notebook is None:
        raise ValueError("save_results needs the notebook that made the result, or its command")
    command = command or f"python -m ev2lite.runbook --profile {profile} notebooks/{notebook}"
    meta = {"name": name, "profile": profile, "metrics": metrics, "command": command,
            "environment": environment()}
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / f"{name}.csv", index=False)
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return [folder / f"{name}.csv", folder / f"{name}.json"]


def publish(run_dir: str | Path, results_dir: str | Path | None = None,
            names: list[str] | None = None) -> list[Path]:
    """Copy the ``full``-profile results of a run folder into the committed ``results/``.

    Every ``<name>.json`` in ``run_dir`` whose ``profile`` is ``"full"`` is copied with its
    ``<name>.csv`` (only those in ``names``, if given). Returns the paths written. Raises
    ``FileNotFoundError`` when ``run_dir`` does not exist or holds no full-profile result (a
    ``quick`` or ``smoke`` run is never published), or a name in ``names`` is not there.
    """
    run_dir = Path(run_dir)
    target = Path(results_dir) if results_dir is not None else RESULTS_DIR
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no run folder {run_dir}: run the notebooks with --profile full first")
    found = {p.stem: p for p in sorted(run_dir.glob("*.json"))
             if json.loads(p.read_text()).get("profile") == "full" and p.with_suffix(".csv").exists()}
    missing = sorted(set(names or []) - set(found))
    if missing or not found:
        raise FileNotFoundError(f"{run_dir} holds no full-profile result {missing or ''}: "
                                f"full results there: {sorted(found) or 'none'}")
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for name in names or found:
        for source in (found[name], found[name].with_suffix(".csv")):
            written.append(Path(shutil.copy2(source, target / source.name)))
    return written


def load_results(name: str, results_dir: str | Path = RESULTS_DIR) -> pd.DataFrame | None:
    """The committed table ``<name>.csv`` of ``results_dir`` with its ``<name>.json`` (command,
    metrics, environment) in ``.attrs``, or ``None`` when that result has not been produced yet
    (run the command of the notebook that makes it with ``--profile full``)."""
    path = Path(results_dir) / f"{name}.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path)
    meta = path.with_suffix(".json")
    table.attrs = json.loads(meta.read_text()) if meta.exists() else {}
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m ev2lite.results RUN_DIR [NAME ...]``: :func:`publish` a full run's results."""
    parser = argparse.ArgumentParser(prog="python -m ev2lite.results",
                                     description="Copy the full-profile results of a run folder "
                                                 "(e.g. out/full) into the committed results/.")
    parser.add_argument("run_dir", type=Path, help="the run's output folder, e.g. out/full")
    parser.add_argument("names", nargs="*", help="only these results (default: all full ones)")
    args = parser.parse_args(argv)
    try:
        written = publish(args.run_dir, names=args.names or None)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(f"wrote {p}" for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
