"""Study files: one TOML file says everything a search needs (data, space, training, search, seed).

A study file has the sections ``[study]``, ``[data]``, ``[space]``, ``[train]``, ``[search]`` and
``[energy]`` (``docs/studies.md`` is the reference). :meth:`StudyConfig.to_dict` is the
*resolved* form: the search space is written out as explicit choice lists and every default is
filled in, so the dict stored in the Optuna study is all a worker on another machine needs (no
file, no preset folder). ``StudyConfig.from_dict(cfg.to_dict()) == cfg`` holds.

Every error is a :class:`StudyConfigError` whose message starts with the dotted field name and
lists the allowed values, e.g. ``search.sampler: 'cma' is not a sampler (allowed: dsps, dsps-plus,
nsga2, tpe, gp, random)``.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from autospikformer.checks import check_bool, check_choice, check_int, check_number, check_text
from autospikformer.data.base import DATASETS, FOLDER_KINDS, DatasetInfo, dataset_info
from autospikformer.data.folders import ALL_FOLDER_KEYS, FolderInfo, FolderSettings, folder_info
from autospikformer.data.split import HoldoutSplit
from autospikformer.energy.models import EnergyError, EnergyModel
from autospikformer.errors import AutospikError, did_you_mean
from autospikformer.pareto import TIE_BREAKS
from autospikformer.resources import preset_names, read_toml, studies_dir
from autospikformer.search.dsps_plus import ACQUISITIONS, INTERACTIONS
from autospikformer.search.predictor import ACCURACY_MODELS
from autospikformer.search.samplers import DSPS_SAMPLERS, SAMPLER_NAMES, SAMPLER_OPTIONS
from autospikformer.search.space import SearchSpace, SearchSpaceError
from autospikformer.study.budgets import Budgets
from autospikformer.training.config import CALIB_BATCHES, EVAL_BATCH_SIZE, TrainConfig

#: ``search.eval_split``: rank candidates on the test split (the paper's protocol) or on a held-out
#: part of the training split (``data.val_fraction``; SPEC section 5).
EVAL_SPLITS = ("test", "val")
DEFAULT_VAL_FRACTION = 0.1

# Firing rate assumed by the *pre-evaluation* energy estimate that enforces ``max_energy_mj``
# (SPEC section 4: the paper reports about 0.95 mJ for Spikformer-4-384 at a mean rate of 0.35).
DEFAULT_ENERGY_RATE = 0.35
# Seconds a worker retries an unreachable storage before it stops (``search.max_outage``).
DEFAULT_MAX_OUTAGE = 300
# A stored study name names a folder (``runs/<name>/``) and a file name prefix: plain ASCII only.
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "study": ("name", "description", "seed"),
    "data": ("dataset", "root", "val_fraction", *ALL_FOLDER_KEYS),
}


class StudyConfigError(AutospikError, ValueError):
    """A study file or dict that cannot be used; the message names the field and allowed values."""


def _allowed(values: Any) -> str:
    return ", ".join(str(v) for v in values)


def _check_keys(where: str, table: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise StudyConfigError(f"{where}: expected a table, got {table!r}")
    for key in table:
        if key not in allowed:
            name = f"{where}.{key}" if where else key
            if not allowed:
                raise StudyConfigError(f"{name}: unknown field ({where} takes none: remove it)")
            raise StudyConfigError(
                f"{name}: unknown field (allowed: {_allowed(allowed)}){did_you_mean(key, allowed)}"
            )
    return table


def _int(where: str, value: Any, *, minimum: int, allow_none: bool = False) -> Any:
    return check_int(where, value, minimum=minimum, allow_none=allow_none, error=StudyConfigError)


def _float(where: str, value: Any, **bounds: Any) -> Any:
    return check_number(where, value, error=StudyConfigError, **bounds)


def _bool(where: str, value: Any) -> bool:
    return check_bool(where, value, error=StudyConfigError)


def _str(where: str, value: Any) -> str:
    return check_text(where, value, error=StudyConfigError)


@dataclass(frozen=True)
class SearchSettings:
    """``[search]``: which sampler proposes candidates and how each candidate is evaluated.

    ``max_params`` / ``max_energy_mj`` reject a candidate *before* it is evaluated. The energy
    budget compares against the analytic estimate at the assumed firing rate ``energy_rate``
    (the measured rate is known only after evaluation). Both budgets are also stored on every
    trial as Optuna constraints (``trial.set_constraint``; the measured energy once it is
    known), which NSGA-II, TPE and GP honour by themselves. ``heartbeat_interval`` / ``grace_period``
    (seconds) make a trial whose worker died count as failed and be re-queued; ``grace_period``
    defaults to the larger of 120 s and four heartbeats. ``max_outage`` (seconds) is how long a
    worker keeps retrying a storage that does not answer before it stops (``study/retrying_storage.py``).
    ``batch_size`` is the evaluation batch, ``calib_batch_size`` the BN-recalibration batch
    (default: the same); ``amp`` evaluates under autocast on CUDA (bfloat16 where supported,
    else float16). ``reuse_features`` computes SPS once per (embed dim, time steps) and reuses
    its outputs in every trial with that pair (same results, SPEC section 10), keeping at most
    ``feature_cache_mb`` of them per worker (default: a quarter of the device's memory, shared
    by the workers on that device).
    """

    sampler: str = "dsps"
    options: dict[str, Any] = field(default_factory=dict)
    trials: int = 1000
    alpha: float = 0.5
    eval_split: str = "test"
    calib_batches: int = CALIB_BATCHES
    eval_samples: int | None = None
    batch_size: int = EVAL_BATCH_SIZE
    calib_batch_size: int | None = None  # None: batch_size (resolved at construction)
    amp: bool = True
    baseline: bool = True
    max_params: int | None = None
    max_energy_mj: float | None = None
    energy_rate: float = DEFAULT_ENERGY_RATE
    heartbeat_interval: int = 30
    grace_period: int | None = None  # None: the larger of 120 s and four heartbeats
    max_outage: int = DEFAULT_MAX_OUTAGE
    reuse_features: bool = True
    feature_cache_mb: int | None = None  # None: a quarter of the device's memory, shared

    def __post_init__(self) -> None:
        """Check every setting (``search.<name>: <value> is not allowed (allowed: ...)``) and
        resolve the derived defaults (``calib_batch_size``, ``grace_period``)."""
        for name, check in _SEARCH_CHECKS.items():
            check(f"search.{name}", getattr(self, name))
        if self.calib_batch_size is None:
            object.__setattr__(self, "calib_batch_size", self.batch_size)
        if self.grace_period is None:  # four missed heartbeats at least
            object.__setattr__(self, "grace_period", max(120, 4 * self.heartbeat_interval))
        if self.grace_period <= self.heartbeat_interval:  # type: ignore[operator]
            raise StudyConfigError(
                f"search.grace_period: {self.grace_period} is not allowed (allowed: an integer > "
                f"heartbeat_interval = {self.heartbeat_interval})"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSettings:
        """``[search]`` of a study file (or a stored ``to_dict()``): the fields given, the
        defaults above for the others, the sampler's options completed from its defaults."""
        table = _check_keys("search", data, SECTION_KEYS["search"])
        sampler = table.get("sampler", cls.sampler)
        if sampler not in SAMPLER_NAMES:
            raise StudyConfigError(
                f"search.sampler: {sampler!r} is not a sampler (allowed: {_allowed(SAMPLER_NAMES)})"
            )
        return cls(**{**table, "options": _sampler_options(sampler, table.get("options", {}))})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: copy.copy(getattr(self, f.name)) for f in fields(self)}


