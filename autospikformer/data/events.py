"""The named event sets (CIFAR10-DVS, DVS128 Gesture, N-MNIST, N-Caltech101) prepared through
spikingjelly from local archives, without any download.

spikingjelly prepares a DVS set in stages under one folder: ``download/`` (the archives) ->
``extract/`` (the raw event files) -> ``events_np/`` (one ``.npz`` of events per sample). Its own
preparation starts from ``download/`` and, when an archive is missing or fails its MD5, tries to
download it (no host is reachable here) and leaves a ``.building`` marker behind that blocks every
later run. So this module runs those stages itself with spikingjelly's own converters, starting
from the latest stage present, and turns every missing piece into one ``DataError``; spikingjelly
then lists the samples. Frames are not spikingjelly's per-T caches: ``data/frames.py`` reads
every events file once into one compact cache and integrates frames for any T from it.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from spikingjelly.datasets import (
    CIFAR10DVS,
    CIFAR10DVS_CLASS_NAMES,
    NMNIST,
    DVS128Gesture,
    NCaltech101,
)

from autospikformer.data.base import DataError, DatasetInfo

_SUBFOLDER = {
    "cifar10dvs": "CIFAR10DVS", "dvs128": "DVS128Gesture", "nmnist": "NMNIST",
    "ncaltech101": "NCaltech101",
}  # fmt: skip
_CLASS = {
    "cifar10dvs": CIFAR10DVS, "dvs128": DVS128Gesture, "nmnist": NMNIST,
    "ncaltech101": NCaltech101,
}  # fmt: skip
_TITLE = {
    "cifar10dvs": "CIFAR10-DVS", "dvs128": "DVS128 Gesture", "nmnist": "N-MNIST",
    "ncaltech101": "N-Caltech101",
}  # fmt: skip
_ARCHIVES = {  # the downloaded files that carry the data (the rest are read-me files)
    "cifar10dvs": 10, "dvs128": 1, "nmnist": 2, "ncaltech101": 1,
}  # fmt: skip
_STAGES = ("download", "extract", "events_np")
TRAIN_FRACTION = 0.9  # CIFAR10-DVS has no official split: 9:1 per class, in file-name order
UNSPLIT = ("cifar10dvs", "ncaltech101")  # no official split: split 9:1 per class
NCALTECH101_CLASSES = 101  # 100 object classes and BACKGROUND_Google


def _where_to_get(name: str, folder: Path) -> str:
    """spikingjelly's manual download instructions, from its own resource list."""
    resources = _CLASS[name].resource_url_md5()
    if name == "cifar10dvs":
        urls = ", ".join(f"{fname} {url}" for fname, url, _ in resources)
        return f"download the 10 class archives by hand ({urls}) into '{folder / 'download'}'"
    if name in ("nmnist", "ncaltech101"):
        files = " and ".join(fname for fname, _, _ in resources[: _ARCHIVES[name]])
        return (
            f"download {files} by hand from Garrick Orchard's {_TITLE[name]} page "
            f"({resources[0][1]}) into '{folder / 'download'}'"
        )
    return (
        f"download DvsGesture.tar.gz by hand from IBM's DVS128 Gesture page ({resources[0][1]}) "
        f"into '{folder / 'download'}'"
    )


def _layout(name: str) -> str:
    if name == "cifar10dvs":
        return (
            "download/<class>.zip for the 10 classes, or extract/<class>/*.aedat, "
            "or events_np/<class>/*.npz, with <class> in " + "|".join(CIFAR10DVS_CLASS_NAMES)
        )
    if name == "nmnist":
        return (
            "download/Train.zip and Test.zip, or extract/{Train,Test}/<0..9>/*.bin, "
            "or events_np/{train,test}/<0..9>/*.npz"
        )
    if name == "ncaltech101":
        return (
            "download/Caltech101.zip, or extract/Caltech101/<class>/*.bin for the 101 classes, "
            "or events_np/<class>/*.npz"
        )
    return (
        "download/DvsGesture.tar.gz, or extract/DvsGesture/ (trials_to_train.txt, "
        "trials_to_test.txt, userNN_<lighting>.aedat and userNN_<lighting>_labels.csv), "
        "or events_np/{train,test}/<0..10>/*.npz"
    )


def _find_folder(name: str, root: Path) -> Path:
    """``root/<CIFAR10DVS|DVS128Gesture>`` (a shared data root) or ``root`` itself."""
    candidates = [root / _SUBFOLDER[name], root]
    for folder in candidates:
        if any((folder / stage).is_dir() for stage in _STAGES):
            return folder
    searched = " and ".join(f"'{c}'" for c in candidates)
    target = root if root.name == _SUBFOLDER[name] else root / _SUBFOLDER[name]
    raise DataError(
        f"{_TITLE[name]} not found (searched {searched}): expected {_layout(name)}; "
        f"{_where_to_get(name, target)}"
    )


