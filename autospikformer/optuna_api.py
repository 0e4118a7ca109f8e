"""Optuna's private API in one place: what the project needs and Optuna offers no public call for.

Every use of an underscored Optuna name, of an attribute key Optuna writes itself, or of Optuna's
database tables goes through this module, so that an Optuna upgrade that moves one of them is a
change here only. Each name says what it reaches.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat, get_heartbeat_thread

#: Trial system attributes Optuna writes itself: the parameters of an enqueued trial, the trials a
#: re-queued trial replaces (oldest first) and the first of them, and the prefix of the values
#: ``trial.set_constraint`` stores.
FIXED_PARAMS_KEY = "fixed_params"
RETRY_HISTORY_KEY = "retry_history"
FAILED_TRIAL_KEY = "failed_trial"
CONSTRAINTS_KEY = "constraints"

__all__ = [
    "CONSTRAINTS_KEY",
    "FAILED_TRIAL_KEY",
    "FIXED_PARAMS_KEY",
    "RETRY_HISTORY_KEY",
    "BaseHeartbeat",
    "get_heartbeat_thread",
    "heartbeat_tables",
    "non_domination_ranks",
    "rdb_engine",
    "set_trial_attrs",
    "stale_trial_ids",
    "storage_of",
    "study_id",
    "trial_id",
    "trials_after",
]


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study object reads and writes through (Optuna's cached wrapper for RDB)."""
    return study._storage


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage."""
    return study._study_id


def trial_id(trial: optuna.trial.BaseTrial | optuna.trial.FrozenTrial) -> int:
    """A trial's id in its storage (numbers count within a study; ids across the storage)."""
    return trial._trial_id  # type: ignore[union-attr]


def stale_trial_ids(storage: Any, study: int) -> list[int]:
    """The RUNNING trials of study ``study`` whose heartbeat is older than the grace period."""
    return list(storage._get_stale_trial_ids(study))


def rdb_engine(storage: Any) -> Any:
    """The SQLAlchemy engine under an RDB storage (or its cached wrapper), or None."""
    return getattr(getattr(storage, "_backend", storage), "engine", None)


#: Per RDB storage, the distribution of each (study, parameter) this process has checked and
#: written: later parameters of that name are checked against it without a query (Optuna
#: queries the study's first one each time; every written one is compatible with it).
_distributions_seen: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], BaseDistribution]] = (
    weakref.WeakKeyDictionary()
)


def set_trial_attrs(
    storage: BaseStorage,
    trial: int,
    *,
    params: dict[str, tuple[float, BaseDistribution]] | None = None,
    user_attrs: dict[str, Any] | None = None,
    system_attrs: dict[str, Any] | None = None,
) -> None:
    """Parameters (name -> internal value and distribution) and user and system attributes of
    running trial ``trial`` in one transaction of the RDB storage under ``storage``: each
    parameter checked against the study's distribution of that name as Optuna checks it, the
    attributes in one upsert statement per table on SQLite and PostgreSQL (Optuna writes and
    commits each parameter and attribute on its own); one call each on any other storage. All
    or none are written."""
    params, user_attrs, system_attrs = params or {}, user_attrs or {}, system_attrs or {}
    rdb = storage
    while not isinstance(rdb, optuna.storages.RDBStorage) and hasattr(rdb, "_backend"):
        rdb = rdb._backend
    if not isinstance(rdb, optuna.storages.RDBStorage):
        for name, (value, distribution) in params.items():
            storage.set_trial_param(trial, name, value, distribution)
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(trial, key, value)
        for key, value in system_attrs.items():
            storage.set_trial_system_attr(trial, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session, True) as session:
        row = models.TrialModel.find_or_raise_by_id(trial, session)
        rdb.check_trial_is_updatable(trial, row.state)
        checked = _insert_params(rdb, session, row.study_id, trial, params) if params else {}
        for model, attrs in (
            (models.TrialUserAttributeModel, user_attrs),
            (models.TrialSystemAttributeModel, system_attrs),
        ):
            if attrs:
                _upsert_attrs(rdb, session, model, trial, attrs)
    _distributions_seen.setdefault(rdb, {}).update(checked)  # once committed


