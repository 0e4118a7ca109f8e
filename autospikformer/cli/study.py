"""`autospik study ...`: create a study, run its search workers, export, compare, list, show,
dashboard, validate (does the one-shot ranking hold once candidates are trained).

Every command takes ``--storage URL`` (default ``sqlite:///autospik.db`` in the working folder;
any SQLAlchemy URL, e.g. PostgreSQL, for many machines). Errors are one line on stderr and a
non-zero exit; a command that fails leaves the storage as it was.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from autospikformer.cli import subnet as subnet_cli
from autospikformer.cli.common import (
    FORMAT,
    RUNS_DIR,
    STORAGE,
    THREADS,
    App,
    Format,
    check_listen,
    console,
    emit,
    guard,
    output_folder,
    print_table,
    set_threads,
    writing_to,
)
from autospikformer.units import energy_text, energy_unit, percent

#: Seconds between two progress lines of a search whose output is not a terminal.
PLAIN_PROGRESS_SECONDS = 30.0
#: The progress line takes the study's counts and front as read at most this long ago (a worker in
#: the same process reads them several times a trial; its own trials are noted as they end).
DISPLAY_MAX_AGE = 1.0

app = App(
    help="Studies: create one from a study file, run its search, export and browse the front.",
    no_args_is_help=True,
)


@app.command()
def create(
    study_file: str = typer.Argument(
        ..., help="A study file (.toml) or a preset name (e.g. digits)."
    ),
    storage: str = STORAGE,
) -> None:
    """Register a study (its whole configuration) in the storage; workers need only its name."""
    from autospikformer.study.storage import describe_url, resolve_study

    study, config, created = guard(resolve_study, study_file, storage, create=True)
    verb = "created" if created else "already exists (same configuration)"
    console.print(
        f"study [bold]{escape(config.name)}[/] {verb} in {escape(describe_url(storage))}: "
        f"{escape(config.summary())}, {len(study.trials)} trials so far",
        markup=True,
    )


class _Display:
    """The rich progress line: complete trials of N, Pareto front size, best values so far.

    Its counts and front are kept incrementally (the study's ``TrialLedger``, shared with a
    worker in this process, reads only the trials new or unfinished since its last look), so a
    refresh costs the same at trial 10,000 as at trial 10; the front is the one
    ``study.best_trials`` gives (feasible trials only).
    """

    def __init__(self, progress: Any, target: int, label: str = "acc") -> None:
        self.progress = progress
        self.task = progress.add_task(
            "search", total=target, front="-", acc="-", energy="-", label=label
        )
        self.target = target

    def __call__(self, study: Any) -> None:
        from autospikformer.study.ledger import ledger_of

        ledger = ledger_of(study)  # a worker in this process: its own, read moments ago
        ledger.refresh(max_age=DISPLAY_MAX_AGE)  # a worker's own trials are noted as told
        front = ledger.front
        fields = {}
        if front:
            fields = {
                "front": str(len(front)),
                "acc": f"{percent(max(acc for acc, _ in front))} %",
                "energy": energy_text(min(energy for _, energy in front)),
            }
        self.progress.update(self.task, completed=min(ledger.complete, self.target), **fields)


class _PlainProgress:
    """The search's progress as a plain line every ``every`` seconds, for output that is not a
    terminal (``nohup``, a batch scheduler's log, ``> run.log``): trials done, front, best
    values, rate and ETA. The front is read only when a line is due."""

    def __init__(self, target: int, label: str, every: float = PLAIN_PROGRESS_SECONDS) -> None:
        self.target, self.label, self.every = target, label, every
        self.started = time.monotonic()
        self.first: int | None = None  # complete trials when the search started (a rerun)
        self.last_line = -math.inf
        self.line = ""
        self.study: Any = None

    def __call__(self, study: Any, *, final: bool = False) -> None:
        from optuna.trial import TrialState

        self.study = study
        now = time.monotonic()
        if not final and self.first is not None and now - self.last_line < self.every:
            return
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        if self.first is None:
            self.first = done
            return
        self.last_line = now
        rate = (done - self.first) / max(now - self.started, 1e-9)
        eta = (self.target - done) / rate if rate > 0 else math.inf
        front = study.best_trials
        best = (
            f"front {len(front)}, best {self.label} "
            f"{percent(max(t.values[0] for t in front))} %, min energy "
            f"{energy_text(min(t.values[1] for t in front))}"
            if front
            else "front -"
        )
        shown_eta = "-" if not math.isfinite(eta) else _clock(eta)
        self.line = (
            f"search: {min(done, self.target)}/{self.target} trials, {best}, {rate:.2f} trials/s, "
            f"elapsed {_clock(now - self.started)}, ETA {shown_eta}"
        )
        console.print(self.line, soft_wrap=True, highlight=False)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@contextlib.contextmanager
def _progress_line(config: Any, target: int) -> Iterator[Any]:
    """Stage 2's progress (the pipeline's ``watch``): a rich bar with its ETA on a terminal,
    a plain line every half minute otherwise."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    label = "val acc" if config.search.eval_split == "val" else "acc"
    if not console.is_terminal:
        plain = _PlainProgress(target, label)
        yield plain
        if plain.study is not None and plain.first is not None:
            plain(plain.study, final=True)  # where the search ended
        return
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "front {task.fields[front]} | best {task.fields[label]} {task.fields[acc]} | "
            "min energy {task.fields[energy]}"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield _Display(progress, target, label)


