"""Writing and reading measured results, with what is needed to reproduce them.

Every notebook saves its measurements with :func:`save_results` into its output folder; a
``full`` run also writes them to the repository's ``results/`` (committed), with the command that
made them, the seed, library versions, device and thread count.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import pandas as pd
import torch
import torchvision

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"


def environment() -> dict:
    """Versions, device and thread count of this process (recorded beside every result)."""
    return {
        "python": platform.python_version(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def save_results(name: str, table: pd.DataFrame, metrics: dict, *, profile: str,
                 out_dir: str | Path, notebook: str) -> list[Path]:
    """Write ``<name>.csv`` (the table) and ``<name>.json`` (metrics plus provenance).

    Written to ``out_dir``; with ``profile == "full"`` also to ``results/``. ``notebook`` is the
    notebook's file name, used to record the command that reproduces the result. Returns the
    paths written.
    """
    meta = {"name": name, "profile": profile, "metrics": metrics,
            "command": f"python -m ev2lite.runbook --profile {profile} notebooks/{notebook}",
            "environment": environment()}
    folders = [Path(out_dir)] + ([RESULTS_DIR] if profile == "full" else [])
    written = []
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        table.to_csv(folder / f"{name}.csv", index=False)
        (folder / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        written += [folder / f"{name}.csv", folder / f"{name}.json"]
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
