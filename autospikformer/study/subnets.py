"""After the search: a trial's subnet trained as a standalone Spikformer (SPEC section 9).

- **Where it starts.** Fine-tuning starts from the trial's inherited weights exactly as the
  trial was evaluated: the supernet's slices after the trial's BN recalibration (same batches),
  or an exported subnet file of that trial (``autospik subnet export``, ``--model``), which holds
  the same weights. The first evaluation, before any step, is the trial's own (same images,
  precision and batches) and is stored as ``start_accuracy``. From scratch starts from the
  seeded initialisation.
- **How it trains.** The one trainer (:class:`~autospikformer.training.trainer.StandaloneTrainer`)
  with the schedule's recipe: the study's data without its validation part, the same
  augmentation, AMP, DDP under ``torchrun``, the progress bar, a checkpoint per epoch that
  resumes exactly after a kill. Its folder is ``<runs-dir>/<study>/subnets/trial-N-<schedule id>``.
- **What it measures.** As a trial is measured: accuracy on the trial's evaluation images (the
  test split, or the validation part under ``eval_split = "val"``) with the energy of the same
  pass under the study's energy model and the dense ANN equivalent; then the accuracy on the
  whole test split. A trained model keeps the BN statistics it trained with (no recalibration).
- **What it stores.** One study record per trial and schedule
  (:mod:`~autospikformer.study.trained_subnets`), written after the checkpoint is complete;
  a finished run whose record is there returns it without training or measuring again.

Bad input (an unknown or unfinished trial, a model file of another study, space or data set, a
missing supernet) is one :class:`~autospikformer.study.storage.StudyError` line before anything
is written.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from autospikformer.checkpoint import load_model, load_supernet
from autospikformer.checkpoint_file import read_checkpoint, remove_stale_temporaries
from autospikformer.data.loading import check_dataset
from autospikformer.device import resolve_device
from autospikformer.energy.meter import EnergyMeter
from autospikformer.model.spikformer import Spikformer
from autospikformer.search.architecture import Architecture
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.config import StudyConfig
from autospikformer.study.evaluator import study_evaluator
from autospikformer.study.storage import DEFAULT_RUNS_DIR, StudyError, set_study_record
from autospikformer.study.supernet_stage import file_sha256, searched_supernet
from autospikformer.study.trained_subnets import SubnetSchedule, records_of, trained_key
from autospikformer.training.distributed import dist_from_env
from autospikformer.training.evaluate import SubnetEvaluator, autocast
from autospikformer.training.trainer import MODEL_CHECKPOINT_NAME, StandaloneTrainer

LOCK_NAME = "train.lock"


class SubnetBusy(StudyError):
    """Another process is training this subnet with this schedule now."""


def complete_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Trial ``number`` of ``study``, which must be complete (it has a subnet and values)."""
    trials = study.get_trials(deepcopy=False)
    name = study.study_name
    if not trials:
        raise StudyError(f"study {name!r} has no trials yet: run 'autospik study run {name}'")
    found = [t for t in trials if t.number == number]
    if not found:
        raise StudyError(
            f"study {name!r} has no trial {number} (its trials are numbered 0.."
            f"{len(trials) - 1}; 'autospik study show {name}' lists the front)"
        )
    trial = found[0]
    if trial.state != TrialState.COMPLETE or trial.values is None:
        raise StudyError(
            f"trial {number} of study {name!r} is {trial.state.name}, not COMPLETE: only a "
            "complete trial has a subnet to train"
        )
    return trial


def subnet_folder(
    config: StudyConfig, runs_dir: str | Path, trial: int, schedule: SubnetSchedule
) -> Path:
    """Where a trial's subnet trains with ``schedule``: its checkpoint and metrics."""
    return Path(runs_dir) / config.name / "subnets" / f"trial-{trial}-{schedule.id}"


@dataclass(frozen=True, kw_only=True)
class SubnetStart:
    """What a trial's training starts from: the trial, its architecture, where the weights come
    from (``origin``, recorded in the checkpoint) and what gives them (a supernet file or an
    exported model), checked before anything is written."""

    trial: FrozenTrial
    arch: Architecture
    origin: dict[str, Any]
    supernet: Path | None = None
    model: Spikformer | None = None


