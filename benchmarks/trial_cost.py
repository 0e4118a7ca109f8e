"""A search trial's cost with SPS's outputs reused (SPEC section 10) and without, and what a
trial's bookkeeping costs as a study grows.

Every scenario runs real studies in SQLite files through real search workers
(``study/worker.py``: sampler, storage, the trial engine, the energy meter) and the progress
line of ``autospik study run`` (``cli/study.py``), one trial at a time, in one process:

- ``digits``: the README's study (``studies/digits.toml``, a 20-epoch supernet unless
  ``--supernet``), stage 2 only, twice: ``reuse_features`` on and off, trial by trial in turn.
  After each pair of trials the same subnet runs its bare forward passes (calibration batches in
  train mode, evaluation batches in eval mode, nothing else). Prints the search's wall time with
  reuse over without (target <= 0.4), that both searches stored the same trials and the same
  front number for number, and a trial without reuse over its bare passes (the bookkeeping,
  target <= 1.10);
- ``cifar`` (CIFAR-10-shaped pickles, ``S_T1+S_S``, 1 x 16 calibration and 16 test images) and
  ``dvs`` (CIFAR10-DVS-shaped AER-DAT recordings converted by spikingjelly, the ``dvs`` space,
  T 8..16, 1 x 4 calibration and 4 test recordings): the same pairs of searches; a trial with
  reuse over its bare passes without reuse, the trials that fill the cache counted (target
  <= 0.3);
- ``flat``: a trial's own overhead (its wall time less its evaluation: sampler, storage, the
  progress line) in one study grown to 100, 1,000 and 10,000 trials (finished trials added
  through Optuna, as a long search leaves them; the random sampler, whose cost does not grow),
  which must stay flat;
- ``share``: SPS's share of a subnet's forward pass on each data shape (random subnets and
  inputs): the most reuse can save.

Figures print as ratios; with ``--scenario all`` the last line is the digits search ratio.

    python benchmarks/trial_cost.py --scenario digits [--supernet runs/digits/supernet.pt]
    python benchmarks/trial_cost.py --scenario cifar --trials 60
    python benchmarks/trial_cost.py --scenario dvs --trials 40
    python benchmarks/trial_cost.py --scenario flat
    python benchmarks/trial_cost.py --scenario share
"""

from __future__ import annotations

from autospikformer.threads import passive_waits

passive_waits()  # as the command line does, before torch loads

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import optuna  # noqa: E402
import torch  # noqa: E402
from synthetic_data import write_cifar, write_cifar10dvs  # noqa: E402

from autospikformer.resources import studies_dir  # noqa: E402
from autospikformer.study.storage import resolve_study  # noqa: E402
from autospikformer.study.worker import Worker, WorkerOptions  # noqa: E402
from autospikformer.training.evaluate import _bn_statistics_kept, autocast  # noqa: E402

SEARCH = {  # [search] of the synthetic scenarios: calibration batches, their size, test images
    "cifar": {"calib_batches": 1, "calib_batch_size": 16, "batch_size": 16, "eval_samples": 16},
    "dvs": {"calib_batches": 1, "calib_batch_size": 4, "batch_size": 4, "eval_samples": 4},
}
TARGETS = {"digits": 0.4, "cifar": 0.3, "dvs": 0.3, "bookkeeping": 1.10}


# --------------------------------------------------------------------------- studies
def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\") + '"'
    return repr(value) if not isinstance(value, list) else "[" + ", ".join(map(_toml, value)) + "]"


