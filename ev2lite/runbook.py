"""The main job: execute every notebook in ``notebooks/``, in order, through papermill.

``python -m ev2lite.runbook --profile quick --out out/quick`` writes each executed notebook to
``OUT/NN_name.ipynb`` and its figures to ``OUT/figures/``, then ``OUT/index.html``: every executed
notebook converted to HTML (``OUT/NN_name.html``) with its title and key figure
(:func:`ev2lite.index.write_index`). A notebook reads its profile and output folder from the
papermill parameters ``PROFILE`` and ``OUTPUT_DIR``.

It shows where it is: the notebook, a bar over its cells, and what the cells print (e.g. each
finished training run). A failed or killed main job resumes: a notebook already executed without
error into ``OUT`` with the same profile and the same code (its own source and ``ev2lite/``'s,
hashed in ``OUT/.runbook/NN_name.json``) is skipped; ``--force`` runs it again. Stops at the
first notebook that fails, naming it and the executed copy that holds the traceback (the index
is written then too, the failed notebook marked).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import re
import sys
import time
from pathlib import Path

from .profiles import PROFILE_NAMES
from .index import write_index

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# papermill's own lines around every cell: the bar already says which cell runs
_PAPERMILL_MARKERS = re.compile(r"\s*(Executing Cell \d+|Ending Cell \d+|Executing notebook with kernel)")


def executed(out: Path) -> list[Path]:
    """The executed notebooks in ``out`` (``NN_name.ipynb``), in order."""
    return sorted(Path(out).glob("[0-9][0-9]_*.ipynb"))


def code_stamp(notebook: Path, profile: str) -> str:
    """sha256 of what an executed notebook depends on: its source, the profile and every
    ``ev2lite/*.py`` file (a change in any of them makes the executed copy stale)."""
    return hashlib.sha256(profile.encode() + Path(notebook).read_bytes()
                          + _package_digest().encode()).hexdigest()


@functools.cache
def _package_digest() -> str:
    """sha256 of ``ev2lite/*.py`` (names and contents), read once per process."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def up_to_date(notebook: Path, profile: str, out: Path) -> bool:
    """Whether ``out`` holds ``notebook`` executed without error, with ``profile`` and the code
    of now (:func:`code_stamp` recorded in ``out/.runbook/<name>.json`` after its run)."""
    stamp = out / ".runbook" / f"{notebook.stem}.json"
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return False
    return (out / notebook.name).is_file() and recorded.get("stamp") == code_stamp(notebook, profile)


def _record(notebook: Path, profile: str, out: Path, seconds: float, stamp: str) -> None:
    """Record a finished run with ``stamp``, the :func:`code_stamp` taken *before* it started
    (a notebook edited while it runs must not be recorded as up to date)."""
    folder = out / ".runbook"
    folder.mkdir(exist_ok=True)
    (folder / f"{notebook.stem}.json").write_text(json.dumps(
        {"stamp": stamp, "profile": profile, "seconds": round(seconds, 1),
         "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}) + "\n")


def run_all(profile: str, out: Path, notebooks: list[Path] | None = None, *,
            force: bool = False, progress: bool = True) -> list[Path]:
    """Execute ``notebooks`` (default: all of ``notebooks/``, sorted) with ``profile``.

    Notebooks :func:`up_to_date` in ``out`` are skipped unless ``force``. With ``progress`` a
    bar follows the cells and what they print is shown as it happens. Returns the executed
    notebooks' paths (skipped ones included) and writes ``out/index.html`` linking every
    executed notebook in ``out`` (also when one fails). Raises ``ValueError`` for an unknown
    profile and ``RuntimeError`` naming the first notebook that failed.
    """
    import papermill as pm

    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}: choose one of {PROFILE_NAMES}")
    logger, shown = logging.getLogger("papermill"), logging.StreamHandler(sys.stdout)
    if progress:  # papermill logs what the cells print through logging: show it, indented
        shown.setFormatter(logging.Formatter("    %(message)s"))
        shown.addFilter(lambda record: not _PAPERMILL_MARKERS.match(record.getMessage()))
        logger.addHandler(shown)
        logger.setLevel(logging.INFO)
    try:
        return _run(pm, profile, Path(out).resolve(), notebooks, force, progress)
    finally:
        logger.removeHandler(shown)


def _run(pm, profile: str, out: Path, notebooks: list[Path] | None, force: bool,
         progress: bool) -> list[Path]:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    chosen = [Path(nb).resolve() for nb in notebooks] if notebooks else sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    done = []
    for number, nb in enumerate(chosen, 1):
        target = out / nb.name
        label = f"[{profile} {number}/{len(chosen)}] {nb.name}"
        if not force and up_to_date(nb, profile, out):
            print(f"{label}: up to date in {out}, skipped (--force runs it again)", flush=True)
            done.append(target)
            continue
        start, stamp = time.perf_counter(), code_stamp(nb, profile)
        print(f"{label} ...", flush=True)
        try:
            pm.execute_notebook(nb, target, parameters={"PROFILE": profile, "OUTPUT_DIR": str(out)},
                                cwd=str(nb.parent), progress_bar=progress, log_output=progress,
                                kernel_name="python3")
        except Exception as e:
            write_index(out, executed(out))
            raise RuntimeError(f"notebook {nb.name} failed ({type(e).__name__}); the executed copy "
                               f"with the traceback is {target}") from e
        seconds = time.perf_counter() - start
        _record(nb, profile, out, seconds, stamp)
        print(f"{label} done in {seconds:.0f} s", flush=True)
        done.append(target)
    index = write_index(out, executed(out))
    print(f"[{profile}] index of the executed notebooks: {index}", flush=True)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILE_NAMES,
                        help="smoke (CI, < 1 min a notebook), quick (minutes), full (results/)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default out/PROFILE)")
    parser.add_argument("--force", action="store_true",
                        help="run notebooks again even if OUT holds them executed with this code")
    parser.add_argument("--quiet", action="store_true", help="no cell progress or cell output")
    parser.add_argument("notebooks", nargs="*", type=Path, help="only these notebooks")
    args = parser.parse_args(argv)
    try:
        run_all(args.profile, args.out or Path("out") / args.profile, args.notebooks or None,
                force=args.force, progress=not args.quiet)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
