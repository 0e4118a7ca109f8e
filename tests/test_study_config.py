"""Study files: every preset loads and round-trips; a bad file names the field and allowed values."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from autospikformer import SearchSpace
from autospikformer.resources import preset_names, studies_dir
from autospikformer.study.config import StudyConfig, StudyConfigError

PRESETS = [
    "cifar10-s_s",
    "cifar10-s_t1",
    "cifar10-s_t2",
    "cifar100-s_s",
    "cifar100-s_t1",
    "cifar100-s_t2",
    "cifar10dvs",
    "dvs128",
    "digits",
    "imagenet",
    "eventfolder",
]


def test_presets_are_shipped() -> None:
    assert sorted(preset_names("studies")) == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_round_trips(name: str) -> None:
    config = StudyConfig.load(name)
    assert config.name == name
    data = json.loads(config.to_json())  # JSON-safe: this is what the study stores
    again = StudyConfig.from_dict(data)
    assert again == config
    assert again.differences(config) == []
    assert StudyConfig.load(studies_dir() / f"{name}.toml") == config


def test_paper_presets_use_the_paper_settings() -> None:
    c = StudyConfig.load("cifar100-s_t1")
    assert (c.dataset, c.space.name, c.search.sampler) == ("cifar100", "S_T1+S_S", "dsps")
    assert c.space == SearchSpace.load("S_T1+S_S")
    assert c.search.options == {
        "population_size": 50,
        "num_parents": 20,
        "crossover_prob": 0.3,
        "mutation_prob": 0.4,
    }
    assert (c.search.trials, c.search.alpha, c.train.epochs, c.train.lr) == (1000, 0.5, 1000, 5e-4)
    assert StudyConfig.load("cifar10-s_s").space.name == "S_S"
    assert StudyConfig.load("dvs128").space.name == "dvs"


def test_defaults_fill_in() -> None:
    minimal = {
        "study": {"name": "tiny"},
        "data": {"dataset": "digits"},
        "space": {"preset": "digits"},
    }
    c = StudyConfig.from_dict(minimal)
    assert c.seed == 0 and c.data_root == "data"
    assert c.search.sampler == "dsps" and c.search.options["population_size"] == 50
    assert c.search.eval_samples is None and c.search.max_params is None
    assert c.search.energy_rate == 0.35
    tpe = StudyConfig.from_dict({**minimal, "search": {"sampler": "tpe"}})
    assert tpe.search.options == {"n_startup_trials": 10, "multivariate": True}


def test_space_from_a_file_beside_the_study_file_and_inline(tmp_path: Path) -> None:
    (tmp_path / "spaces").mkdir()
    space_text = (studies_dir() / "spaces" / "digits.toml").read_text()
    (tmp_path / "spaces" / "mine.toml").write_text(space_text.replace('"digits"', '"mine"'))
    study = tmp_path / "s.toml"
    study.write_text(
        '[study]\nname = "s"\n[data]\ndataset = "digits"\n[space]\nfile = "spaces/mine.toml"\n'
    )
    c = StudyConfig.load(study)
    assert c.space.name == "mine"
    assert c.space.fingerprint() == SearchSpace.load("digits").fingerprint()
    inline = StudyConfig.from_dict(
        {"study": {"name": "s"}, "data": {"dataset": "digits"}, "space": c.space.to_dict()}
    )
    assert inline.space == c.space


def _digits() -> dict:
    return tomllib.loads((studies_dir() / "digits.toml").read_text())


BAD = [
    (
        lambda d: d.update(extra={}),
        "extra: unknown field (allowed: study, data, space, train, search, energy)",
    ),
    (lambda d: d.pop("space"), "space: section missing"),
    (lambda d: d["study"].pop("name"), "study.name: missing"),
    (lambda d: d["study"].update(name="my study"), "study.name: 'my study' is not allowed"),
    (
        lambda d: d["study"].update(seed=-1),
        "study.seed: -1 is not allowed (allowed: an integer >= 0)",
    ),
    (
        lambda d: d["data"].update(dataset="mnist"),
        "data.dataset: 'mnist' is not a data set (allowed: digits, cifar10, cifar100, cifar10dvs, "
        "dvs128, nmnist, ncaltech101, or a folder of your own: imagefolder, eventfolder)",
    ),
    (lambda d: d["space"].update(preset="S_T3"), "space.preset: 'S_T3' is not a preset (allowed: "),
    (lambda d: d["space"].update(file="x.toml"), "space: give exactly one of preset, file"),
    (lambda d: d["train"].update(epochz=3), "train.epochz: unknown setting (allowed: epochs, "),
    (lambda d: d["train"].update(lr=-1.0), "train.lr: -1.0 is not allowed (allowed: a number > 0)"),
    (
        lambda d: d["search"].update(sampler="cma"),
        "search.sampler: 'cma' is not a sampler (allowed: dsps, dsps-plus, nsga2, tpe, gp, random)",
    ),
    (
        lambda d: d["search"].update(sampler="tpe"),
        "search.options.population_size: unknown field (allowed: n_startup_trials, multivariate)",
    ),
    (
        lambda d: d["search"]["options"].update(num_parents=30),
        "search.options.num_parents: 30 is not allowed (allowed: 1 .. population_size = 20)",
    ),
    (
        lambda d: d["search"]["options"].update(mutation_prob=1.5),
        "search.options.mutation_prob: 1.5 is not allowed (allowed: a number >= 0.0 and <= 1.0)",
    ),
    (
        lambda d: d["search"].update(sampler="dsps-plus", options={"acquisition": "ei"}),
        "search.options.acquisition: 'ei' is not allowed (allowed: ehvi, hvi)",
    ),
    (
        lambda d: d["search"].update(sampler="dsps-plus", options={"interactions": "all"}),
        "search.options.interactions: 'all' is not allowed (allowed: time_steps, globals)",
    ),
    (
        lambda d: d["search"].update(sampler="dsps-plus", options={"accuracy_model": "gpx"}),
        "search.options.accuracy_model: 'gpx' is not allowed (allowed: ridge, gp)",
    ),
    (
        lambda d: d["search"].update(sampler="dsps-plus", options={"pool_prior": -1}),
        "search.options.pool_prior: -1 is not allowed (allowed: a number >= 0.0)",
    ),
    (
        lambda d: d["search"].update(alpha="high"),
        "search.alpha: 'high' is not allowed (allowed: a number >= 0.0 and <= 1.0)",
    ),
    (
        lambda d: d["search"].update(trials=0),
        "search.trials: 0 is not allowed (allowed: an integer >= 1)",
    ),
    (
        lambda d: d["search"].update(baseline="yes"),
        "search.baseline: 'yes' is not allowed (allowed: true, false)",
    ),
    (
        lambda d: d["search"].update(grace_period=5),
        "search.grace_period: 5 is not allowed (allowed: an integer > heartbeat_interval = 10)",
    ),
    (
        lambda d: d["search"].update(max_energy_mj=0),
        "search.max_energy_mj: 0 is not allowed (allowed: a number > 0.0 or leave it out)",
    ),
    (
        lambda d: d["search"].update(seeds=3),
        "search.seeds: unknown field (allowed: sampler, options, ",
    ),
    # an unknown key names the closest valid one
    (lambda d: d["search"].update(trails=3), "search.trails: unknown field (allowed: "),
    (lambda d: d.update(serach={}), "serach: unknown field (allowed: study, data, space, train, "),
    # wrong types and negative counts
    (
        lambda d: d["search"].update(trials="200"),
        "search.trials: '200' is not allowed (allowed: an integer >= 1)",
    ),
    (
        lambda d: d["search"].update(calib_batches=-1),
        "search.calib_batches: -1 is not allowed (allowed: an integer >= 0)",
    ),
    (
        lambda d: d["train"].update(epochs=-5),
        "train.epochs: -5 is not allowed (allowed: an integer >= 1)",
    ),
    (
        lambda d: d["train"].update(batch_size=1.5),
        "train.batch_size: 1.5 is not allowed (allowed: an integer)",
    ),
    (
        lambda d: d["search"].update(max_outage=0),
        "search.max_outage: 0 is not allowed (allowed: an integer >= 1)",
    ),
    # a setting that only another one makes wrong names both
    (
        lambda d: d["train"].update(train_samples=10),
        "train.train_samples: 10 is fewer than one batch (batch_size = 64): raise train_samples "
        "or lower batch_size",
    ),
    (
        lambda d: d["train"].update(epochs=1, warmup_epochs=3),
        "train.warmup_epochs: 3 is not allowed (allowed: 0 <= warmup_epochs <= epochs = 1: lower "
        "warmup_epochs, raise epochs, or leave warmup_epochs out to derive it)",
    ),
    # random search takes no options: the message says so rather than listing nothing
    (
        lambda d: d["search"].update(sampler="random", options={"population_size": 4}),
        "search.options.population_size: unknown field (sampler 'random' takes no options: "
        "remove [search.options])",
    ),
    # a study name names a folder: plain ASCII, no path tricks
    (lambda d: d["study"].update(name="tïny"), "study.name: 'tïny' is not allowed (allowed: "),
    (lambda d: d["study"].update(name=".."), "study.name: '..' is not allowed (allowed: "),
    (lambda d: d["study"].update(name="-x"), "study.name: '-x' is not allowed (allowed: "),
    (lambda d: d["study"].update(name="a" * 129), "study.name: 'aaaa"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_field_is_named_with_allowed_values(mutate, message: str) -> None:
    data = _digits()
    mutate(data)
    with pytest.raises(StudyConfigError) as err:
        StudyConfig.from_dict(data)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_keys_name_the_closest_valid_key() -> None:
    for mutate, hint in [
        (lambda d: d["search"].update(trails=3), "; did you mean 'trials'?"),
        (lambda d: d.update(serach={}), "; did you mean 'search'?"),
        (lambda d: d["train"].update(epochz=3), "; did you mean 'epochs'?"),
        (lambda d: d["search"]["options"].update(num_parent=3), "; did you mean 'num_parents'?"),
    ]:
        data = _digits()
        mutate(data)
        with pytest.raises(StudyConfigError) as err:
            StudyConfig.from_dict(data)
        assert str(err.value).endswith(hint), str(err.value)
    data = _digits()
    data["search"]["zzz"] = 1  # nothing near: no guess
    with pytest.raises(StudyConfigError) as err:
        StudyConfig.from_dict(data)
    assert "did you mean" not in str(err.value)


def test_settings_that_depend_on_others_are_derived() -> None:
    base = {"study": {"name": "d"}, "data": {"dataset": "digits"}, "space": {"preset": "digits"}}
    # the reference warm-up (20 epochs) shrinks to a tenth of a shorter run, 0 for one epoch
    for epochs, warmup in [(1000, 20), (200, 20), (100, 10), (9, 0), (1, 0)]:
        c = StudyConfig.from_dict({**base, "train": {"epochs": epochs}})
        assert c.train.warmup_epochs == warmup, epochs
    given = StudyConfig.from_dict({**base, "train": {"epochs": 100, "warmup_epochs": 30}})
    assert given.train.warmup_epochs == 30
    # the grace period leaves at least four heartbeats
    assert StudyConfig.from_dict(base).search.grace_period == 120
    slow = StudyConfig.from_dict({**base, "search": {"heartbeat_interval": 60}})
    assert (slow.search.heartbeat_interval, slow.search.grace_period) == (60, 240)
    # DSPS keeps the paper's 20 of 50 parents, or 40 % of a smaller population
    assert StudyConfig.from_dict(base).search.options["num_parents"] == 20
    small = StudyConfig.from_dict({**base, "search": {"options": {"population_size": 10}}})
    assert small.search.options["num_parents"] == 4
    assert StudyConfig.from_dict({**base, "search": {"options": {"population_size": 2}}}).search.options[
        "num_parents"
    ] == 1  # fmt: skip
    # the resolved form holds the derived numbers, so a stored study does not re-derive them
    stored = StudyConfig.from_dict(small.to_dict())
    assert stored == small and stored.search.options["num_parents"] == 4
    assert StudyConfig.from_dict(base).search.max_outage == 300


def test_train_config_derives_its_warmup_again_when_epochs_change() -> None:
    from autospikformer.training.config import TrainConfig, TrainConfigError

    reference = TrainConfig()
    assert (reference.epochs, reference.warmup_epochs, reference.derived) == (
        1000,
        20,
        ("warmup_epochs",),
    )
    assert reference.replace(epochs=1).warmup_epochs == 0  # what `supernet train --epochs 1` gets
    assert reference.replace(epochs=50).warmup_epochs == 5
    assert reference.replace(epochs=50, warmup_epochs=7).warmup_epochs == 7
    digits = TrainConfig.preset("digits")  # names its warm-up: kept
    assert digits.replace(epochs=1).warmup_epochs == 1 and digits.derived == ()
    assert TrainConfig(warmup_epochs=20) == reference
    with pytest.raises(TrainConfigError, match="warmup_epochs: 20 is not allowed"):
        TrainConfig(epochs=5, warmup_epochs=20)


def test_bad_files_and_names(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[study\nname = 1\n")
    with pytest.raises(StudyConfigError, match=r"broken.toml: not valid TOML"):
        StudyConfig.load(broken)
    with pytest.raises(StudyConfigError, match=r"file .*missing.toml' does not exist"):
        StudyConfig.load(tmp_path / "missing.toml")
    with pytest.raises(StudyConfigError, match=r"'cifar1000' is neither a .toml file nor a preset"):
        StudyConfig.load("cifar1000")
    bad = tmp_path / "bad.toml"
    bad.write_text((studies_dir() / "digits.toml").read_text().replace('"dsps"', '"dspss"'))
    with pytest.raises(StudyConfigError) as err:
        StudyConfig.load(bad)
    assert str(err.value).startswith("bad.toml: search.sampler: 'dspss' is not a sampler")


def test_differences_name_the_fields() -> None:
    a = StudyConfig.load("digits")
    data = a.to_dict()
    data["search"]["sampler"] = "random"
    data["search"]["options"] = {}
    data["train"]["epochs"] = 3
    b = StudyConfig.from_dict(data)
    assert a.differences(b) == ["train.epochs", "search.options", "search.sampler"]
    data = a.to_dict()
    data["space"]["transformer"]["depth"] = [1]
    assert a.differences(StudyConfig.from_dict(data)) == ["space"]
