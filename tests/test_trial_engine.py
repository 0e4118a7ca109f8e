"""The trial engine on event data written in the on-disk format, the per-trial record, the
spread of search workers over the visible GPUs, a trial's bookkeeping (what it writes, what it
reads, and that neither grows with the study) and the CPU threads of every command."""

from __future__ import annotations

import io
import os
import random
import tomllib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch
from event_files import write_cifar10dvs_extract
from helpers import TINY_SPACE, study_text, tiny_study
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState
from sqlalchemy import event
from typer.testing import CliRunner

from autospikformer.data.base import DataError
from autospikformer.data.loading import build_dataset, build_frames, make_loader, subset
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.optuna_api import (
    CONSTRAINTS_KEY,
    set_trial_attrs,
    storage_of,
    study_id,
    trial_id,
)
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.study import workers as worker_module
from autospikformer.study.config import StudyConfig, StudyConfigError
from autospikformer.study.ledger import TrialLedger
from autospikformer.study.retrying_storage import RetryingStorage
from autospikformer.study.storage import StudyError, open_storage, resolve_study
from autospikformer.study.worker import Worker
from autospikformer.study.workers import WorkerOptions, spawned_options, worker_devices
from autospikformer.threads import worker_threads
from autospikformer.training.evaluate import SubnetEvaluator, _load_frames
from autospikformer.units import energy_text, percent


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory) -> Path:
    """A CIFAR10-DVS folder of 100 recordings (90 train, 10 test), as the figshare zips unpack."""
    root = tmp_path_factory.mktemp("cifar10dvs")
    write_cifar10dvs_extract(root, [10] * 10, events_per_sample=64)
    return root


def dvs_supernet(variant: str = "dvs") -> SuperSpikformer:
    torch.manual_seed(0)
    space = SearchSpace.from_dict(TINY_SPACE)
    return SuperSpikformer(space, num_classes=10, in_channels=2, img_size=128, variant=variant)


def test_event_data_is_prepared_at_every_t_before_the_first_trial(dvs_root, events_reads):
    supernet = dvs_supernet()
    build_dataset("cifar10dvs", dvs_root, train=True, time_steps=1)  # the caches exist
    build_dataset("cifar10dvs", dvs_root, train=False, time_steps=1)
    events_reads.clear()
    evaluator = SubnetEvaluator(
        supernet, dataset="cifar10dvs", data_root=dvs_root, calib_batches=2, calib_batch_size=8,
        batch_size=4, device="cpu", seed=1,
    )  # fmt: skip
    assert events_reads == []  # the worker's data comes from the caches, not the events files
    for steps in (1, 2):  # every T of the space, as integer counts
        calib, test = evaluator.splits(steps)
        assert calib is not None and calib.inputs.dtype == test.inputs.dtype == torch.uint8
        assert tuple(calib.inputs.shape) == (16, steps, 2, 128, 128)
        assert tuple(test.inputs.shape) == (10, steps, 2, 128, 128)
    arch = Architecture.uniform(depth=2, embed_dim=32, mlp_ratio=2.0, num_heads=4, time_steps=2)
    result = evaluator.evaluate(arch)
    assert (result.samples, result.calib_images, result.calib_batches) == (10, 16, 2)

    # the device-held counts are the frames an ordinary loader gives, and the trial's accuracy
    # is the extracted model's on them
    model = evaluator.standalone(arch)
    test = build_dataset("cifar10dvs", dvs_root, train=False, time_steps=2)
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in make_loader(test, batch_size=4, train=False)])
        held = torch.cat([model(x) for x, _ in evaluator.splits(2)[1]])
    assert torch.equal(held, logits)
    correct = int((logits.argmax(-1) == torch.tensor(test.targets)).sum())
    assert result.accuracy == correct / 10
    assert events_reads == []
    # a subset of a subset (a holdout, then a fixed draw) is loaded through to the split
    frames = build_frames("cifar10dvs", dvs_root, train=True, augment=False, time_steps=[2])[2]
    inner = subset(frames, 40, seed=0)
    outer = subset(inner, 5, seed=1)
    held = _load_frames(outer, 2, torch.device("cpu"), False)
    want = torch.stack([frames[inner.indices[i]][0] for i in outer.indices])
    assert torch.equal(held.inputs.float(), want) and held.inputs.dtype == torch.uint8
    with pytest.raises(
        ValueError, match=r"T=3 was not prepared by this evaluator \(prepared: 1, 2"
    ):
        evaluator.splits(3)
    with pytest.raises(DataError, match="cifar10dvs is searched with the 'dvs' model"):
        SubnetEvaluator(dvs_supernet("cifar"), dataset="cifar10dvs", data_root=dvs_root)


