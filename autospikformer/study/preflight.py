"""What a study run needs, checked before anything is registered, locked or trained.

``autospik study run FILE`` registers a new study only when the run can start: the device
exists, the data set's files are where the study says, and the supernet checkpoint (given with
``--supernet``, or the one stage 1 would resume) fits the study. A command that fails these
checks leaves the storage and the runs folder as they were.
"""

from __future__ import annotations

from pathlib import Path

from autospikformer.checkpoint import load_supernet_checkpoint
from autospikformer.data.loading import check_dataset
from autospikformer.device import resolve_device
from autospikformer.study.config import StudyConfig
from autospikformer.study.holdout import check_supernet_holdout
from autospikformer.study.run_folder import check_run_folder
from autospikformer.study.storage import StudyError
from autospikformer.study.supernet_stage import supernet_path
from autospikformer.training.trainer import SupernetTrainer


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
) -> None:
    """Raise the one-line error a run of ``config`` would meet at its start, or return.

    Checks the device name (:func:`resolve_device`), the data set's files (names only), and
    the supernet: ``checkpoint`` must be a verified supernet of the study's space and data set
    that never trained on the study's validation split; without one, a checkpoint already at
    ``<runs-dir>/<study>/supernet.pt`` must be one that stage 1 can resume (same space, data
    set, settings and held-out split). With ``storage``, the runs folder must not belong to a
    study of another storage (:mod:`autospikformer.study.run_folder`).
    """
    resolve_device(device)
    info = config.data_info_at(data_root)  # a folder not yet recorded: looked at here
    check_dataset(info, data_root or config.data_root)
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
