"""The paper's claims (and Graphcore's) scored against ``results/``: each gets our value, its
uncertainty and a verdict from a fixed vocabulary.

:func:`claims_table` reads ``data/paper/claims.csv`` (the paper's and the article's claims) or
``data/paper/own_findings.csv`` (our own findings, scored the same way but not the paper's),
computes every row's :class:`~ev2lite.stats.Estimate` from the result files and gives it a
:func:`verdict`. :func:`claims_markdown` and :func:`claims_section` render it for the README;
``python -m ev2lite.claims`` regenerates ``results/10_claims.*``, ``results/10_own_findings.*``
and the README's claims section from the committed results.

**Verdicts** (:data:`VERDICTS`). Each row states its *band* (the magnitude that counts as the
claim reproduced) and its *null* (the value of no effect: 1 for ratios, 0 for differences, or
the non-inferiority margin of a "matches" claim, e.g. -1 point). The claim's direction is the
side of the null the band lies on. With the 95% interval (or, for timings, the tie band) of our
value:

* **not comparable**: the row names (``not_comparable``) which other quantity our number
  measures, or a result file records a missed regime check (its JSON's ``metrics.regime``,
  :class:`ev2lite.study.Regime`: the study did not reach the regime its claim needs); no verdict
  on the claim.
* **inconclusive**: no interval could be made (``note`` says why: one seed, a spread not
  saved), or the interval includes the null: ``|effect| < ~2`` standard errors, or a timing
  ratio inside its tie band.
* **fails**: the whole interval lies on the wrong side of the null; or the magnitude is far
  outside the band with a tight interval: the whole interval's effect below a quarter of the
  band's lower end, or above 4x its upper end (:data:`FAR`).
* **holds**: right direction, clear of noise, and our value inside the band.
* **direction only**: right direction, clear of noise, value outside the band (not far).

Effects are compared on the scale where "0.5x-2x of the paper's effect" is symmetric: the log
of a ratio (unit ``x``), the difference from the null otherwise. Bands in ``claims.csv`` follow
one rule unless the row says otherwise: a paper ratio ``r`` (or range ``r1-r2``) gives the band
``sqrt(r1) .. r2^2`` (half to twice the paper's log effect), a difference ``d`` (or range
``d1-d2``) ``d1 / 2 .. 2 d2``; a qualitative claim's band is the whole side of the null; a
"matches or beats" claim is a non-inferiority test with null and band starting at the margin.

**Columns of the claims files** (text; lines starting with ``#`` are comments):

``id``, ``claim``, ``paper_value`` (as printed), ``source`` (section / table / article);
``result``
    result file(s) in ``results/`` (else ``results/quick/``), separated by spaces; each read
    with its JSON (``.attrs``). Empty: computed from the model definitions (a measure function
    taking no files).
``measure``
    the name of a function of :data:`ev2lite.claim_measures.MEASURES` (called with the result
    frames in order, the first filtered by ``where``; one with a ``seeds`` parameter also gets the ``per_seed``
    frame or ``None``; it returns an :class:`~ev2lite.stats.Estimate`), or a
    ``pandas.DataFrame.eval`` expression over the single result file's columns (e.g.
    ``100 * mean_acc``, ```x dense 3x3``` with back-quotes), averaged over the selected rows.
``where``, ``versus``
    ``DataFrame.query`` strings selecting the rows of our value and of its reference; also
    applied to the ``per_seed`` file, so they must name columns both files have.
``combine``
    with ``versus``: ``ratio`` (value / reference) or ``difference`` (value - reference).
``unit``
    ``x`` (ratio), ``points`` (accuracy points), ``%``, or empty (a plain number).
``uncertainty``
    one of :data:`ev2lite.stats.KINDS`: ``seeds``, ``models``, ``binomial``, ``iqr``,
    ``exact`` or ``none``; for a measure function, the kind it returns (``none`` allowed when
    the data for an interval are missing, with a note; ``binomial`` for ``seeds`` when there
    is one run per arm and the JSON records the number of test images).
``spread``
    which columns carry the uncertainty of an expression: ``seeds``: ``MEAN STD`` (the summary
    file's mean and standard-deviation columns; the count column is ``count``, else the number
    of ``seeds`` in the JSON metrics; the expression must be affine in ``MEAN``); ``binomial``:
    ``COLUMN N`` (the accuracy column, a fraction, and the number of test images or a key of
    the JSON metrics holding it); ``iqr``: ``COLUMN [by KEY]`` (the relative interquartile
    spread in percent; with ``versus`` the two rows' spreads add up; ``by KEY`` pairs the rows
    of ``where`` and ``versus`` on ``KEY`` and takes the geometric mean of the pair ratios).
``per_seed``
    ``seeds`` only: ``FILE COLUMN [by COL,COL]``: a file of per-seed results (one row per run,
    or per epoch with an ``epoch`` column: each run's last epoch counts) whose ``COLUMN``
    stands for ``MEAN``. When it exists, the interval is a t-interval over units (``seed`` and
    the ``by`` columns), paired where our value and the reference share every unit; when it
    does not, it falls back to the summary's mean, std and count (Welch). For a measure
    function: just the file name.
``band``
    ``LOW..HIGH`` in the unit (``inf`` / ``-inf`` allowed): see above.
``null``
    the value of no effect; empty: 1 for unit ``x``, else 0.
``not_comparable``
    empty, or what other quantity our number measures (the verdict is then *not comparable*).
``measured_as``
    what exactly we measured, in words.
"""

