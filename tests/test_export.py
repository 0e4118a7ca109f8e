"""Export: front, hypervolume and Kendall tau against brute force; exact files and columns."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from autospikformer import SearchSpace
from autospikformer.pareto import hypervolume_2d, pareto_mask
from autospikformer.report.export import export_study
from autospikformer.report.plots import SIZE_RANGE, marker_sizes
from autospikformer.report.tables import (
    COLUMNS,
    front_and_top,
    kendall_tau,
    tau_interval,
    trials_frame,
)
from autospikformer.search.dsps import CANDIDATE_KEY
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.suggest import architecture_params, distributions
from autospikformer.study.storage import set_study_record

optuna.logging.set_verbosity(optuna.logging.WARNING)


def brute_hypervolume(points: list[tuple[float, float]], ref_energy: float) -> float:
    """Area of the union of rectangles [0, acc] x [energy, ref] by coordinate compression."""
    xs = sorted({0.0, *(a for a, _ in points)})
    ys = sorted({ref_energy, *(min(e, ref_energy) for _, e in points)})
    area = 0.0
    for x0, x1 in itertools.pairwise(xs):
        for y0, y1 in itertools.pairwise(ys):
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            if any(a >= cx and e <= cy for a, e in points):
                area += (x1 - x0) * (y1 - y0)
    return area


def brute_front(acc: list[float], energy: list[float]) -> list[bool]:
    out = []
    for i in range(len(acc)):
        dominated = any(
            acc[j] >= acc[i]
            and energy[j] <= energy[i]
            and (acc[j] > acc[i] or energy[j] < energy[i])
            for j in range(len(acc))
        )
        out.append(not dominated)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_and_front_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    # a coarse grid makes ties in both objectives likely
    acc = [rng.choice([0.1, 0.2, 0.3, 0.5, 0.8, 0.9]) for _ in range(25)]
    energy = [rng.choice([0.5, 1.0, 1.5, 2.0, 3.0]) for _ in range(25)]
    ref = 1.1 * max(energy)
    assert hypervolume_2d(acc, energy, ref) == pytest.approx(
        brute_hypervolume(list(zip(acc, energy, strict=True)), ref), rel=1e-12
    )
    assert pareto_mask(acc, energy).tolist() == brute_front(acc, energy)


def test_hypervolume_small_cases() -> None:
    assert hypervolume_2d([0.5], [1.0], 3.0) == pytest.approx(0.5 * 2.0)
    # two front points: 0.4 x (3 - 1) + (0.9 - 0.4) x (3 - 2)
    assert hypervolume_2d([0.4, 0.9, 0.3], [1.0, 2.0, 2.5], 3.0) == pytest.approx(0.8 + 0.5)
    assert hypervolume_2d([0.9], [3.5], 3.0) == 0.0  # beyond the reference point
    assert hypervolume_2d([], [], 1.0) == 0.0


def test_kendall_tau_intervals_say_how_far_a_sample_can_move() -> None:
    """Monotone data: every resample gives tau 1. Noisy data: the interval holds the sample's
    tau and narrows as the sample grows (20 draws vs 100)."""
    x = list(range(20))
    assert tau_interval(x, [2 * v for v in x]) == pytest.approx((1.0, 1.0), abs=1e-12)
    assert tau_interval([1.0, 2.0], [1.0, 2.0]) is None
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 100):
        a = rng.normal(size=n)
        b = a + rng.normal(scale=1.5, size=n)
        lo, hi = tau_interval(a, b)
        assert lo <= kendall_tau(a, b) <= hi
        widths.append(hi - lo)
    assert widths[1] < 0.7 * widths[0]
    assert tau_interval(a, b) == tau_interval(a, b)  # seeded: an export repeats


def test_kendall_tau_matches_definition() -> None:
    x = [1, 2, 3, 4, 5]
    assert kendall_tau(x, [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert kendall_tau(x, [5, 4, 3, 2, 1]) == pytest.approx(-1.0)
    # tau-b with a tie in y: 8 concordant, 1 discordant, 1 tied pair of 10 -> 7 / sqrt(10 * 9)
    assert kendall_tau(x, [1, 3, 2, 5, 5]) == pytest.approx(7 / np.sqrt(90), abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
    assert kendall_tau(a, b) == pytest.approx(scipy_stats.kendalltau(a, b).statistic, abs=1e-12)
    assert np.isnan(kendall_tau([1.0], [2.0]))


# --- a study filled with real trial records --------------------------------------------------
SPACE = SearchSpace.load("digits")


def filled_study(n_complete: int = 30, seed: int = 0) -> optuna.Study:
    """``n_complete`` distinct complete trials, one failed and one pruned."""
    study = optuna.create_study(study_name="export-test", directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "energy_mj"])
    set_study_record(study, "autospik:config", {"search": {"alpha": 0.5}})
    rng = random.Random(seed)
    seen = set()
    while len(seen) < n_complete:
        arch = SPACE.sample(rng)
        if arch in seen:
            continue
        seen.add(arch)
        params = architecture_params(arch)
        dists = distributions(SPACE, arch.depth)
        acc = round(rng.uniform(0.5, 0.95), 3)
        energy = round(rng.uniform(0.001, 0.01), 5)
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=[acc, energy],
                user_attrs={
                    "autospik:architecture": str(arch),
                    "autospik:num_parameters": 1000 + len(seen),
                    "autospik:firing_rate": 0.2,
                    "autospik:seconds": 1.5,
                    "autospik:calib_batches": 4,
                    "autospik:eval_samples": 256,
                    "autospik:baseline": "Spikformer-4-384" if len(seen) == 1 else None,
                    "note": "hello",
                },
            )
        )
    arch = SPACE.sample(rng)
    params = architecture_params(arch)
    dists = distributions(SPACE, arch.depth)
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions={k: dists[k] for k in params},
            state=TrialState.FAIL,
        )
    )
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED, user_attrs={"autospik:skipped": "surplus"}
        )
    )
    return study


def test_export_files_columns_and_values(tmp_path) -> None:
    study = filled_study()
    paths = export_study(study, tmp_path).paths
    assert sorted(p.name for p in paths.values()) == sorted(
        [
            "trials.csv",
            "pareto.csv",
            "pareto.json",
            "pareto.html",
            "pareto.pdf",
            "pareto.png",
            "hypervolume.csv",
            "front_and_top20.csv",
            "summary.json",
        ]
    )
    trials = pd.read_csv(paths["trials.csv"])
    assert list(trials.columns) == [*COLUMNS, "note"]
    assert len(trials) == 32
    assert trials["state"].value_counts().to_dict() == {"COMPLETE": 30, "FAIL": 1, "PRUNED": 1}
    done = trials[trials["state"] == "COMPLETE"]
    assert done["architecture"].is_unique
    assert trials.loc[trials["state"] == "PRUNED", "skipped"].tolist() == ["surplus"]

    best = study.best_trials
    pareto = pd.read_csv(paths["pareto.csv"])
    assert list(pareto.columns) == list(trials.columns)
    assert sorted(pareto["number"]) == sorted(t.number for t in best)
    assert pareto["energy_mj"].is_monotonic_increasing
    assert pareto["accuracy"].is_monotonic_increasing  # a front: more energy buys accuracy
    # F_AEB over all complete trials at export time
    expected = balanced_fitness(done["accuracy"], done["energy_mj"], 0.5)
    assert np.allclose(done["f_aeb"], expected)

    front = json.loads(paths["pareto.json"].read_text())
    assert front["metrics"] == ["accuracy", "energy_mj"]
    assert [p["trial"] for p in front["front"]] == pareto["number"].tolist()
    first = front["front"][0]
    assert set(first) >= {"accuracy", "energy_mj", "architecture", "architecture_json", "f_aeb"}
    assert first["architecture_json"]["depth"] in (1, 2)

    history = pd.read_csv(paths["hypervolume.csv"])
    assert list(history.columns) == [
        "complete_trials",
        "trial",
        "hypervolume",
        "ref_accuracy",
        "ref_energy_mj",
    ]
    assert len(history) == 30 and history["hypervolume"].is_monotonic_increasing
    ref = 1.1 * done["energy_mj"].max()
    assert history["ref_energy_mj"].iloc[0] == pytest.approx(ref)
    points = list(zip(done["accuracy"], done["energy_mj"], strict=True))
    assert history["hypervolume"].iloc[-1] == pytest.approx(brute_hypervolume(points, ref))

    summary = json.loads(paths["summary.json"].read_text())
    assert summary["complete"] == 30 and summary["front_size"] == len(best)
    assert summary["trials"] == {"COMPLETE": 30, "FAIL": 1, "PRUNED": 1}
    assert summary["kendall_tau_accuracy_energy"] == pytest.approx(
        kendall_tau(done["accuracy"], done["energy_mj"])
    )
    assert summary["baseline"]["trial"] == 0
    assert summary["baseline"]["name"] == "Spikformer-4-384"
    assert trials["baseline"].fillna("").tolist()[:2] == ["Spikformer-4-384", ""]

    html = paths["pareto.html"].read_text()
    assert "plotly" in html and "Pareto front" in html and "Spikformer-4-384" in html
    assert '<script src="http' not in html  # offline: plotly.js is inlined
    png = paths["pareto.png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 880)  # 6.4 x 4.4 inches at 200 dpi
    pdf = paths["pareto.pdf"].read_bytes()
    assert (pdf[:5] == b"%PDF-" and b"Spikformer-4-384" in pdf) or b"/Type /Page" in pdf


def test_export_returns_what_it_wrote(tmp_path) -> None:
    """A caller gets the summary, front and tables without reading the files back."""
    exported = export_study(filled_study(), tmp_path)
    assert exported.summary == json.loads(exported.paths["summary.json"].read_text())
    on_disk = pd.read_csv(exported.paths["pareto.csv"])
    assert on_disk["number"].tolist() == exported.front["number"].tolist()
    assert on_disk["energy_mj"].tolist() == exported.front["energy_mj"].tolist()
    tables = pd.read_csv(exported.paths["front_and_top20.csv"])
    assert tables["number"].tolist() == exported.tables["number"].tolist()
    assert len(pd.read_csv(exported.paths["trials.csv"])) == len(exported.trials)


def test_empty_study_exports(tmp_path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    paths = export_study(study, tmp_path).paths
    assert list(pd.read_csv(paths["trials.csv"]).columns) == list(COLUMNS)
    summary = json.loads(paths["summary.json"].read_text())
    assert summary["complete"] == 0 and summary["front_size"] == 0
    assert trials_frame(study).empty


def test_front_and_top20_is_the_papers_tables_2_and_3(tmp_path) -> None:
    study = filled_study()
    paths = export_study(study, tmp_path).paths
    table = pd.read_csv(paths["front_and_top20.csv"])
    done = pd.read_csv(paths["trials.csv"]).query("state == 'COMPLETE'")
    # 30 trials: the ceil(0.2 x 30) = 6 most accurate, plus any tied with the sixth
    cut = sorted(done["accuracy"], reverse=True)[5]
    top = set(done.loc[done["accuracy"] >= cut, "number"])
    front = {t.number for t in study.best_trials}
    assert set(table["number"]) == top | front
    assert set(table.loc[table["top_accuracy"], "number"]) == top
    assert set(table.loc[table["on_front"], "number"]) == front
    assert table["on_front"].tolist() == sorted(table["on_front"], reverse=True)  # front first
    on_front = table[table["on_front"]]
    assert on_front["energy_mj"].is_monotonic_increasing
    assert list(table.columns) == [
        "number", "on_front", "top_accuracy", "accuracy", "energy_mj", "mean_firing_rate",
        "num_parameters", "f_aeb", "architecture", "depth", "embed_dim", "mlp_ratio",
        "num_heads", "threshold", "tau", "time_steps", "baseline",
    ]  # fmt: skip
    # ties at the cut are all kept
    tied = pd.DataFrame({"accuracy": [0.9, 0.8, 0.8, 0.8, 0.1], "energy_mj": [5, 1, 2, 3, 0.5],
                         "pareto": [True, True, False, False, True], "number": range(5)})  # fmt: skip
    assert front_and_top(tied)["number"].tolist() == [4, 1, 0]  # ceil(1) = 1: 0.9 only
    assert sorted(front_and_top(tied, fraction=0.4)["number"]) == [0, 1, 2, 3, 4]


def test_generations_random_draws_and_taus(tmp_path) -> None:
    """DSPS records (generation, origin) become columns; random draws feed the random tau."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    set_study_record(study, "autospik:config", {"search": {"alpha": 0.5, "sampler": "dsps"}})
    rng = random.Random(1)
    seen: set = set()
    points = []
    for i in range(12):
        arch = SPACE.sample(rng)
        while arch in seen:
            arch = SPACE.sample(rng)
        seen.add(arch)
        params = architecture_params(arch)
        dists = distributions(SPACE, arch.depth)
        origin = "random" if i < 4 else ("crossover" if i % 2 else "copy")
        acc, energy = rng.uniform(0.5, 0.9), rng.uniform(1, 3)
        points.append((acc, energy))
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: dists[k] for k in params},
                values=[acc, energy],
                system_attrs={CANDIDATE_KEY: {"generation": i // 4, "origin": origin,
                                              "architecture": arch.to_dict()}},
                user_attrs={"autospik:num_parameters": 100 * (i + 1)},
            )
        )  # fmt: skip
    frame = trials_frame(study)
    assert frame["generation"].tolist() == [i // 4 for i in range(12)]
    assert frame["random_draw"].tolist() == [i < 4 for i in range(12)]
    summary = json.loads(export_study(study, tmp_path).paths["summary.json"].read_text())
    acc, en = zip(*points, strict=True)
    assert summary["kendall_tau"]["random"]["n"] == 4
    assert summary["kendall_tau"]["random"]["interval"] == [
        round(v, 4) for v in tau_interval(acc[:4], en[:4])
    ]
    assert summary["kendall_tau"]["random"]["over"].startswith("the first 100 candidates drawn")
    assert summary["kendall_tau"]["random"]["tau"] == pytest.approx(kendall_tau(acc[:4], en[:4]))
    assert summary["kendall_tau"]["top_f_aeb"]["n"] == 12
    assert summary["protocol"]["eval_split"] == "test"
    html = (tmp_path / "pareto.html").read_text()
    assert "colour: generation" in html and "100 parameters" in html and "1,200 parameters" in html


def test_marker_sizes_grow_with_parameters() -> None:
    small, large = SIZE_RANGE
    sizes = marker_sizes([100, 400, 900, None], 100, 900)
    assert sizes[0] == small and sizes[2] == large
    # diameter linear in sqrt(parameters): 400 lies half-way between sqrt 10 and sqrt 30
    assert sizes[1] == pytest.approx((small + large) / 2)
    assert sizes[3] == pytest.approx((small + large) / 2)  # unknown: the middle size
    assert np.all(marker_sizes([5, 5], 5, 5) == (small + large) / 2)