def _say(line: str) -> None:
    """A pipeline's progress line, as the user reads it (stage names in bold)."""
    for stage in ("stage 1", "stage 2"):
        if line.startswith(f"{stage}:"):
            console.print(
                f"[bold]{stage}[/]{escape(line[len(stage) :])}", soft_wrap=True, markup=True
            )
            return
    console.print(line, soft_wrap=True)


@app.command()
def run(
    study: str = typer.Argument(
        ..., help="Study name in the storage, or a study file / preset (registered first if new)."
    ),
    trials: int = typer.Option(
        None,
        "--trials",
        "-n",
        min=1,
        help="Stop when the study holds this many complete trials (all workers together); "
        "default: the study's search.trials.",
    ),
    storage: str = STORAGE,
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="Worker processes on this machine."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    runs_dir: Path = RUNS_DIR,
    supernet: Path = typer.Option(
        None, "--supernet", help="Use this supernet checkpoint (never trained here)."
    ),
    data_root: str = typer.Option(None, "--data-root", help="Override the study's data.root here."),
    export: bool = typer.Option(True, "--export/--no-export", help="Export when N is reached."),
    threads: int | None = THREADS,
) -> None:
    """Train the supernet if missing (stage 1), then search until N complete trials (stage 2).

    Any number of invocations, here or on other machines sharing a PostgreSQL storage,
    cooperate on one study. Ctrl-C stops after the current trial (twice: at once, re-queuing
    it); run the same command again to resume.
    """
    from autospikformer.pipeline import run_study

    set_threads(threads)  # stage 1 and a single worker run in this process
    result = run_study(
        study, trials=trials, storage=storage, workers=workers, device=device,
        runs_dir=runs_dir, supernet=supernet, data_root=data_root, export=export,
        say=_say, watch=_progress_line, threads=threads,
    )  # fmt: skip
    if result.interrupted:
        outcome = result.outcome
        console.print(
            f"stopped: {outcome.complete} of {outcome.target} trials complete; "
            f"run 'autospik study run {result.config.name}' again to resume",
            soft_wrap=True,
        )
        raise typer.Exit(130)
    if result.export is not None:
        _report(result.export)


def _export_and_report(
    optuna_study: Any, out: Path, option: str, *, tables: int | None = None
) -> None:
    """Export the study into ``out`` (given by ``option``), print its figures (and, with
    ``tables``, the paper's Tables 2 / 3)."""
    from autospikformer.report.export import export_study

    _report(export_study(optuna_study, out, option=option), tables=tables)