def test_an_event_study_reads_each_events_file_once(dvs_root, tmp_path, monkeypatch, events_reads):
    """Stage 1 (training) and stage 2 (a search of 3 trials) of a CIFAR10-DVS study: every
    events file is read once in all, and the trials record what ran."""
    import shutil

    root = tmp_path / "data"
    shutil.copytree(dvs_root / "extract", root / "extract")  # fresh: no cache yet
    (tmp_path / "dvs.toml").write_text(
        study_text(
            "dvs-tiny", sampler="random", dataset="cifar10dvs", root=root, space=TINY_SPACE,
            train={"batch_size": 8, "augment": None, "train_samples": None},
            search={"trials": 3, "calib_batch_size": 8, "batch_size": 4, "eval_samples": None},
        )
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    from autospikformer.cli.app import app

    result = CliRunner().invoke(app, ["study", "run", "dvs.toml", "--device", "cpu", "--no-export"])
    assert result.exit_code == 0, result.output
    files = sorted(str(p) for p in (root / "events_np").rglob("*.npz"))
    assert len(files) == 100 and sorted(events_reads) == files
    assert not list(root.glob("frames_number_*"))
    study = optuna.load_study(study_name="dvs-tiny", storage="sqlite:///autospik.db")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        evaluation = dict(t.user_attrs["autospik:evaluation"])
        assert evaluation.pop("features") in ("computed", "reused")  # SPS kept per (E, T)
        assert evaluation == {
            "calib_images": 8, "calib_batch_size": 8, "eval_images": 10, "eval_batch_size": 4,
            "precision": "fp32", "device": "cpu",
        }  # fmt: skip
        assert t.user_attrs["autospik:calib_batches"] == 1
    ckpt = torch.load(tmp_path / "runs" / "dvs-tiny" / "supernet.pt", weights_only=True)
    assert ckpt["variant"] == "dvs" and "blocks.0.attn.q.linear.bias" not in ckpt["state_dict"]


# --------------------------------------------------------------------------- GPUs
def test_workers_spread_over_the_visible_gpus() -> None:
    assert worker_devices("auto", 5, 2) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cuda", 3, 4) == ["cuda:0", "cuda:1", "cuda:2"]
    assert worker_devices("cuda:1", 3, 4) == ["cuda:1"] * 3  # an explicit GPU is shared
    assert worker_devices("cpu", 2, 4) == ["cpu", "cpu"]
    assert worker_devices("auto", 2, 0) == ["cpu", "cpu"]


@pytest.mark.parametrize(("gpus", "expected"), [(3, ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]),
                                                (1, ["cuda:0"] * 4), (0, ["cpu"] * 4)])  # fmt: skip
def test_spawned_workers_get_their_gpu(monkeypatch, gpus: int, expected: list[str]) -> None:
    """What each spawned worker process is given, with a faked number of visible GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(worker_module.os, "cpu_count", lambda: 16)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    options = WorkerOptions(storage_url="sqlite:///x.db", study_name="s", trials=8, checkpoint="c")
    spawned = spawned_options(options, 4)
    assert [o.device for o in spawned] == expected
    assert [o.worker_index for o in spawned] == [0, 1, 2, 3]
    assert {o.threads for o in spawned} == {4}  # the cores split
    assert [o.sharing for o in spawned] == [expected.count(d) for d in expected]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # OpenMP's own count, per process
    assert {o.threads for o in spawned_options(options, 4)} == {3}
    given = WorkerOptions(**{**options.__dict__, "threads": 2})  # --threads wins
    assert {o.threads for o in spawned_options(given, 4)} == {2}
    if gpus:
        cuda = spawned_options(WorkerOptions(**{**options.__dict__, "device": "cuda:0"}), 2)
        assert [o.device for o in cuda] == ["cuda:0", "cuda:0"]


def test_the_gpu_suite_runs_at_a_tiny_size_on_the_cpu() -> None:
    """``benchmarks/gpu_suite.py`` is one command; at a tiny size on the CPU it prints every
    figure with its reference and exits 0 (its full size needs a GPU)."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "benchmarks" / "gpu_suite.py"
    result = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--tiny", "--threads", "1",
         "--seconds", "0.5"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("device: CPU (cpu), torch ")
    summary = out.split("summary, CPU:")[1]
    for figure in (
        "training, model only, AMP, batch 8", "a new random architecture every step",
        "standalone d2-e32", "training, the real trainer", "evaluation, d2-e32",
        "with the energy meter", "search trial (16 calibration images in batches of 8, 64 test "
        "images in batches of 32, fp32 on cpu, energy measured)", "a 1000-trial study",
        "reference 2,124 images/s", "reference 5,583 images/s", "target x2 = 4,248",
        "target x3 = 16,749", "(tiny size: not comparable)",
    ):  # fmt: skip
        assert figure in summary, figure
    assert summary.count("peak memory") == 4 and "FAILED" not in out


