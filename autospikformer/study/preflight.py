"""What a study run needs, checked before anything is registered, locked or trained.

``autospik study run FILE`` registers a new study only when the run can start: the device
exists, the data set's files are where the study says, the supernet checkpoint (given with
``--supernet``, or the one stage 1 would resume) fits the study, the runs folder can be
written, and a SQLite storage passes SQLite's integrity check (a damaged file would otherwise
be found only after stage 1, which can train for hours). A command that fails these checks
leaves the storage and the runs folder as they were (no ``supernet.lock`` either).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile
from pathlib import Path

from autospikformer.checkpoint import load_supernet_checkpoint
from autospikformer.data.loading import check_dataset
from autospikformer.device import resolve_device
from autospikformer.study.config import StudyConfig
from autospikformer.study.holdout import check_supernet_holdout
from autospikformer.study.run_folder import check_run_folder
from autospikformer.study.storage import StudyError, describe_url, sqlite_path
from autospikformer.study.supernet_stage import supernet_path
from autospikformer.training.trainer import SupernetTrainer


def check_storage(url: str) -> None:
    """Refuse a SQLite storage file that SQLite's ``integrity_check`` finds damaged (or that
    is no database at all); other storages, and a file not made yet, pass."""
    path = sqlite_path(url)
    if path is None or not path.is_file():
        return
    problem = None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
        if rows != ["ok"]:
            found = [
                line.strip()
                for row in rows
                for line in row.splitlines()
                if line.strip() and not line.startswith("***")
            ] or rows
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            problem = f"SQLite's integrity check reports '{found[0]}'{more}"
    except sqlite3.DatabaseError as exc:  # not a database, or damaged beyond reading
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            return  # opening is the storage's own check
        problem = f"SQLite cannot read it ({exc})"
    if problem is not None:
        raise StudyError(
            f"storage {describe_url(url)} is damaged: {problem}; nothing was trained or "
            f"changed. Restore {path} from a backup, or recover what it holds with "
            f"'sqlite3 {path} .recover | sqlite3 recovered.db'"
        )


def check_runs_folder(runs_dir: str | Path, config: StudyConfig) -> None:
    """Refuse a ``--runs-dir`` where the study's folder cannot be made. Making that folder and
    removing it again would race with a command starting at the same moment (it could remove
    the folder the other just made), so a uniquely named folder is made and removed in the
    nearest folder that exists: nothing of anyone else's is touched."""
    folder = Path(runs_dir) / config.name
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"'{existing}' is a file, not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=".autospik-check-", dir=existing))
    except OSError as exc:
        raise StudyError(
            f"--runs-dir {runs_dir}: cannot create folder '{folder}' ({exc.strerror or exc}); "
            "choose a writable place"
        ) from None


def _few(classes: list[str] | None) -> str:
    """A class list for a message: the set's own, or the first few names of a folder's."""
    if not classes:
        return "its own"
    return ", ".join(classes[:3]) + (f" ... ({len(classes)})" if len(classes) > 3 else "")


def check_run_inputs(
    config: StudyConfig,
    *,
    device: str = "auto",
    data_root: str | None = None,
    checkpoint: str | Path | None = None,
    runs_dir: str | Path = "runs",
    storage: str | None = None,
    writes_runs: bool = True,
) -> None:
    """Raise the one-line error a run of ``config`` would meet at its start, or return.

    Checks the storage (:func:`check_storage`, when its URL is given), the device name
    (:func:`resolve_device`), the data set's files (names only), the runs folder when the run
    writes there (``writes_runs``: stage 1, the export), and the supernet: ``checkpoint`` must
    be a verified supernet of the study's space and data set that never trained on the
    study's validation split; without one, a checkpoint already at
    ``<runs-dir>/<study>/supernet.pt`` must be one that stage 1 can resume (same space, data
    set, settings and held-out split). With ``storage``, the runs folder must not belong to a
    study of another storage (:mod:`autospikformer.study.run_folder`).
    """
    if storage is not None:
        check_storage(storage)
    resolve_device(device)
    info = config.data_info_at(data_root)  # a folder not yet recorded: looked at here
    check_dataset(info, data_root or config.data_root)
    if writes_runs:
        check_runs_folder(runs_dir, config)
    if storage is not None:  # the runs folder is not another storage's study's
        check_run_folder(Path(runs_dir) / config.name, config.name, storage)
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise StudyError(f"--supernet {path}: no such file")
        _, meta = load_supernet_checkpoint(path, space=config.space)
        classes = list(getattr(info, "classes", ())) or None
        if meta.get("dataset") != config.dataset or meta.get("classes") != classes:
            raise StudyError(
                f"--supernet {path} was trained on data set {meta.get('dataset')!r} (classes "
                f"{_few(meta.get('classes'))}), the study {config.name!r} searches "
                f"{config.dataset!r} (classes {_few(classes)}): pass a supernet of its data"
            )
        check_supernet_holdout(meta, config, path)
        return
    path = supernet_path(config, runs_dir)
    if path.exists():
        SupernetTrainer(  # refuses a checkpoint it could not resume; writes nothing
            space=config.space,
            dataset=info,
            data_root=data_root or config.data_root,
            out_dir=path.parent,
            config=config.train,
            device=device,
            resume=True,
            progress=False,
            holdout=config.holdout,
        )
