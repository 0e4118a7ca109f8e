"""A RUNNING trial that never beat goes stale like any other once a worker starts its clock.

Optuna counts a trial as stale only from its last heartbeat; a trial whose worker lost the
database between creating it and its first beat has none and would stay RUNNING forever,
holding back the study's last trials (``study/retrying_storage.py``).
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autospikformer.study.retrying_storage import start_silent_trials_clocks


def test_a_trial_without_heartbeat_goes_stale_after_its_clock_starts(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1
    )
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize"] * 2)
    sid = study._study_id
    silent = storage.create_new_trial(sid)  # RUNNING, never beat
    beating = storage.create_new_trial(sid)
    storage.record_heartbeat(beating)
    done = storage.create_new_trial(sid)
    storage.set_trial_state_values(done, TrialState.COMPLETE, [1.0, 1.0])
    time.sleep(2.5)  # SQLite keeps whole seconds
    assert storage._get_stale_trial_ids(sid) == [beating]  # Optuna alone never sees `silent`

    assert start_silent_trials_clocks(storage, sid) == [silent]
    assert start_silent_trials_clocks(storage, sid) == []  # its clock runs: nothing to start
    assert storage._get_stale_trial_ids(sid) == [beating]  # not stale yet: a beat just now
    time.sleep(2.5)  # SQLite keeps whole seconds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    states = {t._trial_id: t.state for t in study.get_trials()}
    assert states == {silent: TrialState.FAIL, beating: TrialState.FAIL, done: TrialState.COMPLETE}
    assert start_silent_trials_clocks(storage, sid) == []  # finished trials are left alone
