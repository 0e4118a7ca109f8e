"""`study compare`: exact hypervolumes on hand-made fronts, one shared reference point, Kendall
tau, the energy-pricing refusal, studies in several storages, and two real tiny studies."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from helpers import tiny_study
from searched import two_studies  # noqa: F401 (a fixture)
from test_export import brute_hypervolume
from typer.testing import CliRunner

from autospikformer import SearchSpace
from autospikformer.cli.app import app
from autospikformer.pareto import pareto_mask
from autospikformer.report.compare import (
    CompareError,
    StudyRef,
    load_comparison,
    shared_reference,
    study_refs,
)
from autospikformer.report.tables import kendall_tau
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.suggest import architecture_params, distributions
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import ENERGY_ATTR, create_study, open_storage, set_study_record

optuna.logging.set_verbosity(optuna.logging.WARNING)
runner = CliRunner()
SPACE = SearchSpace.load("digits")


def make_study(
    folder: Path,
    name: str,
    points: list[tuple[float, float]],
    *,
    sampler: str = "dsps",
    db: str = "studies.db",
    energy: dict | None = None,
) -> str:
    """A registered study whose complete trials have exactly ``points`` (accuracy, energy_mj)
    and distinct architectures; returns its storage URL."""
    path = folder / f"{name}.toml"
    path.write_text(tiny_study(name, sampler))
    url = f"sqlite:///{folder / db}"
    study, _ = create_study(open_storage(url, create=True), StudyConfig.load(path))
    if energy is not None:
        set_study_record(study, ENERGY_ATTR, energy)
    rng = random.Random(name)
    seen: set = set()
    for acc, en in points:
        arch = SPACE.sample(rng)
        while arch in seen:
            arch = SPACE.sample(rng)
        seen.add(arch)
        params = architecture_params(arch)
        dists = distributions(SPACE, arch.depth)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=[acc, en],
                user_attrs={"autospik:num_parameters": 1000 * arch.embed_dim},
            )
        )
    return url


A = [(0.5, 1.0), (0.8, 2.0), (0.3, 3.0)]
B = [(0.6, 1.5), (0.9, 4.0)]


def test_shared_reference_and_exact_hypervolumes(tmp_path) -> None:
    url = make_study(tmp_path, "a", A)
    make_study(tmp_path, "b", B)
    comparison = load_comparison(study_refs(["a", "b"], [url]))
    ref = comparison.reference
    # pooled front (0.5, 1), (0.6, 1.5), (0.8, 2), (0.9, 4): nadir (0.5, 4), ranges 0.4 and 3
    assert ref["accuracy"] == pytest.approx(0.5 - 0.04, abs=1e-15)
    assert ref["energy_mj"] == pytest.approx(4.0 + 0.3, abs=1e-15)
    assert ref["ideal_accuracy"] == 0.9 and ref["ideal_energy_mj"] == 1.0
    assert ref["box"] == pytest.approx(0.44 * 3.3, rel=1e-12)
    table = comparison.table().set_index("study")
    # a: 0.04 x 3.3 + 0.3 x 2.3 (its third point is below the reference's accuracy)
    assert table.loc["a", "hypervolume"] == pytest.approx(0.04 * 3.3 + 0.3 * 2.3, rel=1e-12)
    # b: 0.14 x 2.8 + 0.3 x 0.3
    assert table.loc["b", "hypervolume"] == pytest.approx(0.14 * 2.8 + 0.3 * 0.3, rel=1e-12)
    assert table.loc["a", "hypervolume_normalised"] == pytest.approx(0.822 / 1.452, rel=1e-12)
    history = comparison.studies[0].history
    assert history["hypervolume"].tolist() == pytest.approx([0.132, 0.822, 0.822], rel=1e-12)
    assert set(history["ref_energy_mj"]) == {ref["energy_mj"]}
    assert table.loc["a", "front_size"] == 2 and table.loc["b", "front_size"] == 2


def test_the_reference_is_the_pooled_one_for_every_study(tmp_path) -> None:
    """A third study moves the reference for all three; each hypervolume is the brute-force
    area of its own points against that one point."""
    url = make_study(tmp_path, "a", A)
    make_study(tmp_path, "b", B)
    make_study(tmp_path, "c", [(0.2, 0.5), (0.95, 6.0)])
    two = load_comparison(study_refs(["a", "b"], [url]))
    three = load_comparison(study_refs(["a", "b", "c"], [url]))
    assert three.reference["accuracy"] < two.reference["accuracy"]
    assert three.reference["energy_mj"] > two.reference["energy_mj"]
    for s in three.studies:
        points = list(zip(s.complete["accuracy"], s.complete["energy_mj"], strict=True))
        ref_acc, ref_en = three.reference["accuracy"], three.reference["energy_mj"]
        shifted = [(a - ref_acc, e) for a, e in points if a > ref_acc]
        expected = brute_hypervolume(shifted, ref_en) if shifted else 0.0
        assert s.history["hypervolume"].iloc[-1] == pytest.approx(expected, rel=1e-12)
        assert s.history["ref_accuracy"].iloc[0] == ref_acc


def test_random_sets_and_a_single_point() -> None:
    rng = np.random.default_rng(3)
    frames = [
        pd.DataFrame({"accuracy": rng.uniform(0.3, 0.9, 40), "energy_mj": rng.uniform(1, 5, 40)})
        for _ in range(3)
    ]
    ref = shared_reference(frames)
    pooled = pd.concat(frames)
    front = pooled[pareto_mask(pooled["accuracy"], pooled["energy_mj"])]
    span_a = front["accuracy"].max() - front["accuracy"].min()
    span_e = front["energy_mj"].max() - front["energy_mj"].min()
    assert ref["accuracy"] == pytest.approx(front["accuracy"].min() - 0.1 * span_a)
    assert ref["energy_mj"] == pytest.approx(front["energy_mj"].max() + 0.1 * span_e)
    # one pooled point: the margin is 10 % of its own values; its hypervolume fills the box
    one = shared_reference([pd.DataFrame({"accuracy": [0.5], "energy_mj": [2.0]})])
    assert (one["accuracy"], one["energy_mj"]) == pytest.approx((0.45, 2.2))
    assert one["box"] == pytest.approx(0.05 * 0.2)
    with pytest.raises(CompareError, match="has a complete trial"):
        shared_reference([pd.DataFrame({"accuracy": [], "energy_mj": []})])


def test_kendall_tau_top_and_random(tmp_path) -> None:
    rng = random.Random(5)
    points = [(round(rng.uniform(0.4, 0.9), 4), round(rng.uniform(1, 4), 4)) for _ in range(150)]
    url = make_study(tmp_path, "r", points, sampler="random")
    make_study(tmp_path, "d", points[:10])
    table = load_comparison(study_refs(["r", "d"], [url])).table().set_index("study")
    acc, en = (np.array(c) for c in zip(*points, strict=True))
    fitness = balanced_fitness(acc, en, 0.5)
    top = sorted(range(150), key=lambda i: (-fitness[i], i))[:100]
    assert table.loc["r", "kendall_tau_top"] == pytest.approx(
        kendall_tau(acc[top], en[top]), abs=1e-12
    )
    assert table.loc["r", "kendall_tau_top_n"] == 100
    # random search: every trial is a random draw; the first 100 by trial number
    assert table.loc["r", "kendall_tau_random"] == pytest.approx(
        kendall_tau(acc[:100], en[:100]), abs=1e-12
    )
    assert table.loc["r", "kendall_tau_random_n"] == 100
    # fewer than 100 trials: all of them; trials added by hand carry no DSPS record, so the
    # DSPS study has no random draws and no random tau
    assert table.loc["d", "kendall_tau_top_n"] == 10
    assert table.loc["d", "kendall_tau_random_n"] == 0
    assert pd.isna(table.loc["d", "kendall_tau_random"])


def test_energy_models_must_agree(tmp_path) -> None:
    url = make_study(tmp_path, "a", A)
    make_study(tmp_path, "m", B, energy={"model": "memory-45nm", "constants": {"e_ac_pj": 0.9}})
    make_study(tmp_path, "s", B, energy={"model": "sop-45nm", "constants": {}})
    # no record = sop-45nm with its defaults: comparable with an explicit sop-45nm study
    assert load_comparison(study_refs(["a", "s"], [url])).pricing["model"] == "sop-45nm"
    with pytest.raises(
        CompareError,
        match=r"'a' \(sop-45nm: .*\) and 'm' \(memory-45nm: .*\) are priced differently \(differ in: model\)",
    ):
        load_comparison(study_refs(["a", "m"], [url]))
    result = runner.invoke(
        app, ["study", "compare", "a", "m", "--out", str(tmp_path / "x"), "-s", url]
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: studies 'a' (sop-45nm: ")
    assert not (tmp_path / "x").exists()
    make_study(tmp_path, "c", B, energy={"model": "sop-45nm", "constants": {"e_ac_pj": 0.77}})
    with pytest.raises(CompareError, match=r"differ in: e_ac_pj\); re-price one with 'autospik "):
        load_comparison(study_refs(["s", "c"], [url]))


def test_study_refs_and_storages(tmp_path) -> None:
    pg = "postgresql+psycopg2://user:pw@db-host:5432/autospik"
    assert StudyRef.parse(f"s1@{pg}", "sqlite:///x.db") == StudyRef("s1", pg)
    assert StudyRef.parse("me@home", "sqlite:///x.db") == StudyRef("me@home", "sqlite:///x.db")
    refs = study_refs(["a", "b"], ["sqlite:///1.db", "sqlite:///2.db"])
    assert [r.storage for r in refs] == ["sqlite:///1.db", "sqlite:///2.db"]
    assert {r.storage for r in study_refs(["a", "b", "c"], ["sqlite:///1.db"])} == {
        "sqlite:///1.db"
    }
    with pytest.raises(CompareError, match="--storage given 2 times for 3 studies"):
        study_refs(["a", "b", "c"], ["sqlite:///1.db", "sqlite:///2.db"])
    with pytest.raises(CompareError, match="at least two studies"):
        study_refs(["a"])
    with pytest.raises(CompareError, match="named twice"):
        study_refs(["a", "a"])
    # the same name in two storages: both compared, told apart by their storage
    one = make_study(tmp_path, "same", A, db="one.db")
    two = make_study(tmp_path, "same", B, db="two.db")
    out = tmp_path / "cmp"
    result = runner.invoke(
        app, ["study", "compare", f"same@{one}", f"same@{two}", "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    labels = pd.read_csv(out / "compare.csv")["study"].tolist()
    assert labels == [f"same ({one})", f"same ({two})"]
    missing = runner.invoke(
        app, ["study", "compare", "same", "nosuch", "-s", one, "--out", str(out)]
    )
    assert missing.exit_code == 1 and "no study named 'nosuch'" in missing.stderr


def test_compare_two_real_studies(two_studies, tmp_path) -> None:  # noqa: F811
    s = two_studies
    out = tmp_path / "cmp"
    result = runner.invoke(
        app, ["study", "compare", s["dsps"], s["random"], "--out", str(out), "-s", s["storage"]]
    )
    assert result.exit_code == 0, result.stderr
    assert "studies compared" in result.stdout and "tiny-random" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["compare.html", "compare.csv", "compare.json", "hypervolume.csv", "fronts.csv"]
    )
    table = pd.read_csv(out / "compare.csv").set_index("study")
    summary = json.loads((out / "compare.json").read_text())
    ref = summary["reference_point"]
    fronts = pd.read_csv(out / "fronts.csv")
    history = pd.read_csv(out / "hypervolume.csv")
    pooled = []
    for name, sampler in ((s["dsps"], "dsps"), (s["random"], "random")):
        study = optuna.load_study(study_name=name, storage=s["storage"])
        done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        pooled += [t.values for t in done]
        assert table.loc[name, "sampler"] == sampler and table.loc[name, "complete"] == 5
        assert sorted(fronts.loc[fronts["study"] == name, "number"]) == sorted(
            t.number for t in study.best_trials
        )
        shifted = [
            (a - ref["accuracy"], e) for a, e in (t.values for t in done) if a > ref["accuracy"]
        ]
        assert table.loc[name, "hypervolume"] == pytest.approx(
            brute_hypervolume(shifted, ref["energy_mj"]) if shifted else 0.0, rel=1e-9
        )
        mine = history[history["study"] == name]
        assert mine["complete_trials"].tolist() == [1, 2, 3, 4, 5]
        assert mine["hypervolume"].is_monotonic_increasing
    acc, en = (np.array(c) for c in zip(*pooled, strict=True))
    front = pareto_mask(acc, en)
    assert ref["accuracy"] == pytest.approx(
        acc[front].min() - 0.1 * np.ptp(acc[front])
        if np.ptp(acc[front])
        else acc[front].min() * 0.9
    )
    # random search: every trial a random draw; DSPS: its generation 0 (population 4)
    assert table.loc[s["random"], "kendall_tau_random_n"] == 5
    assert table.loc[s["dsps"], "kendall_tau_random_n"] == 4
    page = (out / "compare.html").read_text()
    assert page.count("<script") >= 2 and '<script src="http' not in page
    assert "shared reference point" in page and "test accuracy" in page