def _report(exported: Any, *, tables: int | None = None) -> None:
    """Print an export's figures (and, with ``tables``, the paper's Tables 2 / 3)."""
    summary, paths = exported.summary, exported.paths
    best, low = summary["best_accuracy"], summary["lowest_energy"]
    if best:
        tau = summary["kendall_tau_accuracy_energy"]
        split = summary["protocol"]["eval_split"]
        console.print(
            f"Pareto front: {summary['front_size']} of {summary['complete']} candidates; best "
            f"{'validation' if split == 'val' else 'test'} accuracy {percent(best['accuracy'])} % "
            f"(trial {best['trial']}), lowest energy "
            f"{energy_text(low['energy_mj'])} (trial {low['trial']}); hypervolume "
            f"{summary['hypervolume']:.4g}"
        )
        console.print(_tau_line(summary["kendall_tau"], tau))
    tested = summary["front_test_accuracy"]
    if summary["protocol"]["eval_split"] == "val" and tested["of"]:
        mean = tested["mean"]
        console.print(
            f"test accuracy of the front (measured once after the search): {tested['measured']} "
            f"of {tested['of']} members"
            + ("" if mean is None else f", mean {percent(mean)} %")
            + ("" if tested["measured"] == tested["of"] else
               "; run 'autospik study run' again to measure the rest"),
            soft_wrap=True,
        )  # fmt: skip
    if tables is not None:
        _print_tables(exported.tables, summary, tables, paths["front_and_top20.csv"])
    console.print(f"exported front: {paths['pareto.csv']}", soft_wrap=True)
    console.print(f"interactive plot: {paths['pareto.html']}", soft_wrap=True)


def _tau_line(taus: dict[str, Any], tau_all: float | None) -> str:
    """Kendall tau(accuracy, energy) over all trials, the top by F_AEB and the random draws,
    each with its n and (for the samples) a 90 % bootstrap interval: a small sample moves a lot."""

    def one(key: str, what: str) -> str | None:
        entry = taus.get(key, {})
        if not entry.get("n") or entry.get("tau") is None:
            return None
        interval = entry.get("interval")
        spread = f", 90 % interval {interval[0]:.2f} .. {interval[1]:.2f}" if interval else ""
        return f"{entry['tau']:.3f} over {what} (n = {entry['n']}{spread})"

    parts = [
        f"{tau_all:.3f} over all complete trials" if tau_all is not None else None,
        one("top_f_aeb", "the top by F_AEB"),
        one("random", "the random draws"),
    ]
    return "Kendall tau(accuracy, energy): " + ("; ".join(p for p in parts if p) or "n/a")


def _print_tables(table: Any, summary: dict[str, Any], rows: int, csv: Path) -> None:
    """The paper's Table 2 (the front) and Table 3 (top 20 % accuracy), as front_and_top20.csv
    (``csv``) holds them."""
    import pandas as pd
    from rich.table import Table

    if table.empty:
        return
    val = summary["protocol"]["eval_split"] == "val"
    acc_title = "val acc %" if val else "test acc %"
    unit = energy_unit(table["energy_mj"])  # one unit for both tables
    for title, part in (
        ("Table 2: Pareto front", table[table["on_front"]]),
        (
            "Table 3: top 20 % accuracy",
            table[table["top_accuracy"]].sort_values(
                ["accuracy", "energy_mj"], ascending=[False, True]
            ),
        ),
    ):
        shown = part.head(rows)
        more = len(part) - len(shown)
        grid = Table(title=f"{title} ({len(part)} trials)", title_justify="left")
        columns = (
            ["trial", acc_title]
            + (["test acc %"] if val else [])
            + [f"energy {unit.name}", "params", "firing rate", "architecture"]
        )
        for column in columns:
            grid.add_column(
                column, justify="left" if column == "architecture" else "right", overflow="fold"
            )
        for _, row in shown.iterrows():
            cells = [
                f"{int(row['number'])}{' *' if isinstance(row['baseline'], str) and row['baseline'] else ''}",
                percent(row["accuracy"]),
            ]
            if val:
                test = row.get("test_accuracy")
                cells.append("-" if pd.isna(test) else percent(test))
            params, rate = row["num_parameters"], row["mean_firing_rate"]
            cells += [
                unit.format(row["energy_mj"]),
                "-" if pd.isna(params) else f"{int(params):,}",
                "-" if pd.isna(rate) else f"{rate:.3f}",
                row["architecture"],
            ]
            grid.add_row(*cells)
        print_table(grid)
        if more:
            console.print(f"... and {more} more rows in {csv}", soft_wrap=True)


