"""Every command turns bad input and a failing environment into one ``error:`` line.

Device names, storage URLs, output paths, checkpoint files, read-only databases, settings that
depend on others: each case runs the real command (typer's CliRunner, or a subprocess where
another user is needed), asserts exactly one stderr line with its advice and a non-zero exit,
and checks that nothing was created or changed.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from helpers import TINY_SPACE, tiny_study
from trained_study import searched, searched_db  # noqa: F401
from typer.testing import CliRunner

from autospikformer.cli.app import app
from autospikformer.errors import error_line

runner = CliRunner()
ARCH = "d1-e16-t1:r1:h2:th1:tau2"


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line(result, *fragments: str) -> str:
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def files(folder: Path) -> list[str]:
    """Every file below ``folder``; a SQLite database's write-ahead log and its index
    (``-wal``, ``-shm``) belong to the database and are not counted on their own."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if not p.name.endswith(("-wal", "-shm"))
    )


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(tiny_study("tiny"))
    return tmp_path


# --- devices ---------------------------------------------------------------------------------
def test_bad_devices_store_nothing_and_leave_no_lock(folder) -> None:
    cases = [("bogus", "device 'bogus' is not a device name (use auto, cpu, cuda or cuda:N)")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "device 'cuda' was asked for but no CUDA GPU is available"))
    for device, message in cases:
        one_line(invoke("study", "run", "tiny.toml", "--device", device), message)
        one_line(
            invoke("supernet", "train", "--space", "digits", "--dataset", "digits", "--out", "sn",
                   "--device", device),
            message,
        )  # fmt: skip
    assert files(folder) == ["tiny.toml"]  # no storage, no runs/tiny/supernet.lock, no sn/


def test_a_study_whose_stage_1_fails_is_removed_again(folder) -> None:
    """The data set's files are all there by name but damaged: the check before registration
    passes, training fails on the first read, and the study registered for it goes again."""
    cifar = folder / "cifar"
    cifar.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
        (cifar / name).write_bytes(b"not a pickle")
    c10 = folder / "c10.toml"
    c10.write_text(
        tiny_study("c10")
        .replace('dataset = "digits"', 'dataset = "cifar10"\nroot = "cifar"')
        .replace('[space]\npreset = "digits"', '[space]\npreset = "S_S"')
    )
    line = one_line(invoke("study", "run", "c10.toml", "--device", "cpu"), "is truncated or not")
    assert "a CIFAR pickle" in line
    assert "autospik.db" not in files(folder) and not (folder / "runs").exists()
    # in a storage that already holds a study, only the new study goes
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    before = _sqlite_snapshot(folder / "autospik.db")
    one_line(invoke("study", "run", "c10.toml", "--device", "cpu"), "is truncated or not")
    assert _sqlite_snapshot(folder / "autospik.db") == before
    assert not (folder / "runs").exists()


# --- storage URLs ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "fix"),
    [
        ("sqlite:/x.db", "did you mean sqlite:////x.db (absolute) or sqlite:///x.db (relative)?"),
        ("sqlite:x.db", "did you mean sqlite:///x.db? (a file path follows three slashes)"),
        ("sqlite://x.db", "did you mean sqlite:///x.db?"),
        ("x.db", "did you mean sqlite:///x.db?"),
        ("sqlite://", "in-memory database"),
        (
            "postgres://autospik:secret@127.0.0.1:5432/autospik",
            "the scheme is postgresql://, e.g. postgresql+psycopg2://autospik:***@127.0.0.1",
        ),
    ],
)
def test_storage_url_typos_get_their_fix(folder, url: str, fix: str) -> None:
    for command in (
        ("study", "create", "tiny.toml"),
        ("study", "run", "tiny.toml"),
        ("study", "show", "tiny"),
        ("study", "export", "tiny"),
        ("study", "list"),
        ("subnet", "export", "tiny", "--trial", "0", "--out", "m.pt"),
    ):
        line = one_line(invoke(*command, "--storage", url), "is not usable", fix)
        assert "secret" not in line
    assert files(folder) == ["tiny.toml"]


