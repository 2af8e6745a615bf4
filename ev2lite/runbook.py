"""The main job: execute every notebook in ``notebooks/``, in order, through papermill.

``python -m ev2lite.runbook --profile quick --out out/quick`` writes each executed notebook to
``OUT/NN_name.ipynb`` and its figures to ``OUT/figures/``, then ``OUT/index.html``: every executed
notebook converted to HTML (``OUT/NN_name.html``) with its title and key figure
(:func:`ev2lite.report.write_index`). A notebook reads its profile and output folder from the
papermill parameters ``PROFILE`` and ``OUTPUT_DIR``. Stops at the first notebook that fails,
naming it and the executed copy that holds the traceback (the index is written then too, the
failed notebook marked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES
from .report import write_index

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def executed(out: Path) -> list[Path]:
    """The executed notebooks in ``out`` (``NN_name.ipynb``), in order."""
    return sorted(Path(out).glob("[0-9][0-9]_*.ipynb"))


def run_all(profile: str, out: Path, notebooks: list[Path] | None = None) -> list[Path]:
    """Execute ``notebooks`` (default: all of ``notebooks/``, sorted) with ``profile``.

    Returns the executed notebooks' paths and writes ``out/index.html`` linking every executed
    notebook in ``out`` (these and any from earlier runs into ``out``; also when one fails).
    Raises ``ValueError`` for an unknown profile and ``RuntimeError`` naming the first notebook
    that failed.
    """
    import papermill as pm

    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {PROFILE_NAMES}")
    out = Path(out).resolve()
    (out / "figures").mkdir(parents=True, exist_ok=True)
    done = []
    for nb in notebooks or sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        target = out / nb.name
        start = time.perf_counter()
        print(f"[{profile}] {nb.name} ...", flush=True)
        try:
            pm.execute_notebook(nb, target, parameters={"PROFILE": profile, "OUTPUT_DIR": str(out)},
                                cwd=str(nb.parent), progress_bar=False, kernel_name="python3")
        except Exception as e:
            write_index(out, executed(out))
            raise RuntimeError(f"notebook {nb.name} failed ({type(e).__name__}); the executed copy "
                               f"with the traceback is {target}") from e
        print(f"[{profile}] {nb.name} done in {time.perf_counter() - start:.0f} s", flush=True)
        done.append(target)
    index = write_index(out, executed(out))
    print(f"[{profile}] index of the executed notebooks: {index}", flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                        help="smoke (CI, < 1 min a notebook), quick (minutes), full (results/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default out/PROFILE)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="only these notebooks")
    args = parser.parse_args(argv)
    try:
        run_all(args.profile, args.out or Path("out") / args.profile, args.notebooks or None)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
