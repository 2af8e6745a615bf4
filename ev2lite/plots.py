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


def plot_schedule(stages, title: str = "") -> plt.Figure:
    """Image size and every scheduled regularization against epoch (paper Figure 4).

    ``stages`` is a list of :class:`ev2lite.train.Stage`; one panel per quantity, drawn as steps.
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
