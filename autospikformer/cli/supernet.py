"""`autospik supernet ...`: train a supernet, evaluate one of its subnets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from autospikformer.cli.common import (
    RUNS_DIR,
    STORAGE,
    THREADS,
    App,
    console,
    fail,
    guard,
    output_folder,
    print_table,
    set_threads,
)

app = App(help="Train a weight-sharing supernet and evaluate its subnets.", no_args_is_help=True)

_RECIPE = "Recipe (default: the reference one; for --dataset digits the CPU-sized digits settings)"


@app.command("train")
def train(
    space: str = typer.Option(..., "--space", help="Search space: a preset name or a .toml file."),
    dataset: str = typer.Option(
        ...,
        "--dataset",
        help="digits, cifar10, cifar100, cifar10dvs, dvs128, nmnist or ncaltech101 (a folder of your own: through a study file).",
    ),
    out: Path = typer.Option(..., "--out", help="Output folder (supernet.pt, metrics.csv)."),
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder holding the data set (not needed for digits)."
    ),
    epochs: int | None = typer.Option(None, help=_RECIPE + ": epochs."),
    batch_size: int | None = typer.Option(None, help="Global batch size (split over processes)."),
    lr: float | None = typer.Option(None, help="Peak learning rate (AdamW)."),
    min_lr: float | None = typer.Option(None, help="Final learning rate of the cosine schedule."),
    warmup_lr: float | None = typer.Option(None, help="Learning rate at the start of warm-up."),
    warmup_epochs: int | None = typer.Option(None, help="Linear warm-up epochs."),
    weight_decay: float | None = typer.Option(None, help="AdamW weight decay."),
    label_smoothing: float | None = typer.Option(None, help="Label smoothing."),
    mixup: float | None = typer.Option(None, help="Mixup Beta alpha (0 = off)."),
    sandwich: bool | None = typer.Option(
        None, "--sandwich/--no-sandwich", help="Train largest + smallest + random each step."
    ),
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="Mixed precision (CUDA only)."),
    augment: bool | None = typer.Option(None, "--augment/--no-augment", help="Augmentation."),
    seed: int | None = typer.Option(None, help="Seed of weights, data order and architectures."),
    workers: int | None = typer.Option(None, help="Data loader worker processes."),
    train_samples: int | None = typer.Option(
        None, help="Train on a fixed random subset of this many training images."
    ),
    eval_every: int | None = typer.Option(
        None, help="Evaluate largest/smallest subnets every N epochs (0 = never)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    resume: bool = typer.Option(
        True, "--resume/--no-resume", help="Continue the checkpoint in --out if there is one."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    threads: int | None = THREADS,
    val_fraction: float | None = typer.Option(
        None,
        help="Hold out this fraction of the training split (a study's data.val_fraction under "
        "search.eval_split = 'val'; drawn with --val-seed, the study's seed).",
    ),
    val_seed: int = typer.Option(0, help="Seed of the held-out part (the study's study.seed)."),
) -> None:
    """Train a supernet: one sampled architecture per step, a checkpoint per epoch.

    Under torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel.
    """
    set_threads(threads)
    from autospikformer.checkpoint_file import remove_stale_temporaries
    from autospikformer.data.loading import check_dataset
    from autospikformer.device import resolve_device
    from autospikformer.search.space import SearchSpace
    from autospikformer.training.config import TrainConfig
    from autospikformer.training.distributed import dist_from_env, shutdown
    from autospikformer.training.trainer import CHECKPOINT_NAME, train_supernet

    search_space = guard(SearchSpace.load, space)
    recipe = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "min_lr": min_lr,
        "warmup_lr": warmup_lr, "warmup_epochs": warmup_epochs, "weight_decay": weight_decay,
        "label_smoothing": label_smoothing, "mixup": mixup, "sandwich": sandwich, "amp": amp,
        "augment": augment, "seed": seed, "workers": workers, "train_samples": train_samples,
        "eval_every": eval_every,
    }  # fmt: skip
    try:
        config = TrainConfig.preset(dataset).replace(**recipe)
        holdout = None
        if val_fraction is not None:
            from autospikformer.data.split import HoldoutSplit

            holdout = HoldoutSplit(fraction=val_fraction, seed=val_seed)
        resolve_device(device)  # before anything is written
        check_dataset(dataset, data_root)
        remove_stale_temporaries(output_folder(out) / CHECKPOINT_NAME)
        path = guard(
            train_supernet,
            space=search_space,
            dataset=dataset,
            data_root=data_root,
            out_dir=out,
            config=config,
            device=device,
            resume=resume,
            progress=progress,
            holdout=holdout,
        )
    except ValueError as exc:  # a setting the trainer cannot use (too few samples for a batch)
        fail(str(exc))
    finally:
        shutdown()
    if dist_from_env().is_main:
        console.print(
            f"supernet checkpoint: [bold]{escape(str(path))}[/] "
            f"(metrics: {escape(str(path.parent / 'metrics.csv'))})",
            markup=True,
        )


def _as_study(
    name: str, storage: str, runs_dir: Path, checkpoint: Path | None, arch: str,
    data_root: Path | None, device: str, quiet: bool,
) -> tuple[Any, str, str]:  # fmt: skip
    """``arch`` evaluated as study ``name``'s trials are; the result, a title, the split."""
    from autospikformer.study.evaluator import evaluate_as_study
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.supernet_stage import searched_supernet

    optuna_study, config, _ = resolve_study(name, storage, create=False)
    path = searched_supernet(optuna_study, config, runs_dir=runs_dir, checkpoint=checkpoint)
    architecture = _architecture(arch, config.space)
    result = evaluate_as_study(
        config, path, architecture, data_root=None if data_root is None else str(data_root),
        device=device, progress=not quiet,
    )  # fmt: skip
    split = "validation" if config.search.eval_split == "val" else "test"
    return result, f"subnet of {path}, evaluated as study {config.name}'s trials are", split


