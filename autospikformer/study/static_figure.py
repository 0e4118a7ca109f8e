"""The study's front as a static figure for papers: ``pareto.png`` (200 dpi) and ``pareto.pdf``.

The same content as ``pareto.html`` (:func:`~autospikformer.study.export.pareto_figure`) without
the interaction: every candidate coloured by generation (or trial number), the front as a step
line, its test accuracy as crosses (under ``eval_split = "val"``), the hand-designed baseline as
a star, energy in the unit that reads best. Drawn with
matplotlib's Agg backend, so it needs no display and no browser.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from autospikformer.units import energy_unit

FRONT_COLOUR = "#d62728"


def write_static_front(
    complete: pd.DataFrame,
    front: pd.DataFrame,
    title: str,
    accuracy: str,
    png: str | Path,
    pdf: str | Path,
) -> None:
    """Draw ``complete`` (every complete trial) and ``front`` (its Pareto front) to ``png`` and
    ``pdf``; accuracies are fractions, energies mJ per image, as in ``trials.csv``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    unit = energy_unit(complete["energy_mj"])
    has_generations = complete["generation"].notna().any()
    colour = (complete["generation"] if has_generations else complete["number"]).astype(float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    points = ax.scatter(
        unit.scale(complete["energy_mj"]),
        100 * complete["accuracy"],
        c=colour,
        cmap="viridis",
        s=18,
        alpha=0.75,
        linewidths=0,
        label=f"candidates ({len(complete)})",
    )
    if len(complete):
        fig.colorbar(points, ax=ax, label="generation" if has_generations else "trial number")
    ordered = front.sort_values("energy_mj")
    ax.step(
        unit.scale(ordered["energy_mj"]),
        100 * ordered["accuracy"],
        where="post",
        color=FRONT_COLOUR,
        linewidth=1.6,
        marker="o",
        markersize=5,
        markerfacecolor="none",
        label=f"Pareto front ({len(front)})",
    )
    tested = front[front["test_accuracy"].notna()]
    if len(tested):  # under eval_split = "val": the front measured once on the test split
        ax.scatter(
            unit.scale(tested["energy_mj"]),
            100 * tested["test_accuracy"],
            marker="x",
            s=36,
            color="black",
            linewidths=1.2,
            zorder=4,
            label=f"front on the test split ({len(tested)})",
        )
    base = complete[complete["baseline"].astype(bool)]
    if len(base):
        ax.scatter(
            unit.scale(base["energy_mj"]),
            100 * base["accuracy"],
            marker="*",
            s=160,
            color="gold",
            edgecolors="black",
            linewidths=0.8,
            zorder=5,
            label=f"{base['baseline'].iloc[0]} (hand-designed)",
        )
    ax.set_xlabel(f"energy per image ({unit.name})")
    ax.set_ylabel(f"{accuracy} (%)" + ("; x: test accuracy (%)" if len(tested) else ""))
    ax.set_title(title, fontsize=9)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.savefig(png, dpi=200)
    fig.savefig(pdf)
    plt.close(fig)
