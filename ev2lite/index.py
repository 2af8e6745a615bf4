"""The index page of the main job: every executed notebook converted to HTML, on one page with
its title, key figure, profile and run time.

:func:`write_index` is what ``python -m ev2lite.runbook`` calls after (or when one of) the
notebooks ran. This module imports nothing of the training stack (no ``torch``-based module of
ev2lite; nbformat and nbconvert only when it writes), so writing HTML never loads a model.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from pathlib import Path


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
