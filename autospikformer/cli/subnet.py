"""`autospik subnet ...`: take one searched architecture out of its study as a standalone model,
or train it as one (fine-tuned from its inherited weights or from scratch, SPEC section 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from autospikformer.cli.common import (
    RUNS_DIR,
    STORAGE,
    THREADS,
    App,
    CommandError,
    console,
    fail,
    guard,
    output_file,
    output_folder,
    set_threads,
)
from autospikformer.units import energy_text

app = App(
    help="Subnets: export a trial's architecture as a standalone Spikformer checkpoint, or "
    "train it (fine-tuned from its inherited weights, or from scratch).",
    no_args_is_help=True,
)


@app.command("export")
def export(
    study: str = typer.Argument(..., help="Study name in the storage."),
    trial: int = typer.Option(
        ..., "--trial", "-t", help="Trial number (see 'autospik study show')."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint file to write (.pt)."),
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    supernet: Path = typer.Option(
        None, "--supernet", help="Supernet checkpoint (default: <runs-dir>/<study>/supernet.pt)."
    ),
    data_root: str = typer.Option(None, "--data-root", help="Override the study's data.root."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    threads: int | None = THREADS,
) -> None:
    """Write trial N as a standalone Spikformer checkpoint (weights and architecture).

    The file loads with Spikformer.load alone, without the supernet or the study.

    The weights are the supernet's slices after the same BN recalibration the trial used (same
    batches), so the model reproduces the trial's accuracy on the study's evaluation set; the
    command evaluates the standalone model and prints both numbers.
    """
    set_threads(threads)
    from optuna.trial import TrialState

    from autospikformer.search.suggest import architecture_from_params
    from autospikformer.study.evaluator import export_subnet
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.supernet_stage import supernet_path

    optuna_study, config, _ = guard(resolve_study, study, storage, create=False)
    trials = optuna_study.get_trials(deepcopy=False)
    frozen = [t for t in trials if t.number == trial]
    if not trials:
        fail(f"study {config.name!r} has no trials yet: run 'autospik study run {config.name}'")
    if not frozen:
        fail(
            f"study {config.name!r} has no trial {trial} (its trials are numbered "
            f"0..{len(trials) - 1}; 'autospik study show {config.name}' lists the front)"
        )
    if frozen[0].state != TrialState.COMPLETE:
        fail(f"trial {trial} of study {config.name!r} is {frozen[0].state.name}, not COMPLETE")
    record = frozen[0]
    arch = architecture_from_params(record.params)
    path = supernet or supernet_path(config, runs_dir)
    if not Path(path).is_file():
        fail(f"no supernet checkpoint at {path}: pass --supernet or --runs-dir")
    output_file(out)
    result = guard(export_subnet, config, record, path, out, data_root=data_root, device=device)
    accuracy, energy = record.values
    console.print(
        f"wrote {out}: trial {trial}, {arch} ({result['num_parameters']:,} parameters); "
        f"accuracy {100 * result['accuracy']:.2f} % standalone vs {100 * accuracy:.2f} % in the "
        f"study ({result['samples']} evaluation images), energy {energy_text(energy)}",
        soft_wrap=True,
    )


# --- training a trial's subnet (also `study validate`'s schedule options) ------------------
FROM_SCRATCH = typer.Option(
    False,
    "--from-scratch",
    help="Train from a seeded initialisation with the study's full recipe instead of "
    "fine-tuning the inherited weights.",
)
EPOCHS = typer.Option(
    None,
    "--epochs",
    help="Epochs (fine-tune: a tenth of the study's, at least 1; from scratch: the study's).",
)
LR = typer.Option(None, "--lr", help="Peak learning rate (fine-tune: the study's lr x 0.1).")
MIN_LR = typer.Option(None, "--min-lr", help="Final learning rate of the cosine schedule.")
WARMUP_EPOCHS = typer.Option(None, "--warmup-epochs", help="Linear warm-up epochs (fine-tune: 0).")
BATCH_SIZE = typer.Option(None, "--batch-size", help="Global batch size (the study's).")
WEIGHT_DECAY = typer.Option(None, "--weight-decay", help="AdamW weight decay (the study's).")
MIXUP = typer.Option(None, "--mixup", help="Mixup Beta alpha, 0 = off (the study's).")
AUGMENT = typer.Option(None, "--augment/--no-augment", help="Augmentation (the study's).")
SEED = typer.Option(None, "--seed", help="Seed of the data order and initialisation (the study's).")
LOADER_WORKERS = typer.Option(None, "--loader-workers", help="Data loader worker processes.")
TRAIN_SAMPLES = typer.Option(
    None, "--train-samples", help="Train on a fixed random subset of this many training images."
)
EVAL_EVERY = typer.Option(
    None, "--eval-every", help="Also measure accuracy every N epochs (metrics.csv; 0 = never)."
)
#: The option of each TrainConfig setting, for messages.
_OPTION_OF = {"workers": "--loader-workers"}


def schedule_from(config: Any, from_scratch: bool, **settings: Any) -> Any:
    """The schedule of the command line: the study's fine-tuning or its full recipe, with the
    settings given; a bad one is one line naming its option."""
    from autospikformer.study.trained_subnets import schedule_for
    from autospikformer.training.config import TrainConfigError

    try:
        return schedule_for(config.train, from_scratch=from_scratch, **settings)
    except TrainConfigError as exc:
        name, _, rest = str(exc).partition(":")
        option = _OPTION_OF.get(name, "--" + name.replace("_", "-"))
        raise CommandError(f"{option}:{rest}") from None


def percent_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


@app.command("train")
def train(
    study: str = typer.Argument(..., help="Study name in the storage."),
    trial: int = typer.Option(
        None, "--trial", "-t", help="Trial number (see 'autospik study show')."
    ),
    model: Path = typer.Option(
        None, "--model", "-m", help="Fine-tune this exported subnet file (autospik subnet export)."
    ),
    from_scratch: bool = FROM_SCRATCH,
    epochs: int = EPOCHS,
    lr: float = LR,
    min_lr: float = MIN_LR,
    warmup_epochs: int = WARMUP_EPOCHS,
    batch_size: int = BATCH_SIZE,
    weight_decay: float = WEIGHT_DECAY,
    mixup: float = MIXUP,
    augment: bool = AUGMENT,
    seed: int = SEED,
    loader_workers: int = LOADER_WORKERS,
    train_samples: int = TRAIN_SAMPLES,
    eval_every: int = EVAL_EVERY,
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    supernet: Path = typer.Option(None, "--supernet", help="Supernet checkpoint (default: runs)."),
    data_root: str = typer.Option(None, "--data-root", help="Override the study's data.root."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder (default <runs-dir>/<study>/subnets/trial-N-<schedule>)."
    ),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue its checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    threads: int | None = THREADS,
) -> None:
    """Train trial N's subnet as a standalone Spikformer and store its result with the trial.

    By default it is fine-tuned from its inherited weights (a short cosine schedule at a tenth
    of the study's learning rate; its first evaluation, before any step, is the trial's
    accuracy); --from-scratch trains it with the study's full recipe. The same data,
    augmentation, AMP and DDP (under torchrun) as supernet training; a killed run resumes.

    At the end it measures the accuracy as the trial was measured (and on the whole test split),
    the energy under the study's energy model and the ANN equivalent. The checkpoint (model.pt)
    is a standalone model that 'autospik energy --checkpoint' and 'analyze redundancy --model'
    read.
    """
    set_threads(threads)
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.subnets import subnet_start, train_subnet
    from autospikformer.training.distributed import dist_from_env, shutdown

    optuna_study, config, _ = resolve_study(study, storage, create=False, write=True)
    schedule = schedule_from(
        config, from_scratch, epochs=epochs, lr=lr, min_lr=min_lr, warmup_epochs=warmup_epochs,
        batch_size=batch_size, weight_decay=weight_decay, mixup=mixup, augment=augment,
        seed=seed, workers=loader_workers, train_samples=train_samples, eval_every=eval_every,
    )  # fmt: skip
    start = subnet_start(
        optuna_study, config, schedule, trial=trial, model_file=model, runs_dir=runs_dir,
        supernet=supernet,
    )  # fmt: skip
    if out is not None:  # a place that cannot be a folder: one line naming --out, before training
        output_folder(out, "--out")
    main = dist_from_env().is_main
    if main:
        _say_start(config, start, schedule)
    try:
        done = train_subnet(
            optuna_study, config, start, schedule, runs_dir=runs_dir, out_dir=out,
            data_root=data_root, device=device, resume=resume, progress=progress,
        )  # fmt: skip
    except KeyboardInterrupt:
        console.print("stopped: run the same command again to resume from the last epoch")
        raise typer.Exit(130) from None
    finally:
        shutdown()
    if done.record is not None:
        _say_result(config, start, done)


def _say_start(config: Any, start: Any, schedule: Any) -> None:
    console.print(
        f"study {config.name}, trial {start.trial.number}: {start.arch}; "
        f"{schedule.describe()} (schedule {schedule.id})",
        soft_wrap=True,
        highlight=False,
    )


def _say_result(config: Any, start: Any, done: Any) -> None:
    from autospikformer.units import energy_text

    record = done.record
    split = "validation" if record["eval_split"] == "val" else "test"
    inherited, inherited_energy = start.trial.values
    if not done.trained_now:
        console.print(f"already trained with this schedule (stored {record['finished']})")
    if record["start_accuracy"] is not None:
        console.print(
            f"before training: {split} accuracy {percent_text(record['start_accuracy'])} "
            f"(the trial's: {percent_text(inherited)})",
            highlight=False,
        )
    test = "" if split == "test" else f", test accuracy {percent_text(record['test_accuracy'])}"
    console.print(
        f"trained: {split} accuracy {percent_text(record['accuracy'])} (inherited "
        f"{percent_text(inherited)}){test}; energy {energy_text(record['energy_mj'])} "
        f"(inherited {energy_text(inherited_energy)}, ANN equivalent "
        f"{energy_text(record['ann_energy_mj'])}, {record['energy_model']}); "
        f"{record['num_parameters']:,} parameters",
        soft_wrap=True,
        highlight=False,
    )
    console.print(
        f"model: {done.folder / 'model.pt'} (sha256 {record['sha256'][:12]}...; "
        f"metrics.csv beside it), stored with trial {record['trial']} of {config.name}",
        soft_wrap=True,
        highlight=False,
    )