def _sampler_options(sampler: str, given: Any) -> dict[str, Any]:
    """The sampler's ``[search.options]``: those given, checked, over its defaults (DSPS's
    ``num_parents`` derived from a small population: the paper's 20 of 50)."""
    defaults = dict(SAMPLER_OPTIONS[sampler])
    if not defaults and given:
        raise StudyConfigError(
            f"search.options.{next(iter(given))}: unknown field (sampler {sampler!r} takes no "
            "options: remove [search.options])"
        )
    given = _check_keys("search.options", given, tuple(defaults))
    evolutionary = sampler in DSPS_SAMPLERS  # generations of parents and offspring
    if evolutionary and "num_parents" not in given:
        population = given.get("population_size", defaults["population_size"])
        if isinstance(population, int) and population < defaults["num_parents"]:
            defaults["num_parents"] = max(1, round(population * 0.4))
    options = {**defaults, **given}
    for key, value in options.items():
        where = f"search.options.{key}"
        if key == "population_size":
            _int(where, value, minimum=2)
        elif key in ("num_parents", "n_startup_trials", "candidates"):
            _int(where, value, minimum=0 if key == "n_startup_trials" else 1)
        elif key.endswith("_prob"):
            _float(where, value, lo=0.0, hi=1.0)
        elif key == "pool_prior":
            _float(where, value, lo=0.0)
        elif key in ("multivariate", "warn_independent_sampling"):
            _bool(where, value)
        elif key == "tie_break":
            check_choice(where, value, TIE_BREAKS, error=StudyConfigError)
        elif key == "acquisition":
            check_choice(where, value, ACQUISITIONS, error=StudyConfigError)
        elif key == "interactions":
            check_choice(where, value, INTERACTIONS, error=StudyConfigError)
        elif key == "accuracy_model":
            check_choice(where, value, ACCURACY_MODELS, error=StudyConfigError)
    if evolutionary and options["num_parents"] > options["population_size"]:
        raise StudyConfigError(
            f"search.options.num_parents: {options['num_parents']} is not allowed "
            f"(allowed: 1 .. population_size = {options['population_size']})"
        )
    return options


