"""Sampler quality: hypervolume after N trials, DSPS and DSPS+ against Optuna's samplers.

Two problems. ``surrogate`` (default): ``benchmarks/surrogate.py`` over the real ``S_T2+S_S``
space, a deterministic accuracy-like and energy-like function of the architecture (see that
file). ``digits``: the digits supernet trained once by ``benchmarks/digits_supernet.py`` and
shared by every run, subnets evaluated with inherited weights as ``autospik study run``
evaluates the trials of ``studies/digits.toml`` (its calibration and batch settings, measured
energy), under ``--protocol test`` (the paper's: ranked on the 360 test digits) or ``val``
(ranked on the study's validation part of the training split, with a supernet trained without
it: ``digits_supernet.py --val-fraction 0.2``).

Every run is a fresh in-memory study run as the study runner runs one: each sampler with the
options a study file gets by default (``SAMPLER_OPTIONS``; ``--set`` overrides one), a trial
that repeats an architecture of the study is pruned as a duplicate and not counted, and the
study runs until ``--trials`` trials are complete (1000 by default). The script prints each
run's hypervolume after 100, 200, 300 and 1000 trials, on how many seeds each sampler beats
each other one (and the mean ratio), on how many seeds each sampler is at least level with the
best of ``--peers`` (NSGA-II, TPE and GP), the number of new front members per window of
trials (a trial that no earlier trial of its run weakly dominates: the search still finds
something) and the sampler's time per trial (outside the objective). Slow samplers can be
capped (``--cap gp=300``): their figures stop at that count.

``--save FILE`` writes every run's points; ``--report FILE ...`` prints the figures of saved
runs (several invocations, one per sampler or seed, merged) in one process, against one
reference point.

Reference point. All runs' candidates are pooled and their Pareto front taken; the reference is
that front's nadir (its lowest accuracy, its highest energy) moved 10 % of the front's range
further out in each objective, the usual choice for a fair comparison (Ishibuchi et al., "How to
specify a reference point in hypervolume calculation for fair performance comparison", 2018).
Hypervolumes are divided by the box between that reference and the front's ideal point.
It also prints the Kendall tau between accuracy and energy, as the paper does: over the top 100
DSPS candidates by F_AEB, and over 100 random candidates (the paper: 0.63 vs 0.08).

    python benchmarks/sampler_quality.py                       # surrogate, 1000 trials, 5 seeds
    python benchmarks/sampler_quality.py --problem digits --protocol val --cache runs/q/val.jsonl
    python benchmarks/sampler_quality.py --seeds 0,3 --samplers dsps-plus --save runs/q/a.json
    python benchmarks/sampler_quality.py --report runs/q/*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent))

import surrogate

from autospikformer.pareto import hypervolume_2d, pareto_mask
from autospikformer.report.tables import kendall_tau
from autospikformer.search.architecture import Architecture
from autospikformer.search.fitness import balanced_fitness
from autospikformer.search.samplers import SAMPLER_OPTIONS, make_sampler
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import suggest_architecture

Points = list[tuple[float, float]]  # (accuracy %, energy mJ) of every trial of one run


def pooled_reference(runs: list[Points], margin: float = 0.1) -> tuple[tuple[float, float], float]:
    """(reference (accuracy, energy), normaliser): the pooled front's nadir moved out by
    ``margin`` of its range, and the area of the box between that reference and the ideal."""
    acc, energy = (
        np.array(column) for column in zip(*[p for run in runs for p in run], strict=True)
    )
    front = pareto_mask(acc, energy)
    ideal_acc, nadir_acc = acc[front].max(), acc[front].min()
    ideal_energy, nadir_energy = energy[front].min(), energy[front].max()
    ref_acc = nadir_acc - margin * (ideal_acc - nadir_acc)
    ref_energy = nadir_energy + margin * (nadir_energy - ideal_energy)
    box = (ideal_acc - ref_acc) * (ref_energy - ideal_energy)
    return (float(ref_acc), float(ref_energy)), float(box)


def hypervolume(points: Points, ref: tuple[float, float], box: float) -> float:
    acc, energy = zip(*points, strict=True)
    return hypervolume_2d(acc, energy, ref_energy=ref[1], ref_accuracy=ref[0]) / box


CHECKPOINTS = (100, 200, 300, 1000)


class DigitsObjective:
    """The digits supernet with inherited weights: one trained supernet, real energy.

    Evaluated as ``autospik study run`` evaluates a trial of ``studies/digits.toml`` (its
    calibration and evaluation settings, through the study's own evaluator), under
    ``protocol`` ``"test"`` (the paper's: ranked on the 360 test digits) or ``"val"`` (ranked on
    the study's validation part of the training split, ``data.val_fraction`` of it, which the
    supernet must have been trained without: ``digits_supernet.py --val-fraction``).
    Evaluation is a deterministic function of the architecture (fixed calibration subset, one
    thread), so results are cached per architecture and shared by every run of the process;
    ``seconds`` is what the evaluations cost when first made. With ``cache`` the results also
    go to a JSON-lines file tied to the checkpoint's SHA-256 and the evaluation settings, so a
    rerun (a tuning run, or one cut short) evaluates only what it has not seen.
    """

    def __init__(self, checkpoint: Path, protocol: str = "test", cache: Path | None = None) -> None:
        import dataclasses

        import torch

        from autospikformer.checkpoint import load_supernet_checkpoint
        from autospikformer.study.config import StudyConfig
        from autospikformer.study.evaluator import study_evaluator
        from autospikformer.study.holdout import check_supernet_holdout
        from autospikformer.study.supernet_stage import file_sha256

        torch.set_num_threads(1)
        config = StudyConfig.load("digits")
        config = dataclasses.replace(
            config, search=dataclasses.replace(config.search, eval_split=protocol)
        )
        supernet, meta = load_supernet_checkpoint(checkpoint, space=config.space)
        if config.holdout is None and meta.get("holdout"):
            raise SystemExit(f"{checkpoint} held out training digits: use it with --protocol val")
        check_supernet_holdout(meta, config, checkpoint)
        self.evaluator = study_evaluator(config, supernet, device="cpu")
        self.cache: dict[str, tuple[float, float]] = {}
        self.seconds = 0.0
        self.evaluated = 0
        self.file = None
        search = config.search
        self.settings = {
            "protocol": protocol,
            "calib_batches": search.calib_batches,
            "calib_batch_size": search.calib_batch_size,
            "batch_size": search.batch_size,
            "eval_samples": search.eval_samples,
            "val_fraction": config.val_fraction if protocol == "val" else None,
            "seed": config.seed,
        }
        if cache is not None:
            head_wanted = {"supernet_sha256": file_sha256(checkpoint), **self.settings}
            if cache.is_file():
                lines = cache.read_text().splitlines()
                head = json.loads(lines[0]) if lines else {}
                if head != head_wanted:
                    raise SystemExit(
                        f"{cache} holds evaluations of another supernet or other settings "
                        f"({head}; here {head_wanted}): delete it or name another --cache"
                    )
                for line in lines[1:]:
                    row = json.loads(line)
                    self.cache[row["arch"]] = (row["accuracy"], row["energy_mj"])
            else:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(head_wanted) + "\n")
            self.file = cache.open("a")

    def __call__(self, arch: Architecture) -> tuple[float, float]:
        key = str(arch)
        if key not in self.cache:
            start = time.perf_counter()
            r = self.evaluator.evaluate(arch)
            self.seconds += time.perf_counter() - start
            self.evaluated += 1
            self.cache[key] = (100.0 * float(r.accuracy), float(r.energy_mj))
            if self.file is not None:
                acc, energy = self.cache[key]
                row = {"arch": key, "accuracy": acc, "energy_mj": energy}
                self.file.write(json.dumps(row) + "\n")  # one append: safe beside another run
                self.file.flush()
        return self.cache[key]


def run(
    name: str,
    space: SearchSpace,
    trials: int,
    seed: int,
    evaluate: Callable[[Architecture], tuple[float, float]],
    overrides: dict[str, Any] | None = None,
) -> tuple[Points, float]:
    """(every complete trial's point, seconds per trial spent outside the objective: the
    sampler's).

    As ``autospik study run`` does: the sampler gets the options a study file gets by default
    (``SAMPLER_OPTIONS``, then ``overrides``), a trial whose architecture an earlier trial of
    the study already has is pruned as a duplicate (never evaluated) and the study runs until
    ``trials`` trials are complete."""
    options = {**SAMPLER_OPTIONS[name], **(overrides or {})}
    sampler = make_sampler(name, space=space, seed=seed, **options)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    inside = 0.0
    seen: set[Architecture] = set()
    points: Points = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        nonlocal inside
        arch = suggest_architecture(trial, space)
        if arch in seen:
            raise optuna.TrialPruned("duplicate")
        seen.add(arch)
        start = time.perf_counter()
        values = evaluate(arch)
        inside += time.perf_counter() - start
        points.append(values)
        return values

    start = time.perf_counter()
    asked = 0
    while len(points) < trials:
        if asked > 20 * trials:
            raise SystemExit(f"{name}, seed {seed}: {asked} trials asked, {len(points)} new")
        missing = trials - len(points)
        study.optimize(objective, n_trials=missing)
        asked += missing
    elapsed = time.perf_counter() - start
    return points, (elapsed - inside) / trials


def new_front_members(points: Points) -> np.ndarray:
    """1 where a trial is weakly dominated by no earlier trial of its run (a new front member
    when it completed), else 0."""
    acc = np.array([p[0] for p in points])
    energy = np.array([p[1] for p in points])
    new = np.zeros(len(points), dtype=int)
    for i in range(len(points)):
        covered = (acc[:i] >= acc[i]) & (energy[:i] <= energy[i])
        new[i] = not covered.any()
    return new


def report(
    points: dict[str, list[Points]],
    secs: dict[str, list[float]],
    trials: int,
    seeds: list[int],
    peers: list[str],
    window: int,
) -> None:
    """Print every figure of the runs ``points[sampler][k]`` (seed ``seeds[k]``)."""
    count = {n: min(len(p) for p in points[n]) for n in points}
    ref, box = pooled_reference([run for runs in points.values() for run in runs])
    print(f"\npooled-front reference: accuracy {ref[0]:.3f} %, energy {ref[1]:.6g} mJ")
    for mark in [c for c in CHECKPOINTS if c < trials] + [trials]:
        hv = {
            n: [hypervolume(p[:mark], ref, box) for p in points[n]]
            for n in points
            if count[n] >= mark
        }
        print(f"\nhypervolume after {mark} trials")
        print_hypervolumes(hv, seeds, peers)
    print_front_members(points, count, trials, seeds, window)
    print("\nsampler time per trial (outside the objective), mean over seeds:")
    for name in points:
        print(f"  {name:>9}: {1000 * statistics.mean(secs[name]):.2f} ms ({count[name]} trials)")
    print_taus(points)


def print_hypervolumes(hv: dict[str, list[float]], seeds: list[int], peers: list[str]) -> None:
    """One mark's table: each run's hypervolume, who beats whom, who is level with the best peer."""
    print(
        f"{'sampler':>9} "
        + " ".join(f"{'seed ' + str(s):>8}" for s in seeds)
        + "     mean    +- sd"
    )
    for name, values in hv.items():
        print(
            f"{name:>9} "
            + " ".join(f"{v:8.5f}" for v in values)
            + f"  {statistics.mean(values):.5f} {statistics.pstdev(values):.5f}"
        )
    for name, values in hv.items():
        parts = []
        for peer, other in hv.items():
            if peer == name:
                continue
            wins = sum(a > b for a, b in zip(values, other, strict=True))
            ratio = statistics.mean(a / b for a, b in zip(values, other, strict=True))
            parts.append(f"{peer} {wins}/{len(seeds)} x{ratio:.4f}")
        print(f"  {name:>9} beats: " + ", ".join(parts))
    present = [p for p in peers if p in hv]
    if present:
        best = [max(hv[p][k] for p in present) for k in range(len(seeds))]
        for name in (n for n in hv if n not in present):
            level = sum(a >= b for a, b in zip(hv[name], best, strict=True))
            ratio = statistics.mean(a / b for a, b in zip(hv[name], best, strict=True))
            print(
                f"  {name:>9} >= the best of {'/'.join(present)} on {level}/{len(seeds)} "
                f"seeds (x{ratio:.4f} of it on average)"
            )


def print_front_members(
    points: dict[str, list[Points]],
    count: dict[str, int],
    trials: int,
    seeds: list[int],
    window: int,
) -> None:
    """New front members per window of trials, and in the last third of 300 and of all trials."""
    print(f"\nnew front members per {window} trials (each trial weakly dominated by no earlier)")
    edges = list(range(0, max(count.values()), window))
    print(f"{'sampler':>9} {'seed':>4} " + " ".join(f"{f'{a + 1}-{a + window}':>9}" for a in edges))
    for name in points:
        rows = [new_front_members(p) for p in points[name]]
        for seed, row in zip(seeds, rows, strict=True):
            cells = [
                f"{int(row[a : a + window].sum()):>9}" if a + window <= len(row) else f"{'':>9}"
                for a in edges
            ]
            print(f"{name:>9} {seed:>4} " + " ".join(cells))
        means = [
            f"{statistics.mean(int(r[a : a + window].sum()) for r in rows):>9.1f}"
            if a + window <= count[name]
            else f"{'':>9}"
            for a in edges
        ]
        print(f"{name:>9} {'mean':>4} " + " ".join(means))
    for last in sorted({min(300, trials), trials}):
        start = last - last // 3
        print(
            f"new front members in trials {start + 1}-{last} (the last third of {last}): "
            + "; ".join(
                f"{n} {', '.join(str(int(new_front_members(p[:last])[start:].sum())) for p in points[n])}"
                for n in points
                if count[n] >= last
            )
        )


def print_taus(points: dict[str, list[Points]]) -> None:
    """Kendall tau between accuracy and energy, as the paper reports it."""
    taus: dict[str, list[float]] = {}
    for key in ("dsps", "dsps-plus"):
        for run_points in points.get(key, []):
            fit = balanced_fitness([p[0] for p in run_points], [p[1] for p in run_points], 0.5)
            top = sorted(range(len(run_points)), key=lambda i: -fit[i])[:100]
            taus.setdefault(f"{key} top-100", []).append(
                kendall_tau([run_points[i][0] for i in top], [run_points[i][1] for i in top])
            )
    for run_points in points.get("random", []):
        first = run_points[:100]
        taus.setdefault("random 100", []).append(
            kendall_tau([p[0] for p in first], [p[1] for p in first])
        )
    for key, values in taus.items():
        print(
            f"Kendall tau(accuracy, energy), {key}: {statistics.mean(values):.3f} "
            f"(per seed {', '.join(f'{v:.2f}' for v in values)})"
        )


def load_runs(files: list[Path]) -> tuple[dict[str, Any], dict[str, dict[int, Any]]]:
    """Runs saved by ``--save`` (one problem), merged: (setup, {sampler: {seed: run}})."""
    setup: dict[str, Any] | None = None
    runs: dict[str, dict[int, Any]] = {}
    for file in files:
        data = json.loads(file.read_text())
        mine = {k: data[k] for k in ("problem", "protocol", "space", "mismatch_weight")}
        if setup is None:
            setup = mine
        elif mine != setup:
            raise SystemExit(f"{file}: runs of another problem ({mine}; first: {setup})")
        for name, by_seed in data["runs"].items():
            for seed, run_data in by_seed.items():
                runs.setdefault(name, {})[int(seed)] = run_data
    assert setup is not None
    return setup, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=("surrogate", "digits"), default="surrogate")
    parser.add_argument(
        "--protocol",
        choices=("test", "val"),
        default="test",
        help="digits: rank on the test split (the paper's) or on the study's validation part",
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seeds", default="5", help="how many (from 0), or a list: 0,3")
    parser.add_argument("--samplers", default="dsps-plus,dsps,nsga2,tpe,gp,random")
    parser.add_argument(
        "--cap",
        default="gp=300",
        help="fewer trials for slow samplers, e.g. gp=300,tpe=1000 (their figures stop there)",
    )
    parser.add_argument("--peers", default="nsga2,tpe,gp", help="the samplers to be level with")
    parser.add_argument("--window", type=int, default=50, help="trials per front-member count")
    parser.add_argument("--space", default="S_T2+S_S", help="surrogate space (digits: 'digits')")
    parser.add_argument(
        "--supernet",
        type=Path,
        default=None,
        help="digits supernet (default runs/bench-digits/supernet.pt, for --protocol val "
        "runs/bench-digits-val/supernet.pt; see benchmarks/digits_supernet.py)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="digits: keep evaluations in this JSON-lines file (tied to the supernet's SHA-256)",
    )
    parser.add_argument(
        "--mismatch-weight",
        type=float,
        default=surrogate.MISMATCH_WEIGHT,
        help="weight of the surrogate's neuron-mismatch term (0: the easy variant)",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="SAMPLER:KEY=VALUE",
        help="override a sampler option (a JSON value), e.g. dsps-plus:candidates=8",
    )
    parser.add_argument(
        "--label",
        nargs="*",
        default=[],
        metavar="SAMPLER=LABEL",
        help="name a sampler's runs otherwise in the figures and --save (variants side by side)",
    )
    parser.add_argument("--save", type=Path, default=None, help="write every run's points here")
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        default=None,
        help="print the figures of runs saved with --save (merged) instead of running",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    peers = [p for p in args.peers.split(",") if p]
    if args.report:
        setup, saved = load_runs(args.report)
        seed_sets = {n: sorted(by_seed) for n, by_seed in saved.items()}
        seeds = sorted(set.intersection(*(set(v) for v in seed_sets.values())))
        points = {n: [saved[n][s]["points"] for s in seeds] for n in saved}
        secs = {n: [saved[n][s]["seconds_per_trial"] for s in seeds] for n in saved}
        trials = max(min(len(p) for p in runs) for runs in points.values())
        print(f"{setup}, {trials} trials, seeds {seeds}, runs from {len(args.report)} files")
        report(points, secs, trials, seeds, peers, args.window)
        return
    seeds = (
        [int(s) for s in args.seeds.split(",") if s]
        if "," in args.seeds
        else list(range(int(args.seeds)))
    )
    if args.problem == "digits":
        space = SearchSpace.load("digits")
        default = "runs/bench-digits-val" if args.protocol == "val" else "runs/bench-digits"
        evaluate: Callable[[Architecture], tuple[float, float]] = DigitsObjective(
            args.supernet or Path(default) / "supernet.pt", args.protocol, args.cache
        )
    else:
        space = SearchSpace.load(args.space)
        weight = args.mismatch_weight

        def evaluate(arch: Architecture) -> tuple[float, float]:
            return surrogate.evaluate(arch, weight)

    trials = args.trials
    names = args.samplers.split(",")
    caps = {k: int(v) for k, v in (item.split("=") for item in args.cap.split(",") if item)}
    count = {n: min(trials, caps.get(n, trials)) for n in names}
    overrides: dict[str, dict[str, Any]] = {n: {} for n in names}
    for item in args.set:
        target, _, setting = item.partition(":")
        key, _, value = setting.partition("=")
        overrides[target][key] = json.loads(value)
    labels = dict(item.split("=", 1) for item in args.label)
    points: dict[str, list[Points]] = {labels.get(n, n): [] for n in names}
    secs: dict[str, list[float]] = {labels.get(n, n): [] for n in names}
    protocol = args.protocol if args.problem == "digits" else None
    print(
        f"problem {args.problem}"
        + (f" ({protocol} protocol)" if protocol else "")
        + f", space {space.name}, {trials} trials ({count}), seeds {seeds}"
        + (f", options {overrides}" if any(overrides.values()) else "")
    )
    for seed in seeds:
        for name in names:
            run_points, per_trial = run(name, space, count[name], seed, evaluate, overrides[name])
            label = labels.get(name, name)
            points[label].append(run_points)
            secs[label].append(per_trial)
            print(
                f"  seed {seed} {label:>9}: {1000 * per_trial:7.1f} ms per trial (sampler)",
                flush=True,
            )
    if isinstance(evaluate, DigitsObjective):
        print(
            f"digits: {len(evaluate.cache)} distinct architectures known, {evaluate.evaluated} "
            f"evaluated in this run, {evaluate.seconds / max(1, evaluate.evaluated):.2f} s each"
        )
    if args.save is not None:
        setup = {
            "problem": args.problem,
            "protocol": protocol,
            "space": space.name,
            "mismatch_weight": args.mismatch_weight if args.problem == "surrogate" else None,
        }
        runs = {
            n: {
                str(seed): {"points": p, "seconds_per_trial": t, "options": overrides[name]}
                for seed, p, t in zip(seeds, points[n], secs[n], strict=True)
            }
            for name in names
            for n in [labels.get(name, name)]
        }
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(json.dumps({**setup, "runs": runs}))
    report(points, secs, trials, seeds, peers, args.window)


if __name__ == "__main__":
    main()
