"""Charts shared by the run report (``step.report``) and the comparison of runs (``tool.compare``):
per-class IoU bars and training curves (docs/tracking.md). PNGs via matplotlib's Agg, written atomically."""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tool.engine.io import write_bytes


def save_figure(fig, path: Path) -> None:
    """Lay out, write as PNG (atomically) and close a matplotlib figure."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def iou_chart(stages: Sequence[tuple[str, dict]], path: Path) -> None:
    """Grouped bars of per-class IoU (%), one colour per stage, written as PNG (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = stages[0][1]["classes"]
    x = np.arange(len(classes))
    width = 0.8 / len(stages)
    fig, ax = plt.subplots(figsize=(max(8.0, 0.42 * len(classes) + 2), 3.6), dpi=80)
    for i, (label, metrics) in enumerate(stages):
        iou = np.asarray([np.nan if v is None else v for v in metrics["iou"]], dtype=float)
        ax.bar(x - 0.4 + width * (i + 0.5), iou, width, label=f"{label} ({metrics['miou']:.1f})")
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)



def training_chart(title: str, runs: Sequence[tuple[str, list[dict], list[dict]]], path: Path) -> None:
    """One training step's curves (``tool.engine.events`` records) against the iteration, written as PNG.

    ``runs``: (label, scalar records, marks) each. One run: every loss term; several runs (``tool.compare``):
    the total ``loss`` of each, overlaid. The lr of param group 0 goes on a second axis (dashed),
    checkpoints are marked by dotted and resumes by dashed red vertical lines. A log loss axis when every
    value is positive (RITC's terms span orders of magnitude).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4), dpi=80)
    lr_ax = ax.twinx()
    values = []
    for n, (label, scalars, marks) in enumerate(runs):
        it = [r["iter"] for r in scalars]
        terms = list(scalars[0]["terms"]) if len(runs) == 1 and scalars else ["loss"]
        color = None if len(runs) == 1 else f"C{n % 10}"
        for term in terms:
            y = [r["terms"].get(term, np.nan) for r in scalars]
            values += [v for v in y if v == v]
            name = term if len(runs) == 1 else label
            ax.plot(it, y, label=name, color=color, lw=1.6 if term == "loss" else 1.0)
        lr_ax.plot(it, [r["lr"][0] for r in scalars], color=color or "grey", ls="--", lw=0.8)
        for m in marks:
            if m["event"] == "resume":
                ax.axvline(m["iter"], color="#c33", ls="--", lw=0.9)
            elif m["event"] == "checkpoint":
                ax.axvline(m["iter"], color=color or "#999", ls=":", lw=0.6)
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    lr_ax.set_ylabel("lr (group 0, dashed)")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