from __future__ import annotations

import argparse
import inspect
import io
import math
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .claim_measures import MEASURES
from .estimates import NoRows, affine_in, eval_rows, iqr_estimate, seed_estimate, select_rows
from .paper import PAPER_DIR
from .results import RESULTS_DIR, load_results, save_results
from .stats import KINDS, Estimate, binomial_interval
from .study import Regime

CLAIMS_CSV = PAPER_DIR / "claims.csv"
FINDINGS_CSV = PAPER_DIR / "own_findings.csv"
README = Path(__file__).resolve().parents[1] / "README.md"
CLAIM_COLUMNS = ("id", "claim", "paper_value", "source", "result", "where", "measure", "versus",
                 "combine", "unit", "uncertainty", "spread", "per_seed", "band", "null",
                 "not_comparable", "measured_as")
VERDICTS = ("holds", "direction only", "inconclusive", "fails", "not comparable")
NOT_MEASURED = "not measured yet"
FAR = 4.0  # "far outside the band": beyond a factor FAR of the band's ends, on the effect scale
LEGEND = ("*holds*: right direction, clear of noise, inside the row's band; *direction only*: "
          "clear of noise, magnitude outside the band; *inconclusive*: the 95% interval includes "
          "no effect (or a timing ratio lies inside its tie band), or no interval could be made; "
          "*fails*: wrong direction clear of noise, or far outside the band (beyond 4x its ends) "
          "with a tight interval; *not comparable*: our number measures another quantity (named).")
SECTION_START = "<!-- claims: generated by `python -m ev2lite.claims` from data/paper/*.csv and results/; do not edit by hand -->"
SECTION_END = "<!-- end of the generated claims -->"
_BAND = re.compile(r"\s*(-?(?:inf|\d+(?:\.\d+)?))\s*\.\.\s*(-?(?:inf|\d+(?:\.\d+)?))\s*")


# ---------------------------------------------------------------------------------------------
def _parse_band(text: str) -> tuple[float, float] | None:
    m = _BAND.fullmatch(text)
    return (float(m.group(1)), float(m.group(2))) if m else None


def _null(c) -> float:
    return float(c.null) if c.null else (1.0 if c.unit == "x" else 0.0)


def _arity(measure: str) -> int:
    """How many result frames the :data:`MEASURES` function ``measure`` takes (its positional
    parameters without defaults)."""
    return sum(p.default is inspect.Parameter.empty for p in inspect.signature(MEASURES[measure]).parameters.values())


def _takes_seeds(measure: str) -> bool:
    return "seeds" in inspect.signature(MEASURES[measure]).parameters


