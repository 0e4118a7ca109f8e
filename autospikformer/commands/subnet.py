"""`autospik subnet ...`: take one searched architecture out of its study as a standalone model."""

from __future__ import annotations

from pathlib import Path

import typer

from autospikformer.commands.common import console, fail

app = typer.Typer(
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
    storage: str = typer.Option(
        "sqlite:///autospik.db", "--storage", "-s", help="Optuna RDB storage URL."
    ),
    runs_dir: Path = typer.Option("runs", "--runs-dir", help="Where the study's supernet lives."),
    supernet: Path = typer.Option(None, "--supernet", help="Supernet checkpoint (default: runs)."),
    data_root: str = typer.Option(None, "--data-root", help="Override the study's data.root."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
) -> None:
    """Write trial N as a standalone Spikformer checkpoint (weights and architecture).

    The file loads with ``Spikformer.load`` alone, without the supernet or the study.

    The weights are the supernet's slices after the same BN recalibration the trial used (same
    batches), so the model reproduces the trial's accuracy on the study's evaluation set; the
    command evaluates the standalone model and prints both numbers.
    """
    from optuna.trial import TrialState

    from autospikformer.commands.study import _guard, _resolve
    from autospikformer.study import architecture_of, supernet_path

    optuna_study, config, _ = _guard(_resolve, study, storage, create=False)
    frozen = [t for t in optuna_study.get_trials(deepcopy=False) if t.number == trial]
    if not frozen:
        fail(
            f"study {config.name!r} has no trial {trial} (trials 0..{len(optuna_study.trials) - 1})"
        )
    if frozen[0].state != TrialState.COMPLETE:
        fail(f"trial {trial} of study {config.name!r} is {frozen[0].state.name}, not COMPLETE")
    record = frozen[0]
    arch = architecture_of(record)
    path = supernet or supernet_path(config, runs_dir)
    if not Path(path).is_file():
        fail(f"no supernet checkpoint at {path}: pass --supernet or --runs-dir")
    result = _guard(_export, config, arch, Path(path), out, data_root, device, record)
    accuracy, energy = record.values
    console.print(
        f"wrote {out}: trial {trial}, {arch} ({result['num_parameters']:,} parameters); "
        f"accuracy {100 * result['accuracy']:.2f} % standalone vs {100 * accuracy:.2f} % in the "
        f"study ({result['samples']} evaluation images), energy {energy:.4g} mJ",
        soft_wrap=True,
    )


def _export(config, arch, path, out, data_root, device, record) -> dict:  # type: ignore[no-untyped-def]
    """Recalibrate BN exactly as the evaluator does, slice, save, and re-evaluate the saved file."""
    import torch

    from autospikformer.evaluate import SubnetEvaluator, recalibrate_bn
    from autospikformer.spikformer import Spikformer
    from autospikformer.study import StudyError
    from autospikformer.train import load_supernet

    try:
        supernet = load_supernet(path, space=config.space)
    except (ValueError, OSError) as exc:
        raise StudyError(" ".join(str(exc).split())) from None
    search = config.search
    evaluator = SubnetEvaluator(
        supernet,
        dataset=config.dataset,
        data_root=data_root or config.data_root,
        calib_batches=search.calib_batches,
        batch_size=search.batch_size,
        eval_samples=search.eval_samples,
        device=device,
        seed=config.seed,
    )
    calib, test = evaluator.splits(arch.time_steps)
    if calib is not None:
        recalibrate_bn(evaluator.supernet, arch, calib, evaluator.device)
    model = evaluator.supernet.extract(arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    accuracy, energy = record.values
    model.cpu().save(
        out,
        study=config.name,
        trial=record.number,
        dataset=config.dataset,
        space=config.space.name,
        space_fingerprint=config.space.fingerprint(),
        study_accuracy=float(accuracy),
        study_energy_mj=float(energy),
        calib_batches=search.calib_batches,
        eval_samples=search.eval_samples,
    )
    loaded = Spikformer.load(out).to(evaluator.device).eval()
    correct = seen = 0
    with torch.no_grad():
        for x, y in test:
            correct += int((loaded(x).argmax(-1) == y).sum())
            seen += int(y.shape[0])
    return {
        "accuracy": correct / max(seen, 1),
        "samples": seen,
        "num_parameters": loaded.num_parameters(),
    }
