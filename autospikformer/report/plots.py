"""The fronts as plots: the paper's Fig. 1A as an interactive plotly figure (``pareto.html``)
and as a static figure for papers (``pareto.png`` at 200 dpi and ``pareto.pdf``), with the
marker sizes, colours and hover text that ``study compare`` shares.

Both show every candidate coloured by generation (or trial number) with its area growing with
its parameter count, trials over a budget as grey crosses, the front as a step line drawn on
top of the candidates, its test accuracy as crosses (under ``eval_split = "val"``), the
hand-designed baseline as a star, trials whose subnet was trained (``autospik subnet train``,
``study validate``) as diamonds at the trained accuracy and energy, linked to their points, and
energy in the unit that reads best. The static one is drawn with matplotlib's Agg backend, so
it needs no display and no browser.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autospikformer.report.tables import complete_and_front
from autospikformer.units import MJ, EnergyUnit, energy_unit

FRONT_COLOUR = "#d62728"
TRAINED_COLOUR = "#9467bd"
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
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    _draw_candidates(fig, ax, complete, unit, (lo, hi))
    tested = _draw_front(ax, front, unit, (lo, hi))
    _draw_trained(ax, complete, unit)
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


def _draw_candidates(
    fig: Any, ax: Any, complete: pd.DataFrame, unit: EnergyUnit, sizes: tuple[float, float]
) -> None:
    """The static figure's candidates within budget (coloured by generation, sized by
    parameters) and those over a budget (grey crosses)."""
    within = (
        complete["feasible"].astype(bool) if "feasible" in complete else complete["number"] >= 0
    )
    over, candidates = complete.loc[~within], complete.loc[within]
    has_generations = complete["generation"].notna().any()
    colour = (candidates["generation"] if has_generations else candidates["number"]).astype(float)
    points = ax.scatter(
        unit.scale(candidates["energy_mj"]),
        100 * candidates["accuracy"],
        c=colour,
        cmap="viridis",
        s=_areas(candidates["num_parameters"], *sizes),
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


def _draw_front(
    ax: Any, front: pd.DataFrame, unit: EnergyUnit, sizes: tuple[float, float]
) -> pd.DataFrame:
    """The static figure's front: a step line, its members on top of the candidates at their
    own size, and (under ``eval_split = "val"``) its test accuracies as crosses, which it
    returns."""
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
    ax.scatter(
        unit.scale(ordered["energy_mj"]),
        100 * ordered["accuracy"],
        s=_areas(ordered["num_parameters"], *sizes),
        facecolors="white",
        edgecolors=FRONT_COLOUR,
        linewidths=1.4,
        zorder=3.5,
    )
    tested = front[front["test_accuracy"].notna()]
    if len(tested):
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
    return tested


def _trained(complete: pd.DataFrame) -> pd.DataFrame:
    """The trials whose subnet was trained, with its energy or, unmeasured, the trial's."""
    part = complete.loc[complete["trained_accuracy"].notna()]
    return part.assign(trained_energy_mj=part["trained_energy_mj"].fillna(part["energy_mj"]))


def _links(part: pd.DataFrame, unit: EnergyUnit) -> tuple[list[Any], list[Any]]:
    """Line segments from each trial's point to its trained subnet's (None between them)."""
    xs: list[Any] = []
    ys: list[Any] = []
    for _, row in part.iterrows():
        xs += [unit.scale(row["energy_mj"]), unit.scale(row["trained_energy_mj"]), None]
        ys += [100 * row["accuracy"], 100 * row["trained_accuracy"], None]
    return xs, ys


def _draw_trained(ax: Any, complete: pd.DataFrame, unit: EnergyUnit) -> None:
    """The trained subnets on the static front: diamonds linked to their trials' points."""
    part = _trained(complete)
    if not len(part):
        return
    xs, ys = _links(part, unit)
    ax.plot(xs, ys, color=TRAINED_COLOUR, linewidth=0.8, alpha=0.7, zorder=3.6)
    ax.scatter(
        unit.scale(part["trained_energy_mj"]),
        100 * part["trained_accuracy"],
        marker="D",
        s=30,
        color=TRAINED_COLOUR,
        edgecolors="white",
        linewidths=0.6,
        zorder=4.5,
        label=f"trained subnets ({len(part)}), linked to their trials",
    )