def load_claims(path: str | Path = CLAIMS_CSV) -> pd.DataFrame:
    """A claims file as a DataFrame of strings (empty cells as ``""``), checked.

    Raises ``ValueError`` naming the claim and what to fix: missing columns, a duplicate id, an
    unknown kind of uncertainty, a band that is not ``LOW..HIGH`` or straddles the null,
    ``versus`` without ``combine`` (or the reverse), a ``spread`` / ``per_seed`` that does not
    fit the kind, a :data:`MEASURES` function given the wrong number of result files, a
    ``versus`` or ``spread``, several result files without a :data:`MEASURES` function.
    """
    lines = [line for line in Path(path).read_text().splitlines(True) if not line.startswith("#")]
    claims = pd.read_csv(io.StringIO("".join(lines)), dtype=str, keep_default_na=False)
    missing = set(CLAIM_COLUMNS) - set(claims.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}; it needs {list(CLAIM_COLUMNS)}")
    claims = claims.apply(lambda col: col.str.strip())
    duplicated = claims.id[claims.id.duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: claim ids must be unique; repeated: {duplicated}")
    for c in claims.itertuples():
        _check(c)
    return claims


def _check(c) -> None:
    """Raise ``ValueError`` naming claim ``c`` if its row is malformed (see :func:`load_claims`)."""
    def bad(why):
        raise ValueError(f"claim {c.id!r}: {why}")

    if c.uncertainty not in KINDS:
        bad(f"uncertainty {c.uncertainty!r} must be one of {KINDS}")
    band = _parse_band(c.band)
    if band is None or band[0] > band[1]:
        bad(f"band {c.band!r} must be LOW..HIGH (numbers or inf), e.g. '1.48..7.84'")
    try:
        null = _null(c)
    except ValueError:
        bad(f"null {c.null!r} must be a number (or empty)")
    if band[0] < null < band[1]:
        bad(f"band {c.band!r} straddles the null {null:g}: it must lie on one side (the claim's direction)")
    if bool(c.versus) != bool(c.combine) or c.combine not in ("", "ratio", "difference"):
        bad(f"give 'versus' (a row query) together with 'combine' (ratio or difference), or neither; "
            f"got combine={c.combine!r}")
    files = len(c.result.split())
    if c.measure in MEASURES:
        if files != _arity(c.measure):
            bad(f"{c.measure}() reads {_arity(c.measure)} result file(s), but 'result' names {files}")
        if c.versus or c.spread:
            bad(f"{c.measure}() computes its own reference and spread; leave 'versus' and 'spread' empty")
        if c.per_seed and (len(c.per_seed.split()) != 1 or not _takes_seeds(c.measure)):
            bad(f"{c.measure}() takes {'one per-seed file name' if _takes_seeds(c.measure) else 'no per-seed file'}; "
                f"got per_seed {c.per_seed!r}")
        return
    if files != 1 or not c.measure:
        bad(f"an expression reads exactly one result file (several need a measure function of "
            f"ev2lite.claims.MEASURES: {sorted(MEASURES)}); got result {c.result!r}, measure {c.measure!r}")
    words = c.spread.split()
    if c.uncertainty == "seeds":
        if len(words) != 2 or c.combine == "ratio":
            bad(f"seeds needs spread 'MEAN STD' and no ratio (a difference or a single value); got "
                f"spread {c.spread!r}, combine {c.combine!r}")
        if c.per_seed and not re.fullmatch(r"\S+\.csv \S+( by \S+)?", c.per_seed):
            bad(f"per_seed {c.per_seed!r} must be 'FILE.csv COLUMN' or 'FILE.csv COLUMN by COL,COL'")
    elif c.per_seed:
        bad("per_seed belongs to uncertainty 'seeds' only")
    if c.uncertainty == "binomial" and len(words) != 2:
        bad(f"binomial needs spread 'COLUMN N' (accuracy column, test images or a metrics key); got {c.spread!r}")
    if c.uncertainty == "iqr" and (not (len(words) == 1 or (len(words) == 3 and words[1] == "by"))
                                   or c.combine == "difference"):
        bad(f"iqr needs spread 'COLUMN' or 'COLUMN by KEY' and a ratio; got {c.spread!r}, combine {c.combine!r}")
    if c.uncertainty in ("exact", "none") and c.spread:
        bad(f"uncertainty {c.uncertainty!r} takes no spread; got {c.spread!r}")
    if c.uncertainty == "models":
        bad("uncertainty 'models' comes from a measure function only")


def _find(results_dir: Path, name: str) -> Path | None:
    """``results_dir/name`` (a full run), else ``results_dir/quick/name``, else ``None``."""
    return next((p for p in (results_dir / name, results_dir / "quick" / name) if p.is_file()), None)


def superseded(results_dir: str | Path, names: str) -> list[str]:
    """The superseded designs, under ``results_dir/history/``, of the result files in ``names``
    (space-separated) that ``results_dir`` lacks: a redesigned study awaiting its full run
    (``09_norms.csv`` -> ``history/09_design1_norms.csv``). Relative paths, sorted."""
    results_dir = Path(results_dir)
    found = []
    for name in names.split():
        study, _, rest = name.partition("_")
        if _find(results_dir, name) is None:
            found += [str(p.relative_to(results_dir)) for p in (results_dir / "history").glob(f"{study}_design*_{rest}")]
    return sorted(found)


def _read(path: Path) -> pd.DataFrame:
    """A result CSV with its JSON (command, metrics, environment, raw data) in ``.attrs``."""
    return load_results(path.stem, path.parent)


def estimate(claim, results_dir: str | Path = RESULTS_DIR) -> tuple[Estimate | None, str]:
    """Our :class:`~ev2lite.stats.Estimate` for one claim (a row of :func:`load_claims`) and the
    result file(s) it came from (relative to ``results_dir``); ``(None, "")`` when not measured
    yet (a result file does not exist yet, or the measure gives NaN).

    Raises :class:`NoRows` when a selection matches nothing, ``ValueError`` when the files exist
    but the claim does not fit them, or a measure function returns another kind of uncertainty
    than the row declares.
    """
    results_dir = Path(results_dir)
    paths = [_find(results_dir, n) for n in claim.result.split()]
    if None in paths:
        return None, ""
    used = " ".join(str(p.relative_to(results_dir)) for p in paths)
    frames = [_read(p) for p in paths]
    seeds_file = claim.per_seed.split()[0] if claim.per_seed else ""
    seeds_path = _find(results_dir, seeds_file) if seeds_file else None
    if claim.measure in MEASURES:
        if frames and claim.where:
            frames[0] = select_rows(frames[0], claim.where, claim.id, used).copy()
            frames[0].attrs = _read(paths[0]).attrs
        kwargs = {"seeds": _read(seeds_path) if seeds_path else None} if _takes_seeds(claim.measure) else {}
        est = MEASURES[claim.measure](*frames, **kwargs)
        allowed = {claim.uncertainty, "none"} | ({"binomial"} if claim.uncertainty == "seeds" else set())
        if not isinstance(est, Estimate) or est.kind not in allowed:
            raise ValueError(f"claim {claim.id!r}: {claim.measure}() returned "
                             f"{getattr(est, 'kind', type(est).__name__)!r}, not the declared {claim.uncertainty!r}")
    else:
        est = _expression_estimate(claim, frames[0], used, _read(seeds_path) if seeds_path else None)
    if math.isnan(est.value):
        return None, ""
    return est, used + (f" {seeds_path.relative_to(results_dir)}" if seeds_path else "")


def _expression_estimate(c, frame: pd.DataFrame, file: str, runs: pd.DataFrame | None) -> Estimate:
    """The estimate of an expression row (see the module docstring for each kind)."""
    words = c.spread.split()
    if c.uncertainty == "seeds":
        run_col, by = (c.per_seed.split() + [""])[1], []
        if " by " in c.per_seed:
            by = c.per_seed.split(" by ")[1].split(",")
        return seed_estimate(frame, c.where, c.versus, c.measure, words[0], words[1], runs=runs,
                             run_col=run_col, by=by, claim=c.id, file=file)
    if c.uncertainty == "iqr":
        return iqr_estimate(frame, c.where, c.versus, c.measure, words[0], words[2] if len(words) == 3 else "",
                            claim=c.id, file=file)
    a = select_rows(frame, c.where, c.id, file)
    value = float(eval_rows(a, c.measure, c.id, file).mean())
    reference = float(eval_rows(select_rows(frame, c.versus, c.id, file), c.measure, c.id, file).mean()) if c.versus else None
    if c.uncertainty == "binomial":
        column, n = words
        n_test = int(n) if n.isdigit() else frame.attrs.get("metrics", {}).get(n)
        if not n_test:
            return Estimate(value, note=f"the number of test images ({n!r}) is not recorded: no interval")
        sides = [(a, 1.0)] + ([(select_rows(frame, c.versus, c.id, file), -1.0)] if c.versus else [])
        p, w, offset = [], [], 0.0
        for rows, sign in sides:
            slope, intercept = affine_in(rows, c.measure, column, c.id, file)
            p += list(rows[column])
            w += list(sign * slope / len(rows))
            offset += float((sign * intercept).sum() / len(rows))
        return binomial_interval(p, int(n_test), w).scaled(1, offset)
    if reference is not None:
        value = value / reference if c.combine == "ratio" else value - reference
    if c.uncertainty == "exact":
        return Estimate(value, value, value, "exact", note="exact")
    return Estimate(value, note="no uncertainty recorded")


# ---------------------------------------------------------------------------------------------
def _effect(x: float, null: float, log: bool) -> float:
    """The size of an effect on the scale where bands are symmetric: ``log(x / null)`` for
    ratios (``-inf`` for ``x <= 0``), ``x - null`` otherwise."""
    if log:
        return math.log(x / null) if x > 0 else -math.inf
    return x - null


def verdict(est: Estimate, band: tuple[float, float], null: float, unit: str = "x",
            not_comparable: str = "") -> tuple[str, str]:
    """The verdict of :data:`VERDICTS` for our estimate of a claim, and why (one line).

    ``band`` (low, high) is the magnitude that reproduces the claim, in ``unit`` (ratios,
    ``x``, are compared as log ratios); ``null`` the value of no effect; the band's side of the
    null is the claim's direction. The rules are the module docstring's. Raises ``ValueError``
    for a band that straddles the null.
    """
    if not_comparable:
        return "not comparable", not_comparable
    lo_band, hi_band = band
    if lo_band < null < hi_band:
        raise ValueError(f"band {band} straddles the null {null}")
    if not est.has_interval:
        return "inconclusive", "no interval could be made (see ours)"
    log = unit == "x"
    d = 1.0 if lo_band >= null else -1.0
    lo, hi = sorted(d * _effect(x, null, log) for x in (est.low, est.high))
    value = d * _effect(est.value, null, log)
    b1, b2 = sorted(d * _effect(x, null, log) if math.isfinite(x) else math.inf for x in band)
    side = est.side(null)
    if side == 0:
        margin = " (the margin)" if null != (1.0 if log else 0.0) else ""
        return "inconclusive", ("the ratio lies inside its tie band" if est.kind == "iqr" else
                                f"the {_percent(est.confidence)} interval includes "
                                f"{_format_end(null, unit, True, True)}{margin}")
    band_text = format_band(band, unit)
    if side == -d:
        return "fails", f"the opposite direction, clear of noise (band {band_text})"
    if b1 <= value <= b2:
        return "holds", f"inside the band {band_text}"
    if hi < b1 / FAR or lo > b2 * FAR:
        return "fails", f"far outside the band {band_text}, with a tight interval"
    return "direction only", f"clear of noise, outside the band {band_text}"


def _format_value(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "points":
        return f"{value:+.2f} points"
    if unit == "%":
        return f"{value:.1f}%"
    return f"{value:.3g}"


def _format_end(value: float, unit: str, with_unit: bool = False, exact: bool = False) -> str:
    """An interval's end (``2.02x``, ``+0.4``, ``-3.3``) or, with ``exact``, a band's or null's
    stated value (``16x``, ``-1``, ``0``); ``with_unit`` adds `` points``."""
    if unit == "x":
        return f"{value:g}x" if exact else f"{value:.2f}x"
    if unit == "points":
        text = "0" if value == 0 else (f"{value:+g}" if exact else f"{value:+.1f}")
        return text + (" points" if with_unit else "")
    text = f"{value:g}" if exact else f"{value:.2g}"
    return text + ("%" if unit == "%" else "")


def _percent(confidence: float) -> str:
    """``0.95`` -> ``95%``, ``0.975`` -> ``97.5%``."""
    return f"{100 * confidence:g}%"


def format_band(band: tuple[float, float], unit: str) -> str:
    """``(1.48, 7.84), "x"`` -> ``1.48x to 7.84x``; ``(0.4, 1.6), "points"`` -> ``+0.4 to +1.6
    points``; an open end as ``at least`` / ``at most``."""
    lo, hi = band
    if math.isinf(hi):
        return f"at least {_format_end(lo, unit, True, True)}"
    if math.isinf(lo):
        return f"at most {_format_end(hi, unit, True, True)}"
    return f"{_format_end(lo, unit, exact=True)} to {_format_end(hi, unit, True, True)}"


def format_estimate(est: Estimate | None, unit: str) -> str:
    """Our value with its interval, for a table cell: ``+3.10 points (95% CI -2.2 to +8.4; 3
    seeds, paired by seed)``, ``3.67x (tie band 3.34x-4.03x; ...)``, ``7.64x (exact)``; ``-``
    when not measured yet."""
    if est is None:
        return "-"
    text = _format_value(est.value, unit)
    if est.kind == "exact":
        text += f" ({est.note or 'exact'})"
    elif est.kind == "iqr":
        text += f" (tie band {_format_end(est.low, unit)}-{_format_end(est.high, unit)}; {est.note})"
    elif est.has_interval:
        text += (f" ({_percent(est.confidence)} CI {_format_end(est.low, unit)} to "
                 f"{_format_end(est.high, unit)}; {est.note})")
    else:
        text += f" ({est.note})"
    return text + (f"; {est.detail}" if est.detail else "")


def missed_regimes(used: str, results_dir: str | Path = RESULTS_DIR) -> list[str]:
    """The regime checks that the result files ``used`` (names relative to ``results_dir``, as
    :func:`estimate` returns them) record as missed: their JSON's ``metrics.regime`` entries
    with ``reached`` false (:class:`ev2lite.study.Regime`), each as "what = value (needs ...)".
    A verdict on numbers measured outside the regime their claim needs is *not comparable*."""
    missed = []
    for name in used.split():
        path = Path(results_dir) / name
        regimes = _read(path).attrs.get("metrics", {}).get("regime", []) if path.is_file() else []
        for r in regimes:
            text = Regime(r["what"], r["value"], r["threshold"], r["unit"], r["at_least"]).text()
            if not r["reached"] and text not in missed:
                missed.append(text)
    return missed


def claims_table(results_dir: str | Path = RESULTS_DIR, claims: str | Path | pd.DataFrame = CLAIMS_CSV, *,
                 strict: bool = True) -> pd.DataFrame:
    """Every claim with the paper's value, ours with its uncertainty, and its verdict.

    Columns: ``id``, ``claim``, ``paper``, ``ours`` (:func:`format_estimate`), ``value``,
    ``low``, ``high`` (floats, NaN if none), ``uncertainty`` (the kind), ``band`` (formatted),
    ``verdict`` (one of :data:`VERDICTS`, or ``not measured yet``), ``why``, ``source``,
    ``measured_as``, ``result`` (the file(s) read, relative to ``results_dir``; ``quick/...``
    where only a quick-profile result exists). ``claims`` is a claims file or an already loaded
    table. With ``strict=False`` a selection that matches no row (a study run at a smaller
    profile) is *not measured yet* instead of an error. Raises ``ValueError`` from
    :func:`load_claims` or :func:`estimate` for a malformed claim.
    """
    if not isinstance(claims, pd.DataFrame):
        claims = load_claims(claims)
    rows = []
    for c in claims.itertuples():
        try:
            est, used = estimate(c, results_dir)
        except NoRows:
            if strict:
                raise
            est, used = None, ""
        band = _parse_band(c.band)
        missed = missed_regimes(used, results_dir) if est is not None else []
        earlier = superseded(results_dir, c.result) if est is None else []
        pending = "no result yet" + (f": the study was redesigned and awaits its full run (earlier design: "
                                     f"{', '.join(earlier)})" if earlier else "")
        verdict_, why = ((NOT_MEASURED, pending) if est is None else
                         verdict(est, band, _null(c), c.unit,
                                 c.not_comparable or (f"the study did not reach the regime its claim needs "
                                                      f"({'; '.join(missed)})" if missed else "")))
        rows.append({"id": c.id, "claim": c.claim, "paper": c.paper_value, "ours": format_estimate(est, c.unit),
                     "value": np.nan if est is None else est.value, "low": np.nan if est is None else est.low,
                     "high": np.nan if est is None else est.high,
                     "uncertainty": "" if est is None else est.kind, "band": format_band(band, c.unit),
                     "verdict": verdict_, "why": why, "source": c.source, "measured_as": c.measured_as,
                     "result": used})
    return pd.DataFrame(rows, columns=["id", "claim", "paper", "ours", "value", "low", "high", "uncertainty",
                                       "band", "verdict", "why", "source", "measured_as", "result"])


def verdict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many rows of :func:`claims_table` got each verdict (all of :data:`VERDICTS`, then
    ``not measured yet`` if any)."""
    counts = table.verdict.value_counts()
    order = list(VERDICTS) + ([NOT_MEASURED] if NOT_MEASURED in counts else [])
    return {v: int(counts.get(v, 0)) for v in order}


def claims_markdown(table: pd.DataFrame, columns: Iterable[str] = ("claim", "paper", "ours", "verdict", "measured_as", "source"),
                    headers: dict[str, str] | None = None) -> str:
    """A GitHub-flavoured markdown table of ``columns`` of :func:`claims_table` (for the README),
    the verdict cell with its reason; ``headers`` renames columns. Raises ``KeyError`` for a
    column the table lacks.
    """
    columns = list(columns)
    headers = {"paper": "paper", "ours": "ours (95% CI or tie band)", "measured_as": "what we measured"} | (headers or {})
    cells = table[columns].astype(str).copy()
    if "verdict" in columns and "why" in table.columns:
        cells["verdict"] = "**" + table.verdict + "**: " + table.why
    cells = cells.apply(lambda col: col.str.replace("|", r"\|", regex=False))
    lines = ["| " + " | ".join(headers.get(c, c) for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def claims_section(claims: pd.DataFrame, findings: pd.DataFrame) -> str:
    """The README's generated claims section: the verdict counts, the legend, the claims table
    and the list of our own findings (not claims of the paper), between the markers
    :data:`SECTION_START` and :data:`SECTION_END`."""
    counts = ", ".join(f"{n} *{v}*" for v, n in verdict_counts(claims).items())
    items = [f"- {r.claim}: {r.ours}. **{r.verdict}** ({r.why}). Measured: {r.measured_as}."
             for r in findings.itertuples()]
    return "\n".join([SECTION_START, "", f"**Verdicts of the {len(claims)} claims: {counts}.**", "",
                      f"Legend: {LEGEND}", "", claims_markdown(claims).rstrip("\n"), "",
                      "**Our own findings** (not claims of the paper or the article, scored by the same rules):", "",
                      *items, "", SECTION_END])


def replace_section(text: str, section: str) -> str:
    """``text`` with the part from :data:`SECTION_START` to :data:`SECTION_END` replaced by
    ``section``. Raises ``ValueError`` if the markers are missing."""
    start, end = text.find(SECTION_START), text.find(SECTION_END)
    if start < 0 or end < start:
        raise ValueError(f"the README lacks the markers {SECTION_START!r} ... {SECTION_END!r}")
    return text[:start] + section + text[end + len(SECTION_END):]


def write_results(table: pd.DataFrame, name: str, results_dir: str | Path = RESULTS_DIR) -> list[Path]:
    """Write ``<name>.csv`` and ``<name>.json`` (verdict counts, the regenerating command, the
    environment: the provenance layout of :func:`ev2lite.results.save_results`) into
    ``results_dir``; returns the paths."""
    return save_results(name, table, {"verdicts": verdict_counts(table)}, profile="full",
                        out_dir=results_dir, command="python -m ev2lite.claims")


def main(argv: list[str] | None = None) -> int:
    """``python -m ev2lite.claims``: score the claims and our own findings against the committed
    ``results/`` (re-scored, nothing re-run), write ``results/10_claims.*`` and
    ``results/10_own_findings.*`` and regenerate the README's claims section."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="results folder (default results/)")
    parser.add_argument("--readme", type=Path, default=README, help="README to update (default README.md)")
    parser.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    args = parser.parse_args(argv)
    claims, findings = claims_table(args.results), claims_table(args.results, FINDINGS_CSV)
    section = claims_section(claims, findings)
    if args.no_write:
        print(section)
        return 0
    write_results(claims, "10_claims", args.results)
    write_results(findings, "10_own_findings", args.results)
    args.readme.write_text(replace_section(args.readme.read_text(), section))
    print(f"verdicts: {verdict_counts(claims)}; wrote {args.results}/10_claims.* and 10_own_findings.*, "
          f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
