"""Where DSPS+ loses: its proposals, or its pick among them? Two diagnoses.

``oracle``: DSPS+ runs on the digits supernet (as ``sampler_quality.py --problem digits`` runs
them, study defaults) or on the surrogate (``--problem surrogate``), in which each screened slot
picks by the **measured** values of its proposals (their true hypervolume improvement over the
front) instead of the predictor's. Not a sampler (every proposal is evaluated to choose): it
bounds what a perfect predictor would give with the same proposals. Saved in
``sampler_quality.py --save``'s format, so ``sampler_quality.py --report`` compares it with the
peers.

``objectives`` (the surrogate): which prediction limits the pick? Along default runs, each
slot's pick repeated with the true accuracy, or the true energy, in place of the predicted one,
and with the Gaussian-process accuracy model (``accuracy_model = "gp"``) instead of the ridge.

``capture``: offline, along saved DSPS+ runs (``--runs``, their points mapped back to their
architectures through the evaluation cache): at trials 60 to 250, sets of 16 proposals made as
DSPS+ makes its late ones (single-gene moves and mutations of front members, only architectures
the cache has measured, none of the run's own), and for each rule the share of the oracle pick's
hypervolume improvement that the rule's pick captures (mean over sets, seeds and trials). The
rules: a random pick; DSPS+'s expected-improvement pick with its ridge predictor (``time_steps``
and ``globals`` interactions, the spread scaled); the same with a residual GP on top of the
ridge; a TPE-like ratio of the gene-value densities of the good and the other trials.

    python benchmarks/screening_diagnosis.py oracle --cache runs/q/digits-test-cache.jsonl \\
        --save runs/q/dt-oracle.json
    python benchmarks/sampler_quality.py --report runs/q/dt-oracle.json runs/q/digits-test-peer*.json
    python benchmarks/screening_diagnosis.py oracle --problem surrogate --save runs/q/su-oracle.json
    python benchmarks/screening_diagnosis.py objectives --at 20 100 200
    python benchmarks/screening_diagnosis.py capture --runs runs/q/dt-glob.json \\
        --cache runs/q/digits-test-cache.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sampler_quality
import surrogate

from autospikformer.pareto import (
    epsilon_distance,
    expected_hypervolume_improvement,
    hypervolume_improvement,
    nondominated_sort,
    staircase,
)
from autospikformer.search import dsps_plus
from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture
from autospikformer.search.mirror import StudyMirror, TrialSummary
from autospikformer.search.operators import mutate, single_gene_move
from autospikformer.search.predictor import ArchitectureEncoder, ObjectivePredictor
from autospikformer.search.space import SearchSpace

Distribution = tuple[np.ndarray, np.ndarray]  # (n x 2 mean, n x 2 spread) of (accuracy, energy)


def oracle(args: argparse.Namespace) -> None:
    if args.problem == "digits":
        space = SearchSpace.load("digits")
        objective: Callable[[Architecture], tuple[float, float]] = sampler_quality.DigitsObjective(
            args.supernet, args.protocol, args.cache
        )
    else:  # the surrogate over its default space and mismatch weight, as sampler_quality runs it
        space = SearchSpace.load("S_T2+S_S")
        objective = surrogate.evaluate

    def pick(
        self: Any, mirror: StudyMirror, predictor: Any, archs: list[Architecture], me: int
    ) -> int:
        _, front, _ = self.front(mirror)
        if len(front) == 0:
            return 0
        measured = np.array([objective(a) for a in archs])
        points = np.column_stack((measured[:, 1], -measured[:, 0]))
        lo, hi = front.min(axis=0), front.max(axis=0)
        scale = np.where(hi - lo > 0, hi - lo, 1e-12)
        ref = (float(hi[0] + scale[0]), float(hi[1] + scale[1]))
        gain = hypervolume_improvement(front, points, ref)
        if gain.max() > 0:
            return int(np.argmax(gain))
        return int(np.argmin(epsilon_distance(front, points, scale)))

    dsps_plus.ScreenedOffspring.pick = pick  # type: ignore[method-assign]  # this process only
    runs = {}
    for seed in range(args.seeds):
        points, per_trial = sampler_quality.run("dsps-plus", space, args.trials, seed, objective)
        runs[str(seed)] = {"points": points, "seconds_per_trial": per_trial, "options": {}}
        print(f"  seed {seed}: {len(points)} trials", flush=True)
    digits = args.problem == "digits"
    setup = {
        "problem": args.problem,
        "protocol": args.protocol if digits else None,
        "space": space.name,
        "mismatch_weight": None if digits else surrogate.MISMATCH_WEIGHT,
    }
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(json.dumps({**setup, "runs": {"oracle": runs}}))
    print(f"saved to {args.save}; compare: sampler_quality.py --report {args.save} <peers>")


def objectives(args: argparse.Namespace) -> None:
    """Along default DSPS+ runs on the surrogate, each screened slot's pick repeated with the true
    accuracy, or the true energy, in place of the prediction (its spread 0): the share of the
    oracle pick's gain each pick gets, and each model's mean absolute error over the spread of
    the slot's proposals (the run itself follows the default pick). Also the pick, and the
    error, of the Gaussian-process accuracy model (``accuracy_model = "gp"``) fitted on the
    same trials."""
    default_pick = dsps_plus.ScreenedOffspring.pick
    slots: list[tuple[float, ...]] = []
    fitted: list[Any] = [None, None]  # the default's predictor, and the GP one on its trials

    def gp_predictor(self: Any, mirror: StudyMirror, predictor: Any) -> ObjectivePredictor:
        if fitted[0] is not predictor:  # a refit: one worker, so the trials finished so far
            records = sorted(
                (
                    r
                    for r in mirror.finished.values()
                    if r.values is not None and r.arch is not None
                ),
                key=lambda r: (r.draw_index, r.number),
            )
            recent = max(self.min_fit_trials, int(self.spread_recent * len(records)))
            fitted[:] = [predictor, ObjectivePredictor(
                self.encoder, records, variance=True, recent=recent, accuracy_model="gp"
            )]  # fmt: skip
        return fitted[1]

    def pick(
        self: Any, mirror: StudyMirror, predictor: Any, archs: list[Architecture], me: int
    ) -> int:
        chosen = default_pick(self, mirror, predictor, archs, me)
        _, front, _ = self.front(mirror)
        if len(front) == 0:
            return chosen
        true = np.array([surrogate.evaluate(a) for a in archs])
        lo, hi = front.min(axis=0), front.max(axis=0)
        scale = np.where(hi - lo > 0, hi - lo, np.maximum(np.abs(hi), 1e-12))
        ref = (float(hi[0] + scale[0]), float(hi[1] + scale[1]))
        gain = hypervolume_improvement(front, np.column_stack((true[:, 1], -true[:, 0])), ref)
        mean, spread = predictor.predict_distribution(archs)

        def best(m: np.ndarray, sd: np.ndarray) -> int:  # the pick by these values
            points = np.column_stack((m[:, 1], -m[:, 0]))
            g = expected_hypervolume_improvement(front, points, sd[:, ::-1], ref)
            if g.max() > 0:
                return int(np.argmax(g))
            return int(np.argmin(epsilon_distance(front, points, scale)))

        def with_true(column: int) -> int:
            m, sd = mean.copy(), spread.copy()
            m[:, column], sd[:, column] = true[:, column], 0.0
            return best(m, sd)

        gp_mean, gp_spread = gp_predictor(self, mirror, predictor).predict_distribution(archs)
        deviation = np.maximum(true.std(axis=0), 1e-12)
        error = np.abs(mean - true).mean(axis=0) / deviation
        gp_error = np.abs(gp_mean[:, 0] - true[:, 0]).mean() / deviation[0]
        slots.append((len(mirror.finished), gain.max(), gain[chosen], gain[with_true(0)],
                      gain[with_true(1)], gain.mean(), gain[best(gp_mean, gp_spread)], *error,
                      gp_error))  # fmt: skip
        return chosen

    dsps_plus.ScreenedOffspring.pick = pick  # type: ignore[method-assign]  # this process only
    space = SearchSpace.load("S_T2+S_S")
    for seed in range(args.seeds):
        sampler_quality.run("dsps-plus", space, args.trials, seed, surrogate.evaluate)
    table = np.array(slots)
    print("shares of the oracle pick's gain | mean absolute errors over the proposals' spread")
    print("trials   slots  default  true-acc  true-energy  random  gp-acc | acc  energy  gp-acc")
    edges = [0, *args.at, args.trials]
    for lo, hi in itertools.pairwise(edges):
        rows = table[(table[:, 0] >= lo) & (table[:, 0] < hi)]
        if not len(rows):
            continue
        share = rows[:, 2:7].sum(axis=0) / rows[:, 1].sum()
        errors = rows[:, 7:].mean(axis=0)
        print(f"{lo:>4}-{hi:<4} {len(rows):>5}  " + "  ".join(f"{v:6.3f}" for v in share)
              + " | " + "  ".join(f"{v:6.3f}" for v in errors))  # fmt: skip


class RidgePick:
    """DSPS+'s predictor, its spread times ``spread``."""

    def __init__(self, encoder: ArchitectureEncoder, records: list[TrialSummary], *,
                 spread: float = 1.0) -> None:  # fmt: skip
        recent = max(20, int(0.2 * len(records)))
        self.model = ObjectivePredictor(encoder, records, variance=True, recent=recent)
        self.spread = spread

    def __call__(self, archs: Sequence[Architecture]) -> Distribution:
        mean, std = self.model.predict_distribution(archs)
        return mean, std * self.spread  # type: ignore[operator]