def _insert_params(
    rdb: Any, session: Any, study: int, trial: int, params: dict[str, tuple[float, Any]]
) -> dict[tuple[int, str], Any]:
    """``params`` of ``trial`` into Optuna's parameter table: a name this process has not
    written in the study yet as Optuna writes one (its check against the study's distribution
    of that name queries the study), the others checked against the one kept and inserted in
    one statement. Returns the distributions checked by a query, to keep once committed."""
    from optuna.distributions import check_distribution_compatibility, distribution_to_json
    from optuna.storages._rdb import models

    known = _distributions_seen.get(rdb, {})
    checked = {}
    rows = []
    for name, (value, distribution) in params.items():
        seen = known.get((study, name))
        if seen is None:
            rdb._set_trial_param_without_commit(session, trial, name, value, distribution)
            checked[(study, name)] = distribution
            continue
        check_distribution_compatibility(seen, distribution)
        rows.append(
            {
                "trial_id": trial,
                "param_name": name,
                "param_value": value,
                "distribution_json": distribution_to_json(distribution),
            }
        )
    if rows:
        session.execute(sqlalchemy.insert(models.TrialParamModel), rows)
    return checked


def _upsert_attrs(rdb: Any, session: Any, model: Any, trial: int, attrs: dict[str, Any]) -> None:
    """``attrs`` of ``trial`` into Optuna's attribute table ``model``, in one statement where
    the dialect has an upsert (as Optuna writes one attribute: ``value_json`` replaced)."""
    import json
    import sqlite3

    from sqlalchemy.dialects import postgresql, sqlite

    dialects = {"postgresql": postgresql.insert}
    if sqlite3.sqlite_version_info >= (3, 24, 0):
        dialects["sqlite"] = sqlite.insert
    insert = dialects.get(rdb.engine.name)
    if insert is None:
        for key, value in attrs.items():
            rdb._set_trial_attr_without_commit(session, model, trial, key, value)
        return
    rows = [{"trial_id": trial, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]
    statement = insert(model).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[model.trial_id, model.key],
            set_={"value_json": statement.excluded.value_json},
        )
    )


def trials_after(storage: BaseStorage, study: int, trial: int) -> list[optuna.trial.FrozenTrial]:
    """The trials of study ``study`` whose id is above ``trial`` (ids grow as trials are
    created; -1: every trial), in id order. On an RDB storage one query that seeks the study's
    index from that id on, so its cost does not grow with the study (Optuna's trials table is
    indexed by study, not by trial number); on any other storage, the study's trials filtered."""
    rdb = storage
    while not isinstance(rdb, optuna.storages.RDBStorage) and hasattr(rdb, "_backend"):
        rdb = rdb._backend
    if isinstance(rdb, optuna.storages.RDBStorage):
        return rdb._get_trials(study, None, set(), trial)
    every = storage.get_all_trials(study, deepcopy=False)
    return sorted((t for t in every if t._trial_id > trial), key=lambda t: t._trial_id)


def heartbeat_tables() -> tuple[Any, Any]:
    """Optuna's ``trials`` and ``trial_heartbeats`` tables (SQLAlchemy ``Table`` objects)."""
    from optuna.storages._rdb import models

    return models.TrialModel.__table__, models.TrialHeartbeatModel.__table__


def non_domination_ranks(
    loss_values: Sequence[Sequence[float]], penalty: Sequence[float] | None = None
) -> np.ndarray:
    """Optuna's (constrained) non-dominated sorting, as NSGA-II ranks: 0 for the first front;
    ``penalty`` > 0 puts a point behind every feasible one, by penalty."""
    from optuna.study._multi_objective import _fast_non_domination_rank

    values = np.asarray(loss_values, dtype=float).reshape(len(loss_values), -1)
    return _fast_non_domination_rank(
        values, penalty=None if penalty is None else np.asarray(penalty, dtype=float)
    )


def use_dashboard_front(front: Any) -> None:
    """Make optuna-dashboard compute each study's best trials with ``front(trials, directions)``
    (it has its own Pareto-front function, which a served app calls)."""
    from optuna_dashboard import _app

    _app.get_pareto_front_trials = front


def dashboard_front() -> Any:
    """optuna-dashboard's current Pareto-front function."""
    from optuna_dashboard import _app

    return _app.get_pareto_front_trials


