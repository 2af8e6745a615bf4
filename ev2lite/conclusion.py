"""A notebook's conclusion, generated from results rather than typed from a past run.

Each study notebook ends by scoring its claims (rows of ``data/paper/claims.csv``) with the verdict
engine of :mod:`ev2lite.claims`, twice: on the results this run just saved (its ``OUTPUT_DIR``)
and on the committed ``full`` results (``results/``). At the ``quick`` profile the first column
is indicative (a smaller scale of the same design), the second is the verdict the README reports.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .claims import FINDINGS_CSV, claims_table, load_claims
from .results import RESULTS_DIR


def claim_verdicts(ids: list[str], run_dir: str | Path, profile: str,
                   committed_dir: str | Path = RESULTS_DIR) -> pd.DataFrame:
    """The claims ``ids`` scored on this run's results (``run_dir``) and on the committed ones.

    Columns: ``claim``, ``paper`` (as printed), ``this run (PROFILE)`` and ``its verdict``,
    ``committed full`` and ``verdict`` (``not measured yet`` where a file is missing, or where
    this run's profile is too small for a selection). An id is looked up among the paper's
    claims (``data/paper/claims.csv``) and then among our own findings (``own_findings.csv``).
    Raises ``KeyError`` for an unknown id.
    """
    claims = pd.concat([load_claims(), load_claims(FINDINGS_CSV)], ignore_index=True)
    unknown = sorted(set(ids) - set(claims.id))
    if unknown:
        raise KeyError(f"unknown claim id(s) {unknown}: see data/paper/claims.csv and own_findings.csv")
    chosen = claims.set_index("id").loc[ids].reset_index()
    ours = claims_table(run_dir, chosen, strict=False).set_index("id")
    committed = claims_table(committed_dir, chosen, strict=False).set_index("id")
    return pd.DataFrame({
        "claim": ours.claim, "paper": ours.paper,
        f"this run ({profile})": ours.ours, "its verdict": ours.verdict,
        "committed full": committed.ours, "verdict": committed.verdict,
    }).reset_index(drop=True)


def conclusion_markdown(ids: list[str], run_dir: str | Path, profile: str,
                        committed_dir: str | Path = RESULTS_DIR) -> str:
    """:func:`claim_verdicts` as a Markdown table under one line that says which column counts
    (for ``IPython.display.Markdown`` in a notebook's last cells)."""
    table = claim_verdicts(ids, run_dir, profile, committed_dir)
    lead = ("This run is the committed design at full scale." if profile == "full" else
            f"This run used the `{profile}` profile: the same design at a smaller scale, so its "
            "numbers are indicative; the committed `full` column is the verdict the README reports.")
    header = "| " + " | ".join(table.columns) + " |\n|" + " --- |" * len(table.columns)
    rows = ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |"
            for row in table.itertuples(index=False)]
    return "\n".join([lead, "", header, *rows])
