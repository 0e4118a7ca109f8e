"""Study records live in system attributes: Optuna's listings stay one short line per study,
and a study written by autospik 0.1 (records as user attributes) still opens and exports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna

from autospikformer.report.pricing import study_energy_model
from autospikformer.report.tables import study_settings
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import (
    CONFIG_ATTR,
    ENERGY_ATTR,
    SPACE_ATTR,
    SUMMARY_ATTR,
    create_study,
    load_study,
    open_storage,
    study_records,
)

OPTUNA = str(Path(sys.executable).parent / "optuna")  # Optuna's console script, this venv's


def test_records_are_system_attributes_and_the_listing_shows_the_summary(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    config = StudyConfig.load("digits")
    study, _ = create_study(open_storage(url, create=True), config)
    assert study.user_attrs == {SUMMARY_ATTR: config.summary()}
    records = study_records(study)
    assert StudyConfig.from_dict(records[CONFIG_ATTR]) == config
    assert records[SPACE_ATTR] == config.space.to_json()
    assert records[ENERGY_ATTR] == config.energy.to_attr()
    listed = subprocess.run(
        [OPTUNA, "studies", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    (row,) = json.loads(listed.stdout)
    assert row["user_attrs"] == {SUMMARY_ATTR: config.summary()}
    # the table row is as long as the summary and Optuna's own columns, not the configuration
    table = subprocess.run(
        [OPTUNA, "studies", "--storage", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert max(len(line) for line in table.splitlines()) < len(config.summary()) + 120
    assert len(config.to_json()) > 1000  # what the row held before, besides the space


def test_a_study_with_records_in_user_attributes_still_loads(tmp_path) -> None:
    config = StudyConfig.load("digits")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'old.db'}")
    old = optuna.create_study(
        study_name=config.name, storage=storage, directions=["maximize", "minimize"]
    )
    old.set_user_attr(CONFIG_ATTR, config.to_dict())
    old.set_user_attr(ENERGY_ATTR, config.energy.to_attr())
    study, loaded = load_study(storage, config.name)
    assert loaded == config
    assert study_settings(study) == config.to_dict()
    assert study_energy_model(study) == config.energy