@app.command("export")
def export_cmd(
    study: str = typer.Argument(..., help="Study name in the storage."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Output folder (default: <runs-dir>/<study>/export)."
    ),
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    rows: int = typer.Option(
        20, "--rows", min=0, help="Rows of each printed table (all of them are in the CSV)."
    ),
    energy_model: str = typer.Option(
        None,
        "--energy-model",
        help="Re-price the trials under this energy model (sop-45nm, memory-45nm) from their "
        "stored per-layer rates, without evaluating; default folder <runs-dir>/<study>/export-<model>.",
    ),
    constants: Path = typer.Option(
        None,
        "--constants",
        help="With --energy-model: a TOML file whose [energy] table sets the constants "
        "(default: the study's).",
    ),
) -> None:
    """Write trials.csv, pareto.csv/json/html, hypervolume.csv, front_and_top20.csv and
    summary.json; print the front and the top 20 % by accuracy (the paper's Tables 2 and 3).

    With --energy-model the study's trials are re-priced under another energy model first (the
    storage is only read).
    """
    from autospikformer.study.storage import resolve_study

    optuna_study, config, _ = guard(resolve_study, study, storage, create=False)
    folder = "export"
    if energy_model is not None or constants is not None:
        from autospikformer.cli.energy import energy_model_from
        from autospikformer.report.pricing import repriced_study, study_energy_model

        priced_by = guard(study_energy_model, optuna_study)
        model = energy_model_from(energy_model, constants, default=priced_by)
        if model.differences(priced_by):
            optuna_study = guard(repriced_study, optuna_study, model)
            folder = f"export-{model.name}"
            console.print(
                f"re-priced the trials of {config.name} under {model.describe()} "
                f"(evaluated under {priced_by.name}; nothing re-evaluated)",
                soft_wrap=True,
            )
        else:
            console.print(f"{config.name} is already priced by {model.describe()}", soft_wrap=True)
    if out is None:  # the study's runs folder: refused when another storage's study owns it
        from autospikformer.study.run_folder import claim_run_folder

        output_folder(runs_dir / config.name, "--runs-dir")  # one line naming the option
        guard(claim_run_folder, runs_dir / config.name, optuna_study, storage)
    option = "--out" if out is not None else "--runs-dir"
    folder_path = output_folder(out or runs_dir / config.name / folder, option)
    _export_and_report(optuna_study, folder_path, option, tables=rows)


@app.command("compare")
def compare_cmd(
    studies: list[str] = typer.Argument(
        ..., help="Two or more studies: NAME (in --storage) or NAME@URL (in that storage)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for the comparison."),
    storage: list[str] = typer.Option(
        None,
        "--storage",
        "-s",
        help="Storage URL: once for every study, or once per study in order "
        "(default sqlite:///autospik.db).",
    ),
) -> None:
    """Overlay the studies' fronts on one page, hypervolume against trials on one shared
    reference point, Kendall tau per study (the paper's Figs. 5 and 6).

    Writes compare.html, compare.csv, compare.json, hypervolume.csv and fronts.csv. Studies
    priced by different energy models are refused.
    """
    from rich.table import Table

    from autospikformer.report.compare import compare_studies

    def compare() -> Any:
        with writing_to("--out", out):
            return compare_studies(list(studies), out, list(storage or []))

    comparison, paths = guard(compare)
    for warning in comparison.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(warning)}", soft_wrap=True, markup=True)
    ref = comparison.reference
    grid = Table(
        title=(
            f"studies compared (shared reference: accuracy {percent(ref['accuracy'])} %, "
            f"energy {energy_text(ref['energy_mj'])})"
        )
    )
    for column in ("study", "sampler", "trials", "front", "hypervolume", "tau top", "tau random"):
        left = column in ("study", "sampler")
        grid.add_column(column, justify="left" if left else "right", no_wrap=left)

    def tau(value: Any, n: int) -> str:
        return "n/a" if value is None or value != value else f"{value:.3f} ({n})"

    rows = comparison.table().to_dict("records")
    for row in rows:
        grid.add_row(
            row["study"],
            str(row["sampler"]),
            str(row["complete"]),
            str(row["front_size"]),
            f"{row['hypervolume_normalised']:.4f}",
            tau(row["kendall_tau_top"], row["kendall_tau_top_n"]),
            tau(row["kendall_tau_random"], row["kendall_tau_random_n"]),
        )
    print_table(grid)
    splits = " / ".join(sorted({row["eval_split"] for row in rows}))
    console.print(
        "hypervolume: normalised by the box between the shared reference and the pooled ideal "
        "point; tau (n): Kendall tau of accuracy and energy over the top n trials by F_AEB "
        f"and over n random draws; accuracy on the {splits} split",
        soft_wrap=True,
    )
    console.print(f"comparison page: {paths['compare.html']}", soft_wrap=True)


