"""The reproduction report: the paper's claims checked against ``results/``, and the index page
of the main job.

* :func:`claims_table` reads ``data/paper/claims.csv``: each claim of the paper (and of
  Graphcore's article), the number it gives, its source, where our measurement lives and the rule
  by which it "holds at our scale". It computes our value from the result files and says
  ``yes``, ``no`` or ``not measured yet`` (a result file that does not exist yet is not an error).
  :func:`claims_markdown` renders the table for the README.
* :func:`count_models` counts parameters and multiply-adds of the architectures behind Table 1
  and Figure 1(b) (ours and timm's) on the meta device.
* :func:`write_index` converts the executed notebooks of a main-job run to HTML and writes
  ``index.html`` linking them, each with its title and key figure.

Columns of ``claims.csv`` (text; lines starting with ``#`` are comments):

``id``, ``claim``, ``paper_value`` (as printed, e.g. ``5x-11x``), ``source`` (section / table);
``result``
    result file(s) in ``results/`` (or ``results/quick/``), separated by spaces; empty = not
    measured yet.
``measure``
    either the name of a function in :data:`MEASURES` (called with the result files read as
    DataFrames, in order; a function taking none computes from the model definitions), or a ``pandas.DataFrame.eval`` expression over the single result
    file's columns (e.g. ``speedup_x``, ``100 * mean``, ```x dense 3x3``` with back-quotes for
    names with spaces), averaged over the selected rows.
``where``, ``versus``
    ``DataFrame.query`` strings selecting the rows of the measured value and, optionally, of a
    reference value (empty ``where`` = all rows).
``combine``
    with ``versus``: ``ratio`` (value / reference) or ``difference`` (value - reference).
``unit`` (``x``, ``points``, ``%`` ...), ``holds_if`` (``>= 1``, ``> 0``, ``< 1`` ...: the
rule our value must satisfy), ``measured_as`` (what we measure, in words).
"""

from __future__ import annotations

import html
import inspect
import io
import operator
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .paper import PAPER_DIR
from .results import RESULTS_DIR
from .measure import count_params, meta_model, multiply_adds
from .study import time_to_reach

CLAIMS_CSV = PAPER_DIR / "claims.csv"
CLAIM_COLUMNS = ("id", "claim", "paper_value", "source", "result", "where", "measure", "versus",
                 "combine", "unit", "holds_if", "measured_as")
