"""Event folders: recordings of your own event camera, or of any set converted to spikingjelly's
layout, ``events_np/{train,test}/<class>/*.npz`` with ``t, x, y, p`` per file.

The folder declares its sensor size (``data.sensor_size``); every event must lie on it (the frame
cache checks each file once as it reads it). Frames are the sensor's, or pooled down to
``data.img_size``: an event at ``(x, y)`` counts in pixel ``(x * W' // W, y * H' // H)`` of the
smaller grid, a sum over each block of sensor pixels (exact 2x2 sum-pooling from 128 to 64). The
frames themselves come from the project's frame cache (``data/frames.py``: each file read once,
integer counts, every T integrated from it), as for CIFAR10-DVS and DVS128 Gesture.
"""

from __future__ import annotations

from pathlib import Path

from autospikformer.data.base import DatasetInfo
from autospikformer.data.folders import FolderInfo, checked_listing


def is_event_folder(info: DatasetInfo) -> bool:
    return isinstance(info, FolderInfo) and info.event_based


def folder_samples(
    info: FolderInfo, root: str | Path, train: bool
) -> tuple[Path, list[tuple[str, int]], list[str]]:
    """The folder (which holds ``events_np``), one split's ``(events file, label)`` list and
    the class names; refused when the folder differs from ``info``."""
    listing = checked_listing(info, root)
    return Path(root), listing.train if train else listing.test, list(listing.classes)


def sensor_size(info: FolderInfo) -> tuple[int, int]:
    """The declared sensor's ``(height, width)``."""
    assert info.settings.sensor_size is not None
    return info.settings.sensor_size


def outside_advice(info: DatasetInfo) -> str:
    """What to do about a file with events outside the sensor."""
    if is_event_folder(info):
        return "check data.sensor_size (the camera's [height, width]) and the file"
    return "the file is damaged; delete 'events_np' and run again"


def damaged_advice(info: DatasetInfo) -> str:
    """What to do about an events file that cannot be read: yours to replace, or spikingjelly's
    conversion to redo."""
    if is_event_folder(info):
        return "replace the file (a .npz with t, x, y, p) or remove it"
    return "the events_np folder is damaged: delete it and run again"