# --------------------------------------------------------------------------- settings
def test_evaluation_and_calibration_batch_sizes_are_two_settings() -> None:
    base = tomllib.loads(tiny_study("s"))
    config = StudyConfig.from_dict(base)
    assert (config.search.batch_size, config.search.calib_batch_size, config.search.amp) == (
        128, 128, True,
    )  # fmt: skip
    base["search"].update(calib_batch_size=32, amp=False)
    config = StudyConfig.from_dict(base)
    assert (config.search.batch_size, config.search.calib_batch_size) == (128, 32)
    assert StudyConfig.from_dict(config.to_dict()) == config
    # a study stored before these settings existed keeps its meaning (calibration batch =
    # evaluation batch) and equals the same study registered now
    stored = config.to_dict()
    del stored["search"]["calib_batch_size"], stored["search"]["amp"]
    old = StudyConfig.from_dict(stored)
    assert (old.search.calib_batch_size, old.search.amp) == (128, True)
    assert StudyConfig.from_dict(tomllib.loads(tiny_study("s"))).differences(old) == []
    for key, value, allowed in (("calib_batch_size", 0, "an integer >= 1 or leave it out"),
                                ("amp", "yes", "true, false")):  # fmt: skip
        bad = tomllib.loads(tiny_study("s"))
        bad["search"][key] = value
        with pytest.raises(StudyConfigError, match=rf"^search\.{key}: .* \(allowed: {allowed}\)"):
            StudyConfig.from_dict(bad)


# --------------------------------------------------------------------------- bookkeeping
def _add_trials(study: optuna.Study, count: int, seed: int) -> None:
    """Finished trials of every state, values with ties, some outside an energy budget."""
    rng = random.Random(seed)
    dist = {"x": CategoricalDistribution(list(range(40)))}
    for _ in range(count):
        state = rng.choice([TrialState.COMPLETE] * 3 + [TrialState.PRUNED, TrialState.FAIL])
        violation = rng.choice([None, -1.0, 0.0, 0.25])
        attrs = {} if violation is None else {f"{CONSTRAINTS_KEY}:max_energy_mj": violation}
        values = [round(rng.random(), 1), round(rng.random(), 1)]
        study.add_trial(
            optuna.trial.create_trial(
                state=state, params={"x": rng.randrange(40)}, distributions=dist,
                values=values if state == TrialState.COMPLETE else None, system_attrs=attrs,
            )
        )  # fmt: skip


