"""Energy at the study level: what priced a study, comparing studies, re-pricing a finished study,
and event-data trials (SPEC sections 4 and 4b).

Nothing is mocked: trials are real BN recalibrations and evaluation passes of a supernet with
weights drawn so that its neurons fire, on the embedded digits and on a small CIFAR10-DVS written
in its real on-disk format.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from event_files import sample_events, write_cifar10dvs_aedat
from helpers import study_text, tiny_study
from optuna.trial import TrialState
from typer.testing import CliRunner

from autospikformer.checkpoint import load_supernet
from autospikformer.checkpoint_file import save_checkpoint
from autospikformer.cli.app import app
from autospikformer.data.base import DatasetInfo
from autospikformer.data.loading import build_dataset
from autospikformer.energy import EnergyModel, estimate_energy_mj
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.report.pricing import (
    repriced_study,
    require_same_energy_model,
    study_energy_model,
    trial_measurement,
)
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import architecture_from_params
from autospikformer.study.config import StudyConfig
from autospikformer.study.evaluator import study_evaluator
from autospikformer.study.storage import (
    ANN_ENERGY_ATTR,
    CONFIG_ATTR,
    ENERGY_ATTR,
    ENERGY_MEASUREMENT_ATTR,
    StudyError,
    resolve_study,
    study_records,
)
from autospikformer.study.worker import Worker, WorkerOptions
from autospikformer.study.workers import run_workers

MEMORY = EnergyModel(name="memory-45nm")
SOP = EnergyModel()
runner = CliRunner()


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Weights and BN affine drawn so that neurons fire (a fresh init is nearly silent)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * (
                2 / m.weight[0].numel() ** 0.5
            )
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=gen) * 1.5
    return model.eval()


def save_supernet(
    path: Path, space: SearchSpace, *, in_channels: int, img_size: int, variant: str = "cifar"
) -> Path:
    net = SuperSpikformer(
        space, num_classes=10, in_channels=in_channels, img_size=img_size, variant=variant
    )
    save_checkpoint(
        {"kind": "supernet", "space": space.to_dict(), "space_fingerprint": space.fingerprint(),
         "state_dict": lively(net).state_dict(), "num_classes": 10, "in_channels": in_channels,
         "img_size": img_size, "variant": variant},
        path,
    )  # fmt: skip
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(result, fragment: str) -> None:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def dump(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


# --------------------------------------------------------------------------- a study's model


def test_a_study_records_its_energy_model_when_created(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    plain = tmp_path / "plain.toml"
    plain.write_text(tiny_study("plain"))
    priced = tmp_path / "priced.toml"
    priced.write_text(
        tiny_study("priced") + '[energy]\nmodel = "memory-45nm"\nsram = "8 KB"\ne_ac = "0.9 pJ"\n'
    )
    for path in (plain, priced):
        result = invoke("study", "create", str(path), "--storage", url)
        assert result.exit_code == 0, result.stderr
    assert "energy memory-45nm" in result.stdout
    expected = EnergyModel.from_table({"model": "memory-45nm", "sram_kb": 8})
    a = optuna.load_study(study_name="plain", storage=url)
    b = optuna.load_study(study_name="priced", storage=url)
    assert study_records(a)[ENERGY_ATTR] == SOP.to_attr()
    assert study_records(b)[ENERGY_ATTR] == expected.to_attr()
    assert study_energy_model(b) == expected
    assert StudyConfig.from_dict(study_records(b)[CONFIG_ATTR]).energy == expected
    # the configuration holds the model: another [energy] table is another study
    changed = tmp_path / "changed.toml"
    changed.write_text(priced.read_text().replace('sram = "8 KB"', 'sram = "32 KB"'))
    one_line_error(
        invoke("study", "create", str(changed), "--storage", url),
        "differs in: energy.sram_kb",
    )
    # a study without the attribute was priced by sop-45nm with the default constants
    old = optuna.create_study(study_name="old", storage=url, directions=["maximize", "minimize"])
    assert study_energy_model(old) == SOP
    assert require_same_energy_model([a, old]) == SOP


def test_a_bad_constant_in_a_study_file_is_one_line_and_stores_nothing(tmp_path) -> None:
    for table, fragment in (
        ("e_ac_pj = -0.9", "bad.toml: energy.e_ac_pj: -0.9 is not allowed (allowed: a number >= 0)"),
        ("e_ac = 0.9", 'bad.toml: energy.e_ac: 0.9 has no unit (write e_ac_pj = 0.9 or e_ac = "0.9 pJ")'),
        ('model = "ann"', "bad.toml: energy.model: 'ann' is not an energy model"),
    ):  # fmt: skip
        bad = tmp_path / "bad.toml"
        bad.write_text(tiny_study("bad") + f"[energy]\n{table}\n")
        result = invoke("study", "create", str(bad), "--storage", f"sqlite:///{tmp_path / 'b.db'}")
        one_line_error(result, fragment)
        assert not (tmp_path / "b.db").exists()


def test_comparing_studies_priced_differently_is_refused(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    studies = {}
    for name, table in (("sop", ""), ("mem", '[energy]\nmodel = "memory-45nm"\n'),
                        ("cheap", '[energy]\nmodel = "memory-45nm"\nsram_kb = 8\n'),
                        ("sram-table", '[energy]\nsram_8kb_pj = 1.0\n')):  # fmt: skip
        path = tmp_path / f"{name}.toml"
        path.write_text(tiny_study(name) + table)
        studies[name], _, _ = resolve_study(str(path), url, create=True)
    with pytest.raises(StudyError) as err:
        require_same_energy_model([studies["sop"], studies["mem"]])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("studies 'sop' (sop-45nm: E_MAC 4.6 pJ, E_AC 0.9 pJ) and 'mem'")
    assert "are priced differently (differ in: model); re-price one with " in message
    assert "'autospik study export mem --energy-model sop-45nm'" in message
    with pytest.raises(StudyError) as err:
        require_same_energy_model([studies["mem"], studies["cheap"]])
    assert "(differ in: sram_kb, sram_32kb_pj, sram_8kb_pj); re-price one with 'autospik " in str(
        err.value
    )
    assert "study export cheap --constants FILE' (the [energy] table of 'mem')" in str(err.value)
    # constants that sop-45nm does not use do not make its studies differ
    assert require_same_energy_model([studies["sop"], studies["sram-table"]]) == SOP


# --------------------------------------------------------------------------- re-pricing


@pytest.fixture(scope="module")
def digits_study(tmp_path_factory) -> tuple[Path, str, Path]:
    """A tiny digits study priced by sop-45nm, 4 trials searched in this process."""
    folder = tmp_path_factory.mktemp("pricing")
    path = folder / "tiny.toml"
    path.write_text(tiny_study("tiny"))
    url = f"sqlite:///{folder / 'autospik.db'}"
    resolve_study(str(path), url, create=True)
    ckpt = save_supernet(
        folder / "supernet.pt", SearchSpace.load("digits"), in_channels=1, img_size=8
    )
    options = WorkerOptions(storage_url=url, study_name="tiny", trials=4, checkpoint=str(ckpt),
                            device="cpu")  # fmt: skip
    outcome = run_workers(options, 1)
    assert outcome.complete == 4
    return folder, url, ckpt


def test_repricing_equals_a_fresh_evaluation_under_the_other_model(digits_study) -> None:
    _, url, ckpt = digits_study
    study = optuna.load_study(study_name="tiny", storage=url)
    config = StudyConfig.from_dict(study_records(study)[CONFIG_ATTR])
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    for trial in complete:  # what a trial stores: a few numbers in user attributes, the record
        assert isinstance(trial.user_attrs[ANN_ENERGY_ATTR], float)
        record = trial_measurement(trial)
        assert record is not None and not record.event_data and record.images == 128
        assert record.totals(SOP).energy_mj == trial.values[1]
        assert record.totals(SOP).ann_energy_mj == trial.user_attrs[ANN_ENERGY_ATTR]
        assert len(json.dumps(trial.system_attrs[ENERGY_MEASUREMENT_ATTR])) < 1500
    repriced = repriced_study(study, MEMORY)
    assert study_energy_model(repriced) == MEMORY
    assert repriced.study_name == "tiny" and repriced.metric_names == study.metric_names
    fresh = study_evaluator(
        StudyConfig.from_dict({**config.to_dict(), "energy": MEMORY.to_table()}),
        load_supernet(ckpt, space=config.space),
        device="cpu",
    )
    by_number = {t.number: t for t in repriced.get_trials()}
    assert sorted(by_number) == [t.number for t in study.get_trials()]
    for trial in complete:
        result = fresh.evaluate(architecture_from_params(trial.params))
        copy = by_number[trial.number]
        assert result.accuracy == trial.values[0] == copy.values[0]  # the same evaluation pass
        assert copy.values[1] == result.energy_mj  # exactly what the memory model measures
        assert copy.user_attrs[ANN_ENERGY_ATTR] == result.report.ann_energy_mj
        assert copy.values[1] > 5 * trial.values[1]  # memory traffic dominates
        assert copy.params == trial.params and copy.datetime_complete == trial.datetime_complete
    # back to sop-45nm: the stored values, exactly
    back = repriced_study(repriced, SOP)
    assert [t.values for t in back.get_trials()] == [t.values for t in study.get_trials()]


def test_study_export_reprices_without_touching_the_storage(digits_study, tmp_path) -> None:
    folder, url, _ = digits_study
    before = dump(folder / "autospik.db")
    study = optuna.load_study(study_name="tiny", storage=url)
    out = tmp_path / "mem"
    result = invoke("study", "export", "tiny", "--storage", url, "--energy-model", "memory-45nm",
                    "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "re-priced the trials of tiny under memory-45nm" in result.stdout
    trials = pd.read_csv(out / "trials.csv")
    expected = {t.number: t.values[1] for t in repriced_study(study, MEMORY).get_trials()}
    assert dict(zip(trials["number"], trials["energy_mj"], strict=True)) == pytest.approx(expected)
    assert trials["ann_energy_mj"].notna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["energy"] == MEMORY.to_attr() and summary["study"] == "tiny"
    # another SRAM size from a file, into the default folder export-<model>
    cheap = tmp_path / "cheap.toml"
    cheap.write_text('[energy]\nmodel = "memory-45nm"\nsram_kb = 8\n')
    runs = tmp_path / "runs"
    again = invoke("study", "export", "tiny", "--storage", url, "--constants", str(cheap),
                   "--runs-dir", str(runs))  # fmt: skip
    assert again.exit_code == 0, again.stderr
    small = pd.read_csv(runs / "tiny" / "export-memory-45nm" / "trials.csv")
    assert (small["energy_mj"] < trials["energy_mj"]).all()
    same = invoke("study", "export", "tiny", "--storage", url, "--energy-model", "sop-45nm",
                  "--out", str(tmp_path / "sop"))  # fmt: skip
    assert same.exit_code == 0 and "already priced by sop-45nm" in same.stdout
    one_line_error(
        invoke("study", "export", "tiny", "--storage", url, "--energy-model", "ann"),
        "--energy-model: 'ann' is not an energy model (allowed: sop-45nm, memory-45nm)",
    )
    assert dump(folder / "autospik.db") == before


def test_a_trial_without_a_record_cannot_be_repriced(tmp_path) -> None:
    study = optuna.create_study(study_name="old", directions=["maximize", "minimize"])
    dist = optuna.distributions.CategoricalDistribution([1, 2])
    for number in range(2):
        study.add_trial(
            optuna.trial.create_trial(
                params={"depth": 1}, distributions={"depth": dist}, values=[0.5, 0.1 * (number + 1)]
            )
        )
    with pytest.raises(StudyError) as err:
        repriced_study(study, MEMORY)
    assert str(err.value).startswith(
        "study 'old': 2 complete trials have no stored energy record (trials 0, 1;"
    )


# --------------------------------------------------------------------------- event data

DVS_SPACE = {
    "name": "tiny-dvs",
    "transformer": {"embed_dim": [16], "mlp_ratio": [1.0], "num_heads": [2], "depth": [1]},
    "neuron": {"threshold": [1.0], "tau": [2.0], "time_steps": [2, 3]},
}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def dvs_study(name: str, root: Path, *, model: str, budget: float | None = None) -> str:
    search = {"trials": 2, "batch_size": 4, "eval_samples": None}
    if budget is not None:
        search.update(max_energy_mj=budget, energy_rate=0.35)
    return study_text(
        name, sampler="random", dataset="cifar10dvs", root=root, space=DVS_SPACE, search=search,
        energy={"model": model},
    )  # fmt: skip


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory) -> Path:
    """CIFAR10-DVS as its archives unpack (extract/<class>/*.aedat): 10 recordings of one class
    (9 train, 1 test), 1 of every other (train)."""
    root = tmp_path_factory.mktemp("cifar10dvs")
    rng = np.random.default_rng(0)
    for c, cn in enumerate(CLASSES):
        (root / "extract" / cn).mkdir(parents=True)
        for i in range(10 if c == 0 else 1):
            events = sample_events(rng, 40)
            write_cifar10dvs_aedat(root / "extract" / cn / f"cifar10_{cn}_{i}.aedat", events)
    return root


def test_event_data_trials_count_the_first_conv_as_sops(dvs_root, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'dvs.db'}"
    space = SearchSpace.from_dict(DVS_SPACE)
    ckpt = save_supernet(tmp_path / "dvs.pt", space, in_channels=2, img_size=128, variant="dvs")
    (tmp_path / "run.toml").write_text(dvs_study("dvs", dvs_root, model="memory-45nm"))
    _, config, _ = resolve_study(str(tmp_path / "run.toml"), url, create=True)
    options = WorkerOptions(storage_url=url, study_name="dvs", trials=2, checkpoint=str(ckpt),
                            device="cpu")  # fmt: skip
    assert run_workers(options, 1).complete == 2
    study = optuna.load_study(study_name="dvs", storage=url)
    evaluator = study_evaluator(config, load_supernet(ckpt, space=space), device="cpu")
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        arch = architecture_from_params(trial.params)
        record = trial_measurement(trial)
        assert record.event_data and record.time_steps == arch.time_steps
        result = evaluator.evaluate(arch)
        assert result.energy_mj == trial.values[1] == record.totals(MEMORY).energy_mj
        first = result.report.table.iloc[0]
        assert first["counted"] == "event-frames" and first["op"] == "AC"
        # its rate is the mean of the evaluation frames: the test split is one recording
        test = build_dataset("cifar10dvs", dvs_root, train=False, time_steps=arch.time_steps)
        assert len(test) == 1
        frames, _ = test[0]
        assert first["input_rate"] == pytest.approx(float(frames.double().mean()), rel=1e-12)
        assert first["input_rate"] == 40 / frames.numel()  # 40 events, one per pixel
        assert first["ops"] == first["input_rate"] * arch.time_steps * first["dense_macs"]
    # re-pricing keeps the event convention
    sop = repriced_study(study, SOP)
    for trial in sop.get_trials(states=(TrialState.COMPLETE,)):
        result = study_evaluator(
            StudyConfig.from_dict({**config.to_dict(), "energy": SOP.to_table()}),
            load_supernet(ckpt, space=space),
            device="cpu",
        ).evaluate(architecture_from_params(trial.params))
        assert trial.values[1] == result.energy_mj


def test_the_energy_budget_uses_the_event_convention_and_the_study_model(dvs_root, tmp_path):
    """``max_energy_mj`` is checked before evaluation on the analytic estimate: for event data
    with the first conv as SOPs, in the study's energy model."""
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    space = SearchSpace.from_dict(DVS_SPACE)
    ckpt = save_supernet(tmp_path / "dvs.pt", space, in_channels=2, img_size=128, variant="dvs")
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=2)
    shape = {"in_channels": 2, "img_size": 128, "num_classes": 10}

    def estimate(model: EnergyModel, events: bool) -> float:
        data = DatasetInfo("frames", **shape, event_based=events)
        return estimate_energy_mj(arch, rate=0.35, data=data, model=model)

    # at T = 2 the event convention is cheaper than a first conv counted as dense MACs
    assert estimate(MEMORY, True) < estimate(MEMORY, False)
    assert estimate(SOP, True) < estimate(SOP, False) < estimate(MEMORY, True)
    cases = (  # (study model, budget, passes)
        (MEMORY, (estimate(MEMORY, True) + estimate(MEMORY, False)) / 2, True),
        (MEMORY, (estimate(SOP, False) + estimate(MEMORY, True)) / 2, False),
        (SOP, (estimate(SOP, True) + estimate(SOP, False)) / 2, True),
    )
    for i, (model, budget, passes) in enumerate(cases):
        name = f"budget{i}"
        (tmp_path / f"{name}.toml").write_text(dvs_study(name, dvs_root, model=model.name,
                                                         budget=budget))  # fmt: skip
        resolve_study(str(tmp_path / f"{name}.toml"), url, create=True)
        worker = Worker(WorkerOptions(storage_url=url, study_name=name, trials=1,
                                      checkpoint=str(ckpt), device="cpu"))  # fmt: skip
        why = worker.budgets.reject(arch)
        assert (why is None) == passes, (model.name, budget, why)
        # the same figure is the trial's Optuna constraint value (> 0: over budget)
        value, _ = worker.budgets.before_evaluation(arch)["max_energy_mj"]
        assert value == estimate(model, True) - budget and (value <= 0) == passes
        if not passes:
            assert f"estimated {estimate(MEMORY, True):.4g} mJ at rate 0.35" in why


def test_cli_energy_measures_event_frames(dvs_root, tmp_path) -> None:
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=2)
    model = lively(
        Spikformer(arch, num_classes=10, in_channels=2, img_size=128, variant="dvs"), seed=3
    )
    path = tmp_path / "dvs_model.pt"
    model.save(path)
    result = invoke("energy", str(arch), "--checkpoint", str(path), "--dataset", "cifar10dvs",
                    "--data-root", str(dvs_root), "--batch-size", "1", "--batches", "1",
                    "--energy-model", "memory-45nm", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["first_conv"] == "event-frames" and data["images"] == 1
    frames, _ = build_dataset("cifar10dvs", dvs_root, train=False, time_steps=2)[0]
    assert data["layers"][0]["input_rate"] == pytest.approx(float(frames.double().mean()))
    assert data["energy_model"] == "memory-45nm" and data["memory_mj"] > data["compute_mj"]