def _extract_archives(name: str, folder: Path) -> None:
    """``download/`` -> ``extract/`` with spikingjelly's extractor, after our own file checks."""
    from torchvision.datasets.utils import check_integrity

    download = folder / "download"
    wanted = _CLASS[name].resource_url_md5()[: _ARCHIVES[name]]
    for fname, _, md5 in wanted:
        path = download / fname
        if not path.is_file():
            raise DataError(
                f"{_TITLE[name]}: '{path}' is missing (found no 'extract' or 'events_np' "
                f"folder either); expected {_layout(name)}; {_where_to_get(name, folder)}"
            )
        if not check_integrity(str(path), md5):
            raise DataError(
                f"{_TITLE[name]}: '{path}' fails its MD5 check ({md5}): the download is "
                f"incomplete or corrupt; {_where_to_get(name, folder)}"
            )
    extract = folder / "extract"
    extract.mkdir()
    try:
        _CLASS[name].extract_downloaded_files(download, extract)
    except Exception as exc:
        shutil.rmtree(extract, ignore_errors=True)
        raise DataError(f"{_TITLE[name]}: extracting '{download}' failed: {exc}") from exc


def _check_bin_tree(name: str, top: Path, classes: int | None) -> None:
    """``top/<class>/*.bin`` (ATIS recordings) and nothing else, which spikingjelly's converter
    reads entry by entry; ``classes``: how many class folders there must be."""
    where = f"expected {_layout(name)}; {_where_to_get(name, top.parent.parent)}"
    if not top.is_dir():
        raise DataError(f"{_TITLE[name]}: no folder '{top}'; {where}")
    entries = sorted(top.iterdir())
    strays = [e for e in entries if not e.is_dir()]
    strays += [f for d in entries if d.is_dir() for f in d.iterdir() if f.suffix != ".bin"]
    if strays:
        raise DataError(
            f"{_TITLE[name]}: unexpected '{strays[0]}' (spikingjelly converts every entry of "
            f"'{top}' as a class folder of .bin recordings); remove it"
        )
    empty = [d for d in entries if not any(d.iterdir())]
    if empty or (classes is not None and len(entries) != classes):
        found = f"'{empty[0]}' is empty" if empty else f"{len(entries)} class folders found"
        raise DataError(f"{_TITLE[name]}: {found} in '{top}'; {where}")


def _check_extracted(name: str, extract: Path) -> None:
    """Every file spikingjelly's converter will open exists, so it cannot fail half-way."""
    if name == "nmnist":
        for split in ("Train", "Test"):
            _check_bin_tree(name, extract / split, 10)
        return
    if name == "ncaltech101":
        _check_bin_tree(name, extract / "Caltech101", NCALTECH101_CLASSES)
        return
    if name == "cifar10dvs":
        for entry in sorted(extract.iterdir()):
            if entry.name not in CIFAR10DVS_CLASS_NAMES:
                raise DataError(
                    f"CIFAR10-DVS: unexpected '{entry}' (spikingjelly converts every entry of "
                    f"'{extract}' as a class folder); keep only the 10 class folders there"
                )
        for cn in CIFAR10DVS_CLASS_NAMES:
            if not any((extract / cn).glob("*.aedat")):
                raise DataError(
                    f"CIFAR10-DVS: no '{extract / cn}/*.aedat' files; expected {_layout(name)}; "
                    f"{_where_to_get(name, extract.parent)}"
                )
        return
    gesture = extract / "DvsGesture"
    needed = [gesture / "trials_to_train.txt", gesture / "trials_to_test.txt"]
    for listing in needed[:2]:
        if listing.is_file():
            for line in listing.read_text().splitlines():
                if line.strip():
                    aedat = gesture / line.strip()
                    needed += [aedat, gesture / f"{aedat.stem}_labels.csv"]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise DataError(
            f"DVS128 Gesture: missing '{missing[0]}' ({len(missing)} file(s) missing in all); "
            f"expected {_layout(name)}; {_where_to_get(name, extract.parent)}"
        )