#: How each ``[search]`` setting is checked (``sampler`` and ``options`` by ``from_dict``).
_SEARCH_CHECKS: dict[str, Any] = {
    "trials": lambda w, v: _int(w, v, minimum=1),
    "alpha": lambda w, v: _float(w, v, lo=0.0, hi=1.0),
    "eval_split": lambda w, v: check_choice(w, v, EVAL_SPLITS, error=StudyConfigError),
    "calib_batches": lambda w, v: _int(w, v, minimum=0),
    "eval_samples": lambda w, v: _int(w, v, minimum=1, allow_none=True),
    "batch_size": lambda w, v: _int(w, v, minimum=1),
    "calib_batch_size": lambda w, v: _int(w, v, minimum=1, allow_none=True),
    "amp": _bool,
    "baseline": _bool,
    "max_params": lambda w, v: _int(w, v, minimum=1, allow_none=True),
    "max_energy_mj": lambda w, v: _float(w, v, lo=0.0, lo_open=True, allow_none=True),
    "energy_rate": lambda w, v: _float(w, v, lo=0.0, hi=1.0),
    "heartbeat_interval": lambda w, v: _int(w, v, minimum=1),
    "grace_period": lambda w, v: _int(w, v, minimum=1, allow_none=True),
    "max_outage": lambda w, v: _int(w, v, minimum=1),
    "reuse_features": _bool,
    "feature_cache_mb": lambda w, v: _int(w, v, minimum=0, allow_none=True),
}


def _resolve_space(table: Any, base: Path | None) -> SearchSpace:
    """``[space]``: ``preset = "S_T1+S_S"``, ``file = "my.toml"`` or the space written inline."""
    if not isinstance(table, dict):
        raise StudyConfigError(f"space: expected a table, got {table!r}")
    presets = _allowed(preset_names("spaces"))
    if "preset" in table or "file" in table:
        if len(table) != 1:
            raise StudyConfigError(
                "space: give exactly one of preset, file or the inline tables "
                f"(got {sorted(table)})"
            )
        if "preset" in table:
            name = table["preset"]
            if not isinstance(name, str) or name not in preset_names("spaces"):
                raise StudyConfigError(
                    f"space.preset: {name!r} is not a preset (allowed: {presets})"
                )
            return SearchSpace.load(name)
        path = Path(_str("space.file", table["file"]))
        if not path.is_absolute() and base is not None:
            path = base / path
        if path.suffix != ".toml" or not path.is_file():
            raise StudyConfigError(f"space.file: {str(path)!r} is not an existing .toml file")
        try:
            return SearchSpace.load(path)
        except SearchSpaceError as exc:
            raise StudyConfigError(f"space.file: {exc}") from None
    try:
        return SearchSpace.from_dict(table)
    except SearchSpaceError as exc:
        raise StudyConfigError(
            f"space: {exc} (or use preset = one of: {presets}; or file = 'path.toml')"
        ) from None