def _exported_model(
    path: Path, config: StudyConfig, trial: int | None
) -> tuple[int, Spikformer, str]:
    """An exported subnet file of the study: its trial number, model and digest."""
    if not path.is_file():
        raise StudyError(f"--model {path}: no such file")
    model, meta = load_model(path)
    if meta["kind"] != "spikformer":
        raise StudyError(
            f"--model {path} is a supernet checkpoint: fine-tune a trial from the study's "
            "supernet (leave out --model), or export one with 'autospik subnet export'"
        )
    data = read_checkpoint(path)
    fingerprint = data.get("space_fingerprint")
    if (fingerprint or config.space.fingerprint()) != config.space.fingerprint() or not (
        config.space.contains(model.arch)
    ):
        raise StudyError(
            f"--model {path} holds {model.arch} of space {data.get('space', '?')!r} (fingerprint "
            f"{fingerprint}), not a subnet of study {config.name!r}'s space "
            f"{config.space.name!r} ({config.space.fingerprint()})"
        )
    info = config.data_info
    wanted = (info.num_classes, info.in_channels, info.img_size, info.variant)
    held = (model.num_classes, model.in_channels, model.img_size, model.variant)
    if held != wanted or data.get("study", config.name) != config.name:
        raise StudyError(
            f"--model {path} was exported from study {data.get('study', '?')!r} for input "
            f"{held}, not from study {config.name!r} ({config.dataset}: {wanted})"
        )
    number = data.get("trial", trial)
    if number is None or (trial is not None and trial != number):
        raise StudyError(
            f"--model {path} holds trial {number} of {config.name!r}"
            + ("" if number is None else f", not trial {trial}")
            + ": name the trial it was exported from with --trial"
        )
    return int(number), model, file_sha256(path)


def subnet_start(
    study: optuna.Study,
    config: StudyConfig,
    schedule: SubnetSchedule,
    *,
    trial: int | None = None,
    model_file: str | Path | None = None,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    supernet: str | Path | None = None,
) -> SubnetStart:
    """Check a training's inputs and say where it starts (one StudyError line, nothing
    written): the trial, and for fine-tuning the supernet the study searched with (its digest
    recorded) or the exported ``model_file`` of that trial."""
    if model_file is not None and not schedule.inherited:
        raise StudyError(
            "--model gives the weights to fine-tune from; --from-scratch starts from none"
        )
    model = None
    if model_file is not None:
        trial, model, digest = _exported_model(Path(model_file), config, trial)
    if trial is None:
        raise StudyError("name the trial to train with --trial (or give an exported --model)")
    frozen = complete_trial(study, trial)
    arch = architecture_from_params(frozen.params)
    if model is not None:
        if model.arch != arch:
            raise StudyError(f"--model holds {model.arch}, but trial {trial} is {arch}")
        origin = {"start": "exported", "sha256": digest}
        return SubnetStart(trial=frozen, arch=arch, origin=origin, model=model)
    if not schedule.inherited:
        return SubnetStart(trial=frozen, arch=arch, origin={"start": "scratch"})
    path = searched_supernet(study, config, runs_dir=runs_dir, checkpoint=supernet)
    origin = {"start": "inherited", "supernet_sha256": file_sha256(path)}
    return SubnetStart(trial=frozen, arch=arch, origin=origin, supernet=path)


def subnet_evaluator(
    config: StudyConfig,
    start: SubnetStart,
    *,
    data_root: str | None = None,
    device: str | torch.device = "auto",
    every_t: bool = False,
) -> SubnetEvaluator:
    """The study's evaluator for subnets starting like ``start``: built on the supernet (which
    gives the inherited weights), else on a model of the architecture (which only holds the
    device); its data at the subnet's T, or with ``every_t`` at every T of the space (one
    evaluator for many candidates)."""
    if start.supernet is not None:
        holder: nn.Module = load_supernet(start.supernet, space=config.space)
    else:
        holder = start.model or Spikformer.for_data(start.arch, config.data_info)
    steps = config.space.choices["time_steps"] if every_t else [start.arch.time_steps]
    return study_evaluator(
        config, holder, data_root=data_root, device=str(device), time_steps=list(steps)
    )


def _initial_weights(evaluator: SubnetEvaluator, start: SubnetStart) -> dict[str, torch.Tensor]:
    """The inherited weights: the trial's recalibrated slice, or the exported model's."""
    if start.model is not None:
        return start.model.state_dict()
    return evaluator.standalone(start.arch).state_dict()