@app.command("list")
def list_cmd(storage: str = STORAGE, fmt: Format = FORMAT) -> None:
    """All studies in the storage with their progress and best values."""
    from rich.table import Table

    from autospikformer.report.tables import studies_frame
    from autospikformer.study.storage import describe_url, open_storage
    from autospikformer.units import percent

    frame = studies_frame(open_storage(storage))

    def table() -> Table:
        unit = energy_unit(frame["min_energy_mj"] if len(frame) else [])
        grid = Table(
            title=f"studies in {describe_url(storage)}",
            caption="best acc: the best accuracy on the split the study ranks on (val: a "
            "held-out part of the training split; test: the paper's protocol), within budgets",
        )
        titles = ("study", "data set", "space", "sampler", "complete", "running")
        for title in (*titles, "ranked on", "best acc %", f"min energy {unit.name}"):
            left = title in ("study", "data set", "space", "sampler", "ranked on")
            grid.add_column(title, justify="left" if left else "right")
        for row in frame.to_dict("records"):
            grid.add_row(
                *(str(row[k]) for k in ("study", "dataset", "space", "sampler")),
                f"{row['complete']}/{row['target']}",
                str(row["running"]),
                row["eval_split"],
                percent(row["best_accuracy"]),
                unit.format(row["min_energy_mj"]),
            )
        return grid

    emit(frame, fmt, table)


#: The columns of ``study show``'s listing (raw values, as in pareto.csv); ``test_accuracy``
#: under the validation protocol, ``trained_accuracy`` once a front member's subnet is trained.
SHOW_COLUMNS = (
    "number", "accuracy", "test_accuracy", "trained_accuracy", "energy_mj", "num_parameters",
    "mean_firing_rate", "f_aeb", "architecture", "baseline",
)  # fmt: skip