def _energy_model(table: Any) -> EnergyModel:
    """``[energy]``: the model that prices the trials and its constants (units in every key)."""
    try:
        return EnergyModel.from_table(table)
    except EnergyError as exc:
        raise StudyConfigError(str(exc)) from None


def _dataset(table: dict[str, Any]) -> tuple[str, FolderSettings | None]:
    """``[data] dataset``: a named set, or a folder of your own with its settings."""
    dataset = table.get("dataset")
    folder_keys = {k: v for k, v in table.items() if k in ALL_FOLDER_KEYS}
    if dataset in FOLDER_KINDS:
        if "root" not in table:
            raise StudyConfigError(f"data.root: missing (allowed: the path of the {dataset})")
        return dataset, FolderSettings.from_table(dataset, folder_keys, error=StudyConfigError)
    if dataset not in DATASETS:
        raise StudyConfigError(
            f"data.dataset: {dataset!r} is not a data set (allowed: {_allowed(DATASETS)}, or a "
            f"folder of your own: {_allowed(FOLDER_KINDS)})"
        )
    if folder_keys:
        raise StudyConfigError(
            f"data.{next(iter(folder_keys))}: only for a folder of your own (dataset = "
            f"{' or '.join(repr(k) for k in FOLDER_KINDS)}; {dataset} has a fixed shape)"
        )
    return dataset, None


def _train_config(table: Any) -> TrainConfig:
    """Validate ``[train]`` with the trainer's own ``TrainConfig`` (it names a bad key)."""
    if not isinstance(table, dict):
        raise StudyConfigError(f"train: expected a table, got {table!r}")
    try:
        return TrainConfig.from_dict(table)
    except (TypeError, ValueError) as exc:
        raise StudyConfigError(f"train.{exc}") from None


