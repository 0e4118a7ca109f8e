"""CIFAR10-DVS and DVS128 Gesture through spikingjelly's dataset classes, without any download.

spikingjelly prepares a DVS set in stages under one folder: ``download/`` (the archives) ->
``extract/`` (the raw event files) -> ``events_np/`` (one ``.npz`` of events per sample) ->
``frames_number_{T}_split_by_number/`` (events integrated into T frames, a cache per T). Its own
preparation starts from ``download/`` and, when an archive is missing or fails its MD5, tries to
download it (no host is reachable here) and leaves a ``.building`` marker behind that blocks every
later run. So this module runs the early stages itself with spikingjelly's own converters,
starting from the latest stage present, and turns every missing piece into one ``DataError``;
spikingjelly then integrates the frames exactly as it always does.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from spikingjelly.datasets import CIFAR10DVS, CIFAR10DVS_CLASS_NAMES, DVS128Gesture
from spikingjelly.datasets.utils import load_npz_frames
from torch.utils.data import Dataset

from autospikformer.data.base import DataError, DatasetInfo

_SUBFOLDER = {"cifar10dvs": "CIFAR10DVS", "dvs128": "DVS128Gesture"}
_CLASS = {"cifar10dvs": CIFAR10DVS, "dvs128": DVS128Gesture}
_TITLE = {"cifar10dvs": "CIFAR10-DVS", "dvs128": "DVS128 Gesture"}
_STAGES = ("download", "extract", "events_np")
TRAIN_FRACTION = 0.9  # CIFAR10-DVS has no official split: 9:1 per class, in file-name order


class EventFrames(Dataset):
    """Integrated frames on disk: yields ``(frames float32 [T, 2, H, W], label int)``."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str], transform=None) -> None:
        self.samples = samples
        self.targets = [label for _, label in samples]
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        frames = torch.from_numpy(load_npz_frames(path))
        if self.transform is not None:
            frames = self.transform(frames)
        return frames, label


class EventAugment:
    """Our train-time policy for event frames (the paper and SPEC give none).

    A random translation of the whole clip by up to ``max_shift`` pixels (zeros fill the gap),
    the same for every time step, and, where ``flip`` is set, a random horizontal flip. The flip
    is for CIFAR10-DVS only: in DVS128 Gesture it would turn a left-hand gesture into a
    right-hand one, or clockwise into counter-clockwise, and so change the label.
    """

    def __init__(self, flip: bool, max_shift: int) -> None:
        self.flip = flip
        self.max_shift = max_shift

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self.flip and bool(torch.rand(()) < 0.5):
            frames = frames.flip(-1)
        s = self.max_shift
        dy, dx = (int(v) for v in torch.randint(-s, s + 1, (2,)))
        if dx == 0 and dy == 0:
            return frames
        h, w = frames.shape[-2:]
        out = torch.zeros_like(frames)
        out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = frames[
            ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        return out


def _where_to_get(name: str, folder: Path) -> str:
    """spikingjelly's manual download instructions, from its own resource list."""
    resources = _CLASS[name].resource_url_md5()
    if name == "cifar10dvs":
        urls = ", ".join(f"{fname} {url}" for fname, url, _ in resources)
        return f"download the 10 class archives by hand ({urls}) into '{folder / 'download'}'"
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
    wanted = _CLASS[name].resource_url_md5()
    if name == "dvs128":
        wanted = wanted[:1]  # only DvsGesture.tar.gz carries data
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


def _check_extracted(name: str, extract: Path) -> None:
    """Every file spikingjelly's converter will open exists, so it cannot fail half-way."""
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
def _folder_lock(folder: Path) -> Iterator[None]:
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


def _integrate_frames(name: str, folder: Path, train: bool, time_steps: int):
    """spikingjelly's own frame integration and cache (one folder per T), errors as DataError."""
    frames_dir = folder / f"frames_number_{time_steps}_split_by_number"
    marker = frames_dir.with_name(frames_dir.name + ".building")
    if marker.exists():  # a killed build (the lock rules out one in progress): it is our cache
        warnings.warn(f"rebuilding '{frames_dir}', left half-built by an earlier run", stacklevel=4)
        shutil.rmtree(frames_dir, ignore_errors=True)
        marker.unlink()
    existed = frames_dir.exists()
    kwargs = {"data_type": "frame", "frames_number": time_steps, "split_by": "number"}
    try:
        if name == "cifar10dvs":
            return CIFAR10DVS(str(folder), **kwargs)
        return DVS128Gesture(str(folder), train=train, **kwargs)
    except Exception as exc:
        if not existed:  # remove our half-built cache so that the next run starts clean
            shutil.rmtree(frames_dir, ignore_errors=True)
            marker.unlink(missing_ok=True)
        raise DataError(
            f"{_TITLE[name]}: building T={time_steps} frames under '{frames_dir}' failed "
            f"({type(exc).__name__}: {exc}); if '{folder / 'events_np'}' is damaged, delete it "
            "and run again"
        ) from exc


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


def build_event_dataset(
    info: DatasetInfo, root: Path, train: bool, augment: bool, time_steps: int
) -> EventFrames:
    """One split of a DVS set, integrated into ``time_steps`` frames by event count."""
    name = info.name
    folder = _find_folder(name, root)
    with _folder_lock(folder):
        _prepare_events(name, folder)
        base = _integrate_frames(name, folder, train, time_steps)
    if name == "cifar10dvs":
        classes = list(CIFAR10DVS_CLASS_NAMES)
        samples = [(p, classes.index(Path(p).parent.name)) for p, _ in base.samples]
        samples = _split_per_class(samples, train)
    else:
        # spikingjelly's folders are named 0..10 and sorted as text (0, 1, 10, 2, ...): take the
        # gesture number from the folder name so label k is gesture k+1 of the data set's csv
        classes = [str(k) for k in range(info.num_classes)]
        samples = [(p, int(Path(p).parent.name)) for p, _ in base.samples]
    transform = None
    if augment:
        transform = EventAugment(flip=name == "cifar10dvs", max_shift=info.img_size // 10)
    return EventFrames(samples, classes, transform)
