"""A folder study's data, recorded with the study: its classes, per-class counts, input size and
normalisation, and every later run's folder checked against them.

- The study's first run (:func:`record_study_data`, before stage 1) looks at the folder: lists
  it, opens every image's header (a file Pillow cannot read is refused before anything trains),
  computes the normalisation from the training images unless the study file gives it, and stores
  all of it as the record :data:`~autospikformer.study.storage.DATA_ATTR`. The folder is only
  read, never written (it may be read-only).
- Every later run, worker and command works from the record
  (:func:`~autospikformer.study.storage.load_study` attaches it to the configuration): the
  normalisation is not computed again, and a folder whose classes or counts differ from the
  record is refused with one line.
"""

from __future__ import annotations

import optuna

from autospikformer.data.folders import FolderInfo, check_headers, folder_info, list_folder
from autospikformer.study.config import StudyConfig
from autospikformer.study.storage import DATA_ATTR, StudyError, set_study_record, study_record


def record_study_data(
    study: optuna.Study, config: StudyConfig, *, data_root: str | None = None,
    progress: bool = False,
) -> StudyConfig:  # fmt: skip
    """``config`` with its study's data record, made now on the study's first run (a folder
    study; any other is returned as it is); a folder that differs from the record is refused."""
    if config.folder is None:
        return config
    root = data_root or config.data_root
    recorded = study_record(study, DATA_ATTR)
    if recorded is not None:
        info = config.with_data_record(recorded).data_info
        assert isinstance(info, FolderInfo)
        change = info.change(list_folder(info.name, root))
        if change is not None:
            raise StudyError(
                f"study {config.name!r} was searched on another {info.name}: '{root}' changed "
                f"since the study recorded it ({change}); restore the folder, or give the new "
                "one a study of its own (another [study] name)"
            )
        return config.with_data_record(recorded)
    listing = list_folder(config.folder.kind, root)
    info = folder_info(config.folder, root, listing)
    if not info.event_based:
        from autospikformer.data.imagefolder import normalized  # torch: only now

        if config.folder.img_size is not None:  # else folder_info has read every header
            check_headers(listing, progress)
        info = normalized(info, listing, progress=progress)
    record = info.to_record()
    set_study_record(study, DATA_ATTR, record)
    return config.with_data_record(record)
