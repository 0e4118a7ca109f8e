"""The study's front as a static figure for papers: ``pareto.png`` (200 dpi) and ``pareto.pdf``.

The same content as ``pareto.html`` (:func:`~autospikformer.study.export.pareto_figure`) without
the interaction: every candidate coloured by generation (or trial number) with its area growing
with its parameter count, trials over a budget as grey crosses, the front as a step line drawn
on top of the candidates, its test accuracy as crosses (under ``eval_split = "val"``), the
hand-designed baseline as a star, energy in the unit that reads best. Drawn with matplotlib's
Agg backend, so it needs no display and no browser.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autospikformer.units import energy_unit

FRONT_COLOUR = "#d62728"
#: Marker diameters (px) of the smallest and the largest model on a plot.
SIZE_RANGE = (6.0, 22.0)


def marker_sizes(params: Any, lo: float, hi: float) -> np.ndarray:
    """Marker diameters growing with the square root of the parameter count (so marker area
    grows with it), from :data:`SIZE_RANGE` [0] at ``lo`` to [1] at ``hi``; unknown counts get
    the middle size."""
    small, large = SIZE_RANGE
    values = np.asarray(pd.to_numeric(pd.Series(params), errors="coerce"), dtype=float)
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        sizes = np.full(values.shape, (small + large) / 2)
    else:
        frac = (np.sqrt(values) - math.sqrt(lo)) / (math.sqrt(hi) - math.sqrt(lo))
        sizes = small + (large - small) * np.clip(frac, 0.0, 1.0)
    return np.where(np.isfinite(values), sizes, (small + large) / 2)


def parameter_range(*frames: pd.DataFrame) -> tuple[float, float]:
    """Smallest and largest parameter count over some trial frames (NaN when none is known)."""
    values = pd.concat([pd.to_numeric(f["num_parameters"], errors="coerce") for f in frames])
    values = values.dropna()
    return (float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan)


def _areas(params: pd.Series, lo: float, hi: float) -> Any:
    """Marker areas (pt^2) for matplotlib: the plotly figure's diameters (:func:`marker_sizes`,
    px) squared, scaled to the figure."""
    return 0.55 * marker_sizes(params, lo, hi) ** 2


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
    lo, hi = parameter_range(complete)
    within = (
        complete["feasible"].astype(bool) if "feasible" in complete else complete["number"] >= 0
    )
    over, candidates = complete.loc[~within], complete.loc[within]
    has_generations = complete["generation"].notna().any()
    colour = (candidates["generation"] if has_generations else candidates["number"]).astype(float)
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    points = ax.scatter(
        unit.scale(candidates["energy_mj"]),
        100 * candidates["accuracy"],
        c=colour,
        cmap="viridis",
        s=_areas(candidates["num_parameters"], lo, hi),
        alpha=0.6,
        linewidths=0,
        zorder=2,
        label=f"candidates ({len(candidates)}), size: parameters",
    )
    if len(candidates):
        fig.colorbar(points, ax=ax, label="generation" if has_generations else "trial number")
    if len(over):
        ax.scatter(
            unit.scale(over["energy_mj"]),
            100 * over["accuracy"],
            marker="x",
            s=14,
            color="#7f7f7f",
            linewidths=0.8,
            zorder=2,
            label=f"over a budget ({len(over)})",
        )
    ordered = front.sort_values("energy_mj")
    ax.step(
        unit.scale(ordered["energy_mj"]),
        100 * ordered["accuracy"],
        where="post",
        color=FRONT_COLOUR,
        linewidth=1.6,
        zorder=3,
        label=f"Pareto front ({len(front)})",
    )
    ax.scatter(  # the front's members on top of the candidates, at their own size
        unit.scale(ordered["energy_mj"]),
        100 * ordered["accuracy"],
        s=_areas(ordered["num_parameters"], lo, hi),
        facecolors="white",
        edgecolors=FRONT_COLOUR,
        linewidths=1.4,
        zorder=3.5,
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