class CountingStorage:
    """A storage that counts the calls made to it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


def test_the_ledger_keeps_counts_twins_and_the_front_as_a_full_read_gives_them() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    ledger = TrialLedger(storage_of(study), study_id(study))
    for seed in range(6):
        _add_trials(study, 40, seed)
        ledger.refresh()
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert ledger.complete == len(complete)
        assert sorted(ledger.front) == sorted(tuple(t.values) for t in study.best_trials)
    mine, other = study.ask(), study.ask()
    other.suggest_categorical("y", [99])
    ledger.refresh(me=mine.number)
    assert [t.number for t in ledger.running] == [other.number]
    done = next(t for t in study.trials if t.state == TrialState.COMPLETE)
    assert ledger.duplicate_of(done.params, mine.number) == min(
        t.number for t in complete if t.params == done.params
    )
    assert ledger.duplicate_of({"y": 99}, mine.number) == other.number  # a running twin
    assert ledger.duplicate_of({"y": 99}, other.number) is None  # not its own twin
    for state, z in ((TrialState.PRUNED, 1), (TrialState.FAIL, 2)):
        study.add_trial(
            optuna.trial.create_trial(
                state=state, params={"z": z}, distributions={"z": CategoricalDistribution([1, 2])}
            )
        )
    ledger.refresh(me=mine.number)
    assert ledger.duplicate_of({"z": 1}, mine.number) is None  # PRUNED or FAIL: no twin
    assert ledger.duplicate_of({"z": 2}, mine.number) is None
    study.tell(mine, [1.5, -1.0])  # its own trial, watched: counted once it is told
    ledger.refresh()
    assert ledger.complete == len(complete) + 1 and ledger.front == [(1.5, -1.0)]


@pytest.mark.parametrize("size", [40, 400])
def test_a_refresh_reads_what_is_new_not_the_study(tmp_path, monkeypatch, size: int) -> None:
    import sqlite3

    from autospikformer.study import ledger as ledger_module

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    rdb = open_storage(url, create=True)
    study = optuna.create_study(storage=rdb, directions=["maximize", "minimize"])
    _add_trials(study, size, 0)
    ledger = TrialLedger(storage_of(study), study_id(study))
    ledger.refresh()  # the first look reads the study once
    assert ledger.complete == len(study.get_trials(states=(TrialState.COMPLETE,)))
    storage = CountingStorage(storage_of(study))
    ledger.storage = storage  # type: ignore[assignment]
    read: list[int] = []
    real = ledger_module.trials_after
    monkeypatch.setattr(
        ledger_module, "trials_after", lambda *a: read.append(len(got := real(*a))) or got
    )
    statements: list[tuple[str, Any]] = []
    event.listen(rdb.engine, "before_cursor_execute",
                 lambda c, cur, sql, params, ctx, many: statements.append((sql, params)))  # fmt: skip
    running = study.ask()
    _add_trials(study, 2, 1)
    ledger.refresh()
    study.tell(running, [0.5, 0.5])
    ledger.refresh()
    # the 3 new trials, then none; the running one fetched again by id once; any size
    assert read == [3, 0] and storage.calls["get_trial"] == 1
    assert (
        storage.calls["get_all_trials"] == 0
        and storage.calls["get_trial_id_from_study_id_trial_number"] == 0
    )
    assert ledger.complete == len(study.get_trials(states=(TrialState.COMPLETE,)))
    sql, params = next(s for s in statements if "trials.trial_id >" in s[0])
    plan = sqlite3.connect(tmp_path / "ledger.db").execute(f"EXPLAIN QUERY PLAN {sql}", params)
    assert "rowid>?" in " ".join(str(row[-1]) for row in plan)  # an index seek, not a scan


def test_a_reader_content_with_a_recent_picture_reads_nothing(tmp_path) -> None:
    """``refresh(max_age=...)`` (the progress line's) reads nothing within that many seconds of
    the last refresh, and reads what is new after it; a plain refresh always reads."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    _add_trials(study, 12, 0)
    ledger = TrialLedger(storage_of(study), study_id(study))
    ledger.refresh()
    before = ledger.complete
    _add_trials(study, 12, 1)
    ledger.refresh(max_age=60.0)
    assert ledger.complete == before  # the picture of a moment ago
    ledger.refresh(max_age=0.0)
    assert ledger.complete == len(study.get_trials(states=(TrialState.COMPLETE,))) > before
    _add_trials(study, 12, 2)
    ledger._refreshed_at -= 61.0  # the last refresh, a minute ago
    ledger.refresh(max_age=60.0)
    assert ledger.complete == len(study.get_trials(states=(TrialState.COMPLETE,)))


def test_a_trial_committed_after_a_later_one_is_counted_once(monkeypatch) -> None:
    """On PostgreSQL a trial can commit after one created later: the ledger, past its id
    already, finds it by its skipped number."""
    from autospikformer.study import ledger as ledger_module

    study = optuna.create_study(directions=["maximize", "minimize"])
    dist = {"x": CategoricalDistribution(list(range(5)))}
    for x in range(5):
        study.add_trial(
            optuna.trial.create_trial(params={"x": x}, distributions=dist, values=[x, 1])
        )
    hidden = {3}  # created, not committed yet
    real = ledger_module.trials_after
    monkeypatch.setattr(
        ledger_module, "trials_after",
        lambda *args: [t for t in real(*args) if t.number not in hidden],
    )  # fmt: skip
    storage = storage_of(study)
    id_of = storage.get_trial_id_from_study_id_trial_number

    def committed(sid: int, number: int) -> int:
        if number in hidden:
            raise KeyError(number)
        return id_of(sid, number)

    monkeypatch.setattr(storage, "get_trial_id_from_study_id_trial_number", committed)
    ledger = TrialLedger(storage, study_id(study))
    ledger.refresh()
    assert ledger.complete == 4 and ledger.duplicate_of({"x": 3}, 99) is None
    hidden.clear()
    for _ in range(2):
        ledger.refresh()
        assert ledger.complete == 5 and ledger.duplicate_of({"x": 3}, 99) == 3


def test_the_progress_line_keeps_its_front_without_copying_the_study(monkeypatch) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from autospikformer.cli.study import _Display

    study = optuna.create_study(directions=["maximize", "minimize"])
    _add_trials(study, 120, 2)
    best = study.best_trials
    monkeypatch.setattr(optuna.Study, "best_trials", property(lambda s: pytest.fail("copied")))
    progress = Progress(console=Console(file=io.StringIO()))
    display = _Display(progress, target=1000)
    display(study)
    task = progress.tasks[0]
    assert task.completed == len(study.get_trials(states=(TrialState.COMPLETE,)))
    assert task.fields["front"] == str(len(best))
    assert task.fields["acc"] == f"{percent(max(t.values[0] for t in best))} %"
    assert task.fields["energy"] == energy_text(min(t.values[1] for t in best))


def test_several_attributes_are_written_in_one_transaction_all_or_none(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'attrs.db'}"
    rdb = open_storage(url, create=True)
    study = optuna.create_study(storage=rdb, directions=["maximize", "minimize"])
    trial = study.ask()
    commits: list[int] = []
    event.listen(rdb.engine, "commit", lambda conn: commits.append(1))
    retrying = RetryingStorage(storage_of(study), max_outage=5)
    retrying.set_trial_attrs(
        trial_id(trial), user_attrs={"a": 1, "b": [1, 2.5]}, system_attrs={"c": {"d": None}}
    )
    assert len(commits) == 1
    frozen = rdb.get_trial(trial_id(trial))
    assert frozen.user_attrs == {"a": 1, "b": [1, 2.5]} and frozen.system_attrs == {
        "c": {"d": None}
    }
    with pytest.raises(TypeError):
        set_trial_attrs(rdb, trial_id(trial), user_attrs={"e": 1, "f": object()})
    assert "e" not in rdb.get_trial(trial_id(trial)).user_attrs


def test_parameters_written_together_equal_optunas_own_writes(tmp_path) -> None:
    """A trial's suggestions inside ``written_together`` land in one commit at the block's end,
    stored exactly as Optuna stores them one by one; a distribution that clashes with the
    study's is refused as Optuna refuses it, and a block that raises writes nothing."""
    rdb = open_storage(f"sqlite:///{tmp_path / 'params.db'}", create=True)
    study = optuna.create_study(storage=rdb, directions=["maximize", "minimize"])
    retrying = RetryingStorage(storage_of(study), max_outage=5)
    choices = {"depth": [1, 2], "embed_dim": [16, 24, 32], "tau": [1.5, 2.0]}
    plain, together = study.ask(), optuna.Trial(study, trial_id(study.ask()))
    for name, values in choices.items():
        plain.suggest_categorical(name, values)
    commits: list[int] = []
    event.listen(rdb.engine, "commit", lambda conn: commits.append(1))
    together.storage = retrying  # what a worker's study hands its trials
    for _ in range(2):  # the second time, the names' distributions are known: no query
        with retrying.written_together(trial_id(together)):
            for name, values in choices.items():
                together.suggest_categorical(name, values)
            together.set_user_attr("arch", "d1")
            assert rdb.get_trial(trial_id(together)).params == {}  # nothing written yet
            commits.clear()  # (that read's own)
        assert len(commits) == 1
        first, second = (rdb.get_trial(trial_id(t)) for t in (plain, together))
        assert second.params == together.params and second.distributions == first.distributions
        assert second.user_attrs == {"arch": "d1"}
        commits.clear()
        together = optuna.Trial(study, trial_id(study.ask()))
        together.storage = retrying
    with pytest.raises(ValueError, match="does not support dynamic value space"):
        retrying.set_trial_attrs(
            trial_id(together), params={"tau": (0.0, CategoricalDistribution([1.5, 3.0]))}
        )
    with pytest.raises(RuntimeError), retrying.written_together(trial_id(together)):
        together.suggest_categorical("depth", [1, 2])
        raise RuntimeError("the draw failed")
    assert rdb.get_trial(trial_id(together)).params == {}


def test_an_evaluated_trial_writes_its_record_once(tiny_supernet, tmp_path, monkeypatch) -> None:
    """Three writes per evaluated trial, whatever the study's size: the worker label (a kill is
    seen), the parameters with the architecture (being evaluated) in one transaction, the
    record in one more."""
    url = f"sqlite:///{tmp_path / 'once.db'}"
    (tmp_path / "s.toml").write_text(tiny_study("s", "random", trials=2, eval_samples=32))
    resolve_study(str(tmp_path / "s.toml"), url, create=True)
    calls: list[Any] = []
    real = RetryingStorage.call

    def call(self, method, *args, **kwargs):
        calls.append(method if isinstance(method, str) else method.__name__)
        return real(self, method, *args, **kwargs)

    monkeypatch.setattr(RetryingStorage, "call", call)
    worker = Worker(WorkerOptions(url, "s", 2, str(tiny_supernet), device="cpu"))
    calls.clear()
    assert worker.run() == 2
    assert calls.count("set_trial_attrs") == 2 * 2  # parameters and architecture; record
    assert calls.count("set_trial_user_attr") == 2  # the worker label
    assert "set_trial_param" not in calls
    # Optuna's ask looks for a waiting trial; the worker's own reads are only new trials
    assert (
        calls.count("get_all_trials") == 2
        and "get_trial_id_from_study_id_trial_number" not in calls
    )
    assert calls.count("trials_after") == 1 + 2 * 3  # its first look, 3 looks a trial
    trial = optuna.load_study(study_name="s", storage=url).trials[-1]
    assert {"autospik:num_parameters", "autospik:evaluation"} <= set(trial.user_attrs)
    assert "autospik:energy_record" in trial.system_attrs


@pytest.mark.parametrize(
    "sampler, why",
    [
        ("random", "it has converged on this space; 'dsps' and 'dsps-plus' never propose"),
        ("dsps", "the space (within the budgets) has nothing left the study does not hold"),
    ],
)
def test_a_sampler_stuck_on_held_architectures_stops_the_worker_in_one_line(
    tiny_supernet, tmp_path, monkeypatch, sampler: str, why: str
) -> None:
    """A sampler that keeps proposing what the study holds (Optuna's GP converged on a small
    space; DSPS on an exhausted one) stops the worker after MAX_DUPLICATES_IN_A_ROW duplicates,
    with one line that says which, its evaluated trials kept, instead of spinning; a new
    architecture restarts the count."""
    from autospikformer.search.suggest import architecture_params
    from autospikformer.study import worker as worker_mod

    url = f"sqlite:///{tmp_path / 'stuck.db'}"
    (tmp_path / "s.toml").write_text(tiny_study("s", sampler, trials=5, eval_samples=32))
    resolve_study(str(tmp_path / "s.toml"), url, create=True)
    monkeypatch.setattr(worker_mod, "MAX_DUPLICATES_IN_A_ROW", 4)
    worker = Worker(WorkerOptions(url, "s", 5, str(tiny_supernet), device="cpu"))
    space = worker.config.space
    first, second = space.sample(random.Random(0)), space.sample(random.Random(1))
    proposals = [first] * 4 + [second] + [first] * 3 + [second] * 9  # 3 in a row, then 4

    class Scripted(optuna.samplers.RandomSampler):
        def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
            return {}

        def sample_independent(self, study, trial, name, distribution):  # type: ignore[no-untyped-def]
            return architecture_params(proposals[trial.number])[name]

    worker.study.sampler = Scripted(seed=0)
    with pytest.raises(worker_mod.SearchStalled) as stalled:
        worker.run()
    assert str(stalled.value).startswith(
        f"worker 0: the {sampler!r} sampler proposed 4 architectures in a row that the study "
        f"already holds (2 of 5 trials complete): {why}"
    )
    assert "\n" not in str(stalled.value)
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] + [TrialState.PRUNED] * 3 + [
        TrialState.COMPLETE
    ] + [TrialState.PRUNED] * 4
    assert all(t.user_attrs["autospik:skipped"] == "duplicate" for t in trials[5:])
    # spawned workers that all stalled: the command's line does not advise a rerun
    study = optuna.load_study(study_name="s", storage=url)
    lines = [f"worker {i}: {str(stalled.value).split(': ', 1)[1]}" for i in (0, 1)]
    with pytest.raises(StudyError, match=r"2 of 2 workers stopped .*: a rerun would stall"):
        worker_module._settle_failures(study, 5, 2, lines, set())
    with pytest.raises(StudyError, match=r"run the command again to continue the study$"):
        worker_module._settle_failures(study, 5, 2, [lines[0], "worker 1: out of memory"], set())


