"""The paper's numbers, loaded from ``data/paper/*.csv`` (each file names its table)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[1] / "data" / "paper"


def paper_table(name: str) -> pd.DataFrame:
    """The table ``data/paper/<name>.csv`` as a DataFrame; ``.attrs["source"]`` is its first line.

    Raises ``FileNotFoundError`` listing the available tables.
    """
    path = PAPER_DIR / f"{name}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in PAPER_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no paper table {name!r} in {PAPER_DIR}; available: {have}")
    frame = pd.read_csv(path, comment="#", dtype=str)
    frame.attrs["source"] = path.read_text().splitlines()[0].lstrip("# ")
    return frame
