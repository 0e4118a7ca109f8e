"""Trained subnets as a study keeps them: the schedule that trains one, and its stored result.

- A **schedule** (:class:`SubnetSchedule`) says where training starts, from the trial's
  inherited weights (``fine-tune``) or from a seeded initialisation (``scratch``), and the recipe.
- **Fine-tuning** (the default, SPEC section 9) is derived from the study's ``[train]`` recipe:
  :data:`FINETUNE_EPOCH_FRACTION` of its epochs (at least one), its learning rate times
  :data:`FINETUNE_LR_FACTOR` decaying by a cosine to its ``min_lr`` (no warm-up), and the rest
  as it is (batch, weight decay, label smoothing, mixup, augmentation, AMP, seed). **From
  scratch** is the study's recipe as it is. Any setting can be changed (the command line's
  options).
- A schedule's **id** (``fine-tune-1a2b3c4d``) is its kind and a digest of its recipe (without the
  settings that leave the result unchanged: loader workers, how often it evaluates), so the same
  schedule run twice is found again: its folder (``runs/<study>/subnets/trial-N-<id>/``) resumes
  and its record is reused.
- **Records** are study records (:data:`~autospikformer.study.storage.TRAINED_PREFIX` +
  ``"<trial>:<schedule id>"``), one per trial and schedule, holding :data:`RECORD_FIELDS`.
  Reports show, per trial, the result of the schedule that finished last (:func:`latest_trained`).

Nothing here imports torch: reports read the records without it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import optuna

from autospikformer.checks import check_choice
from autospikformer.study.storage import TRAINED_PREFIX, StudyError, study_records
from autospikformer.training.config import TrainConfig

SCHEDULE_KINDS = ("fine-tune", "scratch")
#: Fine-tuning: this fraction of the study recipe's epochs (at least 1) ...
FINETUNE_EPOCH_FRACTION = 0.1
#: ... at the study recipe's learning rate times this, no warm-up.
FINETUNE_LR_FACTOR = 0.1
#: Recipe settings outside a schedule's id (the trainer's ``RESUME_FREE``: the result is the same).
ID_FREE = ("workers", "eval_every")

#: What a trained subnet's record holds (accuracies are fractions, energies mJ per image).
RECORD_FIELDS = {
    "trial": "the trial's number",
    "schedule": "fine-tune or scratch",
    "schedule_id": "the schedule's id (kind and recipe digest)",
    "recipe": "the training settings (TrainConfig)",
    "epochs": "epochs trained",
    "eval_split": "the split of accuracy: the study's (test; val under the validation protocol)",
    "start_accuracy": "accuracy before the first step (fine-tune: the trial's; scratch: chance)",
    "accuracy": "accuracy after training, on the trial's evaluation images (its split too)",
    "samples": "images accuracy was measured on",
    "test_accuracy": "accuracy on the whole test split",
    "test_samples": "images test_accuracy was measured on",
    "energy_mj": "energy per image under the study's energy model, measured with accuracy",
    "ann_energy_mj": "the dense ANN equivalent's energy under the same model",
    "mean_firing_rate": "mean firing rate measured with accuracy",
    "energy_model": "the energy model's name",
    "num_parameters": "the model's parameters",
    "checkpoint": "the trained model's file (a standalone Spikformer)",
    "sha256": "the file's SHA-256",
    "host": "the machine that trained it",
    "train_seconds": "wall time of the training epochs",
    "finished": "when the result was stored (UTC, ISO 8601)",
}


@dataclass(frozen=True, kw_only=True)
class SubnetSchedule:
    """How a trial's subnet is trained: ``kind`` (``fine-tune`` or ``scratch``) and ``recipe``."""

    kind: str
    recipe: TrainConfig

    def __post_init__(self) -> None:
        check_choice("schedule", self.kind, SCHEDULE_KINDS, error=StudyError)
        if not isinstance(self.recipe, TrainConfig):
            raise StudyError(f"recipe: {self.recipe!r} is not allowed (allowed: a TrainConfig)")

    @classmethod
    def fine_tune(cls, train: TrainConfig, **changes: Any) -> SubnetSchedule:
        """The default fine-tuning of a study whose recipe is ``train``, with ``changes``
        (None values ignored): see the module docstring."""
        lr = train.lr * FINETUNE_LR_FACTOR
        derived = {
            "epochs": max(1, math.ceil(train.epochs * FINETUNE_EPOCH_FRACTION)),
            "lr": lr,
            "min_lr": min(train.min_lr, lr),
            "warmup_epochs": 0,
            "sandwich": False,
        }
        given = {k: v for k, v in changes.items() if v is not None}
        return cls(kind="fine-tune", recipe=train.replace(**{**derived, **given}))

    @classmethod
    def scratch(cls, train: TrainConfig, **changes: Any) -> SubnetSchedule:
        """Training from scratch with the study's recipe ``train`` and ``changes``."""
        given = {k: v for k, v in changes.items() if v is not None}
        return cls(kind="scratch", recipe=train.replace(**{"sandwich": False, **given}))

    @property
    def inherited(self) -> bool:
        """Whether training starts from the trial's inherited weights."""
        return self.kind == "fine-tune"

    @property
    def id(self) -> str:
        settings = {k: v for k, v in self.recipe.to_dict().items() if k not in ID_FREE}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
        return f"{self.kind}-{digest[:8]}"

    def describe(self) -> str:
        """One line for people: ``fine-tune, 2 epochs, lr 0.0005 -> 1e-05 (cosine)``."""
        r = self.recipe
        warmup = f", {r.warmup_epochs} warm-up" if r.warmup_epochs else ""
        return (
            f"{self.kind}, {r.epochs} epoch{'s' if r.epochs != 1 else ''}, lr {r.lr:g} -> "
            f"{r.min_lr:g} (cosine{warmup}), batch {r.batch_size}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "recipe": self.recipe.to_dict()}


def schedule_for(
    train: TrainConfig, *, from_scratch: bool = False, **changes: Any
) -> SubnetSchedule:
    """The fine-tuning (default) or from-scratch schedule of a study's recipe, with ``changes``;
    a bad setting is one :class:`~autospikformer.training.config.TrainConfigError` line naming
    it."""
    make = SubnetSchedule.scratch if from_scratch else SubnetSchedule.fine_tune
    return make(train, **changes)


def trained_key(trial: int, schedule_id: str) -> str:
    return f"{TRAINED_PREFIX}{trial}:{schedule_id}"


def trained_records(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trained subnet's record of ``study``, by trial number then finish time."""
    found = [
        value
        for key, value in study_records(study).items()
        if key.startswith(TRAINED_PREFIX) and isinstance(value, dict)
    ]
    return sorted(found, key=lambda r: (int(r.get("trial", -1)), str(r.get("finished", ""))))


def records_of(study: optuna.Study, schedule_id: str) -> dict[int, dict[str, Any]]:
    """Trial number -> the record of its subnet trained with schedule ``schedule_id``."""
    return {int(r["trial"]): r for r in trained_records(study) if r["schedule_id"] == schedule_id}


def latest_trained(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> the record of the schedule that finished last (what reports show)."""
    return {int(r["trial"]): r for r in trained_records(study)}  # sorted: the last one wins
