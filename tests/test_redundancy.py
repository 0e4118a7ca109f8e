"""Channel redundancy: scikit-image's SSIM on every pair, duplicated channels score 1,
independent noise near 0, a model whose SPS duplicates a channel, and the CLI on a real study."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from searched import two_studies  # noqa: F401 (a fixture)
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from autospikformer import Architecture, Spikformer
from autospikformer.analysis.redundancy import (
    RedundancyError,
    analyze_maps,
    analyze_model,
    pairwise_ssim,
    sps_feature_maps,
    window_size,
)
from autospikformer.cli.app import app
from autospikformer.training.evaluate import recalibrate_bn

runner = CliRunner()


@pytest.mark.parametrize(("size", "win"), [(8, 7), (4, 3), (9, 5)])
def test_batched_pairs_equal_one_scikit_image_call_per_pair(size: int, win: int) -> None:
    rng = np.random.default_rng(size)
    maps = rng.integers(0, 3, (3, 6, size, size)).astype(float) / 2  # 3 images, 6 channels
    matrix = pairwise_ssim(maps, win_size=win)
    for i in range(6):
        for j in range(6):
            direct = np.mean(
                [structural_similarity(m[i], m[j], data_range=2.0, win_size=win) for m in maps]
            )
            assert matrix[i, j] == pytest.approx(direct, abs=1e-12)
    assert np.array_equal(matrix, matrix.T) and np.all(np.diag(matrix) == 1.0)


def test_duplicated_channels_score_one_and_independent_noise_near_zero() -> None:
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 2, (4, 16, 32, 32))
    maps[:, 9] = maps[:, 4]  # channel 9 duplicates channel 4 on every image
    result = analyze_maps(maps)
    assert result.matrix[4, 9] == pytest.approx(1.0, abs=1e-12)
    noise = result.matrix[~np.eye(16, dtype=bool)]
    noise = noise[noise < 0.999]
    assert abs(noise.mean()) < 0.02 and np.abs(noise).max() < 0.1
    assert result.win_size == 7 and result.grid == (32, 32)
    # the two duplicates have the highest mean SSIM
    assert set(np.argsort(-result.mean_ssim)[:2]) == {4, 9}


def test_heatmap_keeps_20_highest_and_20_lowest_in_order() -> None:
    rng = np.random.default_rng(1)
    maps = rng.uniform(0, 2, (1, 64, 8, 8))
    for c in range(40, 64):  # the higher channels copy channel 40, plus a little noise
        maps[0, c] = maps[0, 40] + rng.normal(0, 0.05 * (c - 39), (8, 8))
    result = analyze_maps(maps)
    high, low = result.ranked()
    assert len(high) == 20 and len(low) == 20
    mean = result.mean_ssim
    assert min(mean[high]) >= max(np.delete(mean, high))
    assert max(mean[low]) <= min(np.delete(mean, low))
    assert result.heatmap_channels() == sorted(high + low)
    assert set(high) <= set(range(40, 64))
    summary = result.summary()
    assert summary["mean_ssim_upper_half"] > summary["mean_ssim_lower_half"]
    frame = result.channel_frame()
    assert (frame.loc[high, "heatmap"] == "highest").all()
    assert sorted(frame["rank"]) == list(range(1, 65))


def test_averaging_choices_and_bad_windows() -> None:
    rng = np.random.default_rng(2)
    maps = rng.uniform(0, 2, (4, 5, 8, 8))
    per_image = analyze_maps(maps, average="per-image").matrix
    pooled = analyze_maps(maps, average="maps").matrix
    assert np.allclose(per_image, np.mean([pairwise_ssim(m) for m in maps], axis=0))
    assert np.allclose(pooled, pairwise_ssim(maps.mean(axis=0)))
    assert window_size(4, 4) == 3 and window_size(8, 8) == 7 and window_size(6, 9) == 5
    with pytest.raises(RedundancyError, match="odd number from 3 to 7"):
        window_size(8, 8, 4)
    with pytest.raises(RedundancyError, match="too small"):
        window_size(2, 2)
    with pytest.raises(RedundancyError, match="allowed: per-image, maps"):
        analyze_maps(maps, average="mean")


def _duplicate_sps_channel(model: Spikformer, source: int, copy: int) -> None:
    """Make SPS output channel ``copy`` compute exactly what channel ``source`` computes."""
    sps = model.sps
    with torch.no_grad():
        for conv, bn in ((sps.convs[3], sps.bns[3]), (sps.rpe_conv, sps.rpe_bn)):
            conv.weight[copy] = conv.weight[source]
            for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                tensor[copy] = tensor[source]


def test_a_model_that_duplicates_a_channel() -> None:
    torch.manual_seed(0)
    arch = Architecture(2, 32, (2.0, 2.0), (2, 4), (1.0, 1.0), (2.0, 2.0), 2)
    model = Spikformer(arch, num_classes=10, in_channels=1, img_size=8).eval()
    images = torch.randn(12, 1, 8, 8)
    recalibrate_bn(model, None, [images], "cpu")  # BN statistics of these inputs: spikes flow
    maps = sps_feature_maps(model, images, batch_size=5)
    assert maps.shape == (12, 32, 4, 4) and maps.min() >= 0 and maps.max() <= 2
    source = int(np.argmax(maps.mean(axis=(0, 2, 3))))  # the busiest channel
    copy = (source + 7) % 32
    _duplicate_sps_channel(model, source, copy)
    result = analyze_model(model, images)
    assert result.rates[source] > 0.05 and (result.rates > 0).sum() > 16
    assert result.matrix[source, copy] == pytest.approx(1.0, abs=1e-12)
    assert result.win_size == 3 and result.images == 12


def test_cli_on_a_real_study_and_its_exported_model(two_studies, tmp_path) -> None:  # noqa: F811
    s = two_studies
    common = ["-s", s["storage"], "--runs-dir", s["runs"], "--device", "cpu"]
    out = tmp_path / "trial"
    result = runner.invoke(
        app, ["analyze", "redundancy", s["dsps"], "--trial", "1", "--out", str(out), "--images", "24", *common]
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "SPS channels on 24 test images of digits" in result.stdout
    matrix = pd.read_csv(out / "ssim_matrix.csv", index_col=0).to_numpy()
    channels = pd.read_csv(out / "channels.csv")
    summary = json.loads((out / "redundancy.json").read_text())
    assert matrix.shape == (summary["embed_dim"], summary["embed_dim"]) == (len(channels),) * 2
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert summary["dataset"] == "digits" and summary["grid"] == [4, 4]
    assert summary["split"] == "test" and summary["average"] == "per-image"
    assert "redundancy.html" in summary["files"] and (out / "redundancy.html").stat().st_size > 1e6
    page = (out / "redundancy.html").read_text()
    # fits a 1400-pixel window: one figure of a fixed 720 px, the other takes what is left
    assert "grid-template-columns: 730px minmax(0, 1fr)" in page
    assert page.count('"width":720') == 1 and 'style="height:100%; width:100%;"' in page
    # the same subnet as an exported file gives the same matrix (same BN statistics, images)
    model = tmp_path / "sub.pt"
    export = runner.invoke(
        app, ["subnet", "export", s["dsps"], "--trial", "1", "--out", str(model), *common]
    )
    assert export.exit_code == 0, export.stderr
    out2 = tmp_path / "file"
    result = runner.invoke(
        app, ["analyze", "redundancy", "--model", str(model), "--out", str(out2), "--images", "24"]
    )
    assert result.exit_code == 0, result.stderr
    again = pd.read_csv(out2 / "ssim_matrix.csv", index_col=0).to_numpy()
    assert np.allclose(again, matrix, atol=1e-6)
    # bad requests: one line each
    for args, fragment in (
        (["--out", "x"], "name a study and --trial, or a --model file"),
        ([s["dsps"], "--out", "x", *common], "pass --trial N"),
        ([s["dsps"], "--trial", "99", "--out", "x", *common], "has no trial 99"),
        (["--model", str(tmp_path / "none.pt"), "--out", "x"], "no such file"),
        (["--model", str(s["supernet"]), "--out", "x"], "is a supernet checkpoint"),
        (["--model", str(model), "--out", "x", "--win-size", "4"], "--win-size 4"),
        (["--model", str(model), "--out", "x", "--average", "mean"], "--average 'mean'"),
    ):
        bad = runner.invoke(app, ["analyze", "redundancy", *args])
        lines = bad.stderr.strip().splitlines()
        assert bad.exit_code == 1 and len(lines) == 1 and fragment in lines[0], bad.stderr
