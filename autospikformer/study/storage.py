"""The study storage: URLs, opening an RDB, creating and loading studies, the attribute keys.

- **The study holds its whole configuration** (user attribute :data:`CONFIG_ATTR`, the resolved
  :meth:`StudyConfig.to_dict`), so a worker needs only the study name and the storage URL.
- A SQLite file is created only by the commands that register a study, so a mistyped study name
  or path never leaves an empty database behind.
- The keys of every study and trial attribute the project writes live here, and only here.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna

from autospikformer.errors import AutospikError
from autospikformer.resources import preset_names
from autospikformer.search.architecture import BASELINES, Architecture
from autospikformer.search.suggest import architecture_params
from autospikformer.study.config import StudyConfig, StudyConfigError

DEFAULT_STORAGE = "sqlite:///autospik.db"
DEFAULT_RUNS_DIR = "runs"
METRIC_NAMES = ("accuracy", "energy_mj")
DIRECTIONS = ("maximize", "minimize")

# Study user attributes
CONFIG_ATTR = "autospik:config"  # the resolved StudyConfig.to_dict()
SPACE_ATTR = "autospik:space"  # the search space as JSON (SearchSpace.to_json())
SUPERNET_ATTR = "autospik:supernet"  # {"sha256": ..., "host": ..., "path": ...}
ENERGY_ATTR = "autospik:energy"  # the energy model and constants that price its trials
HOLDOUT_ATTR = "autospik:holdout"  # eval_split "val": the validation split (HoldoutSplit.record)
TEST_ACCURACY_PREFIX = "autospik:test_accuracy:"  # + trial number: {"accuracy", "samples"}
# Trial system attributes (kept out of the dashboard's and `optuna trials`' tables)
ENERGY_RECORD_ATTR = "autospik:energy_record"  # per-layer counts and rates (EnergyRecord JSON)
# Trial user attributes (the compact architecture, ARCH_ATTR, is the trial bridge's own key)
BASELINE_ATTR = "autospik:baseline"  # name of the hand-designed Spikformer it is
ARCH_JSON_ATTR = "autospik:architecture_json"  # Architecture.to_dict()
SECONDS_ATTR = "autospik:seconds"  # wall time of the evaluation pass
CALIB_ATTR = "autospik:calib_batches"  # BN-recalibration batches used
EVAL_SAMPLES_ATTR = "autospik:eval_samples"  # evaluation subset size (None: all)
# what ran: {"calib_images", "calib_batch_size", "eval_images", "eval_batch_size", "precision",
# "device"} (one attribute: one storage write per trial)
EVALUATION_ATTR = "autospik:evaluation"
WORKER_ATTR = "autospik:worker"  # host:pid that evaluated it
SKIPPED_ATTR = "autospik:skipped"  # why a PRUNED trial was not evaluated
NUM_PARAMS_ATTR = "autospik:num_parameters"  # the subnet's parameters (SPEC section 5)
FIRING_RATE_ATTR = "autospik:firing_rate"  # mean firing rate measured while evaluating
ANN_ENERGY_ATTR = "autospik:ann_energy_mj"  # the dense ANN equivalent's energy, same model


class StudyError(AutospikError, RuntimeError):
    """A study that cannot be created, opened or run as asked; the message is one line."""


# --- storage ------------------------------------------------------------------------------------
def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other back ends and ``:memory:``)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def open_storage(
    url: str,
    *,
    create: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> optuna.storages.RDBStorage:
    """Open (``create``: or start) the RDB storage at ``url``; any failure is one StudyError line.

    A SQLite file that does not exist is not created unless ``create`` is set, so a mistyped
    study name or path never leaves an empty database behind. SQLite waits up to 60 s for a lock
    (several workers share one file); PostgreSQL connections are checked before use, so a
    worker survives a database restart between trials.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    shown = describe_url(url)
    try:
        parsed = make_url(url)
    except Exception:
        raise StudyError(
            f"storage URL {url!r} is not an SQLAlchemy URL (e.g. sqlite:///autospik.db or "
            "postgresql+psycopg2://user:password@host:5432/db)"
        ) from None
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.is_file():
            raise StudyError(
                f"no study storage at {path} (storage {shown}); create a study first with "
                "'autospik study create STUDY_FILE' or pass --storage"
            )
        if create and not path.parent.is_dir():
            raise StudyError(f"cannot create storage {shown}: folder {path.parent} does not exist")
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
        if parsed.drivername.startswith("postgresql"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            kwargs: dict[str, Any] = {}
            if heartbeat_interval is not None:
                kwargs = {
                    "heartbeat_interval": heartbeat_interval,
                    "grace_period": grace_period,
                    "heartbeat_stale_trial_callback": (
                        optuna.storages.RetryHeartbeatStaleTrialCallback()
                    ),
                }
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError, OSError, RuntimeError) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise StudyError(f"cannot open storage {shown}: {reason[:300]}") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def has_study(storage: optuna.storages.BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> tuple[optuna.Study, StudyConfig]:
    """The study ``name`` and its stored configuration; a clear error when it is not there."""
    if not has_study(storage, name):
        names = study_names(storage)
        there = ", ".join(names) if names else "none"
        raise StudyError(f"no study named {name!r} in this storage (studies there: {there})")
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    data = study.user_attrs.get(CONFIG_ATTR)
    if data is None:
        raise StudyError(f"study {name!r} was not created by autospik (it has no {CONFIG_ATTR})")
    try:
        config = StudyConfig.from_dict(data)
    except StudyConfigError as exc:
        raise StudyError(f"study {name!r} holds an unusable configuration: {exc}") from None
    return study, config


def baseline_architecture(config: StudyConfig) -> tuple[str, Architecture] | None:
    """The first hand-designed Spikformer that the study's space contains, with its name."""
    for name, arch in BASELINES.items():
        if config.space.contains(arch):
            return name, arch
    return None


def create_study(
    storage: optuna.storages.BaseStorage, config: StudyConfig
) -> tuple[optuna.Study, bool]:
    """Register ``config`` as a new study; returns ``(study, created)``.

    An existing study with the same configuration is returned unchanged (``created`` False); one
    with a different configuration is refused, naming the fields that differ. The baseline
    Spikformer (4-384, or 2-256 for DVS) is enqueued as the first trial when ``search.baseline``
    is on and the space contains it.
    """
    if has_study(storage, config.name):
        study, existing = load_study(storage, config.name)
        diff = existing.differences(config)
        if diff:
            raise StudyError(
                f"study {config.name!r} already exists with a different configuration "
                f"(differs in: {', '.join(diff)}); give the study another [study] name"
            )
        return study, False
    try:
        study = optuna.create_study(
            study_name=config.name, storage=storage, directions=list(DIRECTIONS)
        )
    except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
        return create_study(storage, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRIC_NAMES))
    study.set_user_attr(SPACE_ATTR, config.space.to_json())
    study.set_user_attr(CONFIG_ATTR, config.to_dict())
    study.set_user_attr(ENERGY_ATTR, config.energy.to_attr())
    baseline = baseline_architecture(config)
    if config.search.baseline and baseline is not None:
        label, arch = baseline
        study.enqueue_trial(architecture_params(arch), user_attrs={BASELINE_ATTR: label})
    return study, True


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name (``COMPLETE``, ``RUNNING``...)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def resolve_study(
    target: str, storage_url: str, *, create: bool
) -> tuple[optuna.Study, StudyConfig, bool]:
    """``target`` as a study in the storage, or a study file / preset to register first (with
    ``create``); returns ``(study, config, created)``.

    A name already in the storage wins over a preset of the same name; a ``.toml`` path is always
    read (and must match the stored study of its name).
    """
    is_file = target.endswith(".toml")
    is_preset = target in preset_names("studies")
    if is_file or (create and is_preset):
        config = StudyConfig.load(target)
        path = sqlite_path(storage_url)
        exists_already = path is not None and path.is_file()
        storage = open_storage(storage_url, create=True)
        if not is_file and has_study(storage, config.name):
            study, stored = load_study(storage, config.name)
            return study, stored, False
        try:
            study, created = create_study(storage, config)
        except StudyError:
            if path is not None and not exists_already:
                path.unlink(missing_ok=True)
            raise
        return study, config, created
    path = sqlite_path(storage_url)
    if path is not None and not path.is_file():
        hint = f" (presets: {', '.join(preset_names('studies'))})" if create else ""
        raise StudyError(
            f"no study named {target!r}: no study storage at {path}{hint}; "
            "create one with 'autospik study create STUDY_FILE' or pass --storage"
        )
    storage = open_storage(storage_url)
    study, config = load_study(storage, target)
    return study, config, False
