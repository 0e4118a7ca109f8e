"""`autospik analyze ...`: the paper's analyses of a trained model (channel redundancy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from autospikformer.cli.common import (
    RUNS_DIR,
    STORAGE,
    THREADS,
    App,
    console,
    fail,
    guard,
    set_threads,
    writing_to,
)

app = App(
    help="Analyses of trained models: channel redundancy after SPS (the paper's Fig. 1B).",
    no_args_is_help=True,
)


def _trial_source(
    study: str, trial: int, storage: str, runs_dir: Path, supernet: Path | None, **kwargs: Any
) -> tuple[Any, dict[str, Any], Any]:
    """The subnet of a study's complete trial, what to say about it, and its data set (a name, or
    a folder study's recorded folder)."""
    from optuna.trial import TrialState

    from autospikformer.analysis.redundancy import trial_model
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.supernet_stage import supernet_path

    optuna_study, config, _ = guard(resolve_study, study, storage, create=False)
    frozen = [t for t in optuna_study.get_trials(deepcopy=False) if t.number == trial]
    if not frozen:
        fail(
            f"study {config.name!r} has no trial {trial} (trials 0..{len(optuna_study.trials) - 1})"
        )
    if frozen[0].state != TrialState.COMPLETE:
        fail(f"trial {trial} of study {config.name!r} is {frozen[0].state.name}, not COMPLETE")
    path = supernet or supernet_path(config, runs_dir)
    if not Path(path).is_file():
        fail(f"no supernet checkpoint at {path}: pass --supernet or --runs-dir")
    model = guard(trial_model, config, frozen[0], path, **kwargs)
    meta = {
        "source": f"study {config.name}, trial {trial}",
        "study": config.name,
        "trial": trial,
        "dataset": config.dataset,
        "data_root": kwargs.get("data_root") or config.data_root,
        "seed": config.seed,
    }
    return model, meta, config.data_info_at(kwargs.get("data_root"))


def _file_source(
    model_file: Path, dataset: str | None, data_root: str | None, seed: int | None
) -> tuple[Any, dict[str, Any]]:
    """The model of a ``--model`` file, and what to say about it."""
    from autospikformer.analysis.redundancy import file_model

    if not model_file.is_file():
        fail(f"--model {model_file}: no such file")
    model, info = guard(file_model, model_file)
    name = dataset or info.get("dataset")
    if name is None:
        fail(f"{model_file} does not say which data set it was trained on: pass --dataset")
    meta = {
        "source": f"model {model_file}",
        "model": str(model_file),
        "dataset": name,
        "data_root": data_root or "data",
        "seed": seed or 0,
    }
    return model, meta


@app.command()
def redundancy(
    study: str = typer.Argument(
        None, help="Study name in the storage (with --trial); or leave out and give --model."
    ),
    trial: int = typer.Option(None, "--trial", "-t", help="The study's trial to analyse."),
    model_file: Path = typer.Option(
        None, "--model", "-m", help="A standalone model file (autospik subnet export) instead."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    images: int = typer.Option(32, "--images", min=1, help="Test images the maps are taken on."),
    average: str = typer.Option(
        "per-image",
        "--average",
        help="per-image: SSIM on each image, averaged; maps: SSIM of the maps averaged over the "
        "images.",
    ),
    win_size: int = typer.Option(
        None, "--win-size", help="SSIM window (odd; default 7 or the largest the grid allows)."
    ),
    dataset: str = typer.Option(
        None, "--dataset", help="Data set of a --model file that does not name its own."
    ),
    data_root: str = typer.Option(None, "--data-root", help="Data folder (default: the study's)."),
    seed: int = typer.Option(
        None, "--seed", help="Seed of the image subset (default: the study's)."
    ),
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    supernet: Path = typer.Option(
        None, "--supernet", help="Supernet checkpoint (default: <runs-dir>/<study>/supernet.pt)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    threads: int | None = THREADS,
) -> None:
    """SSIM between every pair of SPS output channels on real images: a CSV matrix, the mean per
    channel, and a heatmap of the 20 most and 20 least redundant channels (the paper's Fig. 1B).

    Analyse a study's trial (its subnet, BN recalibrated as the trial was) or a model file.
    """
    set_threads(threads)
    from autospikformer.analysis.redundancy import (
        AVERAGES,
        analysis_images,
        analyze_model,
        write_redundancy,
    )

    if average not in AVERAGES:
        fail(f"--average {average!r} is not allowed (allowed: {', '.join(AVERAGES)})")
    if (model_file is None) == (study is None):
        fail("name a study and --trial, or a --model file (one of them)")
    if study is not None:
        if trial is None:
            fail(f"which trial of study {study!r}? pass --trial N (see 'autospik study show')")
        model, meta, data = _trial_source(
            study, trial, storage, runs_dir, supernet, data_root=data_root, device=device
        )
        meta["seed"] = meta["seed"] if seed is None else seed
    else:
        model, meta = _file_source(model_file, dataset, data_root, seed)
        data = meta["dataset"]
    arch = model.arch
    meta.update(
        architecture=str(arch),
        time_steps=arch.time_steps,
        embed_dim=arch.embed_dim,
        split="test",
        images_requested=images,
    )
    batch = guard(
        analysis_images,
        data,
        meta["data_root"],
        count=images,
        seed=meta["seed"],
        time_steps=arch.time_steps,
    )
    result = guard(analyze_model, model.cpu(), batch, average=average, win_size=win_size)
    with writing_to("--out", out):
        paths = write_redundancy(result, out, meta)
    summary = result.summary()
    console.print(
        f"{meta['source']} ({arch}): {result.channels} SPS channels on {result.images} test "
        f"images of {meta['dataset']}; mean SSIM {summary['mean_ssim']:.3f} "
        f"(channels 0-{result.channels // 2 - 1}: {summary['mean_ssim_lower_half']:.3f}, "
        f"{result.channels // 2}-{result.channels - 1}: {summary['mean_ssim_upper_half']:.3f}); "
        f"{summary['silent_channels']} silent channels; {summary['pairs_above_0.9']} pairs "
        "above 0.9",
        soft_wrap=True,
    )
    console.print(f"heatmap: {paths['redundancy.html']}", soft_wrap=True)
