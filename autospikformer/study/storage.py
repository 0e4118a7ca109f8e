"""The study storage: URLs, opening an RDB, creating and loading studies, the attribute keys.

- **The study holds its whole configuration** (record :data:`CONFIG_ATTR`, the resolved
  :meth:`StudyConfig.to_dict`), so a worker needs only the study name and the storage URL.
- **Records are system attributes** (:func:`study_records`): the configuration, the space, the
  energy model, the supernet's digest, the validation split, test accuracies, trained subnets,
  a folder study's classes, counts and normalisation (:func:`load_study` returns the
  configuration with them). Optuna's own listings (``optuna studies``, the dashboard) show only
  the one-line user attribute :data:`SUMMARY_ATTR`, so they stay readable.
- A SQLite file is created only by the commands that register a study, so a mistyped study name
  or path never leaves an empty database behind.
- The keys of every study and trial attribute the project writes live here, and only here.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autospikformer.errors import AutospikError, database_reason
from autospikformer.optuna_api import rdb_engine, storage_of, study_id
from autospikformer.resources import preset_names
from autospikformer.search.architecture import BASELINES, Architecture
from autospikformer.search.suggest import architecture_params
from autospikformer.study.config import StudyConfig, StudyConfigError

DEFAULT_STORAGE = "sqlite:///autospik.db"
DEFAULT_RUNS_DIR = "runs"
METRIC_NAMES = ("accuracy", "energy_mj")
DIRECTIONS = ("maximize", "minimize")

RECORD_PREFIX = "autospik:"  # every record key starts so (and no other study user attribute)
# Study records: system attributes, which `optuna studies` and the dashboard do not list (a
# study created before they moved there keeps them as user attributes, still read)
CONFIG_ATTR = "autospik:config"  # the resolved StudyConfig.to_dict()
SPACE_ATTR = "autospik:space"  # the search space as JSON (SearchSpace.to_json())
SUPERNET_ATTR = "autospik:supernet"  # {"sha256": ..., "host": ..., "path": ...}
ENERGY_ATTR = "autospik:energy"  # the energy model and constants that price its trials
HOLDOUT_ATTR = "autospik:holdout"  # eval_split "val": the validation split (HoldoutSplit.describe)
UID_ATTR = "autospik:uid"  # a uid set at creation: tells a study from a namesake (run folders)
# a folder study: its classes, per-class counts, size and normalisation (FolderInfo.to_record())
DATA_ATTR = "autospik:data"
TEST_ACCURACY_PREFIX = "autospik:test_accuracy:"  # + trial number: {"accuracy", "samples"}
# + "<trial number>:<schedule id>": a trained subnet's result (study/trained_subnets.py)
TRAINED_PREFIX = "autospik:trained:"
# Study user attribute: what people see in those listings (StudyConfig.summary())
SUMMARY_ATTR = "autospik"
# Trial system attributes (kept out of the dashboard's and `optuna trials`' tables)
ENERGY_MEASUREMENT_ATTR = (
    "autospik:energy_record"  # per-layer counts and rates (EnergyMeasurement JSON)
)
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
_URL_EXAMPLES = "sqlite:///autospik.db or postgresql+psycopg2://user:password@host:5432/db"


def describe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    if "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _url_fix(url: str) -> str:
    """What a mistyped storage URL probably meant, as advice for the message ('' if unsure)."""
    scheme, sep, rest = url.partition(":")
    if scheme.startswith("sqlite") and not rest.startswith("///"):
        path = rest.lstrip("/")
        if not path:
            return "sqlite:// is an in-memory database that vanishes with the command; name a file"
        if rest.startswith("/") and not rest.startswith("//"):  # sqlite:/x.db: an absolute path
            return f"did you mean sqlite:////{path} (absolute) or sqlite:///{path} (relative)?"
        return f"did you mean sqlite:///{path}? (a file path follows three slashes)"
    if scheme in ("postgres", "postgres+psycopg2"):
        fixed = "postgresql+psycopg2" + url[len(scheme) :]
        return f"the scheme is postgresql://, e.g. {describe_url(fixed)}"
    if not sep or "/" in scheme:
        return f"did you mean sqlite:///{url}?"
    return ""


def parse_url(url: str) -> Any:
    """``url`` as an SQLAlchemy URL of a database a study can live in; a typo is one
    :class:`StudyError` line with the likely fix (``postgres://``, ``sqlite:/x.db``...)."""
    from sqlalchemy.engine import make_url

    fix = _url_fix(url)
    try:
        parsed = make_url(url)
    except Exception:
        parsed = None
    if parsed is not None:
        try:
            parsed.get_dialect()
        except Exception:
            fix = fix or f"SQLAlchemy knows no database kind {parsed.drivername!r}"
            parsed = None
    in_memory = parsed is not None and parsed.database in (None, "", ":memory:")
    if in_memory and parsed.drivername.startswith("sqlite"):
        fix = fix or "an in-memory database vanishes with the command; name a file"
        parsed = None
    if parsed is None:
        advice = f"; {fix}" if fix else f" (e.g. {_URL_EXAMPLES})"
        raise StudyError(f"storage URL {describe_url(url)!r} is not usable{advice}")
    return parsed


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other back ends).

    ``sqlite:///file:x.db?mode=ro&uri=true`` (SQLite's URI form) names the file ``x.db``.
    """
    parsed = parse_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = str(parsed.database)
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database[len("file:") :].split("?")[0]
    return Path(database)


def _read_only_reason(path: Path) -> str | None:
    """Why SQLite could not write ``path`` (it also writes a journal beside it), or None."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_file() and not os.access(path, os.W_OK):
        return f"the file {path} is read-only"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} is read-only (SQLite writes a journal beside the file)"
    return None


