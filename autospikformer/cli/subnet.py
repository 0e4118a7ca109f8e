"""`autospik subnet ...`: take one searched architecture out of its study as a standalone model."""

from __future__ import annotations

from pathlib import Path

import typer

from autospikformer.cli.common import (
    RUNS_DIR,
    STORAGE,
    THREADS,
    App,
    console,
    fail,
    guard,
    output_file,
    set_threads,
)

app = App(
    help="Subnets: export a trial's architecture as a standalone Spikformer checkpoint.",
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
    supernet: Path = typer.Option(None, "--supernet", help="Supernet checkpoint (default: runs)."),
    data_root: str = typer.Option(None, "--data-root", help="Override the study's data.root."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    threads: int | None = THREADS,
) -> None:
    """Write trial N as a standalone Spikformer checkpoint (weights and architecture).

    The file loads with ``Spikformer.load`` alone, without the supernet or the study.

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
        f"study ({result['samples']} evaluation images), energy {energy:.4g} mJ",
        soft_wrap=True,
    )
