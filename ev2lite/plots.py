"""Figure helpers shared by the notebooks (matplotlib, one function per kind of figure)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd


def plot_history(history: pd.DataFrame, title: str = "") -> plt.Figure:
    """Training curves of a :func:`ev2lite.train.fit` history.

    Left: train and test loss per epoch. Right: test accuracy (%) against training wall-clock
    time (minutes), the paper's own axis for training speed (Figure 1, Figure 3).
    """
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(history.epoch, history.train_loss, "o-", label="train")
    ax_loss.plot(history.epoch, history.test_loss, "s-", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_loss.legend()
    ax_acc.plot(history.train_time_s / 60, 100 * history.train_acc, "o-", label="train")
    ax_acc.plot(history.train_time_s / 60, 100 * history.test_acc, "s-", label="test")
    ax_acc.set(xlabel="training time (min)", ylabel="top-1 accuracy (%)", title="accuracy vs time")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, out_dir: str | Path, name: str) -> Path:
    """Save ``fig`` as ``<out_dir>/figures/<name>.png`` (150 dpi) and return the path."""
    path = Path(out_dir) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    return path


def plot_tradeoff(points: pd.DataFrame, x: str, y: str = "top1_pct", group: str = "group", *,
                  ax: plt.Axes | None = None, connect: bool = True, label: str | None = None,
                  logx: bool = False, **style) -> plt.Axes:
    """Accuracy against a cost (training time, parameters), one series per group (paper Figure 1).

    ``points`` has one row per model (or epoch) with columns ``x`` (the cost, e.g. hours or
    millions of parameters), ``y`` (top-1 %) and ``group``; a group's points are joined in order
    of ``x`` when ``connect``. ``label`` names a column written beside each point; ``style`` goes
    to ``Axes.plot`` (e.g. ``mfc="none"``). Draws on ``ax`` (a new figure if ``None``), returns it.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    for name, rows in points.sort_values(x).groupby(group, sort=False):
        ax.plot(rows[x], rows[y], marker="o", linestyle="-" if connect else "none", label=name, **style)
        for _, row in rows.iterrows() if label else ():
            ax.annotate(str(row[label]), (row[x], row[y]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=x, ylabel=y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax



def _short_name(model: str) -> str:
    """Table 7's ``EfficientNet-B4`` / ``EfficientNetV2-S`` -> notebook 04's ``V1-B4`` / ``V2-S``."""
    if model.startswith("EfficientNetV2-"):
        return "V2-" + model.split("-", 1)[1]
    return "V1-" + model.split("-", 1)[1] if model.startswith("EfficientNet-") else model


def plot_step_time_accuracy(timings: pd.DataFrame, table7: pd.DataFrame, *,
                            ax: plt.Axes | None = None) -> plt.Axes:
    """The paper's Figure 3 (ImageNet top-1 against training step time, one curve per family)
    with our measured CPU step times on the x-axis and the paper's accuracies on the y-axis.

    ``timings``: one row per model as notebook 04 saves them (``04_table11_scaling_down``,
    ``04_table10_same_training``): ``paper_name`` (``V1-B4``, ``V2-S``, ...),
    ``train_images_per_s`` (one SGD step at each model's training size), optionally
    ``paper_top1_pct`` (Table 11's accuracy). ``table7``: the paper's Table 7
    (``ev2lite.paper.paper_table("table7_imagenet")``: ``model``, ``pretrain``, ``top1_pct``).
    Each point's accuracy is Table 7's (ImageNet-only training) where it lists the model, else
    the timings' ``paper_top1_pct``; models with neither are left out. x: milliseconds of
    training per image (the step time over its batch), log scale. Draws on ``ax`` (a new
    figure if ``None``) and returns it. Raises ``KeyError`` for a missing column.
    """
    paper = table7[table7.pretrain == "imagenet"]
    accuracy = dict(zip(paper.model.map(_short_name), paper.top1_pct.astype(float)))
    points = timings.drop_duplicates("paper_name").assign(
        train_ms_per_image=lambda t: 1000 / t.train_images_per_s,
        group=lambda t: t.paper_name.str.startswith("V2").map({True: "EfficientNetV2", False: "EfficientNet (V1)"}))
    fallback = points["paper_top1_pct"] if "paper_top1_pct" in points else pd.Series(float("nan"), points.index)
    points["top1_pct"] = points.paper_name.map(accuracy).fillna(fallback)
    ax = plot_tradeoff(points.dropna(subset=["top1_pct"]), "train_ms_per_image", ax=ax, label="paper_name",
                       logx=True)
    ax.set(xlabel="training time per image on this CPU (ms, one SGD step / batch; log scale)",
           ylabel="ImageNet top-1 (%), the paper's")
    return ax

def plot_schedule(stages, title: str = "") -> plt.Figure:
    """Image size and every scheduled regularization against epoch (paper Figure 4).

    ``stages`` is a list of :class:`ev2lite.recipe.Stage`; one panel per quantity, drawn as steps.
    Regularizers left at ``None`` or 0 in every stage are omitted.
    """
    fields = ["image_size", "randaugment", "mixup_alpha", "cutmix_alpha", "dropout", "stochastic_depth"]
    shown = [f for f in fields if any(getattr(s, f) for s in stages)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 2.8), squeeze=False)
    edges = [0]
    for s in stages:
        edges.append(edges[-1] + s.epochs)
    for ax, name in zip(axes[0], shown):
        values = [getattr(s, name) or 0 for s in stages]
        ax.stairs(values, edges, baseline=None, linewidth=2)
        ax.set(xlabel="epoch", title=name.replace("_", " "))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_blocks(blocks: dict, input_shape: tuple[int, int, int], title: str = "") -> plt.Figure:
    """Blocks drawn side by side from their real modules (paper Figure 2: MBConv, Fused-MBConv).

    ``blocks`` maps a title to a block module (e.g. ``ev2lite.blocks.MBConv``); each is drawn as a
    column of boxes, input at the top, one box per sub-module in the order it runs
    (:func:`ev2lite.bottlenecks.block_table`: operator and output shape ``C x H x W`` from a
    meta-device forward pass of ``input_shape = (C, H, W)``), and the residual addition when the
    block has one. Raises ``ValueError`` for an empty ``blocks`` or a bad ``input_shape``.
    """
    from .bottlenecks import block_table

    if not blocks:
        raise ValueError("blocks is empty: pass e.g. {'MBConv': MBConv(24, 24)}")
    tables = {name: block_table(block, input_shape) for name, block in blocks.items()}
    rows = max(len(t) for t in tables.values()) + 2
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 0.95 * rows + 0.6),
                             squeeze=False)
    box = {"boxstyle": "round,pad=0.4", "linewidth": 1.2}
    colors = {"conv_dw": "#f4cccc", "se": "#d9ead3", "conv_exp": "#cfe2f3"}
    for ax, (name, table) in zip(axes[0], tables.items()):
        labels = [("input", "x".join(map(str, input_shape)), "#eeeeee")]
        labels += [(r.operator, "x".join(map(str, r.out_shape)), colors.get(r.part, "#fff2cc"))
                   for r in table.itertuples()]
        skip = blocks[name].has_skip
        if skip:
            labels.append(("+ input (residual)", labels[-1][1], "#eeeeee"))
        ys = [rows - 1 - i for i in range(len(labels))]
        for (text, shape, color), y in zip(labels, ys):
            ax.text(0, y, text, ha="center", va="center", fontsize=9,
                    bbox={**box, "facecolor": color})
            ax.text(0.8, y, shape, ha="left", va="center", fontsize=8, color="0.35")
        for y0, y1 in zip(ys, ys[1:]):
            ax.annotate("", (0, y1 + 0.28), (0, y0 - 0.28), arrowprops={"arrowstyle": "->"})
        if skip:
            ax.annotate("", (-0.62, ys[-1]), (-0.62, ys[0]),
                        arrowprops={"arrowstyle": "->", "connectionstyle": "bar,fraction=0.04",
                                    "linestyle": "--", "color": "0.4"})
        ax.set(xlim=(-1, 1.4), ylim=(-0.8, rows - 0.2), title=name)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