#: ``AUTOSPIK_SQLITE_WAL=0`` keeps SQLite's rollback journal (for a file on a network
#: file system, where write-ahead logging does not work; use PostgreSQL across machines).
WAL_ENV = "AUTOSPIK_SQLITE_WAL"


def _journal_ahead(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in write-ahead-log mode with ``synchronous=NORMAL`` on every connection.

    Optuna commits every parameter and attribute of a trial on its own (about 30 commits per
    trial); in SQLite's default mode each commit waits for several fsyncs, about 16 ms here, in
    WAL mode about 0.7 ms. A crash of a process or of the machine loses no committed trial and
    cannot corrupt the file; a power loss can lose the last commits. Several processes on one
    machine share a WAL file as before; a busy file stays in its current mode.
    """
    if os.environ.get(WAL_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return
    import sqlite3

    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError:
            pass  # locked by another process: it keeps its journal mode, commits stay correct
        finally:
            cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # the connection made while opening predates the listener


def _read_only_url(path: Path, parsed: Any) -> str:
    """A read-only URL for a file SQLite may not write: ``mode=ro`` (it still reads the file's
    write-ahead log), and ``immutable`` where not even the log's index can be made beside it."""
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        return parsed.render_as_string(hide_password=False)
    folder = path.parent if str(path.parent) else Path(".")
    immutable = "" if os.access(folder, os.W_OK | os.X_OK) else "&immutable=1"
    return f"sqlite:///file:{path}?mode=ro{immutable}&uri=true"


def open_storage(
    url: str,
    *,
    create: bool = False,
    write: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
) -> optuna.storages.RDBStorage:
    """Open (``create``: or start) the RDB storage at ``url``; any failure is one StudyError line.

    A SQLite file that does not exist is not created unless ``create`` is set, so a mistyped
    study name or path never leaves an empty database behind; ``write`` (implied by
    ``create``) refuses a SQLite file that cannot be written, before anything is tried. SQLite
    waits up to 60 s for a lock (several workers share one file); PostgreSQL connections are
    checked before use, so a new connection replaces one that a database restart closed
    (``study/retrying_storage.py`` rides out the restart itself).
    """
    from sqlalchemy.exc import SQLAlchemyError

    shown = describe_url(url)
    parsed = parse_url(url)
    path = sqlite_path(url)
    if path is not None:
        if not create and not path.is_file():
            raise StudyError(
                f"no study storage at {path} (storage {shown}); create a study first with "
                "'autospik study create STUDY_FILE' or pass --storage"
            )
        if create and not (path.parent if str(path.parent) else Path(".")).is_dir():
            raise StudyError(f"cannot create storage {shown}: folder {path.parent} does not exist")
        if create or write:
            why = _read_only_reason(path)
            if why is not None:
                raise StudyError(
                    f"storage {shown} is read-only: {why}; make it writable or pass another "
                    "--storage"
                )
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
            if path is not None and _read_only_reason(path) is not None and not create:
                url = _read_only_url(path, parsed)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            if path is not None and "mode=ro" not in url:
                _journal_ahead(storage)
            return storage
    except ImportError as exc:
        raise StudyError(
            f"cannot open storage {shown}: its database driver is missing ({exc}); for "
            "PostgreSQL: pip install 'autospikformer[postgres]'"
        ) from None
    except (
        SQLAlchemyError,
        optuna.exceptions.StorageInternalError,
        ValueError,
        OSError,
        RuntimeError,
    ) as exc:
        reason = database_reason(exc) or " ".join(str(exc).split())
        raise StudyError(f"cannot open storage {shown}: {reason[:300]}") from None


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return sorted(s.study_name for s in storage.get_all_studies())


def has_study(storage: optuna.storages.BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def study_records(study: optuna.Study) -> dict[str, Any]:
    """The project's records of ``study`` (system attributes, over the user attributes where
    a study created by an earlier release kept them)."""
    legacy = {k: v for k, v in study.user_attrs.items() if k.startswith(RECORD_PREFIX)}
    return {**legacy, **storage_of(study).get_study_system_attrs(study_id(study))}


def study_record(study: optuna.Study, key: str, default: Any = None) -> Any:
    """One record of ``study`` (see :func:`study_records`)."""
    return study_records(study).get(key, default)


def set_study_record(study: optuna.Study, key: str, value: Any) -> None:
    """Store one record of ``study`` (a JSON-safe value) as a study system attribute."""
    storage_of(study).set_study_system_attr(study_id(study), key, value)


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
    records = study_records(study)
    data = records.get(CONFIG_ATTR)
    if data is None:
        raise StudyError(f"study {name!r} was not created by autospik (it has no {CONFIG_ATTR})")
    try:
        config = StudyConfig.from_dict(data)
    except StudyConfigError as exc:
        raise StudyError(f"study {name!r} holds an unusable configuration: {exc}") from None
    return study, config.with_data_record(records.get(DATA_ATTR))


def baseline_architecture(config: StudyConfig) -> tuple[str, Architecture] | None:
    """The first hand-designed Spikformer that the study's space contains, with its name."""
    for name, arch in BASELINES.items():
        if config.space.contains(arch):
            return name, arch
    return None


def check_same_config(stored: StudyConfig, config: StudyConfig) -> None:
    """Refuse ``config`` for the stored study of its name unless they are the same, naming the
    fields that differ (for the space: both fingerprints, e.g. a space file edited since)."""
    diff = stored.differences(config)
    if not diff:
        return
    named = [
        f"space (fingerprint {stored.space.fingerprint()} stored, {config.space.fingerprint()} "
        "now: was the space file edited?)"
        if field == "space"
        else field
        for field in diff
    ]
    raise StudyError(
        f"study {config.name!r} already exists with a different configuration "
        f"(differs in: {', '.join(named)}); give the study another [study] name"
    )


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
        check_same_config(existing, config)
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
    set_study_record(study, SPACE_ATTR, config.space.to_json())
    set_study_record(study, CONFIG_ATTR, config.to_dict())
    set_study_record(study, ENERGY_ATTR, config.energy.to_attr())
    set_study_record(study, UID_ATTR, uuid.uuid4().hex)
    study.set_user_attr(SUMMARY_ATTR, config.summary())
    baseline = baseline_architecture(config)
    if config.search.baseline and baseline is not None:
        label, arch = baseline
        study.enqueue_trial(architecture_params(arch), user_attrs={BASELINE_ATTR: label})
    return study, True


def withdraw_study(study: optuna.Study, *, created_file: Path | None = None) -> bool:
    """Remove a study that was registered by a command that then failed, if nothing used it.

    Used means: a trial other than the enqueued baseline, or a recorded supernet. A SQLite file
    that the same command created (``created_file``) and that holds only this study is
    deleted. Returns whether the study was removed.
    """
    trials = study.get_trials(deepcopy=False)
    if SUPERNET_ATTR in study_records(study) or any(t.state != TrialState.WAITING for t in trials):
        return False
    storage = storage_of(study)
    if created_file is not None and study_names(storage) == [study.study_name]:
        engine = rdb_engine(storage)
        if engine is not None:
            engine.dispose()
        created_file.unlink(missing_ok=True)
        return True
    optuna.delete_study(study_name=study.study_name, storage=storage)
    return True


def trial_counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials per state name (``COMPLETE``, ``RUNNING``...)."""
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


def resolve_study(
    target: str,
    storage_url: str,
    *,
    create: bool,
    write: bool = False,
    check: Callable[[StudyConfig], None] | None = None,
) -> tuple[optuna.Study, StudyConfig, bool]:
    """``target`` as a study in the storage, or a study file / preset to register first (with
    ``create``); returns ``(study, config, created)``.

    A name already in the storage wins over a preset of the same name; a ``.toml`` path is always
    read (and must match the stored study of its name). ``check(config)`` runs before anything
    is registered (a command's other inputs: device, data, checkpoint): when it raises, the
    storage is as it was and no SQLite file was created. ``write`` (implied by ``create``)
    refuses a read-only SQLite file up front.
    """
    is_file = target.endswith(".toml")
    is_preset = target in preset_names("studies")
    if is_file or (create and is_preset):
        config = StudyConfig.load(target)
        path = sqlite_path(storage_url)
        exists_already = path is None or path.is_file()
        if exists_already:
            storage = open_storage(storage_url, write=True)
            if has_study(storage, config.name):
                study, stored = load_study(storage, config.name)
                if is_file:
                    check_same_config(stored, config)
                if check is not None:
                    check(stored)
                return study, stored, False
        if check is not None:
            check(config)
        storage = open_storage(storage_url, create=True)
        try:
            study, created = create_study(storage, config)
        except BaseException:
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
    storage = open_storage(storage_url, write=write or create)
    study, config = load_study(storage, target)
    if check is not None:
        check(config)
    return study, config, False
