"""A study's runs folder (``<runs-dir>/<study>/``: its supernet, its export) belongs to one study.

Two studies of one name in two storages (or a study deleted and created again) would otherwise
share the folder: one would reuse the other's supernet and overwrite its export. The folder
records its owner in :data:`OWNER_FILE` the first time a study runs in it (the storage, the
study's name and its uid); any other study is refused with one line naming both. A folder
written before owners were recorded is taken over only when it holds no supernet, or the one
the study recorded.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import optuna

from autospikformer.study.storage import (
    SUPERNET_ATTR,
    UID_ATTR,
    StudyError,
    describe_url,
    set_study_record,
    sqlite_path,
    study_record,
)

OWNER_FILE = "study.json"


def storage_identity(url: str) -> str:
    """The storage as one string: a SQLite file by its absolute path, any other database by its
    URL without the password (two spellings of one SQLite file are one storage)."""
    path = sqlite_path(url)
    return f"sqlite:///{path.resolve()}" if path is not None else describe_url(url)


def study_uid(study: optuna.Study) -> str:
    """The study's uid (recorded at creation; a study created before uids gets one now)."""
    uid = study_record(study, UID_ATTR)
    if not isinstance(uid, str):
        uid = uuid.uuid4().hex
        set_study_record(study, UID_ATTR, uid)
    return uid


def _owner(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _refuse(folder: Path, owner: dict[str, Any], name: str, url: str) -> StudyError:
    return StudyError(
        f"{folder} holds the outputs of study {owner.get('study')!r} of "
        f"{owner.get('storage')}, not of study {name!r} of {storage_identity(url)}: give this "
        "study its own folder with --runs-dir (e.g. --runs-dir runs-other)"
    )


def check_run_folder(folder: Path, name: str, url: str) -> None:
    """Before a study is registered: refuse a folder another storage's study owns."""
    owner = _owner(folder)
    if owner is not None and (
        owner.get("storage") != storage_identity(url) or owner.get("study") != name
    ):
        raise _refuse(folder, owner, name, url)


def claim_run_folder(folder: Path, study: optuna.Study, url: str) -> list[Path]:
    """Make ``folder`` the study's (recording its owner), or refuse with one line when another
    study owns it or left a supernet there that this study did not record. Returns what it
    created (the owner file, then the folders it made, deepest first), for
    :func:`release_run_folder`."""
    name = study.study_name
    mine = {"study": name, "storage": storage_identity(url), "uid": study_uid(study)}
    owner = _owner(folder)
    if owner is not None:
        if owner != mine:
            raise _refuse(folder, owner, name, url)
        return []
    supernet = folder / "supernet.pt"
    recorded = study_record(study, SUPERNET_ATTR) or {}
    if supernet.is_file() and not _same_file(supernet, recorded.get("sha256")):
        raise StudyError(
            f"{folder} holds a supernet that study {name!r} of {mine['storage']} did not record "
            "(another study's): give this study its own folder with --runs-dir, or move that "
            "folder away"
        )
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_FILE).write_text(json.dumps(mine, indent=2) + "\n")
    return [folder / OWNER_FILE, *made]


def release_run_folder(created: list[Path]) -> None:
    """Undo :func:`claim_run_folder` for a study withdrawn after a failed start: its owner
    file, and the folders the claim made when they hold nothing else (a failed command leaves
    no trace in the runs folder)."""
    if not created:
        return
    created[0].unlink(missing_ok=True)
    if len(created) > 1:  # the folder is new: stage 1's lock file goes too when it is alone
        lock = created[1] / "supernet.lock"
        if lock.exists() and [p.name for p in created[1].iterdir()] == [lock.name]:
            lock.unlink(missing_ok=True)
    for folder in created[1:]:
        with contextlib.suppress(OSError):  # not empty: something else is there now
            folder.rmdir()


def _same_file(path: Path, sha256: str | None) -> bool:
    from autospikformer.study.supernet_stage import file_sha256

    return sha256 is not None and file_sha256(path) == sha256
