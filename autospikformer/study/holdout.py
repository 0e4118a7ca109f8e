"""The validation protocol of a study (``search.eval_split = "val"``, SPEC section 5).

- Candidates are ranked on a held-out part of the training split
  (:class:`~autospikformer.data.split.HoldoutSplit`: ``data.val_fraction`` of it, drawn with the
  study's seed), which the supernet never trains on and BN recalibration never sees.
- The split is recorded in the study (:data:`~autospikformer.study.storage.HOLDOUT_ATTR`) by the
  first worker and in the supernet checkpoint by stage 1; every worker and every supernet must
  agree with it, so a machine whose data files differ is refused instead of ranking on a
  different split.
- After the search, each member of the front is evaluated once on the whole test split (same
  BN recalibration batches as its trial) and the result is stored beside it (study record
  ``autospik:test_accuracy:<trial>``), so the export reports validation and test accuracy side
  by side. Members measured already are not measured again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from autospikformer.data.split import HoldoutSplit
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import (
    HOLDOUT_ATTR,
    TEST_ACCURACY_PREFIX,
    StudyError,
    set_study_record,
    study_record,
    study_records,
)


def test_accuracies(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Trial number -> ``{"accuracy", "samples"}`` measured on the test split after a search
    under ``eval_split = "val"`` (study records ``autospik:test_accuracy:<number>``)."""
    out = {}
    for key, value in study_records(study).items():
        if key.startswith(TEST_ACCURACY_PREFIX) and isinstance(value, dict):
            out[int(key[len(TEST_ACCURACY_PREFIX) :])] = value
    return out


def check_study_holdout(study: optuna.Study, split: dict[str, Any] | None) -> None:
    """Record the worker's validation split in the study, or refuse one that differs."""
    if split is None:
        return
    stored = study_record(study, HOLDOUT_ATTR)
    if stored is None:
        set_study_record(study, HOLDOUT_ATTR, split)
        return
    if stored.get("fingerprint") != split["fingerprint"]:
        raise StudyError(
            f"study {study.study_name!r} ranks on a validation split of {stored.get('val_size')} "
            f"of {stored.get('size')} training images (fingerprint {stored.get('fingerprint')}); "
            f"here the split is {split['val_size']} of {split['size']} ({split['fingerprint']}): "
            "this machine's training files differ, use the same data set files"
        )


def check_supernet_holdout(
    meta: dict[str, Any],
    config: StudyConfig,
    path: str | Path,
    split: dict[str, Any] | None = None,
) -> None:
    """Refuse a supernet that trained on the study's validation images: one that held out
    another split, or (given this machine's ``split``) the same split of other data files."""
    wanted = config.holdout
    if wanted is None:
        return
    saved = HoldoutSplit.from_description(meta.get("holdout"))
    if saved == wanted and split is not None:
        theirs = meta["holdout"].get("fingerprint")
        if theirs != split["fingerprint"]:
            raise StudyError(
                f"{path} held out a validation split of other training files (fingerprint "
                f"{theirs}, {meta['holdout'].get('size')} images; here {split['fingerprint']}, "
                f"{split['size']}): train the supernet where the workers' data files are"
            )
    if saved != wanted:
        trained = "the whole training split" if saved is None else f"{saved} held out"
        raise StudyError(
            f"{path} was trained on {trained}, but study {config.name!r} ranks candidates on "
            f"{wanted} of the training split (search.eval_split = 'val'): its supernet must "
            "never have seen those images; train one for this study (leave out --supernet)"
        )


def measure_front_on_test(
    study: optuna.Study,
    config: StudyConfig,
    checkpoint: str | Path,
    *,
    data_root: str | None = None,
    device: str = "auto",
) -> list[dict[str, Any]]:
    """Evaluate the front members not yet measured on the whole test split, once each, and
    store their test accuracy in the study; returns what was measured now."""
    from autospikformer.checkpoint import load_supernet
    from autospikformer.study.evaluator import study_evaluator

    if config.search.eval_split != "val":
        return []
    front = sorted(t.number for t in study.best_trials)  # within the budgets, as every view
    done = test_accuracies(study)
    todo = [n for n in front if n not in done]
    if not todo:
        return []
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    supernet = load_supernet(checkpoint, space=config.space)
    evaluator = study_evaluator(
        config, supernet, data_root=data_root, device=device, test_pass=True
    )
    measured = []
    for number in todo:
        arch = architecture_from_params(trials[number].params)
        result = evaluator.evaluate(arch, energy=False)
        value = {"accuracy": float(result.accuracy), "samples": int(result.samples)}
        set_study_record(study, f"{TEST_ACCURACY_PREFIX}{number}", value)
        measured.append({"trial": number, **value})
    return measured