@dataclass(frozen=True)
class StudyConfig:
    """The whole configuration of one study (see the module docstring)."""

    name: str
    dataset: str
    space: SearchSpace
    train: TrainConfig
    search: SearchSettings
    data_root: str = "data"
    seed: int = 0
    description: str = ""
    energy: EnergyModel = field(default_factory=EnergyModel)
    val_fraction: float = DEFAULT_VAL_FRACTION
    folder: FolderSettings | None = None  # a folder of your own: its [data] settings
    # what the study recorded about its folder (study/data_record.py); not part of the file
    data_record: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def data_info(self) -> DatasetInfo:
        """The data set's shape: classes, channels, input size, event data or images; for a
        folder, the :class:`FolderInfo` the study recorded, or before that what ``data.root``
        holds."""
        return self.data_info_at(None)

    def data_info_at(self, root: str | None) -> DatasetInfo:
        """:attr:`data_info`, a folder not yet recorded looked at in ``root`` (default:
        ``data.root``)."""
        if self.folder is None:
            return dataset_info(self.dataset)
        if self.data_record is not None:
            return FolderInfo.from_record(self.folder, self.data_record)
        return folder_info(self.folder, root or self.data_root)

    def with_data_record(self, record: dict[str, Any] | None) -> StudyConfig:
        """This configuration with what its study recorded about the folder."""
        return replace(self, data_record=record)

    @property
    def budgets(self) -> Budgets:
        """The study's budgets, priced for its data and energy model."""
        return Budgets(
            data=self.data_info,
            energy=self.energy,
            max_params=self.search.max_params,
            max_energy_mj=self.search.max_energy_mj,
            energy_rate=self.search.energy_rate,
        )

    @property
    def holdout(self) -> HoldoutSplit | None:
        """The validation part of the training split under ``eval_split = "val"``, else None."""
        if self.search.eval_split != "val":
            return None
        return HoldoutSplit(fraction=self.val_fraction, seed=self.seed)

    # --- reading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, path_or_preset: str | Path) -> StudyConfig:
        """A study file (``*.toml``) or a shipped preset name (``digits``, ``cifar100-s_s``)."""
        path, data = read_toml(
            path_or_preset,
            studies_dir(),
            error=StudyConfigError,
            unknown=f"study: {str(path_or_preset)!r} is neither a .toml file nor a preset "
            f"(allowed presets: {_allowed(preset_names('studies'))})",
            kind="study:",
        )
        try:
            return cls.from_dict(data, base=path.parent)
        except StudyConfigError as exc:
            raise StudyConfigError(f"{path.name}: {exc}") from None

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base: Path | None = None) -> StudyConfig:
        """Validate a parsed study file or a stored ``to_dict()`` (``base``: for ``space.file``)."""
        sections = ("study", "data", "space", "train", "search", "energy")
        _check_keys("", data, sections)
        for name in ("study", "data", "space"):
            if name not in data:
                raise StudyConfigError(f"{name}: section missing (required: study, data, space)")
        study = _check_keys("study", data["study"], SECTION_KEYS["study"])
        if "name" not in study:
            raise StudyConfigError("study.name: missing (allowed: a non-empty string)")
        name = _str("study.name", study["name"])
        if not STUDY_NAME.fullmatch(name):
            raise StudyConfigError(
                f"study.name: {name!r} is not allowed (allowed: up to 128 ASCII letters, digits, "
                "'_', '.' and '-', not starting with '.' or '-'; it names a folder)"
            )
        dat = _check_keys("data", data["data"], SECTION_KEYS["data"])
        dataset, folder = _dataset(dat)
        return cls(
            name=name,
            dataset=dataset,
            space=_resolve_space(data["space"], base),
            train=_train_config(data.get("train", {})),
            search=SearchSettings.from_dict(data.get("search", {})),
            data_root=_str("data.root", dat.get("root", "data")),
            val_fraction=_float(  # type: ignore[arg-type]
                "data.val_fraction",
                dat.get("val_fraction", DEFAULT_VAL_FRACTION),
                lo=0.0,
                hi=0.5,
                lo_open=True,
            ),
            seed=_int("study.seed", study.get("seed", 0), minimum=0),  # type: ignore[arg-type]
            description=str(study.get("description", "")),
            energy=_energy_model(data.get("energy", {})),
            folder=folder,
        )

    # --- writing ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, fully resolved: the form stored in the study (record ``autospik:config``)."""
        return {
            "study": {"name": self.name, "description": self.description, "seed": self.seed},
            "data": {
                "dataset": self.dataset,
                "root": self.data_root,
                "val_fraction": self.val_fraction,
                **(self.folder.to_dict() if self.folder is not None else {}),
            },
            "space": self.space.to_dict(),
            "train": self.train.to_dict(),
            "search": self.search.to_dict(),
            "energy": self.energy.to_table(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def summary(self) -> str:
        """One line for people: data set, space, sampler, energy model."""
        return (
            f"{self.dataset}, space {self.space.name} ({self.space.count():,} architectures), "
            f"sampler {self.search.sampler}, energy {self.energy.name}"
        )

    def differences(self, other: StudyConfig) -> list[str]:
        """Dotted names of the differing fields (``search.sampler``, ``space``...), for messages."""
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for section in mine:
            if section == "space":
                if self.space.fingerprint() != other.space.fingerprint():
                    out.append("space")
                continue
            for key in sorted(set(mine[section]) | set(theirs[section])):
                if mine[section].get(key) != theirs[section].get(key):
                    out.append(f"{section}.{key}")
        return out


SECTION_KEYS["search"] = tuple(f.name for f in fields(SearchSettings))