# --------------------------------------------------------------------------- threads
def test_the_cli_and_the_tests_wait_passively_unless_told_otherwise() -> None:
    import os
    import subprocess
    import sys

    assert os.environ.get("OMP_WAIT_POLICY")  # conftest, before torch loaded
    code = (
        "import os, sys, autospikformer.cli; assert 'torch' not in sys.modules; "
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = env if given is None else {**env, "OMP_WAIT_POLICY": given}
        out = subprocess.run(
            [sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0 and out.stdout.strip() == expected, out.stderr


def test_worker_threads_come_from_the_option_the_environment_or_the_cores(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_threads(None, 3, cpus=16) == 5 and worker_threads(None, 32, cpus=16) == 1
    assert worker_threads(2, 3, cpus=16) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert worker_threads(None, 3, cpus=16) == 6 and worker_threads(1, 3, cpus=16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")  # not a count: the cores split
    assert worker_threads(None, 4, cpus=16) == 4


def test_spawned_candidate_workers_get_their_threads_and_wait_passively(monkeypatch) -> None:
    """``study validate``'s worker processes: the same thread rule as search workers
    (``--threads``, else OMP_NUM_THREADS, else the cores split) and the passive policy in the
    environment they inherit."""
    from autospikformer.study import candidates

    started: list[Any] = []

    class Process:
        def __init__(self, target: Any, args: tuple, name: str) -> None:
            self.args, self.exitcode = args, 0

        def start(self) -> None:
            started.append(self.args[0])
            assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"

        def join(self) -> None:
            pass

    monkeypatch.setattr(candidates.multiprocessing, "get_context", lambda kind: SimpleNamespace(Process=Process))  # fmt: skip
    monkeypatch.setattr(candidates.os, "cpu_count", lambda: 16)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    job = candidates.CandidateJob(storage_url="sqlite:///x.db", study_name="s", trials=(1, 2),
                                  schedule=None, device="cpu")  # type: ignore[arg-type]  # fmt: skip
    candidates.run_candidates(job, 4)
    assert [j.threads for j in started] == [3] * 4 and {j.device for j in started} == {"cpu"}
    monkeypatch.delenv("OMP_NUM_THREADS")
    started.clear()
    candidates.run_candidates(job, 4)
    assert [j.threads for j in started] == [4] * 4  # the cores split
    started.clear()
    candidates.run_candidates(candidates.CandidateJob(**{**job.__dict__, "threads": 2}), 4)
    assert [j.threads for j in started] == [2] * 4  # --threads wins


@pytest.mark.parametrize(
    "command",
    [["study", "run"], ["supernet", "train"], ["supernet", "eval"], ["subnet", "export"],
     ["subnet", "train"], ["study", "validate"], ["energy"], ["analyze", "redundancy"]],
)  # fmt: skip
def test_every_computing_command_takes_threads(command: list[str]) -> None:
    from autospikformer.cli.app import app

    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0 and "--threads" in result.output


def test_a_bad_thread_count_is_one_line() -> None:
    from autospikformer.cli.app import app

    result = CliRunner().invoke(app, ["energy", "d1-e16-t1:r1:h2:th1:tau2", "--threads", "0"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: --threads: 0 is not allowed (allowed: an integer >= 1)"