def trained_traces(complete: pd.DataFrame, accuracy: str, unit: EnergyUnit) -> list[Any]:
    """Plotly traces of the trained subnets: diamonds at their trained accuracy and energy,
    each linked by a thin line to its trial's (inherited) point; none when none is trained."""
    import plotly.graph_objects as go

    part = _trained(complete)
    if not len(part):
        return []
    xs, ys = _links(part, unit)
    custom = np.stack(
        [part["number"], part["architecture"], 100 * part["accuracy"], part["trained_schedule"]],
        axis=-1,
    )
    return [
        go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                   line={"color": TRAINED_COLOUR, "width": 1}, opacity=0.6),
        go.Scatter(
            x=unit.scale(part["trained_energy_mj"]), y=100 * part["trained_accuracy"],
            mode="markers", name=f"trained subnets ({len(part)}), linked to their trials",
            marker={"symbol": "diamond", "size": 10, "color": TRAINED_COLOUR,
                    "line": {"width": 1, "color": "white"}},
            customdata=custom,
            hovertemplate=(
                "trial %{customdata[0]}, trained (%{customdata[3]})<br>%{customdata[1]}<br>"
                f"trained {accuracy} %{{y:.2f}} %<br>inherited {accuracy} "
                f"%{{customdata[2]:.2f}} %<br>energy %{{x:.4g}} {unit.name}<extra></extra>"
            ),
        ),
    ]  # fmt: skip


# --- interactive (plotly) --------------------------------------------------------------------
FRONT_COLOUR = "#d62728"
OVER_BUDGET_COLOUR = "#7f7f7f"
BASELINE_MARKER = {
    "symbol": "star",
    "size": 20,
    "color": "#ffbf00",
    "line": {"width": 1.5, "color": "black"},
}


def size_legend(fig: Any, lo: float, hi: float, *, row: int | None = None) -> None:
    """Two grey legend entries that show the marker size of the smallest and largest model."""
    import plotly.graph_objects as go

    if not math.isfinite(lo):
        return
    for value in sorted({lo, hi}):
        trace = go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=f"{value:,.0f} parameters",
            legendgroup="size",
            legendgrouptitle={"text": "marker size"},
            marker={
                "size": float(marker_sizes([value], lo, hi)[0]),
                "color": "rgba(150,150,160,0.6)",
                "line": {"width": 1, "color": "#555"},
            },
            hoverinfo="skip",
        )
        if row is None:
            fig.add_trace(trace)
        else:
            fig.add_trace(trace, row=row, col=1)


def hover(
    part: pd.DataFrame, label: str = "accuracy", study: str | None = None, unit: EnergyUnit = MJ
) -> dict[str, Any]:
    """Plotly hover data of some trials: study, number, architecture, parameters, rate, F_AEB
    (the x values are energies in ``unit``)."""
    custom = (
        np.stack(
            [
                part["number"].to_numpy(),
                part["architecture"].to_numpy(),
                part["num_parameters"].astype("float").to_numpy(),
                part["mean_firing_rate"].astype("float").to_numpy(),
                part["f_aeb"].to_numpy(),
                part["generation"].astype("float").to_numpy(),
            ],
            axis=-1,
        )
        if len(part)
        else None
    )
    head = f"<b>{study}</b><br>" if study else ""
    generation = " (generation %{customdata[5]})" if part["generation"].notna().any() else ""
    return {
        "customdata": custom,
        "hovertemplate": (
            f"{head}trial %{{customdata[0]}}{generation}"
            f"<br>%{{customdata[1]}}<br>{label} %{{y:.2f}} %"
            f"<br>energy %{{x:.4g}} {unit.name}<br>parameters %{{customdata[2]:,.0f}}"
            "<br>firing rate %{customdata[3]:.3f}<br>F_AEB %{customdata[4]:.3f}<extra></extra>"
        ),
    }


def over_budget_trace(
    part: pd.DataFrame,
    accuracy: str,
    unit: EnergyUnit,
    study: str | None = None,
    colour: str = OVER_BUDGET_COLOUR,
    group: str | None = None,
) -> Any:
    """Plotly markers for complete trials over a budget (never on a front): small crosses,
    the hover saying by how much (the sum of the positive constraint values)."""
    import plotly.graph_objects as go

    head = f"<b>{study}</b><br>" if study else ""
    return go.Scatter(
        x=unit.scale(part["energy_mj"]),
        y=100 * part["accuracy"],
        mode="markers",
        name=f"over a budget ({len(part)}, not on the front)",
        legendgroup=group,
        marker={"symbol": "x-thin", "size": 8, "line": {"width": 1.5, "color": colour}},
        customdata=np.stack(
            [part["number"], part["architecture"], part["violation"].astype(float)], axis=-1
        )
        if len(part)
        else None,
        hovertemplate=(
            f"{head}trial %{{customdata[0]}} (over a budget by %{{customdata[2]:.4g}})"
            f"<br>%{{customdata[1]}}<br>{accuracy} %{{y:.2f}} %"
            f"<br>energy %{{x:.4g}} {unit.name}<extra></extra>"
        ),
    )