def read_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Every trial of ``study``, as ``study.get_trials(deepcopy=False)`` gives them, read from an
    RDB storage's tables in five queries (no ORM objects, each distribution parsed once): a
    report over a 10,000-trial study reads it in about a second instead of ten. Other storages
    (in memory, journal) are read through Optuna."""
    engine = rdb_engine(storage_of(study))
    if engine is None:
        return study.get_trials(deepcopy=False)
    heads, parts = _trial_rows(engine, study_id(study))
    return _frozen_trials(heads, parts)


def _trial_rows(engine: Any, sid: int) -> tuple[list[Any], dict[str, list[Any]]]:
    """The study's trial rows, and the rows of each per-trial table (values, params, user and
    system attributes, intermediate values) in insertion order."""
    import sqlalchemy
    from optuna.storages._rdb import models

    trials_t = models.TrialModel.__table__
    ids = sqlalchemy.select(trials_t.c.trial_id).where(trials_t.c.study_id == sid)
    wanted = {
        "values": (models.TrialValueModel, ("objective", "value", "value_type"), "trial_value_id"),
        "params": (models.TrialParamModel, ("param_name", "param_value", "distribution_json"),
                   "param_id"),
        "user": (models.TrialUserAttributeModel, ("key", "value_json"),
                 "trial_user_attribute_id"),
        "system": (models.TrialSystemAttributeModel, ("key", "value_json"),
                   "trial_system_attribute_id"),
        "steps": (models.TrialIntermediateValueModel,
                  ("step", "intermediate_value", "intermediate_value_type"),
                  "trial_intermediate_value_id"),
    }  # fmt: skip
    parts: dict[str, list[Any]] = {}
    with engine.connect() as connection:
        heads = connection.execute(
            sqlalchemy.select(
                trials_t.c.trial_id, trials_t.c.number, trials_t.c.state,
                trials_t.c.datetime_start, trials_t.c.datetime_complete,
            ).where(trials_t.c.study_id == sid).order_by(trials_t.c.trial_id)
        ).all()  # fmt: skip
        for name, (model, columns, order) in wanted.items():
            table = model.__table__
            query = (
                sqlalchemy.select(table.c.trial_id, *(table.c[c] for c in columns))
                .where(table.c.trial_id.in_(ids))
                .order_by(table.c[order])
            )
            parts[name] = connection.execute(query).all()
    return heads, parts


def _frozen_trials(heads: list[Any], parts: dict[str, list[Any]]) -> list[optuna.trial.FrozenTrial]:
    """Optuna's FrozenTrial for each trial row, decoded as Optuna's RDB storage decodes it."""
    import datetime
    import json

    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models
    from optuna.trial import FrozenTrial, TrialState

    def local(value: datetime.datetime | None) -> datetime.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=datetime.UTC).astimezone().replace(tzinfo=None)

    value_model, step_model = models.TrialValueModel, models.TrialIntermediateValueModel
    got: dict[int, dict[str, Any]] = {
        h.trial_id: {"values": {}, "params": {}, "dists": {}, "user": {}, "system": {}, "steps": {}}
        for h in heads
    }
    for r in parts["values"]:
        got[r.trial_id]["values"][r.objective] = value_model.stored_repr_to_value(
            r.value, value_model.TrialValueType(r.value_type)
        )
    parsed: dict[str, Any] = {}
    for r in parts["params"]:
        dist = parsed.get(r.distribution_json)
        if dist is None:
            dist = parsed[r.distribution_json] = json_to_distribution(r.distribution_json)
        got[r.trial_id]["dists"][r.param_name] = dist
        got[r.trial_id]["params"][r.param_name] = dist.to_external_repr(r.param_value)
    for name in ("user", "system"):
        for r in parts[name]:
            got[r.trial_id][name][r.key] = json.loads(r.value_json)
    for r in parts["steps"]:
        got[r.trial_id]["steps"][r.step] = step_model.stored_repr_to_intermediate_value(
            r.intermediate_value, step_model.TrialIntermediateValueType(r.intermediate_value_type)
        )
    out = [
        FrozenTrial(
            number=h.number,
            state=h.state if isinstance(h.state, TrialState) else TrialState[h.state],
            value=None,
            values=[vals[k] for k in sorted(vals)] if (vals := got[h.trial_id]["values"]) else None,
            datetime_start=local(h.datetime_start),
            datetime_complete=local(h.datetime_complete),
            params=got[h.trial_id]["params"],
            distributions=got[h.trial_id]["dists"],
            user_attrs=got[h.trial_id]["user"],
            system_attrs=got[h.trial_id]["system"],
            intermediate_values=got[h.trial_id]["steps"],
            trial_id=h.trial_id,
        )
        for h in heads
    ]
    return sorted(out, key=lambda t: t.number)
