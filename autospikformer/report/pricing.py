"""Which energy model priced a study's trials, comparing studies, and re-pricing a finished study.

- A study records the model and constants that priced its trials in the user attribute
  ``autospik:energy`` (written when it is created); a study without it was priced by
  ``sop-45nm`` with the default constants.
- Energies of studies priced differently are not comparable: :func:`require_same_energy_model`
  refuses them with one line that says how to re-price one of them.
- Each complete trial stores its per-layer counts and measured rates (the trial system attribute
  ``autospik:energy_record``), so :func:`repriced_study` can give the study's trials under
  another model exactly as a fresh evaluation under that model would, without evaluating.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from autospikformer.energy.measurement import EnergyMeasurement
from autospikformer.energy.models import EnergyError, EnergyModel
from autospikformer.optuna_api import trial_id
from autospikformer.study.storage import (
    ANN_ENERGY_ATTR,
    CONFIG_ATTR,
    ENERGY_ATTR,
    ENERGY_MEASUREMENT_ATTR,
    RECORD_PREFIX,
    StudyError,
    set_study_record,
    study_record,
    study_records,
)


def study_energy_model(study: optuna.Study) -> EnergyModel:
    """The model and constants that priced ``study``'s trials."""
    try:
        return EnergyModel.from_attr(study_record(study, ENERGY_ATTR))
    except EnergyError as exc:
        raise StudyError(f"study {study.study_name!r}: unusable {ENERGY_ATTR}: {exc}") from None


def require_same_energy_model(studies: Sequence[optuna.Study]) -> EnergyModel:
    """The one energy model that priced every study; a one-line :class:`StudyError` otherwise."""
    if not studies:
        raise StudyError("no study to compare")
    first = studies[0]
    model = study_energy_model(first)
    for other in studies[1:]:
        theirs = study_energy_model(other)
        differ = model.differences(theirs)
        if differ:
            command = f"'autospik study export {other.study_name}"
            if "model" in differ:
                how = f"{command} --energy-model {model.name}'"
            else:
                how = f"{command} --constants FILE' (the [energy] table of {first.study_name!r})"
            raise StudyError(
                f"studies {first.study_name!r} ({model.describe()}) and {other.study_name!r} "
                f"({theirs.describe()}) are priced differently (differ in: {', '.join(differ)}); "
                f"re-price one with {how}, or compare studies priced alike"
            )
    return model


def trial_measurement(trial: FrozenTrial) -> EnergyMeasurement | None:
    """The energy record a complete trial stored (None: evaluated before records existed)."""
    data = trial.system_attrs.get(ENERGY_MEASUREMENT_ATTR)
    return None if data is None else EnergyMeasurement.from_json(data)


def repriced_study(study: optuna.Study, model: EnergyModel) -> optuna.Study:
    """An in-memory copy of ``study`` whose complete trials are priced by ``model``.

    Every trial is copied (numbers, parameters, attributes, times); a complete trial's energy
    objective and its ANN-equivalent attribute are recomputed from its stored record, and the
    copy's ``autospik:energy`` (and stored configuration) name ``model``. The storage of
    ``study`` is only read. A complete trial without a record is a :class:`StudyError`.
    """
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    missing = [t.number for t in complete if ENERGY_MEASUREMENT_ATTR not in t.system_attrs]
    if missing:
        shown = ", ".join(str(n) for n in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise StudyError(
            f"study {study.study_name!r}: {len(missing)} complete trials have no stored energy "
            f"record (trials {shown}; evaluated before records existed), so they cannot be "
            "re-priced; evaluate them again in a new study"
        )
    copy = optuna.create_study(study_name=study.study_name, directions=study.directions)
    for key, value in study.user_attrs.items():
        if not key.startswith(RECORD_PREFIX):  # records of an earlier release: copied below
            copy.set_user_attr(key, value)
    records = study_records(study)
    for key, value in records.items():
        set_study_record(copy, key, value)
    set_study_record(copy, ENERGY_ATTR, model.to_attr())
    config = records.get(CONFIG_ATTR)
    if isinstance(config, dict):
        set_study_record(copy, CONFIG_ATTR, {**config, "energy": model.to_table()})
    if study.metric_names is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            copy.set_metric_names(study.metric_names)
    for trial in sorted(trials, key=lambda t: t.number):
        values, user_attrs = trial.values, dict(trial.user_attrs)
        if trial.state == TrialState.COMPLETE:
            record = trial_measurement(trial)
            assert record is not None
            totals = record.totals(model)
            values = [trial.values[0], totals.energy_mj]
            user_attrs[ANN_ENERGY_ATTR] = totals.ann_energy_mj
        copy.add_trial(
            FrozenTrial(
                number=trial.number,
                state=trial.state,
                value=None,
                values=values,
                datetime_start=trial.datetime_start,
                datetime_complete=trial.datetime_complete,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=user_attrs,
                system_attrs=trial.system_attrs,
                intermediate_values=trial.intermediate_values,
                trial_id=trial_id(trial),
            )
        )
    return copy