@app.command()
def show(
    study: str = typer.Argument(..., help="Study name in the storage."),
    storage: str = STORAGE,
    fmt: Format = FORMAT,
) -> None:
    """The study's Pareto front (lowest energy first): a table, or CSV / JSON for scripts."""
    from rich.table import Table

    from autospikformer.report.tables import complete_and_front, trials_frame
    from autospikformer.study.storage import resolve_study
    from autospikformer.units import percent

    optuna_study, config, _ = resolve_study(study, storage, create=False)
    frame = trials_frame(optuna_study, config.search.alpha)
    complete, front = complete_and_front(frame)
    val = config.search.eval_split == "val"
    trained = bool(front["trained_accuracy"].notna().any())
    shown = {"test_accuracy": val, "trained_accuracy": trained}
    listing = front[[c for c in SHOW_COLUMNS if shown.get(c, True)]]

    def table() -> Table:
        counts = frame["state"].value_counts().to_dict()
        others = ", ".join(
            f"{n} {state.lower()}" for state, n in sorted(counts.items()) if state != "COMPLETE"
        )
        unit = energy_unit(front["energy_mj"])
        grid = Table(
            title=(
                f"study {config.name}: Pareto front ({len(front)} of {len(complete)} complete "
                f"trials{'; ' + others if others else ''})"
            ),
        )
        accuracy = ("val acc %", "test acc %") if val else ("accuracy %",)
        accuracy += (("trained val %" if val else "trained %"),) if trained else ()
        for column in ("trial", *accuracy, f"energy {unit.name}", "params", "firing rate"):
            grid.add_column(column, justify="right")
        grid.add_column("F_AEB", justify="right")
        grid.add_column("architecture", overflow="fold")
        for _, row in front.iterrows():
            params, rate = row["num_parameters"], row["mean_firing_rate"]
            grid.add_row(
                f"{row['number']}{' *' if row['baseline'] else ''}",
                percent(row["accuracy"]),
                *((percent(row["test_accuracy"]),) if val else ()),
                *((percent(row["trained_accuracy"]),) if trained else ()),
                unit.format(row["energy_mj"]),
                "-" if params is None or str(params) == "<NA>" else f"{int(params):,}",
                "-" if rate is None or rate != rate else f"{rate:.3f}",
                f"{row['f_aeb']:.3f}",
                row["architecture"],
            )
        if front["baseline"].astype(bool).any():
            name = front.loc[front["baseline"].astype(bool), "baseline"].iloc[0]
            grid.caption = f"* the hand-designed {name}"
        return grid

    emit(listing, fmt, table)


@app.command()
def dashboard(
    study: str = typer.Argument(..., help="Study name in the storage."),
    storage: str = STORAGE,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to listen on (localhost only by default)."
    ),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """Browse the study in optuna-dashboard (objectives named accuracy and energy_mj; the front
    of the trials within the study's budgets, as every other view shows it)."""
    from autospikformer.study.storage import METRIC_NAMES, open_storage, resolve_study

    optuna_study, _, _ = guard(resolve_study, study, storage, create=False)
    if optuna_study.metric_names != list(METRIC_NAMES):
        optuna_study.set_metric_names(list(METRIC_NAMES))
    from autospikformer.report.dashboard import serve_dashboard

    store = open_storage(storage)
    study_id = store.get_study_id_from_name(optuna_study.study_name)
    check_listen(host, port)  # before anything says it listens
    console.print(
        f"optuna-dashboard: http://{host}:{port}/dashboard/studies/{study_id} (Ctrl-C to stop)"
    )
    serve_dashboard(store, host=host, port=port)


