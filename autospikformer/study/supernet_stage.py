"""Stage 1 of a study: its one supernet, trained once and pinned by its digest.

- **One supernet per study** at ``<runs-dir>/<study>/supernet.pt``. Stage 1 trains it under a
  file lock, so several invocations on one machine train it once.
- The first worker records the checkpoint's SHA-256 in the study (:data:`SUPERNET_ATTR`); a
  worker whose checkpoint differs (another machine that trained its own) is refused, because its
  accuracies would not be comparable.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import optuna

from autospikformer.checkpoint import load_supernet_checkpoint
from autospikformer.checkpoint_file import CheckpointError, remove_stale_temporaries
from autospikformer.study.config import StudyConfig
from autospikformer.study.holdout import check_supernet_holdout
from autospikformer.study.storage import (
    DEFAULT_RUNS_DIR,
    SUPERNET_ATTR,
    StudyError,
    set_study_record,
    study_record,
)
from autospikformer.training.trainer import train_supernet


def supernet_path(config: StudyConfig, runs_dir: str | Path) -> Path:
    return Path(runs_dir) / config.name / "supernet.pt"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held while the block runs (several local invocations train once).

    When the block fails before anything but the lock was written into a folder the lock
    created, the folder goes again: a failed command leaves no trace in the runs folder.
    """
    made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except BaseException:
        if made and [p.name for p in path.parent.iterdir()] == [path.name]:
            path.unlink(missing_ok=True)
            for folder in made:
                with contextlib.suppress(OSError):  # not empty: someone else's now
                    folder.rmdir()
        raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prepare_supernet(
    study: optuna.Study,
    config: StudyConfig,
    *,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    checkpoint: str | Path | None = None,
    data_root: str | None = None,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Stage 1: the study's trained supernet, training (or resuming) it when it is missing.

    An explicit ``checkpoint`` is used as is (never trained). Training is refused when the study
    already recorded a supernet: a second machine must use the first one's checkpoint. The
    checkpoint is checked against the study's space and its digest against the recorded one.
    """
    recorded = study_record(study, SUPERNET_ATTR)
    path = Path(checkpoint) if checkpoint is not None else supernet_path(config, runs_dir)
    if checkpoint is not None and not path.is_file():
        raise StudyError(f"--supernet {path}: no such file")
    if checkpoint is None:
        with _file_lock(path.parent / "supernet.lock"):
            remove_stale_temporaries(path)
            if recorded is not None and not path.is_file():
                raise StudyError(
                    f"study {config.name!r} was searched with a supernet trained on "
                    f"{recorded.get('host', '?')} ({recorded.get('path', '?')}), missing here at "
                    f"{path}: copy that file here, or pass --supernet or --runs-dir"
                )
            path = train_supernet(
                space=config.space,
                dataset=config.data_info_at(data_root),
                data_root=data_root or config.data_root,
                out_dir=path.parent,
                config=config.train,
                device=device,
                resume=True,
                progress=progress,
                holdout=config.holdout,
            )
    try:
        _, meta = load_supernet_checkpoint(path, space=config.space)
    except CheckpointError:
        raise
    except (ValueError, RuntimeError, KeyError) as exc:  # verified, yet not a usable supernet
        raise StudyError(
            f"supernet checkpoint {path} cannot be loaded ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); delete it to train it again"
        ) from None
    check_supernet_holdout(meta, config, path)
    digest = file_sha256(path)
    if recorded is None:
        set_study_record(
            study,
            SUPERNET_ATTR,
            {"sha256": digest, "host": socket.gethostname(), "path": str(path.resolve())},
        )
    elif recorded.get("sha256") != digest:
        raise StudyError(
            f"{path} is not the supernet study {config.name!r} was searched with (sha256 "
            f"{digest[:12]} here, {str(recorded.get('sha256'))[:12]} recorded, from "
            f"{recorded.get('host', '?')}:{recorded.get('path', '?')})"
        )
    return path


def searched_supernet(
    study: optuna.Study,
    config: StudyConfig,
    *,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    checkpoint: str | Path | None = None,
) -> Path:
    """The supernet checkpoint the study's trials were evaluated with, found on this machine.

    ``checkpoint`` when given, else ``<runs_dir>/<study>/supernet.pt``, else the path stage 1
    recorded; it must have the digest the study recorded, so what is evaluated again is what
    the trials saw. Never trains.
    """
    recorded = study_record(study, SUPERNET_ATTR) or {}
    if checkpoint is not None:
        candidates = [Path(checkpoint)]
    else:
        candidates = [supernet_path(config, runs_dir)]
        if recorded.get("path"):
            candidates.append(Path(recorded["path"]))
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        shown = " or ".join(str(p) for p in candidates)
        raise StudyError(
            f"no supernet checkpoint of study {config.name!r} at {shown}"
            + ("" if checkpoint is not None else ": pass --supernet or --runs-dir")
        )
    if recorded.get("sha256") and file_sha256(path) != recorded["sha256"]:
        raise StudyError(
            f"{path} is not the supernet study {config.name!r} was searched with (its sha256 "
            f"differs from the one recorded, from {recorded.get('host', '?')}:"
            f"{recorded.get('path', '?')})"
        )
    return path