class ResidualGPPick(RidgePick):
    """The ridge predictor plus a GP on its residuals (squared-exponential kernel on the one-hot
    genes, length scale and noise chosen by closed-form leave-one-out error), the GP's spread."""

    LENGTHS = (0.5, 1.0, 2.0, 4.0)
    NOISES = (0.03, 0.1, 0.3, 1.0, 3.0)

    def __init__(self, encoder: ArchitectureEncoder, records: list[TrialSummary]) -> None:
        super().__init__(encoder, records)
        self.encoder = encoder
        self.features = self.genes([r.arch for r in records])  # type: ignore[misc]
        mean, _ = self.model.predict_distribution([r.arch for r in records])  # type: ignore[misc]
        distance = self.sq_distance(self.features)
        self.gps = []
        for j in range(2):
            residual = np.array([r.values[j] for r in records]) - mean[:, j]  # type: ignore[index]
            best = None
            for length in self.LENGTHS:
                w, q = np.linalg.eigh(np.exp(-distance / length))
                qr = q.T @ residual
                for noise in self.NOISES:
                    alpha = q @ (qr / (w + noise))
                    loo = float(np.mean((alpha / (q**2 / (w + noise)).sum(axis=1)) ** 2))
                    if best is None or loo < best[0]:
                        best = (loo, length, noise)
            _, length, noise = best  # type: ignore[misc]
            inverse = np.linalg.inv(np.exp(-distance / length) + noise * np.eye(len(residual)))
            alpha = inverse @ residual
            self.gps.append(
                (length, noise, alpha, inverse, float(residual @ alpha) / len(residual))
            )

    def genes(self, archs: Sequence[Architecture]) -> np.ndarray:
        return np.array([self.encoder.accuracy_row(a)[: self.encoder.size_at] for a in archs])

    def sq_distance(self, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        b = a if b is None else b
        return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1)

    def __call__(self, archs: Sequence[Architecture]) -> Distribution:
        mean, std = self.model.predict_distribution(archs)
        mean, std = mean.copy(), std.copy()  # type: ignore[union-attr]
        distance = self.sq_distance(self.genes(archs), self.features)
        for j, (length, noise, alpha, inverse, signal) in enumerate(self.gps):
            k = np.exp(-distance / length)
            mean[:, j] += k @ alpha
            variance = signal * (1 + noise - np.einsum("ij,jk,ik->i", k, inverse, k))
            std[:, j] = np.sqrt(np.maximum(variance, 1e-18))
        return mean, std