@app.command()
def validate(
    study: str = typer.Argument(..., help="Study name in the storage."),
    top: int = typer.Option(
        10, "--top", "-k", help="Candidates to train: half along the front, half below it."
    ),
    from_scratch: bool = subnet_cli.FROM_SCRATCH,
    epochs: int = subnet_cli.EPOCHS,
    lr: float = subnet_cli.LR,
    min_lr: float = subnet_cli.MIN_LR,
    warmup_epochs: int = subnet_cli.WARMUP_EPOCHS,
    batch_size: int = subnet_cli.BATCH_SIZE,
    weight_decay: float = subnet_cli.WEIGHT_DECAY,
    mixup: float = subnet_cli.MIXUP,
    augment: bool = subnet_cli.AUGMENT,
    seed: int = subnet_cli.SEED,
    loader_workers: int = subnet_cli.LOADER_WORKERS,
    train_samples: int = subnet_cli.TRAIN_SAMPLES,
    workers: int = typer.Option(
        1, "--workers", "-w", min=1, help="Processes sharing the candidates (spread over GPUs)."
    ),
    storage: str = STORAGE,
    runs_dir: Path = RUNS_DIR,
    supernet: Path = typer.Option(None, "--supernet", help="Supernet checkpoint (default: runs)."),
    data_root: str = typer.Option(None, "--data-root", help="Override the study's data.root."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Report folder (default <runs-dir>/<study>/validation-<schedule>).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    threads: int | None = THREADS,
) -> None:
    """Check that the one-shot ranking holds: train K candidates (spread along the Pareto front
    and below it) with one schedule, then report Kendall tau and Spearman rho between their
    inherited and trained accuracy, and energy.

    Writes validation.csv, validation.json and the scatter of inherited against trained values
    (validation.html, validation.png). Each result is stored with its trial (study show, study
    export); a rerun goes on with the candidates not trained yet.
    """
    set_threads(threads)
    from autospikformer.report.validation import write_validation
    from autospikformer.study.candidates import CandidateJob, run_candidates, validation_candidates
    from autospikformer.study.storage import resolve_study
    from autospikformer.study.subnets import check_training_inputs, subnet_start

    optuna_study, config, _ = resolve_study(study, storage, create=False, write=True)
    schedule = subnet_cli.schedule_from(
        config, from_scratch, epochs=epochs, lr=lr, min_lr=min_lr, warmup_epochs=warmup_epochs,
        batch_size=batch_size, weight_decay=weight_decay, mixup=mixup, augment=augment,
        seed=seed, workers=loader_workers, train_samples=train_samples,
    )  # fmt: skip
    trials = validation_candidates(optuna_study, top)
    check_training_inputs(config, device=device, data_root=data_root)
    for number in trials:  # every candidate's inputs, before anything is written
        subnet_start(optuna_study, config, schedule, trial=number, runs_dir=runs_dir,
                     supernet=supernet)  # fmt: skip
    option = "--out" if out is not None else "--runs-dir"
    folder = output_folder(out or runs_dir / config.name / f"validation-{schedule.id}", option)
    front = sum(t.number in trials for t in optuna_study.best_trials)
    _say(
        f"validating study {config.name}: {len(trials)} candidates ({front} on the front), "
        f"{schedule.describe()} (schedule {schedule.id}), {workers} worker"
        + ("s" if workers > 1 else "")
    )
    job = CandidateJob(
        storage_url=storage, study_name=config.name, trials=tuple(trials), schedule=schedule,
        runs_dir=str(runs_dir), supernet=None if supernet is None else str(supernet),
        data_root=data_root, device=device, progress=progress, threads=threads,
    )  # fmt: skip
    try:
        run_candidates(job, workers, say=_say)
    except KeyboardInterrupt:
        console.print("stopped: run the same command again to go on with the candidates left")
        raise typer.Exit(130) from None
    report = write_validation(optuna_study, trials, schedule, folder)
    _print_validation(report)


def _print_validation(report: Any) -> None:
    """The candidates as a table, the rank correlations and where the files are."""
    from rich.table import Table

    frame, summary = report.frame, report.summary
    unit = energy_unit(frame["inherited_energy_mj"])
    split = "val" if summary["accuracy"].startswith("validation") else "test"
    grid = Table(title=summary["title"], title_justify="left")
    columns = ("trial", f"inherited {split} %", f"trained {split} %", "trained test %",
               f"inherited {unit.name}", f"trained {unit.name}", "architecture")  # fmt: skip
    for column in columns:
        grid.add_column(column, justify="left" if column == "architecture" else "right")
    for row in frame.to_dict("records"):
        grid.add_row(
            f"{row['trial']}{' *' if row['on_front'] else ''}",
            percent(row["inherited_accuracy"]),
            percent(row["trained_accuracy"]),
            percent(row["trained_test_accuracy"]),
            unit.format(row["inherited_energy_mj"]),
            unit.format(row["trained_energy_mj"]),
            row["architecture"],
        )
    grid.caption = "* on the Pareto front"
    print_table(grid)
    for name, corr in summary["correlations"].items():
        tau, rho = corr["kendall_tau"], corr["spearman_rho"]
        shown = "n/a (fewer than two distinct values)" if tau is None else (
            f"Kendall tau {tau:.3f} (p {corr['kendall_p']:.2g}), Spearman rho {rho:.3f} "
            f"(p {corr['spearman_p']:.2g})"
        )  # fmt: skip
        console.print(
            f"{name}, inherited vs trained, {corr['n']} candidates: {shown}", soft_wrap=True
        )
    console.print(f"scatter: {report.paths['validation.html']}", soft_wrap=True)
    console.print(f"table: {report.paths['validation.csv']}", soft_wrap=True)
