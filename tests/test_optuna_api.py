"""The project's reads of Optuna's tables give what Optuna's own reads give."""

from __future__ import annotations

import math

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from autospikformer.optuna_api import read_trials


def test_read_trials_equals_optunas_get_trials(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = optuna.create_study(storage=url, directions=["maximize", "minimize"])
    dist = {"x": FloatDistribution(0.0, 1.0), "c": CategoricalDistribution([1.5, 2, "a"])}
    for i in range(12):
        trial = study.ask(dist)
        trial.set_user_attr("note", {"i": i, "list": [1, 2]})
        trial.set_constraint("budget", i - 6.0)
        if i % 5 == 1:
            study.tell(trial, state=TrialState.FAIL)
        elif i % 5 == 2:
            study._storage.set_trial_intermediate_value(trial._trial_id, 3, 0.5)
            study.tell(trial, state=TrialState.PRUNED)
        elif i % 5 == 3:
            study.tell(trial, [math.inf, -math.inf])
        elif i % 5 != 4:
            study.tell(trial, [i / 10, 1.0 / (i + 1)])
    study.enqueue_trial({"x": 0.25})  # one waiting, one or two running
    fresh = optuna.load_study(study_name=study.study_name, storage=url)
    expected = fresh.get_trials(deepcopy=False)
    got = read_trials(optuna.load_study(study_name=study.study_name, storage=url))
    assert [t.number for t in got] == list(range(13))
    assert got == expected
    assert {t.state for t in got} >= {TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED,
                                      TrialState.RUNNING, TrialState.WAITING}  # fmt: skip


def test_read_trials_of_an_in_memory_study_goes_through_optuna() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    assert read_trials(study) == study.get_trials(deepcopy=False)