class DensityRatioPick:
    """TPE's criterion over gene values: l(x) / g(x), the good trials the first Pareto fronts
    up to a tenth of the trials plus 5 (at most 25), a uniform prior of weight 1 per gene."""

    def __init__(self, space: SearchSpace, records: list[TrialSummary]) -> None:
        self.space = space
        fronts = nondominated_sort([(r.values[1], -r.values[0]) for r in records])  # type: ignore[index]
        wanted, good = min(25, int(np.ceil(0.1 * len(records))) + 5), set()
        for front in fronts:
            if len(good) >= wanted:
                break
            good.update(front)
        self.good, self.other = Counter(), Counter()
        for i, r in enumerate(records):
            (self.good if i in good else self.other).update(self.genes(r.arch))  # type: ignore[arg-type]
        self.sizes = (len(good), len(records) - len(good))

    @staticmethod
    def genes(arch: Architecture) -> list[tuple[str, Any]]:
        items = [(f, getattr(arch, f)) for f in ("depth", "embed_dim", "time_steps")]
        items += [(f, v, i) for f in PER_BLOCK_FIELDS for i, v in enumerate(getattr(arch, f))]  # type: ignore[misc]
        return items

    def score(self, arch: Architecture) -> float:
        total = 0.0
        for gene in self.genes(arch):
            prior = 1.0 / len(self.space.choices[gene[0]])
            good = (self.good[gene] + prior) / (self.sizes[0] + 1)
            other = (self.other[gene] + prior) / (self.sizes[1] + 1)
            total += float(np.log(good / other))
        return total

    def __call__(self, archs: Sequence[Architecture]) -> Distribution:
        # ranked by the score alone: every candidate placed ahead of the whole front, its
        # accuracy the score (the expected improvement then orders by it)
        scores = np.array([self.score(a) for a in archs])
        mean = np.column_stack((1e3 * scores, np.full(len(archs), -1.0)))
        return mean, np.full((len(archs), 2), 1e-9)