def _architecture(text: str, space: Any) -> Any:
    from autospikformer.search.architecture import Architecture

    if text == "largest":
        return space.largest()
    if text == "smallest":
        return space.smallest()
    file = Path(text)
    if text.endswith(".json") and file.is_file():
        text = file.read_text()
    return Architecture.parse(text)


@app.command("eval")
def evaluate(
    checkpoint: Path | None = typer.Argument(
        None, help="A supernet.pt written by `supernet train` (with --study: default the study's)."
    ),
    arch: str = typer.Option(
        "largest", "--arch", help="largest, smallest, a compact form, JSON, or a .json file."
    ),
    study: str | None = typer.Option(
        None,
        "--study",
        help="Evaluate as this study's trials are: its supernet, data, calibration and "
        "evaluation images, precision and energy model (a trial's architecture gets the "
        "trial's numbers).",
    ),
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    recalibrate: bool | None = typer.Option(
        None, "--recalibrate/--no-recalibrate", help="Recalibrate BN statistics first (default)."
    ),
    data_root: Path | None = typer.Option(None, "--data-root", help="Folder holding the data."),
    calib_batches: int | None = typer.Option(
        None, min=0, help="Training batches used for BN recalibration (default 8)."
    ),
    batch_size: int | None = typer.Option(None, min=1, help="Evaluation batch size (default 128)."),
    calib_batch_size: int | None = typer.Option(
        None, min=1, help="BN-recalibration batch size (default: --batch-size)."
    ),
    precision: str | None = typer.Option(
        None,
        help="auto (the default: bf16/fp16 autocast on CUDA, fp32 elsewhere), fp32, bf16 or fp16.",
    ),
    eval_samples: int | None = typer.Option(
        None, min=1, help="Evaluate on a fixed random subset of the test split."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    layers: bool = typer.Option(False, "--layers", help="Also print the per-layer energy table."),
    energy_model: str | None = typer.Option(
        None, "--energy-model", help="Energy model: sop-45nm (default) or memory-45nm."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    threads: int | None = THREADS,
) -> None:
    """Accuracy, energy and firing rate of one subnet with weights inherited from the supernet."""
    set_threads(threads)
    import json

    settings = {
        "recalibrate": recalibrate, "calib_batches": calib_batches, "batch_size": batch_size,
        "calib_batch_size": calib_batch_size, "precision": precision,
        "eval_samples": eval_samples, "energy_model": energy_model,
    }  # fmt: skip
    try:
        if study is not None:
            clash = [name for name, value in settings.items() if value is not None]
            if clash:
                option = "--recalibrate/--no-recalibrate" if clash[0] == "recalibrate" else (
                    "--" + clash[0].replace("_", "-"))  # fmt: skip
                fail(f"{option} cannot be combined with --study (the study's settings apply)")
            result, title, split = _as_study(study, storage, runs_dir, checkpoint, arch, data_root,
                                              device, as_json)  # fmt: skip
        else:
            if checkpoint is None:
                fail("give a supernet checkpoint, or --study NAME to use the study's")
            result, title = _evaluate_checkpoint(
                checkpoint, arch, data_root, device, quiet=as_json, **settings
            )
            split = "test"
    except ValueError as exc:  # a bad architecture or setting; project errors are one line too
        fail(str(exc).splitlines()[0])
    if as_json:
        print(json.dumps(result.to_dict(layers=layers), indent=2))
        return
    _print_result(result, title, split, layers)


def _evaluate_checkpoint(
    checkpoint: Path, arch: str, data_root: Path | None, device: str, *, quiet: bool,
    recalibrate: bool | None, calib_batches: int | None, batch_size: int | None,
    calib_batch_size: int | None, precision: str | None, eval_samples: int | None,
    energy_model: str | None,
) -> tuple[Any, str]:  # fmt: skip
    """``arch`` of a supernet checkpoint evaluated on its data set's test split."""
    from autospikformer.checkpoint import load_supernet_checkpoint
    from autospikformer.cli.energy import energy_model_from
    from autospikformer.training.config import CALIB_BATCHES, EVAL_BATCH_SIZE
    from autospikformer.training.evaluate import SubnetEvaluator

    pricing = energy_model_from(energy_model, None)
    supernet, meta = load_supernet_checkpoint(checkpoint)
    architecture = _architecture(arch, supernet.space)
    supernet.space.check(architecture)
    evaluator = SubnetEvaluator(
        supernet,
        dataset=meta["dataset"],
        data_root=data_root,
        calib_batches=CALIB_BATCHES if calib_batches is None else calib_batches,
        batch_size=batch_size or EVAL_BATCH_SIZE,
        calib_batch_size=calib_batch_size,
        eval_samples=eval_samples,
        device=device,
        precision=precision or "auto",
        time_steps=[architecture.time_steps],
        progress=not quiet,
        energy_model=pricing,
    )
    result = evaluator.evaluate(architecture, recalibrate=recalibrate is not False)
    return result, f"subnet of {checkpoint} ({meta['dataset']}, epoch {meta['epoch']})"


def _print_result(result: Any, title: str, split: str, layers: bool) -> None:
    """One subnet's figures as a table for people (and its per-layer energy table)."""
    from rich.table import Table

    from autospikformer.units import energy_text, percent

    table = Table(title=title)
    table.add_column("")
    table.add_column("value", overflow="fold")
    batches = "batch" if result.calib_batches == 1 else "batches"
    rows = [
        ("architecture", str(result.arch)),
        ("accuracy", f"{percent(result.accuracy)} % ({result.samples} {split} images)"),
        ("energy", f"{energy_text(result.energy_mj)} / image ({result.report.model.name})"),
        (
            "dense ANN equivalent",
            f"{energy_text(result.report.ann_energy_mj)} / image "
            f"(SNN / ANN = {result.report.ann_ratio:.3g})",
        ),
        ("mean firing rate", f"{result.mean_firing_rate:.3f}"),
        ("parameters", f"{result.num_parameters:,}"),
        (
            "BN recalibration",
            f"{result.calib_batches} {batches} of {result.calib_batch_size} "
            f"({result.calib_images} training images)"
            if result.recalibrated
            else "off (training statistics)",
        ),
        ("ran on", f"{result.device}, {result.precision}, batches of {result.eval_batch_size}"),
        ("seconds", f"{result.seconds:.2f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    print_table(table)
    if layers and result.report is not None:
        console.print(result.report.table.to_string(index=False))