NOT_MEASURED = "not measured yet"
_RULE = re.compile(r"\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}

# The architectures behind the paper's Table 1 and Figure 1(b), each with the image size at which
# its multiply-adds are counted (its evaluation size; None: parameters only). "timm:NAME" = a timm
# architecture.
TABLE1_MODELS = {"EfficientNet-B6": ("efficientnet_b6", 528), "ResNet-RS-420": ("timm:resnetrs420", 320),
                 "NFNet-F1": ("timm:nfnet_f1", 320)}
FIGURE1B_MODELS = {"EfficientNet": ("efficientnet_b6", None), "ResNet-RS": ("timm:resnetrs350", None),
                   "DeiT/ViT": ("timm:deit_base_patch16_384", None),
                   "EfficientNetV2 (ours)": ("efficientnetv2_s", None)}

# ---------------------------------------------------------------------------------------------
# Measures that a column expression cannot express: name -> function(*result frames) -> float.
MEASURES: dict[str, Callable[..., float]] = {}


def _measure(fn: Callable[..., float]) -> Callable[..., float]:
    MEASURES[fn.__name__] = fn
    return fn


def count_models(models: dict[str, tuple[str, int | None]]) -> pd.DataFrame:
    """Parameters and multiply-adds of architectures named as in :data:`TABLE1_MODELS`
    (``label -> (meta_model name, image size in px or None)``), counted on the meta device.

    Columns: ``model`` (the label), ``architecture``, ``image_size``, ``params``,
    ``multiply_adds`` (per image, one forward pass: the paper's "FLOPs"; NaN without a size).
    """
    rows = []
    for label, (name, size) in models.items():
        model = meta_model(name)
        rows.append({"model": label, "architecture": name, "image_size": size, "params": count_params(model),
                     "multiply_adds": multiply_adds(model, size) if size else None})
    return pd.DataFrame(rows)


@_measure
def parameter_ratio_resnet_rs_to_v2s() -> float:
    """Parameters of ResNet-RS-350 (timm, Figure 1(b)'s 164M at 84.0%) over our EfficientNetV2-S
    (21,458,488), both counted (Figure 1(b), Abstract: "up to 6.8x smaller")."""
    resnet_rs, v2 = (meta_model(FIGURE1B_MODELS[k][0]) for k in ("ResNet-RS", "EfficientNetV2 (ours)"))
    return count_params(resnet_rs) / count_params(v2)


@_measure
def strong_augmentation_gain_growth(table5: pd.DataFrame) -> float:
    """Table 5's pattern in one number, in accuracy points: what the strongest RandAugment
    magnitude gains over the weakest at the largest image size, minus what it gains at the
    smallest (> 0: larger images want stronger augmentation; the paper: 0.7 - (-0.6) = 1.3).

    ``table5``: columns ``magnitude``, ``size``, ``mean`` (accuracy, fraction), as notebook 05
    saves it.
    """
    acc = table5.pivot(index="size", columns="magnitude", values="mean").sort_index()
    gain = acc[acc.columns.max()] - acc[acc.columns.min()]
    return 100 * float(gain.iloc[-1] - gain.iloc[0])


@_measure
def fused_share_early_minus_late(search: pd.DataFrame) -> float:
    """Among the searched models on the Pareto front, the share of Fused-MBConv stages among
    stages 1-3 minus among stages 4-6 (> 0: fused early, MBConv late, as in EfficientNetV2-S;
    Section 3.3). NaN (not measured) when the front holds no searched model.

    ``search``: notebook 03's table, columns ``kind`` (``sample`` for searched models),
    ``pareto`` (bool) and ``block_1`` ... ``block_6`` (``fused`` or ``mbconv``).
    """
    front = search[(search.kind == "sample") & search.pareto.astype(bool)]
    fused = front[[f"block_{i}" for i in range(1, 7)]].eq("fused").to_numpy()
    return float(fused[:, :3].mean() - fused[:, 3:].mean()) if len(front) else float("nan")


@_measure
def v2_speedup_at_v1_accuracy(search: pd.DataFrame) -> float:
    """How much faster the CPU-scale EfficientNetV2 (``efficientnetv2_cifar``, the search's
    backbone) trains than the CPU-scale EfficientNet (``efficientnet_cifar``) to V1's accuracy,
    from notebook 03's search (Abstract and Figure 1(a): "5x-11x faster"). Both train the same
    number of steps; when V2 ends at least as accurate as V1, V2 needs at most V1's steps, so
    V1's step time over V2's (measured side by side) is a lower bound of the speed-up. NaN (not
    measured) when V2 ends less accurate: then this run cannot say how many steps it needs.

    ``search``: columns ``name``, ``accuracy``, ``step_time_s``, as notebook 03 saves it.
    """
    rows = search.set_index("name")
    v1, v2 = rows.loc["efficientnet_cifar"], rows.loc["efficientnetv2_cifar"]
    return float(v1.step_time_s / v2.step_time_s) if v2.accuracy >= v1.accuracy else float("nan")


@_measure
def time_to_accuracy_speedup(fixed: pd.DataFrame, progressive: pd.DataFrame) -> float:
    """Training time the ``fixed`` run needs to first reach the best accuracy that *both* runs
    reach, over the ``progressive`` run's time (> 1: progressive is faster at equal accuracy).

    Both are :func:`ev2lite.train.fit` histories (columns ``test_acc``, ``train_time_s``).
    """
    target = min(fixed.test_acc.max(), progressive.test_acc.max())
    return time_to_reach(fixed, target) / time_to_reach(progressive, target)


# ---------------------------------------------------------------------------------------------
def load_claims(path: str | Path = CLAIMS_CSV) -> pd.DataFrame:
    """The claims file as a DataFrame of strings (empty cells as ``""``), checked.

    Raises ``ValueError`` naming the claim and what to fix: missing columns, a duplicate id, a
    ``holds_if`` rule that is not ``<op> <number>``, ``versus`` without ``combine`` (or the
    reverse), a :data:`MEASURES` function given the wrong number of result files or a row
    selection, several result files without a :data:`MEASURES` function.
    """
    lines = [line for line in Path(path).read_text().splitlines(True) if not line.startswith("#")]
    claims = pd.read_csv(io.StringIO("".join(lines)), dtype=str, keep_default_na=False)
    missing = set(CLAIM_COLUMNS) - set(claims.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {sorted(missing)}; it needs {list(CLAIM_COLUMNS)}")
    claims = claims.apply(lambda c: c.str.strip())
    duplicated = claims.id[claims.id.duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{path}: claim ids must be unique; repeated: {duplicated}")
    for c in claims.itertuples():
        if not _RULE.fullmatch(c.holds_if):
            raise ValueError(f"claim {c.id!r}: holds_if {c.holds_if!r} must be an operator "
                             f"(>=, <=, >, <) and a number, e.g. '>= 1'")
        if bool(c.versus) != bool(c.combine) or c.combine not in ("", "ratio", "difference"):
            raise ValueError(f"claim {c.id!r}: give 'versus' (a row query) together with 'combine' "
                             f"(ratio or difference), or neither; got combine={c.combine!r}")
        files = len(c.result.split())
        if c.measure in MEASURES and files not in (0, _arity(c.measure)):
            raise ValueError(f"claim {c.id!r}: {c.measure}() reads {_arity(c.measure)} result "
                             f"file(s), but 'result' names {files}")
        if c.measure in MEASURES and (c.where or c.versus):
            raise ValueError(f"claim {c.id!r}: {c.measure}() selects its own rows; leave 'where' "
                             f"and 'versus' empty")
        if files > 1 and c.measure not in MEASURES:
            raise ValueError(f"claim {c.id!r}: several result files need a measure function of "
                             f"ev2lite.report.MEASURES ({sorted(MEASURES)}), not {c.measure!r}")
    return claims


def _arity(measure: str) -> int:
    """How many result frames the :data:`MEASURES` function ``measure`` takes."""
    return len(inspect.signature(MEASURES[measure]).parameters)


def _find(results_dir: Path, name: str) -> Path | None:
    """``results_dir/name`` (a full run), else ``results_dir/quick/name``, else ``None``."""
    return next((p for p in (results_dir / name, results_dir / "quick" / name) if p.is_file()), None)


def _select(frame: pd.DataFrame, where: str, measure: str, claim: str, file: str) -> float:
    """Mean of the expression ``measure`` over the rows of ``frame`` that ``where`` selects."""
    try:
        rows = frame.query(where) if where else frame
        if rows.empty:
            raise ValueError("no row matches")
        return float(np.mean(rows.eval(measure)))
    except Exception as e:
        raise ValueError(f"claim {claim!r}: cannot compute {measure!r} where {where or 'all rows'!r} "
                         f"in {file} ({type(e).__name__}: {e}); its columns are {list(frame.columns)}. "
                         f"Fix the claim in {CLAIMS_CSV.name}.") from e


def measured_value(claim, results_dir: str | Path = RESULTS_DIR) -> tuple[float | None, str]:
    """Our value for one claim (a row of :func:`load_claims`) and the result file(s) it came from
    (relative to ``results_dir``); ``(None, "")`` when not measured yet (no result file yet, or
    the result holds NaN, e.g. a measurement the study could not make).

    Raises ``ValueError`` when the files exist but the claim's selection does not fit them.
    """
    results_dir = Path(results_dir)
    names = claim.result.split()
    paths = [_find(results_dir, n) for n in names]
    computed = claim.measure in MEASURES and _arity(claim.measure) == len(paths)
    if not claim.measure or None in paths or not (paths or computed):
        return None, ""
    used = " ".join(str(p.relative_to(results_dir)) for p in paths)
    frames = [pd.read_csv(p) for p in paths]
    if claim.measure in MEASURES:
        value = float(MEASURES[claim.measure](*frames))
    else:
        value = _select(frames[0], claim.where, claim.measure, claim.id, used)
        if claim.versus:
            reference = _select(frames[0], claim.versus, claim.measure, claim.id, used)
            value = value / reference if claim.combine == "ratio" else value - reference
    return (None, "") if np.isnan(value) else (value, used)


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:+.2f} {unit}" if unit == "points" else f"{value:.3g} {unit}".strip()


def claims_table(results_dir: str | Path = RESULTS_DIR,
                 claims: str | Path | pd.DataFrame = CLAIMS_CSV) -> pd.DataFrame:
    """Every claim with the paper's value, ours and whether it holds at our scale.

    Columns: ``id``, ``claim``, ``paper``, ``ours`` (formatted with its unit, ``-`` if not
    measured), ``value`` (float or NaN), ``rule`` (the ``holds_if`` rule), ``holds`` (``yes``,
    ``no`` or ``not measured yet``), ``source``, ``measured_as``, ``result`` (the file(s) read,
    relative to ``results_dir``; ``quick/...`` where only a quick-profile result exists).
    ``claims`` is the claims file or an already loaded table. Raises ``ValueError`` from
    :func:`load_claims` or :func:`measured_value` for a malformed claim.
    """
    if not isinstance(claims, pd.DataFrame):
        claims = load_claims(claims)
    rows = []
    for c in claims.itertuples():
        value, used = measured_value(c, results_dir)
        op, threshold = _RULE.fullmatch(c.holds_if).groups()
        holds = NOT_MEASURED if value is None else ("yes" if _OPS[op](value, float(threshold)) else "no")
        rows.append({"id": c.id, "claim": c.claim, "paper": c.paper_value, "ours": _format(value, c.unit),
                     "value": np.nan if value is None else value, "rule": f"{c.holds_if} {c.unit}".strip(),
                     "holds": holds, "source": c.source, "measured_as": c.measured_as, "result": used})
    return pd.DataFrame(rows)


def claims_markdown(table: pd.DataFrame,
                    columns: Iterable[str] = ("claim", "paper", "ours", "holds", "source")) -> str:
    """A GitHub-flavoured markdown table of ``columns`` of :func:`claims_table` (for the README).

    Raises ``KeyError`` for a column the table lacks.
    """
    columns = list(columns)
    cells = table[columns].astype(str).apply(lambda col: col.str.replace("|", r"\|", regex=False))
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
def notebook_title(nb) -> str:
    """The first markdown heading of a notebook (``# 00 · Quickstart ...`` -> ``00 · Quickstart
    ...``), else ``""``."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def key_figure(nb, out_dir: str | Path, stem: str) -> str | None:
    """The ``src`` of a notebook's key figure for an ``<img>`` in ``out_dir/index.html``.

    The last PNG output of the executed notebook, as a ``data:`` URI; else the newest
    ``out_dir/figures/<NN>_*.png`` (``NN`` = the notebook's number, the prefix of the figures it
    saves with :func:`ev2lite.plots.save_figure`), as a relative path; else ``None``.
    """
    for cell in reversed(nb.cells):
        for output in reversed(cell.get("outputs", [])):
            png = output.get("data", {}).get("image/png")
            if png:
                return "data:image/png;base64," + "".join(png.split())
    number = stem.split("_")[0]
    saved = sorted(Path(out_dir, "figures").glob(f"{number}_*.png"), key=lambda p: p.stat().st_mtime)
    return saved[-1].relative_to(out_dir).as_posix() if saved else None


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(20em, 1fr)); gap: 1.2em; }}
.card {{ border: 1px solid #ccc; border-radius: 6px; padding: 0.8em; }}
.card img {{ width: 100%; height: auto; }}
.card h2 {{ font-size: 1.05em; margin: 0 0 0.4em; }}
.meta {{ color: #555; font-size: 0.9em; }} .failed {{ color: #b00; font-weight: bold; }}
</style></head><body>
<h1>{title}</h1>
<p class="meta">{count} executed notebooks, written {date}. Each links to its HTML copy; the
picture is the last figure the notebook drew.</p>
<div class="grid">
{cards}
</div></body></html>
"""


def _card(nb, html_name: str, figure: str | None) -> str:
    title = html.escape(notebook_title(nb) or html_name)
    meta = nb.metadata.get("papermill", {})
    failed = any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    profile = meta.get("parameters", {}).get("PROFILE")
    facts = [f"profile {html.escape(str(profile))}"] if profile else []
    if meta.get("duration") is not None:
        facts.append(f"ran in {meta['duration']:.0f} s")
    status = '<span class="failed">failed: see the traceback</span> ' if failed else ""
    picture = (f'<a href="{html_name}"><img src="{html.escape(figure)}" alt="key figure of {title}"></a>'
               if figure else "<p class=\"meta\">(no figure)</p>")
    return (f'<div class="card"><h2><a href="{html_name}">{title}</a></h2>\n{picture}\n'
            f'<p class="meta">{status}{", ".join(facts)}</p></div>')


def write_index(out_dir: str | Path, notebooks: Iterable[str | Path],
                title: str = "ev2lite: executed notebooks") -> Path:
    """Convert each executed notebook to ``out_dir/<name>.html`` (nbconvert's ``HTMLExporter``)
    and write ``out_dir/index.html`` linking them in the given order, each with its title (first
    markdown heading), key figure (:func:`key_figure`), profile and run time (papermill's
    metadata), and a mark if a cell raised. Returns the index's path.

    Raises ``FileNotFoundError`` for a missing notebook.
    """
    import nbformat
    from nbconvert import HTMLExporter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    cards = []
    for path in map(Path, notebooks):
        if not path.is_file():
            raise FileNotFoundError(f"no executed notebook {path}")
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        html_name = f"{path.stem}.html"
        (out_dir / html_name).write_text(body, encoding="utf-8")
        cards.append(_card(nb, html_name, key_figure(nb, out_dir, path.stem)))
    index = out_dir / "index.html"
    index.write_text(_PAGE.format(title=html.escape(title), count=len(cards), cards="\n".join(cards),
                                  date=time.strftime("%Y-%m-%d %H:%M %Z")), encoding="utf-8")
    return index