class RandomPick:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, archs: Sequence[Architecture]) -> Distribution:
        mean = np.column_stack((self.rng.random(len(archs)), np.zeros(len(archs))))
        return mean, np.full((len(archs), 2), 1e-9)


def capture(args: argparse.Namespace) -> None:
    lines = args.cache.read_text().splitlines()[1:]
    measured = {}
    for line in lines:
        row = json.loads(line)
        measured[row["arch"]] = (row["accuracy"], row["energy_mj"])
    by_point = {(round(a, 6), round(e, 12)): k for k, (a, e) in measured.items()}
    space = SearchSpace.load("digits")
    encoder, rich = ArchitectureEncoder(space), ArchitectureEncoder(space, rich=True)
    saved = json.loads(args.runs.read_text())["runs"]
    runs = saved[args.label] if args.label else next(iter(saved.values()))
    rules: dict[str, Callable[[list[TrialSummary], int], Callable[..., Distribution]]] = {
        "random pick": lambda recs, seed: RandomPick(seed),
        "ridge (default)": lambda recs, seed: RidgePick(encoder, recs),
        "ridge, globals": lambda recs, seed: RidgePick(rich, recs),
        "ridge, spread x0.01": lambda recs, seed: RidgePick(encoder, recs, spread=0.01),
        "ridge, spread x0.5": lambda recs, seed: RidgePick(encoder, recs, spread=0.5),
        "ridge, spread x2": lambda recs, seed: RidgePick(encoder, recs, spread=2.0),
        "ridge, spread x4": lambda recs, seed: RidgePick(encoder, recs, spread=4.0),
        "ridge + residual GP": lambda recs, seed: ResidualGPPick(encoder, recs),
        "TPE-like density ratio": lambda recs, seed: DensityRatioPick(space, recs),
    }
    print(f"{'rule':>24}  captured  positive picks")
    for name, make in rules.items():
        shares, positive = [], []
        for seed, run in sorted(runs.items()):
            archs = [
                Architecture.parse(by_point[(round(a, 6), round(e, 12))]) for a, e in run["points"]
            ]
            for t in args.at:
                records = [
                    TrialSummary(i, i, TrialState.COMPLETE, a, 0, measured[str(a)])
                    for i, a in enumerate(archs[:t])
                ]
                rule = make(records, 1000 * int(seed) + t)
                got, best = draw_sets(
                    records, rule, measured, space, args.sets, 1000 * int(seed) + t
                )
                shares.append(np.mean(got) / max(np.mean(best), 1e-12))
                positive.append(np.mean(np.array(got) > 0))
        print(f"{name:>24}  {np.mean(shares):8.3f}  {np.mean(positive):14.3f}", flush=True)