def _sqlite_snapshot(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def test_a_read_only_sqlite_storage_is_named_as_such(folder) -> None:
    """SQLite opened read-only (its URI form): writes fail with the cause, not Optuna's text."""
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    before = _sqlite_snapshot(folder / "autospik.db")
    ro = "sqlite:///file:autospik.db?mode=ro&uri=true"
    other = folder / "other.toml"
    other.write_text(tiny_study("other"))
    line = one_line(
        invoke("study", "create", "other.toml", "--storage", ro), "the storage is read-only"
    )
    assert "attempt to write a readonly database" in line and "max length" not in line
    assert invoke("study", "show", "tiny", "--storage", ro).exit_code == 0  # reading works
    assert _sqlite_snapshot(folder / "autospik.db") == before


@pytest.fixture
def read_only(folder):
    """Make a file read-only for this process: ``chmod 444``, or ``chattr +i`` for root (which
    ignores modes); skips where neither takes."""
    made: list[Path] = []

    def make(path: Path) -> None:
        path.chmod(0o444)
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
            if done.returncode != 0:
                pytest.skip("running as root and chattr +i is not possible here")
            made.append(path)
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a file read-only for this process")

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_a_read_only_sqlite_file_is_refused_before_anything_is_tried(folder, read_only) -> None:
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    (folder / "other.toml").write_text(tiny_study("other"))
    db = folder / "autospik.db"
    read_only(db)
    before = db.read_bytes()
    for command in (("study", "create", "other.toml"), ("study", "run", "tiny", "-n", "9")):
        one_line(
            invoke(*command),
            "storage sqlite:///autospik.db is read-only: the file autospik.db is read-only; "
            "make it writable or pass another --storage",
        )
    shown = invoke("study", "show", "tiny")
    assert shown.exit_code == 0, shown.output  # reading needs no write access
    assert db.read_bytes() == before
    assert files(folder) == ["autospik.db", "other.toml", "tiny.toml"]


# --- output paths ----------------------------------------------------------------------------
def test_export_to_a_path_that_cannot_be_a_folder(folder) -> None:
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    (folder / "existing.txt").write_text("keep me")
    one_line(
        invoke("study", "export", "tiny", "--out", "existing.txt"),
        "--out existing.txt: a file is in the way (give a folder)",
    )
    one_line(
        invoke("study", "export", "tiny", "--out", "existing.txt/sub"),
        "--out existing.txt/sub: 'existing.txt' is a file, not a folder",
    )
    one_line(
        invoke("study", "export", "tiny", "--out", "/proc/nope"),
        "--out /proc/nope: cannot create folder '/proc/nope'",
    )
    one_line(
        invoke("study", "export", "tiny", "--runs-dir", "/proc/nope"),
        "--runs-dir /proc/nope/tiny: cannot create folder '/proc/nope/tiny'",
    )
    one_line(
        invoke("subnet", "export", "tiny", "--trial", "0", "--out", "m.pt"),
        "study 'tiny' has no trials yet: run 'autospik study run tiny'",
    )
    assert (folder / "existing.txt").read_text() == "keep me"
    assert files(folder) == ["autospik.db", "existing.txt", "tiny.toml"]


def test_file_system_errors_are_one_line() -> None:
    try:
        open("/proc/nope/x", "w")  # noqa: SIM115
    except OSError as exc:
        assert error_line(exc) == "'/proc/nope/x': No such file or directory"
    assert error_line(ValueError("a bug")) is None  # a bug keeps its traceback


# --- checkpoints -----------------------------------------------------------------------------
def test_energy_with_something_that_is_not_a_checkpoint(folder) -> None:
    (folder / "data.json").write_text('{"a": 1}')
    (folder / "empty.pt").write_bytes(b"")
    (folder / "noise.pt").write_bytes(bytes(range(256)) * 4)
    (folder / "dir.pt").mkdir()
    cases = {
        "tiny.toml": "'tiny.toml' is a TOML file, not a checkpoint (checkpoints are the .pt files",
        "data.json": "'data.json' is a JSON file, not a checkpoint",
        "empty.pt": "checkpoint 'empty.pt' is corrupted or truncated (empty: 0 bytes)",
        "noise.pt": "'noise.pt' is not a checkpoint (not a torch zip archive;",
        "dir.pt": "'dir.pt' is a folder, not a checkpoint file",
        "missing.pt": "no checkpoint at 'missing.pt'",
    }
    for name, message in cases.items():
        line = one_line(invoke("energy", ARCH, "--checkpoint", name), message)
        assert "weights_only" not in line


# --- settings that depend on others ----------------------------------------------------------
def _write_cifar10(folder: Path, n: int) -> None:
    """The CIFAR-10 python layout with ``n`` random images per batch file."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, size=n)],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [b"x.png"] * n,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_cases_per_batch": n}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_a_one_epoch_run_derives_its_warmup(folder) -> None:
    """``--epochs 1`` on the reference recipe: the 20-epoch warm-up shrinks instead of failing."""
    from autospikformer.checkpoint_file import load_checkpoint

    _write_cifar10(folder / "cifar", n=4)
    space = folder / "space.toml"
    t, n = TINY_SPACE["transformer"], TINY_SPACE["neuron"]
    space.write_text(
        'name = "tiny"\n[transformer]\n'
        + "".join(f"{k} = [{v[0]}]\n" for k, v in t.items())
        + "[neuron]\n"
        + "".join(f"{k} = [{v[0]}]\n" for k, v in n.items())
    )
    result = invoke(
        "supernet", "train", "--space", str(space), "--dataset", "cifar10", "--data-root",
        "cifar", "--out", "c10", "--epochs", "1", "--batch-size", "8", "--train-samples", "8",
        "--no-augment", "--workers", "0", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = load_checkpoint(folder / "c10" / "supernet.pt")["config"]
    assert (config["epochs"], config["warmup_epochs"], config["lr"]) == (1, 0, 5e-4)
    one_line(
        invoke("supernet", "train", "--space", str(space), "--dataset", "cifar10", "--data-root",
               "cifar", "--out", "c10b", "--epochs", "1", "--warmup-epochs", "3"),
        "warmup_epochs: 3 is not allowed (allowed: 0 <= warmup_epochs <= epochs = 1",
    )  # fmt: skip
    one_line(
        invoke("supernet", "train", "--space", str(space), "--dataset", "cifar10", "--data-root",
               "nowhere", "--out", "c10c", "--epochs", "1"),
        "cifar10: data folder 'nowhere' does not exist",
    )  # fmt: skip
    assert not (folder / "c10b").exists() and not (folder / "c10c").exists()


def _commands(group, path=()):
    """Every command of the CLI with its words (``("study", "run")``...)."""
    import typer.main

    command = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, sub in getattr(command, "commands", {}).items():
        if hasattr(sub, "commands"):
            yield from _commands(sub, (*path, name))
        else:
            yield (*path, name), sub


def test_help_paragraphs_are_wrapped_by_the_terminal_not_the_source() -> None:
    """A docstring's line breaks do not reach ``--help``: each paragraph reads as one line on a
    wide terminal, so an 80-column one wraps it evenly instead of mid-sentence."""
    from autospikformer.cli.common import help_text

    commands = list(_commands(app))
    assert len(commands) >= 12
    for words, command in commands:
        text = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "400"}).output
        lines = {" ".join(line.split()) for line in text.splitlines()}
        for paragraph in (help_text(command.callback.__doc__) or "").split("\n\n"):
            if len(paragraph) < 380:  # a longer one wraps even at 400 columns
                assert paragraph in lines, (words, paragraph)


# --- usage errors: typer's parsing, one line --------------------------------------------------
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("study", "run", "x", "--trials", "0"), "--trials: 0 is not allowed (allowed: an integer >= 1)"),
        (("study", "run", "x", "--trials", "-3"), "--trials: -3 is not allowed (allowed: an integer >= 1)"),
        (("study", "run", "x", "--trials", "many"), "--trials: 'many' is not allowed (allowed: an integer >= 1)"),
        (("study", "run", "x", "--workers", "0"), "--workers: 0 is not allowed (allowed: an integer >= 1)"),
        (("study", "list", "--format", "xml"), "--format: 'xml' is not allowed (allowed: table, csv, json)"),
        (("study", "dashboard", "x", "--port", "99999"), "--port: 99999 is not allowed (allowed: an integer from 1 to 65535)"),
        (("study", "list", "--bogus"), "autospik study list: no such option --bogus (allowed: --storage, --format, --help)"),
        (("study", "list", "--stor"), "autospik study list: no such option --stor; did you mean --storage?"),
        (("study", "run"), "autospik study run: missing argument STUDY; see 'autospik study run --help'"),
        (("study", "bogus"), "autospik study: no such command 'bogus' (commands: create, run, export, compare, list, show, dashboard, validate); see 'autospik study --help'"),
        (("study", "run", "x", "--trials"), "option --trials needs a value"),
        (("subnet", "train", "x", "--trial", "abc"), "--trial: 'abc' is not allowed (allowed: an integer)"),
        (("subnet", "train"), "autospik subnet train: missing argument STUDY; see 'autospik subnet train --help'"),
        (("study", "validate", "x", "--workers", "0"), "--workers: 0 is not allowed (allowed: an integer >= 1)"),
        (("study", "validate", "x", "--top", "few"), "--top: 'few' is not allowed (allowed: an integer)"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_with_what_is_allowed(folder, args, line) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # no usage box, no help
    assert result.stderr == f"error: {line}\n"
    assert files(folder) == ["tiny.toml"]


def test_no_arguments_still_shows_the_help() -> None:
    result = invoke("study")
    assert "Usage:" in result.output and "error:" not in result.output


# --- text reaches the terminal as written -----------------------------------------------------
MARKUP = ("x[/y]", "x[bold]y", "x[/]", "[red]x")


def test_markup_shaped_input_is_printed_as_given(folder) -> None:
    """Names, paths and URLs that look like rich markup: one line holding them verbatim, in
    every command that echoes its input (no MarkupError traceback, no word lost)."""
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    for text in MARKUP:
        cases = [
            (("study", "show", text), f"no study named '{text}'"),
            (("study", "run", text), f"no study named '{text}'"),
            (("study", "export", text), f"no study named '{text}'"),
            (("study", "dashboard", text), f"no study named '{text}'"),
            (("study", "compare", text, "tiny", "--out", "cmp"), f"'{text}'"),
            (("subnet", "export", text, "--trial", "0", "--out", "m.pt"), f"'{text}'"),
            (("analyze", "redundancy", text, "--trial", "0", "--out", "r"), f"'{text}'"),
            (("energy", text), f"cannot read architecture '{text}'"),
            (("energy", f"@{text}.json"), f"architecture file '{text}.json' does not exist"),
            (("study", "list", "--storage", f"sqlite:///{text}.db"), f"{text}.db"),
            (("study", "create", f"{text}.toml"), f"{text}.toml"),
            (("supernet", "eval", "--study", text, "--arch", "largest"), f"'{text}'"),
            (("supernet", "train", "--space", text, "--dataset", "digits", "--out", "s"), text),
            (("subnet", "train", text, "--trial", "0"), f"no study named '{text}'"),
            (("study", "validate", text), f"no study named '{text}'"),
        ]
        for args, fragment in cases:
            one_line(invoke(*args), fragment)
    # a study file whose path and content hold markup: echoed as they are, then registered
    (folder / "a[").mkdir()
    (folder / "a[" / "b].toml").write_text(tiny_study("m[/b]x"))
    one_line(invoke("study", "create", "a[/b].toml"), "b].toml: study.name: 'm[/b]x' is not")
    (folder / "a[" / "b].toml").write_text(tiny_study("mb"))
    result = invoke("study", "create", "a[/b].toml", "--storage", "sqlite:///a[.db")
    assert result.exit_code == 0, result.output
    assert "study mb created in sqlite:///a[.db" in " ".join(result.stdout.split())


def test_messages_keep_their_bracketed_words(folder) -> None:
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    (folder / "other.toml").write_text(tiny_study("tiny").replace("trials = 5", "trials = 6"))
    one_line(
        invoke("study", "create", "other.toml"),
        "differs in: search.trials); give the study another [study] name",
    )
    one_line(
        invoke("study", "list", "--storage", "postgresql+pg8000://u@127.0.0.1:1/db"),
        "pip install 'autospikformer[postgres]'",
    )
    text = runner.invoke(app, ["energy", "--help"], env={"COLUMNS": "300"}).output
    assert "A TOML file whose [energy] table sets the model" in text


# --- wording ----------------------------------------------------------------------------------
def test_architecture_inputs_say_where_they_came_from(folder) -> None:
    (folder / "noise.json").write_bytes(bytes(range(128, 256)) * 4)
    (folder / "half.json").write_text('{"depth": 1')
    (folder / "arch").mkdir()
    expected = "give a JSON object or the compact form 'd2-e48-t4:r3,4:h4,4:th1,1.2:tau2,3'"
    one_line(
        invoke("energy", "{not json"),
        "architecture '{not json' is not valid JSON (Expecting property name enclosed in "
        f"double quotes, line 1 column 2); {expected}",
    )
    one_line(invoke("energy", "@half.json"), "architecture file 'half.json' is not valid JSON")
    one_line(invoke("energy", "@noise.json"), "architecture file 'noise.json' is not a text file")
    one_line(invoke("energy", "@arch"), "architecture file 'arch' is a folder; give a JSON file")
    one_line(invoke("energy", "@nope.json"), "architecture file 'nope.json' does not exist")
    (folder / "noise.toml").write_bytes(bytes(range(128, 256)) * 4)
    one_line(
        invoke("energy", ARCH, "--constants", "noise.toml"),
        "--constants: noise.toml is not a text file (give a TOML file)",
    )


def test_a_runs_folder_that_cannot_be_made_is_refused_before_anything(folder) -> None:
    (folder / "taken").write_text("a file")
    one_line(
        invoke("study", "run", "tiny.toml", "--runs-dir", "/proc/nope", "--device", "cpu"),
        "--runs-dir /proc/nope: cannot create folder '/proc/nope/tiny' (No such file or directory)",
    )
    one_line(
        invoke("study", "run", "tiny.toml", "--runs-dir", "taken/runs", "--device", "cpu"),
        "--runs-dir taken/runs: cannot create folder 'taken/runs/tiny' ('taken' is a file, not a "
        "folder); choose a writable place",
    )
    assert files(folder) == ["taken", "tiny.toml"]  # no storage, no probe folder left


def test_validating_a_study_without_enough_trials_says_to_search_first(folder) -> None:
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    one_line(
        invoke("study", "validate", "tiny"),
        "study 'tiny' has 0 complete trials; the ranking check needs at least 3: run "
        "'autospik study run tiny' first",
    )


def test_a_file_that_is_not_a_study_file_is_named_as_such(folder) -> None:
    (folder / "x.txt").write_text("not a study")
    for command in ("create", "run"):
        one_line(
            invoke("study", command, "x.txt"),
            "'x.txt' is not a study file: study files are TOML files ending in .toml",
        )
    one_line(
        invoke("study", "create", "nope"),
        "no study named 'nope': no study storage at autospik.db, and it is no study file "
        "(.toml) or preset (presets: ",
    )
    assert files(folder) == ["tiny.toml", "x.txt"]


def test_a_dashboard_port_in_use_is_refused_before_it_says_it_listens(folder) -> None:
    import socket

    assert invoke("study", "create", "tiny.toml").exit_code == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = invoke("study", "dashboard", "tiny", "--port", str(port))
    assert result.stdout == ""  # neither our line nor the server's "Listening on"
    one_line(result, f"--port {port}: cannot listen on 127.0.0.1:{port} (Address already in use)")
    one_line(
        invoke("study", "dashboard", "tiny", "--host", "nowhere.invalid"), "--host nowhere.invalid"
    )


def test_a_damaged_sqlite_storage_is_found_before_stage_1(folder) -> None:
    """A page of the trials' values overwritten: the study still opens, so before the check
    it was found only after training the supernet (with a supernet.lock left behind)."""
    assert invoke("study", "create", "tiny.toml").exit_code == 0
    db = folder / "autospik.db"
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    for i in range(40):
        study.add_trial(optuna.trial.create_trial(values=[0.5 + i / 100, 1.0 + i], params={}))
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name='trial_values'")
        page = root.fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with open(db, "r+b") as handle:  # a leaf page's header: free-space pointers that lie
        handle.seek((page - 1) * size)
        handle.write(b"\x0d\x00\x00\x00\x05" + b"\xff" * 40)
    line = one_line(
        invoke("study", "run", "tiny", "--device", "cpu"),
        "storage sqlite:///autospik.db is damaged: SQLite",
    )
    assert "nothing was trained or changed" in line and "sqlite3 autospik.db .recover" in line
    assert files(folder) == ["autospik.db", "tiny.toml"]  # no runs/, no supernet.lock


# --- the commands that train a chosen subnet: paths as given, bad places in one line ------------
def test_subnet_train_and_study_validate_print_paths_as_given(searched, tmp_path) -> None:  # noqa: F811
    """A runs folder or output folder named like markup is printed verbatim (no ``\\[``, no
    lost word), and a place that cannot be written is one line naming the option."""
    common = ("-s", searched["url"], "--supernet", searched["supernet"], "--device", "cpu",
              "--no-progress")  # fmt: skip
    trial = "3"
    one_line(
        invoke("subnet", "train", "s", "--trial", trial, "--model", "m[/b].pt", *common),
        "--model m[/b].pt: no such file",
    )
    one_line(
        invoke("subnet", "train", "s", "--trial", trial, "--out", "/proc/nope", *common),
        "--out /proc/nope",
    )
    one_line(invoke("study", "validate", "s", "--out", "/proc/nope", *common), "--out /proc/nope")
    runs = tmp_path / "r[/b]"
    result = invoke("subnet", "train", "s", "--trial", trial, "--epochs", "1", "--train-samples", "64", "--runs-dir",
                    str(runs), *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"model: {runs}/s/" in result.stdout and "\\[" not in result.stdout, result.stdout
    assert "study s, trial 3:" in result.stdout
    out = tmp_path / "v[bold]x"
    result = invoke("study", "validate", "s", "--top", "3", "--epochs", "1", "--train-samples", "64", "--runs-dir",
                    str(runs), "--out", str(out), *common)  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"scatter: {out / 'validation.html'}" in text and "\\[" not in text, text
    assert (out / "validation.csv").is_file()