def _prepare_events(name: str, folder: Path) -> None:
    """Bring ``folder`` to the ``events_np`` stage, from whichever earlier stage is present."""
    raw = folder / "events_np"
    marker = folder / "events_np.building"
    if marker.exists():  # a conversion killed half-way (the lock rules out one in progress)
        if not any((folder / stage).is_dir() for stage in ("extract", "download")):
            raise DataError(
                f"{_TITLE[name]}: an earlier conversion into '{raw}' was interrupted and neither "
                f"'extract' nor 'download' is there to redo it; {_where_to_get(name, folder)}"
            )
        warnings.warn(f"redoing '{raw}', left half-converted by an earlier run", stacklevel=4)
        shutil.rmtree(raw, ignore_errors=True)
        marker.unlink()
    if raw.is_dir():
        return  # spikingjelly, too, takes an existing events_np as complete
    extract = folder / "extract"
    if not extract.is_dir():
        _extract_archives(name, folder)
    _check_extracted(name, extract)
    marker.touch()
    raw.mkdir()
    try:
        _CLASS[name].create_raw_from_extracted(extract, raw)
    except Exception as exc:
        shutil.rmtree(raw, ignore_errors=True)
        raise DataError(
            f"{_TITLE[name]}: converting '{extract}' failed ({type(exc).__name__}: {exc}); the "
            f"event files are damaged: {_where_to_get(name, folder)}"
        ) from exc
    finally:
        marker.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One process at a time prepares a data set folder (parallel study workers start together).

    With the lock held, a ``.building`` marker can only be left over from a killed run.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, spikingjelly's markers still catch collisions
        yield
        return
    with (folder / ".autospikformer.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _split_per_class(samples: list[tuple[str, int]], train: bool) -> list[tuple[str, int]]:
    """The first ceil(90 %) of each class (in file-name order) trains, the rest tests.

    The same split as spikingjelly's ``split_to_train_test_set(0.9, dataset, 10)`` used by the
    Spikformer reference, computed from the file list instead of reading every sample.
    """
    by_class: dict[int, list[tuple[str, int]]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    out: list[tuple[str, int]] = []
    for label in sorted(by_class):
        items = by_class[label]
        cut = math.ceil(len(items) * TRAIN_FRACTION)
        out += items[:cut] if train else items[cut:]
    return out


def event_samples(info: DatasetInfo, root: Path, train: bool) -> tuple[Path, list, list[str]]:
    """The prepared folder of a named event set, one split's ``(events file, label)`` list and
    the class names, in spikingjelly's order; brings the folder to the ``events_np`` stage first.

    spikingjelly lists the files (its event datasets read nothing until indexed). CIFAR10-DVS
    and N-Caltech101 are split 9:1 per class in file-name order; DVS128 Gesture and N-MNIST
    have their official splits.
    """
    name = info.name
    folder = _find_folder(name, root)
    with folder_lock(folder):
        _prepare_events(name, folder)
    try:
        if name in UNSPLIT:
            listing = _CLASS[name](str(folder), data_type="event")
        else:
            listing = _CLASS[name](str(folder), train=train, data_type="event")
    except Exception as exc:
        raise DataError(
            f"{_TITLE[name]}: listing '{folder / 'events_np'}' failed ({type(exc).__name__}: "
            f"{exc}); if it is damaged, delete it and run again"
        ) from exc
    if name == "cifar10dvs":
        classes = list(CIFAR10DVS_CLASS_NAMES)
        samples = [(p, classes.index(Path(p).parent.name)) for p, _ in listing.samples]
        return folder, _split_per_class(samples, train), classes
    if name == "ncaltech101":
        classes = list(listing.classes)  # folder names, sorted as torchvision sorts them
        if len(classes) != info.num_classes:
            raise DataError(
                f"N-Caltech101: '{folder / 'events_np'}' holds {len(classes)} class folders, "
                f"not {info.num_classes}; delete it and run again from 'extract' or 'download'"
            )
        return folder, _split_per_class(list(listing.samples), train), classes
    # spikingjelly's folders are named 0..10 and sorted as text (0, 1, 10, 2, ...): take the
    # class number from the folder name so label k is gesture k+1 of the data set's csv (and
    # digit k of N-MNIST)
    classes = [str(k) for k in range(info.num_classes)]
    return folder, [(p, int(Path(p).parent.name)) for p, _ in listing.samples], classes


def read_events(path: str | Path) -> dict[str, np.ndarray]:
    """One sample's events (``t``, ``x``, ``y``, ``p``) from its ``events_np`` file."""
    with np.load(path) as data:
        return {key: data[key] for key in ("t", "x", "y", "p")}


def frame_size(name: str) -> tuple[int, int]:
    """Height and width of the set's sensor (spikingjelly's ``get_H_W``)."""
    return _CLASS[name].get_H_W()