def draw_sets(
    records: list[TrialSummary],
    rule: Callable[[Sequence[Architecture]], Distribution],
    measured: dict[str, tuple[float, float]],
    space: SearchSpace,
    sets: int,
    seed: int,
) -> tuple[list[float], list[float]]:
    """(true improvement of the rule's pick, of the best proposal) for ``sets`` proposal sets."""
    points = np.array([(r.values[1], -r.values[0]) for r in records])  # type: ignore[index]
    front = staircase(points)
    on_front = {tuple(p) for p in front.tolist()}
    members = [
        r.arch for r, p in zip(records, points.tolist(), strict=True) if tuple(p) in on_front
    ]
    lo, hi = front.min(axis=0), front.max(axis=0)
    scale = np.where(hi - lo > 0, hi - lo, 1e-12)
    ref = (float(hi[0] + scale[0]), float(hi[1] + scale[1]))
    rng, taken = random.Random(seed), {str(r.arch) for r in records}
    got, best = [], []
    for _ in range(sets):
        proposals: list[Architecture] = []
        while len(proposals) < 16:
            parent = rng.choice(members)
            if rng.random() < 0.3:
                arch = single_gene_move(parent, space, rng)  # type: ignore[arg-type]
            else:
                arch = mutate(parent, space, 0.4, rng)  # type: ignore[arg-type]
            if str(arch) in measured and str(arch) not in taken and arch not in proposals:
                proposals.append(arch)
        true = np.array([measured[str(a)] for a in proposals])
        gain = hypervolume_improvement(front, np.column_stack((true[:, 1], -true[:, 0])), ref)
        mean, std = rule(proposals)
        expected = expected_hypervolume_improvement(
            front, np.column_stack((mean[:, 1], -mean[:, 0])), std[:, ::-1], ref
        )
        got.append(float(gain[int(np.argmax(expected))]))
        best.append(float(gain.max()))
    return got, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("oracle", help="DSPS+ runs that pick by the measured values")
    run.add_argument("--problem", choices=("digits", "surrogate"), default="digits")
    run.add_argument("--protocol", choices=("test", "val"), default="test")
    run.add_argument("--supernet", type=Path, default=Path("runs/bench-digits/supernet.pt"))
    run.add_argument("--cache", type=Path, default=None)
    run.add_argument("--trials", type=int, default=300)
    run.add_argument("--seeds", type=int, default=5)
    run.add_argument("--save", type=Path, required=True)
    obj = sub.add_parser("objectives", help="surrogate: the pick with a true objective")
    obj.add_argument("--trials", type=int, default=300)
    obj.add_argument("--seeds", type=int, default=5)
    obj.add_argument("--at", type=int, nargs="+", default=[100, 200])
    cap = sub.add_parser("capture", help="each pick rule's share of the oracle pick's gain")
    cap.add_argument("--runs", type=Path, required=True, help="sampler_quality.py --save file")
    cap.add_argument("--label", default=None, help="which runs of the file (default: the first)")
    cap.add_argument("--cache", type=Path, required=True, help="the runs' evaluation cache")
    cap.add_argument("--at", type=int, nargs="+", default=[60, 100, 150, 200, 250])
    cap.add_argument("--sets", type=int, default=150)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    {"oracle": oracle, "objectives": objectives, "capture": capture}[args.command](args)


if __name__ == "__main__":
    main()