def pareto_figure(frame: pd.DataFrame, title: str, accuracy: str = "test accuracy") -> Any:
    """The paper's Fig. 1A for one study: accuracy (%) against energy (in the unit that reads
    best, :func:`~autospikformer.units.energy_unit`), every candidate with marker size by
    parameters and colour by generation (trial number for samplers without generations), the
    front as a step line, the hand-designed baseline as a star."""
    import plotly.graph_objects as go

    everything, front = complete_and_front(frame)
    unit = energy_unit(everything["energy_mj"])
    lo, hi = parameter_range(everything)
    over = everything.loc[~everything["feasible"].astype(bool)]
    complete = everything.loc[everything["feasible"].astype(bool)]
    fig = go.Figure()
    if len(over):
        fig.add_trace(over_budget_trace(over, accuracy, unit))
    has_generations = everything["generation"].notna().any()
    fig.add_trace(_candidates_trace(complete, accuracy, unit, (lo, hi), has_generations))
    fig.add_trace(_front_trace(front, accuracy, unit, (lo, hi)))
    tested = front[front["test_accuracy"].notna()]
    if len(tested):
        fig.add_trace(_tested_trace(tested, accuracy, unit))
    fig.add_traces(trained_traces(everything, accuracy, unit))
    base = everything[everything["baseline"].astype(bool)]
    if len(base):
        fig.add_trace(
            go.Scatter(
                x=unit.scale(base["energy_mj"]),
                y=100 * base["accuracy"],
                mode="markers",
                name=f"{base['baseline'].iloc[0]} (hand-designed)",
                marker=BASELINE_MARKER,
                **hover(base, accuracy, unit=unit),
            )
        )
    size_legend(fig, lo, hi)
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title=f"energy per image ({unit.name})",
        yaxis_title=f"{accuracy} (%)" + ("; x: test accuracy (%)" if len(tested) else ""),
        legend={"orientation": "h", "x": 0.0, "y": -0.14, "xanchor": "left", "yanchor": "top"},
        hovermode="closest",
        margin={"t": 60, "r": 20, "b": 120},
    )
    return fig


def _candidates_trace(
    complete: pd.DataFrame,
    accuracy: str,
    unit: EnergyUnit,
    sizes: tuple[float, float],
    has_generations: bool,
) -> Any:
    """The candidates within budget, coloured by generation (or trial number), sized by
    parameters."""
    import plotly.graph_objects as go

    colour = complete["generation"] if has_generations else complete["number"]
    colour_name = "generation" if has_generations else "trial number"
    return go.Scatter(
        x=unit.scale(complete["energy_mj"]),
        y=100 * complete["accuracy"],
        mode="markers",
        name=f"candidates ({len(complete)}), colour: {colour_name}",
        marker={
            "size": marker_sizes(complete["num_parameters"], *sizes),
            "color": colour.astype(float),
            "colorscale": "Viridis",
            "opacity": 0.75,
            "line": {"width": 0.5, "color": "white"},
            "colorbar": {
                "title": {"text": colour_name},
                "thickness": 14,
                "dtick": max(1, math.ceil(float(colour.max()) / 10)) if len(colour) else 1,
            },
            "showscale": len(complete) > 0,
        },
        **hover(complete, accuracy, unit=unit),
    )


def _front_trace(
    front: pd.DataFrame, accuracy: str, unit: EnergyUnit, sizes: tuple[float, float]
) -> Any:
    """The front as a step line through filled markers (readable on top of a thousand
    candidates)."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=unit.scale(front["energy_mj"]),
        y=100 * front["accuracy"],
        mode="lines+markers",
        name=f"Pareto front ({len(front)})",
        line={"shape": "hv", "color": FRONT_COLOUR, "width": 2},
        marker={
            "size": marker_sizes(front["num_parameters"], *sizes),
            "color": "rgba(255,255,255,0.85)",
            "line": {"width": 2, "color": FRONT_COLOUR},
        },
        **hover(front, accuracy, unit=unit),
    )


def _tested_trace(tested: pd.DataFrame, accuracy: str, unit: EnergyUnit) -> Any:
    """The front's test accuracies (under ``eval_split = "val"``, measured once after the
    search) as crosses."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=unit.scale(tested["energy_mj"]),
        y=100 * tested["test_accuracy"],
        mode="markers",
        name=f"front on the test split ({len(tested)}, measured once after the search)",
        marker={"symbol": "x-thin", "size": 11, "line": {"width": 2, "color": "black"}},
        customdata=np.stack([tested["number"], 100 * tested["accuracy"]], axis=-1),
        hovertemplate=(
            "trial %{customdata[0]}<br>test accuracy %{y:.2f} %<br>"
            f"{accuracy} %{{customdata[1]:.2f}} %<br>energy %{{x:.4g}} {unit.name}<extra></extra>"
        ),
    )