def write_study(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for key, sub in table.items():
            if isinstance(sub, dict):
                lines.append(f"[{name}.{key}]")
                lines += [f"{k} = {_toml(v)}" for k, v in sub.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def study_tables(scenario: str, root: Path) -> dict[str, dict[str, Any]]:
    """The study file of a scenario as tables: the digits preset, or a synthetic data set."""
    if scenario == "digits":
        return tomllib.loads((studies_dir() / "digits.toml").read_text())
    dataset, space = {"cifar": ("cifar10", "S_T1+S_S"), "dvs": ("cifar10dvs", "dvs")}[scenario]
    return {
        "study": {"name": scenario, "seed": 0},
        "data": {"dataset": dataset, "root": str(root)},
        "space": {"preset": space},
        "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "mixup": 0.0, "amp": False,
                  "workers": 0, "augment": False, "train_samples": 8},
        "search": {"sampler": "dsps", "trials": 1000, "baseline": False, **SEARCH[scenario],
                   "options": {"population_size": 8, "num_parents": 4}},
    }  # fmt: skip


def register(tables: dict, name: str, folder: Path, storage: str, **search: Any) -> Any:
    """Register a copy of ``tables`` named ``name`` with ``search`` settings; its config."""
    copy = {k: dict(v) for k, v in tables.items()}
    copy["study"]["name"] = name
    copy["search"].update(search)
    path = write_study(folder / f"{name}.toml", copy)
    _, config, _ = resolve_study(str(path), storage, create=True)
    return config


def supernet_for(config: Any, folder: Path, given: str | None) -> str:
    from autospikformer.training.trainer import train_supernet

    if given:
        return given
    started = time.perf_counter()
    path = train_supernet(
        space=config.space, dataset=config.dataset, data_root=config.data_root,
        out_dir=folder / "supernet", config=config.train, device="cpu", progress=False,
        holdout=config.holdout,
    )  # fmt: skip
    print(f"  supernet trained in {time.perf_counter() - started:.0f} s", flush=True)
    return str(path)


class Progress:
    """``autospik study run``'s progress line, drawn to nowhere: its cost is a trial's."""

    def __init__(self, target: int) -> None:
        from rich.console import Console
        from rich.progress import Progress as Bar

        from autospikformer.cli.study import _Display

        self.bar = Bar(console=Console(file=io.StringIO()))
        self.display = _Display(self.bar, target)

    def __call__(self, study: optuna.Study) -> None:
        self.display(study)


# --------------------------------------------------------------------------- one trial
@torch.no_grad()
def bare_passes(worker: Worker, arch: Any) -> tuple[float, float]:
    """The subnet's forward passes alone: same batches, same precision, nothing else; their
    wall time and this process's CPU time."""
    evaluator = worker.evaluator
    model, device, precision = evaluator.supernet, evaluator.device, evaluator.precision
    calib, test = evaluator.splits(arch.time_steps)
    with _bn_statistics_kept(model):  # outside the timed part: leave the supernet as it was
        start, cpu = time.perf_counter(), time.process_time()
        model.train()
        for x, _ in calib or ():
            with autocast(device, precision):
                model(x, arch)
        model.eval()
        for x, _ in test:
            with autocast(device, precision):
                model(x, arch)
        return time.perf_counter() - start, time.process_time() - cpu


class Turns:
    """Workers in threads that take turns, one trial each, so that one computes at a time."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.turn = names[0]
        self.cond = threading.Condition()

    def wait(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == name)

    def pass_on(self, name: str) -> None:
        with self.cond:
            self.turn = self.names[(self.names.index(name) + 1) % len(self.names)]
            self.cond.notify_all()


class TimedWorker:
    """A worker's search in one run, as ``autospik study run`` runs it (its progress line
    after every trial), timed trial by trial: a complete trial's wall time runs from the end of
    the previous one (a PRUNED one between them included) to the end of its progress line.
    ``after(arch)`` runs after each complete trial, untimed."""

    def __init__(self, worker: Worker, turns: Turns, name: str, after: Any = None) -> None:
        self.worker, self.turns, self.name, self.after = worker, turns, name, after
        self.display = Progress(worker.options.trials)
        self.walls: list[float] = []
        self.cpus: list[float] = []  # the process's CPU time (one computes at a time)
        self.results: list[Any] = []
        self._elapsed = self._cpu = 0.0
        self._evaluated: Any = None
        evaluate = worker.evaluator.evaluate

        def recorded(arch: Any, **kwargs: Any) -> Any:
            self._evaluated = evaluate(arch, **kwargs)
            return self._evaluated

        worker.evaluator.evaluate = recorded  # type: ignore[method-assign]

    def on_trial(self, study: optuna.Study) -> None:
        self.display(study)
        self._elapsed += time.perf_counter() - self._started
        self._cpu += time.process_time() - self._cpu_started
        if self._evaluated is not None:
            self.walls.append(self._elapsed)
            self.cpus.append(self._cpu)
            self.results.append(self._evaluated)
            self._elapsed, self._cpu, self._evaluated = 0.0, 0.0, None
            if self.after is not None:
                self.after(self.results[-1].arch)
        self.turns.pass_on(self.name)
        self.turns.wait(self.name)
        self._started, self._cpu_started = time.perf_counter(), time.process_time()

    def run(self) -> None:
        self.turns.wait(self.name)
        self._started, self._cpu_started = time.perf_counter(), time.process_time()
        try:
            self.worker.run(on_trial=self.on_trial)
        finally:
            self.turns.pass_on(self.name)


def run_timed(timed: list[TimedWorker]) -> None:
    """Run the workers in threads until each holds its N trials; an error is raised here."""
    errors: list[BaseException] = []

    def target(t: TimedWorker) -> None:
        try:
            t.run()
        except BaseException as exc:
            errors.append(exc)
            t.turns.names.remove(t.name)

    threads = [threading.Thread(target=target, args=(t,)) for t in timed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --------------------------------------------------------------------------- reuse on / off
def paired_search(scenario: str, trials: int, folder: Path, supernet: str | None) -> list[dict]:
    """The same seeded search with reuse on and off, a trial of each in turn (each search one
    run of its worker), then the bare passes of that subnet; one row per trial."""
    tables = study_tables(scenario, folder / "data")
    storage = f"sqlite:///{folder / 'cost.db'}"
    configs = {r: register(tables, f"{scenario}-{r}", folder, storage, reuse_features=r == "on")
               for r in ("on", "off")}  # fmt: skip
    checkpoint = supernet_for(configs["on"], folder, supernet)
    turns = Turns(["on", "off"])
    bare: list[tuple[float, float]] = []
    timed = {}
    for reuse, config in configs.items():
        worker = Worker(WorkerOptions(storage, config.name, trials, checkpoint, device="cpu"))
        after = (
            (lambda arch, w=worker: bare.append(bare_passes(w, arch))) if reuse == "off" else None
        )
        timed[reuse] = TimedWorker(worker, turns, reuse, after)
    bare_passes(worker, configs["on"].space.largest())  # warm-up: torch's first calls
    run_timed(list(timed.values()))
    on, off = timed["on"], timed["off"]
    rows = [
        {
            "on": a,
            "off": b,
            "bare": c[0],
            "on_cpu": a_cpu,
            "off_cpu": b_cpu,
            "bare_cpu": c[1],
            "how": r.features,
            "arch": r.arch,
        }
        for a, b, c, r, a_cpu, b_cpu in zip(
            on.walls, off.walls, bare, on.results, on.cpus, off.cpus, strict=True
        )
    ]
    for k, row in enumerate(rows, start=1):
        if k % 10 == 0 or k == len(rows):
            print(f"  {scenario} {k}/{len(rows)}: {row['on']:.3f} s with reuse ({row['how']}), "
                  f"{row['off']:.3f} s without, {row['bare']:.3f} s bare  {row['arch']}")  # fmt: skip
    rows[0]["studies"] = [t.worker.study for t in (on, off)]
    return rows


def same_trials(rows: list[dict]) -> str:
    """Whether both searches stored the same trials and the same front, number for number."""
    on, off = rows[0]["studies"]
    states = (optuna.trial.TrialState.COMPLETE,)
    pairs = zip(on.get_trials(states=states), off.get_trials(states=states), strict=True)
    trials_same = all(a.number == b.number and a.params == b.params and a.values == b.values
                      for a, b in pairs)  # fmt: skip
    first, second = ([(t.number, tuple(t.values)) for t in s.best_trials] for s in (on, off))
    front = sorted(first) == sorted(second)
    return (
        f"{'the same' if trials_same else 'DIFFERENT'} trials, "
        f"{'the same' if front else 'a DIFFERENT'} front ({len(first)} members: "
        + ", ".join(f"#{n} {v[0]:.4f}/{v[1]:.4g} mJ" for n, v in sorted(first))
        + ")"
    )


def paired_summary(scenario: str, rows: list[dict]) -> list[str]:
    on, off, bare = (sum(r[key] for r in rows) for key in ("on", "off", "bare"))
    filled = sum(r["how"] == "computed" for r in rows)
    hits = [r["on"] / r["bare"] for r in rows if r["how"] == "reused"]
    lines = [
        f"{scenario}: {len(rows)} trials, {filled} (E, T) pairs computed, "
        f"{len(rows) - filled} reused; {same_trials(rows)}",
        f"{scenario}: with reuse / bare passes without = {on / bare:.3f} (fills counted; "
        f"reused trials alone: median {statistics.median(hits) if hits else float('nan'):.3f}); "
        f"without reuse / bare = {off / bare:.3f}; with / without = {on / off:.3f}",
    ]
    on_cpu, off_cpu, bare_cpu = (
        sum(r[key] for r in rows) for key in ("on_cpu", "off_cpu", "bare_cpu")
    )
    lines.append(
        f"{scenario}: in process CPU time: with reuse / bare = {on_cpu / bare_cpu:.3f}; "
        f"without reuse / bare = {off_cpu / bare_cpu:.3f}; with / without = {on_cpu / off_cpu:.3f}"
    )
    target = TARGETS[scenario]
    figure = on / off if scenario == "digits" else on / bare
    lines.append(f"{scenario}: x{figure:.3f} (target <= {target}: "
                 f"{'met' if figure <= target else 'MISSED'})")  # fmt: skip
    if scenario == "digits":
        book = off / bare
        lines.insert(-1, f"digits bookkeeping: a trial without reuse / its bare passes = "
                         f"{book:.3f} (target <= {TARGETS['bookkeeping']}: "
                         f"{'met' if book <= TARGETS['bookkeeping'] else 'MISSED'})")  # fmt: skip
        lines[-1] = (f"digits search, {len(rows)} trials: wall time with reuse / without = "
                     f"{figure:.3f} ({on:.1f} s / {off:.1f} s; target <= {target}: "
                     f"{'met' if figure <= target else 'MISSED'})")  # fmt: skip
    return lines


def write_data(scenario: str, root: Path) -> None:
    if scenario == "cifar":
        write_cifar(root, classes=10, train=200, test=100)
    elif scenario == "dvs":
        write_cifar10dvs(root, per_class=10, events=100_000)  # 90 to train, 10 to test


# --------------------------------------------------------------------------- flat bookkeeping
def grow(url: str, name: str, size: int, template: Any, space: Any, seed: int) -> None:
    """Add finished trials (random architectures, the template trial's record) until the
    study holds ``size`` trials, as a long search leaves them."""
    from autospikformer.search.suggest import architecture_params, distributions

    study = optuna.load_study(study_name=name, storage=url)
    rng = random.Random(seed)
    missing = size - len(study.get_trials(deepcopy=False))
    user = {k: v for k, v in template.user_attrs.items() if k != "autospik:worker"}
    for _ in range(max(0, missing)):
        arch = space.sample(rng)
        params = architecture_params(arch)
        dists = distributions(space, arch.depth)
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params},
                values=[rng.random(), rng.random() * 1e-3],
                user_attrs={**user, "autospik:architecture": str(arch)},
                system_attrs=dict(template.system_attrs),
            )
        )  # fmt: skip


def flat(sizes: list[int], trials: int, folder: Path, supernet: str | None) -> list[str]:
    """A trial's own overhead (wall time less its evaluation) at each study size."""
    tables = study_tables("digits", folder)
    tables["search"].update(sampler="random", options={}, baseline=False)
    storage = f"sqlite:///{folder / 'flat.db'}"
    config = register(tables, "flat", folder, storage)
    checkpoint = supernet_for(config, folder, supernet)
    medians = {}
    for size in sizes:
        if size > 1:
            grow(storage, "flat", size, template_trial(storage, checkpoint), config.space, size)
        # a worker's start (its first look at the study) and a warm-up trial are not timed
        worker = Worker(WorkerOptions(storage, "flat", size + 1, checkpoint, device="cpu"))
        worker.run()
        worker.options = WorkerOptions(storage, "flat", size + 1 + trials, checkpoint, device="cpu")
        timed = TimedWorker(worker, Turns(["flat"]), "flat")
        run_timed([timed])
        overheads = [w - r.seconds for w, r in zip(timed.walls, timed.results, strict=True)]
        medians[size] = statistics.median(overheads)
        print(f"  flat: {size:,} trials: a trial's own overhead median "
              f"{1000 * medians[size]:.1f} ms (min {1000 * min(overheads):.1f}, max "
              f"{1000 * max(overheads):.1f})", flush=True)  # fmt: skip
    first, last = sizes[0], sizes[-1]
    return [
        "bookkeeping: a trial's own overhead (sampler, storage, progress line) at "
        + ", ".join(f"{s:,} trials {1000 * medians[s]:.1f} ms" for s in sizes)
        + f"; {last:,} over {first:,}: x{medians[last] / medians[first]:.2f}"
    ]


def template_trial(storage: str, checkpoint: str) -> Any:
    """A complete trial of the study (one is evaluated if there is none): what grown trials
    record."""
    study = optuna.load_study(study_name="flat", storage=storage)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        Worker(WorkerOptions(storage, "flat", 1, checkpoint, device="cpu")).run()
        done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return done[0]


# --------------------------------------------------------------------------- SPS's share
@torch.no_grad()
def sps_share(subnets: int) -> list[str]:
    """SPS's share of a subnet's forward pass (eval mode), median over random subnets of each
    space on random inputs of its data's shape: the most that reusing SPS's outputs can save."""
    from autospikformer.data.base import dataset_info
    from autospikformer.model.supernet import SuperSpikformer
    from autospikformer.search.space import SearchSpace

    lines = []
    for space_name, dataset, batch in (("digits", "digits", 360), ("S_T1+S_S", "cifar10", 32),
                                       ("dvs", "cifar10dvs", 8)):  # fmt: skip
        info, space = dataset_info(dataset), SearchSpace.load(space_name)
        torch.manual_seed(0)
        supernet = SuperSpikformer.for_data(space, info).eval()
        rng, shares = random.Random(1), []
        for _ in range(subnets + 1):  # the first warms up
            arch = space.sample(rng)
            shape = (info.in_channels, info.img_size, info.img_size)
            if info.event_based:
                x = torch.randint(0, 3, (batch, arch.time_steps, *shape)).float()
            else:
                x = torch.rand(batch, *shape)
            start = time.perf_counter()
            tokens = supernet.embed(x, arch)
            middle = time.perf_counter()
            supernet.forward_head(supernet.forward_tokens(tokens, arch))
            shares.append((middle - start) / (time.perf_counter() - start))
        lines.append(f"SPS's share of a {space_name} subnet's forward pass ({batch} {dataset} "
                     f"inputs): median {statistics.median(shares[1:]):.2f} over {subnets} "
                     f"random subnets")  # fmt: skip
        print(lines[-1], flush=True)
    return lines


# --------------------------------------------------------------------------- main
def run_scenario(scenario: str, args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix=f"trial-cost-{scenario}-") as tmp:
        folder = Path(tmp)
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            if scenario == "flat":
                return flat(args.sizes, args.trials or 20, folder, args.supernet)
            if scenario == "share":
                return sps_share(args.trials or 12)
            write_data(scenario, folder / "data")
            default = {"digits": 200, "cifar": 60, "dvs": 40}[scenario]
            supernet = args.supernet if scenario == "digits" else None
            rows = paired_search(scenario, args.trials or default, folder, supernet)
            return paired_summary(scenario, rows)
        finally:
            os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", choices=("share", "digits", "cifar", "dvs", "flat", "all"), default="all"
    )
    parser.add_argument("--trials", type=int, default=None, help="trials of each search")
    parser.add_argument("--supernet", default=None, help="the digits supernet (default: train)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(f"torch {torch.__version__}, {args.threads} thread(s), OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY')}, load average {os.getloadavg()[0]:.2f}",
          flush=True)  # fmt: skip
    order = (
        ("share", "flat", "cifar", "dvs", "digits") if args.scenario == "all" else (args.scenario,)
    )
    lines = []
    for scenario in order:
        lines += run_scenario(scenario, args)
        for line in lines[-3:]:
            print(line, flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
