"""Plots of measurements made in the notebooks (matplotlib, inline in JupyterLab)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt


def timeline(spans: Sequence[tuple[str, float, float]], events: Iterable[tuple[str, float]] = (),
             title: str = "", unit: str = "s"):
    """Draw ``(label, start, end)`` spans as horizontal bars and ``(label, t)`` events as
    vertical lines, on one time axis. Returns the matplotlib ``Figure``."""
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(spans) + 1.4))
    for row, (label, start, end) in enumerate(spans):
        ax.barh(row, max(end - start, 0.002), left=start, height=0.5)
        ax.text(end, row, f"  {end - start:.3f} {unit}", va="center", fontsize=8)
    for index, (label, moment) in enumerate(events):
        ax.axvline(moment, color=f"C{index + 3}", linestyle="--", label=f"{label} ({moment:.3f} {unit})")
    ax.set_yticks(range(len(spans)), [label for label, *_ in spans])
    ax.invert_yaxis()
    ax.set_xlabel(f"time since the request was sent ({unit})")
    if title:
        ax.set_title(title)
    if events:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def bars(values: dict[str, float], ylabel: str, title: str = ""):
    """A bar per label, with its value printed on top. Returns the ``Figure``."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    bars_ = ax.bar(list(values), list(values.values()), color=[f"C{i}" for i in range(len(values))])
    ax.bar_label(bars_, fmt="%.3g")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