@contextlib.contextmanager
def claimed(folder: Path, *, wait: bool = False) -> Iterator[bool]:
    """Hold the training lock of ``folder`` (created); yields False when another process holds
    it and ``wait`` is off."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_NAME, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@torch.no_grad()
def measure_model(evaluator: SubnetEvaluator, model: Spikformer) -> dict[str, Any]:
    """A standalone model measured as a trial is: accuracy on the evaluator's images and the
    energy of the same pass (rates by the energy meter, priced by the study's model)."""
    _, split = evaluator.splits(model.arch.time_steps)
    model.to(evaluator.device).eval()
    meter = EnergyMeter(model, event_data=evaluator.info.event_based)
    correct = seen = 0
    with meter:
        for x, y in split:
            with autocast(evaluator.device, evaluator.precision):
                logits = model(x)
            correct += int((logits.argmax(-1) == y).sum())
            seen += int(y.shape[0])
    report = meter.report(model=evaluator.energy_model)
    return {
        "accuracy": correct / max(seen, 1),
        "samples": seen,
        "energy_mj": float(report.energy_mj),
        "ann_energy_mj": float(report.ann_energy_mj),
        "mean_firing_rate": float(report.mean_firing_rate),
        "energy_model": report.model.name,
        "num_parameters": int(model.num_parameters()),
    }


def _test_accuracy(
    config: StudyConfig,
    model: Spikformer,
    measured: dict[str, Any],
    data_root: str | None,
    device: str | torch.device,
) -> tuple[float, int]:
    """The accuracy on the whole test split (the measurement's own when it was that)."""
    if config.search.eval_split == "test" and config.search.eval_samples is None:
        return measured["accuracy"], measured["samples"]
    tester = study_evaluator(
        config, model, data_root=data_root, device=str(device),
        time_steps=[model.arch.time_steps], test_pass=True,
    )  # fmt: skip
    return tester.accuracy(model)


def _record(
    config: StudyConfig,
    number: int,
    schedule: SubnetSchedule,
    path: Path,
    evaluator: SubnetEvaluator,
    data_root: str | None,
) -> dict[str, Any]:
    """Measure the trained model in ``path`` (the file, as stored) and make its record."""
    model, _ = load_model(path)
    measured = measure_model(evaluator, model)
    test, test_samples = _test_accuracy(config, model, measured, data_root, evaluator.device)
    ckpt = read_checkpoint(path)
    split = config.search.eval_split
    start = (ckpt.get("start") or {}).get(f"{split}_acc")
    return {
        "trial": number,
        "schedule": schedule.kind,
        "schedule_id": schedule.id,
        "recipe": schedule.recipe.to_dict(),
        "epochs": int(ckpt["epoch"]),
        "eval_split": split,
        "start_accuracy": start,
        **measured,
        "test_accuracy": test,
        "test_samples": test_samples,
        "checkpoint": str(path.resolve()),
        "sha256": file_sha256(path),
        "host": socket.gethostname(),
        "train_seconds": sum(float(row["seconds"]) for row in ckpt.get("history", [])),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def check_training_inputs(
    config: StudyConfig, *, device: str = "auto", data_root: str | None = None
) -> str:
    """Refuse a device or a data folder that training would fail on (one line, before anything
    is written); returns the data root to read."""
    resolve_device(device)
    root = data_root or config.data_root
    check_dataset(config.dataset, root)
    return root


@dataclass(frozen=True, kw_only=True)
class SubnetTraining:
    """What :func:`train_subnet` did: the stored record (None on a DDP rank other than 0), the
    folder, and whether it trained now (False: the finished record was there)."""

    record: dict[str, Any] | None
    folder: Path
    trained_now: bool


def train_subnet(
    study: optuna.Study,
    config: StudyConfig,
    start: SubnetStart,
    schedule: SubnetSchedule,
    *,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    out_dir: str | Path | None = None,
    data_root: str | None = None,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    wait: bool = True,
    step_callback: Callable[[int, int], None] | None = None,
    evaluator: SubnetEvaluator | None = None,
) -> SubnetTraining:
    """Train ``start``'s subnet with ``schedule`` (resuming its checkpoint), measure it and
    store its record; see the module docstring. Without ``wait`` a subnet that another process
    is training now raises :class:`SubnetBusy`. ``evaluator`` (:func:`subnet_evaluator`, built
    when needed otherwise) can serve many subnets."""
    root = check_training_inputs(config, device=device, data_root=data_root)
    number = start.trial.number
    folder = (
        Path(out_dir) if out_dir is not None else subnet_folder(config, runs_dir, number, schedule)
    )
    main = dist_from_env().is_main
    with claimed(folder, wait=wait) if main else contextlib.nullcontext(True) as mine:
        if not mine:
            raise SubnetBusy(
                f"trial {number}'s subnet is being trained in {folder} by another process"
            )
        remove_stale_temporaries(folder / MODEL_CHECKPOINT_NAME)
        evaluator_once = functools.cache(  # built when the run needs it
            lambda: evaluator or subnet_evaluator(config, start, data_root=root, device=device)
        )
        split = config.search.eval_split
        trainer = StandaloneTrainer(
            arch=start.arch,
            initial=(lambda: _initial_weights(evaluator_once(), start)) if schedule.inherited else None,
            origin=start.origin,
            evaluate=lambda model: {f"{split}_acc": evaluator_once().accuracy(model)[0]},
            metadata={"study": config.name, "trial": number, "schedule": schedule.to_dict(),
                      "space": config.space.name, "space_fingerprint": config.space.fingerprint()},
            dataset=config.dataset, data_root=root, out_dir=folder, config=schedule.recipe,
            device=device, resume=resume, progress=progress, step_callback=step_callback,
            holdout=config.holdout,
        )  # fmt: skip
        stored = records_of(study, schedule.id).get(number)
        if trainer.complete and stored and stored.get("sha256") == file_sha256(trainer.path):
            return SubnetTraining(record=stored, folder=folder, trained_now=False)
        path = trainer.run()
        if not main:
            return SubnetTraining(record=None, folder=folder, trained_now=True)
        record = _record(config, number, schedule, path, evaluator_once(), root)
        set_study_record(study, trained_key(number, schedule.id), record)
    return SubnetTraining(record=record, folder=folder, trained_now=True)
