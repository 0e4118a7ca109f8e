"""Channel redundancy after SPS: the paper's Fig. 1B, for any trained model (SPEC section 8).

What is measured, and the choices SPEC leaves open:

- **The feature map.** The output of the Spiking Patch Splitting stage, ``[T, B, N, E]``
  (stage-4 spikes plus the relative-position branch's spikes, so values 0, 1 or 2), taken on a
  batch of real images of the model's data set (a fixed, seeded subset of the test split),
  laid back on its token grid (``N = h x w``: 8 x 8 for CIFAR, 4 x 4 for the 8 x 8 digits) and
  averaged over the T time steps: one ``h x w`` map per channel and image, in [0, 2].
- **SSIM** from scikit-image (``skimage.metrics.structural_similarity``, Wang et al. 2004), with
  ``data_range = 2`` (the range the maps can take, not the range a batch happens to show), its
  uniform window of 7 or the largest odd size the grid allows (3 on a 4 x 4 grid).
- **Averaging over images.** ``per-image`` (the default): SSIM between two channels on each
  image, averaged over the images; two channels count as redundant only when they agree image
  by image. ``maps``: the maps averaged over the images first, one SSIM per pair (cheaper, but
  averaging blurs the maps and raises every SSIM).
- **Per channel**: the mean SSIM with every *other* channel. The heatmap keeps the 20 channels of
  highest and the 20 of lowest mean SSIM, in their original order (40 x 40; all channels when
  there are 40 or fewer). A channel that never fires on these images has a constant map; two
  such channels have SSIM 1 (both say nothing), so silent channels are counted and flagged.

Every pair is scored by scikit-image itself, but many at once: each pair's two maps become one
tile of two mosaics, and the mean of the full SSIM map over the tile's interior (the windows
that lie inside the tile, exactly the ones scikit-image averages for a single pair) is the pair's
SSIM. The tests check that it equals one call per pair.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from skimage.metrics import structural_similarity
from torch import nn

from autospikformer.errors import AutospikError

#: SSIM's dynamic range: an SPS output is a sum of two spikes, so its mean over T lies in [0, 2].
DATA_RANGE = 2.0
#: Channels of highest and of lowest mean SSIM the heatmap keeps (SPEC section 8: 20 and 20).
HEATMAP_SIDE = 20
#: scikit-image's default window; smaller grids get the largest odd size that fits.
DEFAULT_WIN_SIZE = 7
AVERAGES = ("per-image", "maps")
#: Pixels per scikit-image call (bounds the memory of one mosaic: about 20 float64 copies).
_MOSAIC_PIXELS = 1 << 20
REDUNDANCY_FILES = ("ssim_matrix.csv", "channels.csv", "redundancy.json", "redundancy.html")


class RedundancyError(AutospikError, ValueError):
    """A redundancy analysis that cannot run as asked; the message is one line."""


# --- the feature maps ----------------------------------------------------------------------------
@torch.no_grad()
def sps_feature_maps(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """The SPS output of ``model`` (a standalone Spikformer) on ``images``, averaged over T:
    ``[B, E, h, w]`` float64, one map per image and channel."""
    captured: list[torch.Tensor] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, images.shape[0], batch_size):
            tokens = model.embed(images[start : start + batch_size].to(device))
            captured.append(tokens.float().mean(dim=0).cpu())  # [B, N, E], mean over T
    finally:
        model.train(was_training)
    tokens = torch.cat(captured)  # [B, N, E]
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise RedundancyError(f"SPS gives {tokens.shape[1]} tokens: not a square grid")
    maps = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
    return maps.double().numpy()


# --- SSIM between every pair of channels ---------------------------------------------------------
def window_size(height: int, width: int, requested: int | None = None) -> int:
    """scikit-image's window for maps of this size: ``requested``, or 7 or the largest odd size
    that fits (SSIM needs at least a 3 x 3 window)."""
    limit = min(height, width)
    if limit < 3:
        raise RedundancyError(
            f"feature maps of {height}x{width}: too small for SSIM (3x3 at least)"
        )
    if requested is not None:
        if requested < 3 or requested % 2 == 0 or requested > limit:
            raise RedundancyError(
                f"--win-size {requested}: not allowed for {height}x{width} maps "
                f"(allowed: an odd number from 3 to {limit - (limit % 2 == 0)})"
            )
        return requested
    return min(DEFAULT_WIN_SIZE, limit if limit % 2 else limit - 1)


def _pair_ssim(
    left: np.ndarray, right: np.ndarray, *, data_range: float, win_size: int
) -> np.ndarray:
    """SSIM of ``left[k]`` against ``right[k]`` for every k (``[K, h, w]`` each), by scikit-image
    on mosaics of the tiles side by side: a window centred at least ``win_size // 2`` from a
    tile's border sees that tile only, and those windows are the ones scikit-image averages."""
    count, height, width = left.shape
    pad = (win_size - 1) // 2
    per_call = max(1, _MOSAIC_PIXELS // (height * width))
    out = np.empty(count)
    for start in range(0, count, per_call):
        a = left[start : start + per_call]
        b = right[start : start + per_call]
        k = a.shape[0]
        mosaic_a = a.transpose(1, 0, 2).reshape(height, k * width)
        mosaic_b = b.transpose(1, 0, 2).reshape(height, k * width)
        _, full = structural_similarity(
            mosaic_a, mosaic_b, data_range=data_range, win_size=win_size, full=True
        )
        interior = full.reshape(height, k, width)[pad : height - pad, :, pad : width - pad]
        out[start : start + k] = interior.mean(axis=(0, 2))
    return out


def pairwise_ssim(
    maps: np.ndarray, *, data_range: float = DATA_RANGE, win_size: int | None = None
) -> np.ndarray:
    """SSIM between every pair of channels, a symmetric ``[C, C]`` matrix with ones on the diagonal.

    ``maps`` is ``[C, h, w]`` (one map per channel) or ``[B, C, h, w]`` (per image: the SSIM is
    computed on each image and averaged over the images).
    """
    stack = np.asarray(maps, dtype=np.float64)
    if stack.ndim == 3:
        stack = stack[None]
    if stack.ndim != 4:
        raise RedundancyError(f"expected maps [C, h, w] or [B, C, h, w], got {stack.shape}")
    images, channels, height, width = stack.shape
    win = window_size(height, width, win_size)
    rows, cols = np.triu_indices(channels, k=1)
    scores = np.zeros(rows.size)
    for image in stack:
        scores += _pair_ssim(image[rows], image[cols], data_range=data_range, win_size=win)
    matrix = np.eye(channels)
    matrix[rows, cols] = matrix[cols, rows] = scores / images
    return matrix


# --- the analysis --------------------------------------------------------------------------------
@dataclass
class RedundancyResult:
    """The SSIM matrix of one model's SPS channels and what the paper plots of it."""

    matrix: np.ndarray  # [C, C]
    rates: np.ndarray  # [C] mean value of each channel's map (spikes per step, 0..2)
    average: str
    win_size: int
    data_range: float
    images: int
    grid: tuple[int, int]
    side: int = HEATMAP_SIDE

    @property
    def channels(self) -> int:
        return self.matrix.shape[0]

    @property
    def mean_ssim(self) -> np.ndarray:
        """Each channel's mean SSIM with every other channel."""
        c = self.channels
        if c < 2:
            return np.zeros(c)
        return (self.matrix.sum(axis=1) - np.diag(self.matrix)) / (c - 1)

    @property
    def silent(self) -> np.ndarray:
        """Channels that never fired on the images (a constant zero map)."""
        return self.rates == 0

    def ranked(self) -> tuple[list[int], list[int]]:
        """The ``side`` channels of highest and of lowest mean SSIM (ties: lower index first);
        together all channels when there are ``2 side`` or fewer."""
        order = np.lexsort((np.arange(self.channels), -self.mean_ssim))
        if self.channels <= 2 * self.side:
            half = (self.channels + 1) // 2
            return sorted(order[:half].tolist()), sorted(order[half:].tolist())
        return sorted(order[: self.side].tolist()), sorted(order[-self.side :].tolist())

    def heatmap_channels(self) -> list[int]:
        """The heatmap's channels in their original order."""
        high, low = self.ranked()
        return sorted(high + low)

    def channel_frame(self) -> pd.DataFrame:
        """One row per channel: mean SSIM, its rank, firing rate, silent, heatmap group."""
        high, low = self.ranked()
        mean = self.mean_ssim
        rank = np.empty(self.channels, dtype=int)
        rank[np.lexsort((np.arange(self.channels), -mean))] = np.arange(1, self.channels + 1)
        group = np.full(self.channels, "", dtype=object)
        group[low] = "lowest"
        group[high] = "highest"
        return pd.DataFrame(
            {
                "channel": np.arange(self.channels),
                "mean_ssim": mean,
                "rank": rank,
                "heatmap": group,
                "mean_rate": self.rates,
                "silent": self.silent,
            }
        )

    def summary(self) -> dict[str, Any]:
        """The figures of ``redundancy.json`` (without the model and data)."""
        mean = self.mean_ssim
        half = self.channels // 2
        high, low = self.ranked()
        off = self.matrix[~np.eye(self.channels, dtype=bool)]
        return {
            "channels": self.channels,
            "grid": list(self.grid),
            "images": self.images,
            "average": self.average,
            "win_size": self.win_size,
            "data_range": self.data_range,
            "mean_ssim": float(off.mean()) if off.size else None,
            "mean_ssim_lower_half": float(mean[:half].mean()) if half else None,
            "mean_ssim_upper_half": float(mean[half:].mean()) if half else None,
            "silent_channels": int(self.silent.sum()),
            "pairs_above_0.9": int((off > 0.9).sum() // 2),
            "heatmap_highest": high,
            "heatmap_lowest": low,
        }


def analyze_maps(
    maps: np.ndarray,
    *,
    average: str = "per-image",
    data_range: float = DATA_RANGE,
    win_size: int | None = None,
) -> RedundancyResult:
    """The redundancy analysis of feature maps ``[B, C, h, w]`` (already averaged over T)."""
    if average not in AVERAGES:
        raise RedundancyError(
            f"average {average!r} is not allowed (allowed: {', '.join(AVERAGES)})"
        )
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4 or maps.shape[0] < 1:
        raise RedundancyError(f"expected maps [B, C, h, w] with B >= 1, got {maps.shape}")
    win = window_size(maps.shape[2], maps.shape[3], win_size)
    source = maps if average == "per-image" else maps.mean(axis=0)
    matrix = pairwise_ssim(source, data_range=data_range, win_size=win)
    return RedundancyResult(
        matrix=matrix,
        rates=maps.mean(axis=(0, 2, 3)),
        average=average,
        win_size=win,
        data_range=data_range,
        images=maps.shape[0],
        grid=(maps.shape[2], maps.shape[3]),
    )


# --- the page ------------------------------------------------------------------------------------
def heatmap_figure(result: RedundancyResult, title: str) -> Any:
    """The 40 x 40 SSIM heatmap of the channels of highest and lowest mean SSIM."""
    import plotly.graph_objects as go

    picked = result.heatmap_channels()
    high, _ = result.ranked()
    labels = [f"{c}{'+' if c in high else '-'}" for c in picked]
    sub = result.matrix[np.ix_(picked, picked)]
    fig = go.Figure(
        go.Heatmap(
            z=sub,
            x=labels,
            y=labels,
            zmin=min(0.0, float(sub.min())),
            zmax=1.0,
            colorscale="Viridis",
            colorbar={"title": {"text": "SSIM"}},
            hovertemplate="channel %{y} vs %{x}<br>SSIM %{z:.3f}<extra></extra>",
        )
    )
    side = len(picked)
    fig.update_layout(
        title=title,
        template="plotly_white",
        width=720,
        height=720,
        xaxis={"title": "channel (+: high mean SSIM, -: low), original order", "type": "category",
               "tickfont": {"size": 9 if side > 24 else 11}, "tickangle": -90},
        yaxis={"title": "channel", "type": "category", "autorange": "reversed",
               "tickfont": {"size": 9 if side > 24 else 11}, "scaleanchor": "x"},
        margin={"t": 60, "l": 70, "b": 90},
    )  # fmt: skip
    return fig


def _mark_silent_and_halves(fig: Any, frame: Any, result: RedundancyResult) -> None:
    """Silent channels as crosses; the mean SSIM of the lower and upper half of the channels
    as lines (where the paper finds the redundancy: in the higher-order channels)."""
    import plotly.graph_objects as go

    silent = frame[frame["silent"]]
    if len(silent):
        fig.add_trace(
            go.Scatter(
                x=silent["channel"],
                y=silent["mean_ssim"],
                mode="markers",
                name=f"silent (never fired): {len(silent)}",
                marker={"symbol": "x", "size": 7, "color": "black"},
                hovertemplate="channel %{x}: silent<extra></extra>",
            )
        )
    half = result.channels // 2
    summary = result.summary()
    if half:
        for lo, hi, key in (
            (0, half, "mean_ssim_lower_half"),
            (half, result.channels, "mean_ssim_upper_half"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=[lo - 0.5, hi - 0.5],
                    y=[summary[key]] * 2,
                    mode="lines",
                    line={"color": "black", "dash": "dash" if lo == 0 else "dot", "width": 2},
                    name=f"mean of channels {lo}-{hi - 1}: {summary[key]:.3f}",
                    hoverinfo="skip",
                )
            )


def channel_figure(result: RedundancyResult, title: str) -> Any:
    """Mean SSIM per channel index: where the redundancy sits."""
    import plotly.graph_objects as go

    frame = result.channel_frame()
    colours = {"highest": "#d62728", "lowest": "#1f77b4", "": "#9a9aa6"}
    if result.channels <= 2 * result.side:  # the heatmap shows every channel
        names = {"highest": "upper half by mean SSIM", "lowest": "lower half by mean SSIM"}
    else:
        names = {
            "highest": f"in the heatmap: the {result.side} highest",
            "lowest": f"in the heatmap: the {result.side} lowest",
        }
    names[""] = "other channels"
    fig = go.Figure()
    for group in ("highest", "lowest", ""):
        part = frame[frame["heatmap"] == group]
        if part.empty:
            continue
        fig.add_trace(
            go.Bar(
                x=part["channel"],
                y=part["mean_ssim"],
                name=names[group],
                marker={"color": colours[group]},
                customdata=np.stack(
                    [part["mean_rate"], part["silent"].astype(int), part["rank"]], axis=-1
                ),
                hovertemplate=(
                    "channel %{x}<br>mean SSIM %{y:.3f} (rank %{customdata[2]})"
                    "<br>mean spikes per step %{customdata[0]:.3f}<extra></extra>"
                ),
            )
        )
    _mark_silent_and_halves(fig, frame, result)
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=720,
        bargap=0.1,
        xaxis_title="channel index (SPS output)",
        yaxis_title="mean SSIM with the other channels",
        legend={"orientation": "h", "x": 0, "y": -0.12, "yanchor": "top"},
        margin={"t": 60, "b": 110},
    )
    return fig


def write_redundancy(
    result: RedundancyResult, out_dir: str | Path, meta: dict[str, Any]
) -> dict[str, Path]:
    """Write ssim_matrix.csv, channels.csv, redundancy.json and redundancy.html into ``out_dir``.

    ``meta`` says what was analysed (model, architecture, data set, split, seed); it is written
    into the JSON and the page's title.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in REDUNDANCY_FILES}
    index = [str(c) for c in range(result.channels)]
    pd.DataFrame(result.matrix, index=index, columns=index).rename_axis("channel").to_csv(
        paths["ssim_matrix.csv"], float_format="%.6f"
    )
    result.channel_frame().to_csv(paths["channels.csv"], index=False, float_format="%.6f")
    summary = {**meta, **result.summary(), "files": sorted(paths)}
    paths["redundancy.json"].write_text(json.dumps(summary, indent=2, default=str) + "\n")
    what = meta.get("source", "model")
    heat = heatmap_figure(
        result, f"SSIM between SPS channels: {len(result.heatmap_channels())} of {result.channels}"
    )
    bars = channel_figure(result, "Mean SSIM per channel index")
    how = (
        f"{result.images} {meta.get('dataset', '')} images ({meta.get('split', 'test')} split), "
        f"maps averaged over T = {meta.get('time_steps', '?')} steps; SSIM "
        f"{'per image, averaged over the images' if result.average == 'per-image' else 'of the maps averaged over the images'}, "
        f"window {result.win_size}, data range {result.data_range:g}, {result.grid[0]}x{result.grid[1]} token grid; "
        f"{summary['silent_channels']} silent channels"
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>autospik channel redundancy: {what}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #222; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} p {{ font-size: 14px; max-width: 1300px; }}
.row {{ display: grid; grid-template-columns: 730px minmax(0, 1fr); gap: 12px; align-items: start; }}
.row > div {{ min-width: 0; overflow: hidden; }}
@media (max-width: 1240px) {{ .row {{ grid-template-columns: minmax(0, 1fr); }} }}
</style></head><body>
<h1>Channel redundancy after SPS: {what}</h1>
<p>{how}. Mean SSIM over all pairs {summary["mean_ssim"]:.3f}; channels 0-{max(result.channels // 2 - 1, 0)}:
{summary["mean_ssim_lower_half"] if summary["mean_ssim_lower_half"] is None else f"{summary['mean_ssim_lower_half']:.3f}"},
channels {result.channels // 2}-{result.channels - 1}:
{summary["mean_ssim_upper_half"] if summary["mean_ssim_upper_half"] is None else f"{summary['mean_ssim_upper_half']:.3f}"}.</p>
<div class="row"><div>{heat.to_html(full_html=False, include_plotlyjs=True)}</div>
<div>{bars.to_html(full_html=False, include_plotlyjs=False, default_width="100%", config={"responsive": True})}</div></div>
</body></html>
"""
    paths["redundancy.html"].write_text(page)
    return paths


# --- the models and images ---------------------------------------------------------------------
def analysis_images(
    dataset: Any,
    data_root: str | Path | None,
    *,
    count: int,
    seed: int,
    time_steps: int | None = None,
) -> torch.Tensor:
    """``count`` test images of ``dataset`` (a name or a DatasetInfo; a fixed subset drawn with
    ``seed``), unaugmented; for event data, frames at ``time_steps``."""
    from autospikformer.data.base import dataset_info
    from autospikformer.data.loading import build_dataset, subset

    info = dataset_info(dataset)
    steps = time_steps if info.event_based else None
    test = subset(
        build_dataset(dataset, data_root, train=False, augment=False, time_steps=steps),
        count,
        seed,
    )
    return torch.stack([test[i][0] for i in range(len(test))])


def analyze_model(
    model: nn.Module,
    images: torch.Tensor,
    *,
    average: str = "per-image",
    win_size: int | None = None,
    batch_size: int = 64,
) -> RedundancyResult:
    """The redundancy analysis of a standalone Spikformer on ``images``."""
    maps = sps_feature_maps(model, images, batch_size=batch_size)
    return analyze_maps(maps, average=average, win_size=win_size)


def trial_model(
    config: Any,
    trial: Any,
    checkpoint: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
) -> nn.Module:
    """A complete trial's subnet as a standalone Spikformer with the BN statistics the trial was
    evaluated with (the study's recalibration batches)."""
    from autospikformer.checkpoint import load_supernet
    from autospikformer.search.suggest import architecture_from_params
    from autospikformer.study.evaluator import study_evaluator

    evaluator = study_evaluator(
        config, load_supernet(checkpoint, space=config.space), data_root=data_root, device=device
    )
    return evaluator.standalone(architecture_from_params(trial.params))


def file_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A standalone model file (``autospik subnet export``) and the data set it names, if any."""
    from autospikformer.checkpoint import load_model
    from autospikformer.checkpoint_file import read_checkpoint

    model, meta = load_model(path)
    if meta["kind"] != "spikformer":
        raise RedundancyError(
            f"{path} is a supernet checkpoint: analyse one of its subnets with --study and "
            "--trial, or export one with 'autospik subnet export'"
        )
    dataset = read_checkpoint(path).get("dataset")
    return model, {**meta, "dataset": dataset}
