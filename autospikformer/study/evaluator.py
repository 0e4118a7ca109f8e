"""A study's way of evaluating a subnet, and a trial's subnet taken out as a standalone model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial
from torch import nn

from autospikformer.checkpoint import load_supernet
from autospikformer.device import resolve_device
from autospikformer.search.architecture import Architecture
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.config import StudyConfig
from autospikformer.training.evaluate import SubnetEvaluator, SubnetResult
from autospikformer.training.features import default_budget


def study_evaluator(
    config: StudyConfig,
    supernet: nn.Module,
    *,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool = False,
    time_steps: list[int] | None = None,
    test_pass: bool = False,
    sharing: int = 1,
) -> SubnetEvaluator:
    """The evaluator a study's trials use: its data, calibration, evaluation and energy settings
    (event data prepared at ``time_steps``, default every T of the space) and its reuse of SPS
    features (``search.feature_cache_mb``, by default a quarter of the device's memory split
    among the ``sharing`` workers on that device).

    ``test_pass``: evaluate on the whole test split instead (the front's test accuracy after a
    search under ``eval_split = "val"``); calibration is the same either way, the study's
    batches from the training split without its validation part.
    """
    search = config.search
    if search.feature_cache_mb is None:
        budget = default_budget(resolve_device(device), sharing=sharing)
    else:
        budget = search.feature_cache_mb * 2**20
    return SubnetEvaluator(
        supernet,
        dataset=config.data_info_at(data_root),
        data_root=data_root or config.data_root,
        calib_batches=search.calib_batches,
        batch_size=search.batch_size,
        calib_batch_size=search.calib_batch_size,
        eval_samples=None if test_pass else search.eval_samples,
        device=device,
        seed=config.seed,
        precision="auto" if search.amp else "fp32",
        progress=progress,
        time_steps=time_steps,
        holdout=config.holdout,
        eval_split="test" if test_pass else search.eval_split,
        energy_model=config.energy,
        reuse_features=search.reuse_features,
        feature_budget=budget,
    )


def evaluate_as_study(
    config: StudyConfig,
    checkpoint: str | Path,
    arch: Architecture,
    *,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool = False,
) -> SubnetResult:
    """Evaluate ``arch`` exactly as the study's trials are: the study's supernet checkpoint,
    data, calibration batches, evaluation images and energy model, so a trial's architecture
    gets the accuracy and energy the trial stored (``energy --study``, ``supernet eval
    --study``)."""
    config.space.check(arch)
    evaluator = study_evaluator(
        config,
        load_supernet(checkpoint, space=config.space),
        data_root=data_root,
        device=device,
        progress=progress,
        time_steps=[arch.time_steps],
    )
    return evaluator.evaluate(arch)


def export_subnet(
    config: StudyConfig,
    trial: FrozenTrial,
    checkpoint: str | Path,
    out: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Write a complete trial's subnet to ``out`` as a standalone Spikformer and re-evaluate it.

    The weights are the supernet's slices after the same BN recalibration the trial used (same
    batches), so the saved model reproduces the trial's accuracy on the study's evaluation set.
    Returns the saved model's ``accuracy``, the ``samples`` it was measured on and its
    ``num_parameters``.
    """
    from autospikformer.model.spikformer import Spikformer

    arch = architecture_from_params(trial.params)
    evaluator = study_evaluator(
        config,
        load_supernet(checkpoint, space=config.space),
        data_root=data_root,
        device=device,
        time_steps=[arch.time_steps],
    )
    model = evaluator.standalone(arch)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    accuracy, energy = trial.values
    model.cpu().save(
        out,
        study=config.name,
        trial=trial.number,
        dataset=config.dataset,
        space=config.space.name,
        space_fingerprint=config.space.fingerprint(),
        study_accuracy=float(accuracy),
        study_energy_mj=float(energy),
        calib_batches=config.search.calib_batches,
        eval_samples=config.search.eval_samples,
    )
    loaded = Spikformer.load(out)
    accuracy, samples = evaluator.accuracy(loaded)
    return {"accuracy": accuracy, "samples": samples, "num_parameters": loaded.num_parameters()}
