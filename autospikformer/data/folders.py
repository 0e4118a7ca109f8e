"""Your own data: a folder of class folders, its settings, what a look at it finds (the listing;
the images' headers, read by a pool of threads), and the check that it is still the folder a
study recorded.

Two layouts (``docs/data.md``):

- an image folder (``dataset = "imagefolder"``): ``train/<class>/*`` and ``test/<class>/*``
  (``val/<class>/*`` is taken as the test split when there is no ``test/``, as ImageNet ships
  it), any image format Pillow reads;
- an event folder (``dataset = "eventfolder"``): ``events_np/{train,test}/<class>/*.npz``, each
  file one recording's events ``t, x, y, p``, the layout spikingjelly writes.

Classes are the training split's folder names in sorted order; the test split must have the same
ones. A :class:`FolderInfo` is the :class:`~autospikformer.data.base.DatasetInfo` of such a
folder: its settings, classes, per-class counts and (image folders) the normalisation. A study
records it (``study/data_record.py``) and every later opening compares the folder with it, so a
changed folder is refused instead of silently searched on other data. No torch here (Pillow
reads the headers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from autospikformer.checks import check_choice, check_int, check_number, refuse
from autospikformer.data.base import (
    DataError,
    DatasetInfo,
    ImageSize,
    canonical_size,
    image_hw,
    require_root,
)

IMAGE_FOLDER, EVENT_FOLDER = "imagefolder", "eventfolder"
CHANNELS = {"rgb": 3, "grayscale": 1}
DEFAULT_NORM_SAMPLES = 5000  # training images the normalisation is computed from, at most
#: The ``[data]`` settings of each kind of folder (beside ``dataset``, ``root``, ``val_fraction``).
FOLDER_KEYS = {
    IMAGE_FOLDER: ("img_size", "channels", "mean", "std", "norm_samples"),
    EVENT_FOLDER: ("sensor_size", "img_size"),
}
ALL_FOLDER_KEYS = ("img_size", "channels", "sensor_size", "mean", "std", "norm_samples")
EVENTS_DIR = "events_np"
DECODE_THREADS = min(8, os.cpu_count() or 1)  # Pillow decodes without holding the GIL


def _pair(where: str, value: Any) -> tuple[int, int]:
    """``[height, width]`` of integers >= 1."""
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        refuse(where, value, "[height, width], two integers >= 1")
    return int(value[0]), int(value[1])


def _size(where: str, value: Any) -> ImageSize:
    """An input size the token-grid rule serves (``model/shapes.py``)."""
    from autospikformer.model.shapes import SIZE_RULE, num_pools

    try:
        num_pools(value)
    except ValueError:
        refuse(where, value, SIZE_RULE)
    return canonical_size(value)


def _stats(where: str, value: Any, channels: int, std: bool) -> tuple:
    """A per-channel mean or std of pixels scaled to [0, 1]."""
    what = "numbers in (0, 1]" if std else "numbers in [0, 1]"
    if not isinstance(value, (list, tuple)) or len(value) != channels:
        refuse(where, value, f"a list of {channels} {what}, one per channel")
    for v in value:
        check_number(where, v, lo=0.0, hi=1.0, lo_open=std)
    return tuple(float(v) for v in value)


@dataclass(frozen=True, kw_only=True)
class FolderSettings:
    """The ``[data]`` settings of a folder study (``docs/data.md``), validated.

    ``img_size``: the input size (image folders: resize and crop to it; left out, every image
    must already have one size; event folders: pool the sensor's frames down to it).
    ``channels``: ``"rgb"`` or ``"grayscale"``. ``mean`` / ``std``: the normalisation, per
    channel, of pixels in [0, 1]; left out, it is computed from up to ``norm_samples`` training
    images. ``sensor_size``: the event camera's ``[height, width]``.
    """

    kind: str
    img_size: ImageSize | None = None
    channels: str = "rgb"
    sensor_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    norm_samples: int = DEFAULT_NORM_SAMPLES

    def __post_init__(self) -> None:
        """Check every setting (``data.<key>: <value> is not allowed (allowed: ...)``, a
        ValueError) and keep sizes and statistics in one form (tuples, a square size an int)."""
        check_choice("data.dataset", self.kind, FOLDER_KEYS)
        if self.kind == EVENT_FOLDER:
            self._check_events()
        else:
            self._check_images()

    def _set(self, **values: Any) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def _check_images(self) -> None:
        if self.sensor_size is not None:
            raise ValueError(
                f"data.sensor_size: not a setting of an {IMAGE_FOLDER} (allowed: "
                f"{', '.join(FOLDER_KEYS[IMAGE_FOLDER])})"
            )
        check_choice("data.channels", self.channels, CHANNELS)
        if (self.mean is None) != (self.std is None):
            given = "mean" if self.std is None else "std"
            raise ValueError(f"data.{given}: give mean and std together, or neither (computed)")
        count = CHANNELS[self.channels]
        self._set(
            img_size=None if self.img_size is None else _size("data.img_size", self.img_size),
            mean=None if self.mean is None else _stats("data.mean", self.mean, count, False),
            std=None if self.std is None else _stats("data.std", self.std, count, True),
        )
        check_int("data.norm_samples", self.norm_samples, minimum=1)

    def _check_events(self) -> None:
        images_only = {"channels": self.channels != "rgb", "mean": self.mean is not None,
                       "std": self.std is not None,
                       "norm_samples": self.norm_samples != DEFAULT_NORM_SAMPLES}  # fmt: skip
        for key, given in images_only.items():
            if given:
                raise ValueError(
                    f"data.{key}: not a setting of an {EVENT_FOLDER} (allowed: "
                    f"{', '.join(FOLDER_KEYS[EVENT_FOLDER])})"
                )
        if self.sensor_size is None:
            raise ValueError(
                "data.sensor_size: missing (allowed: [height, width] of the event camera)"
            )
        sensor = _pair("data.sensor_size", self.sensor_size)
        size = sensor if self.img_size is None else _size("data.img_size", self.img_size)
        height, width = image_hw(size)
        if height > sensor[0] or width > sensor[1]:
            refuse("data.img_size", size, f"at most the sensor's {sensor[0]}x{sensor[1]}")
        self._set(sensor_size=sensor, img_size=canonical_size(size))

    @classmethod
    def from_table(
        cls, kind: str, table: dict[str, Any], *, error: type[Exception] = ValueError
    ) -> FolderSettings:
        """The settings of a ``[data]`` table (its folder keys only), each checked and named
        ``data.<key>`` in the message (raised as ``error``)."""
        check_choice("data.dataset", kind, FOLDER_KEYS, error=error)
        allowed = FOLDER_KEYS[kind]
        for key in table:
            if key not in allowed:
                raise error(
                    f"data.{key}: not a setting of an {kind} (allowed: {', '.join(allowed)})"
                )
        try:
            return cls(kind=kind, **table)
        except ValueError as exc:
            raise error(str(exc)) from None

    @property
    def in_channels(self) -> int:
        return 2 if self.kind == EVENT_FOLDER else CHANNELS[self.channels]

    def to_dict(self) -> dict[str, Any]:
        """The settings as a study file gives them (JSON-safe; only its kind's keys)."""
        values = {
            "img_size": self.img_size, "channels": self.channels, "mean": self.mean,
            "std": self.std, "norm_samples": self.norm_samples, "sensor_size": self.sensor_size,
        }  # fmt: skip
        if self.kind == EVENT_FOLDER and image_hw(self.img_size) == self.sensor_size:
            values["img_size"] = None  # the default: the sensor's size
        out = {k: values[k] for k in FOLDER_KEYS[self.kind] if values[k] is not None}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


@dataclass(frozen=True)
class FolderListing:
    """What is in a folder: classes in sorted order and each split's ``(file, label)`` list,
    in class order, then file-name order."""

    classes: tuple[str, ...]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    test_split: str  # the test split's folder: "test", or "val" for an image folder

    def counts(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Images (recordings) per class: ``(train, test)``."""
        out = []
        for samples in (self.train, self.test):
            per_class = [0] * len(self.classes)
            for _, label in samples:
                per_class[label] += 1
            out.append(tuple(per_class))
        return out[0], out[1]


@dataclass(frozen=True)
class FolderInfo(DatasetInfo):
    """A folder data set: its shape (a :class:`DatasetInfo`), settings, classes, per-class
    counts and, for images, the normalisation in use (None: computed when it is read)."""

    settings: FolderSettings = field(default_factory=lambda: FolderSettings(IMAGE_FOLDER))
    classes: tuple[str, ...] = ()
    counts: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
    test_split: str = "test"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalization: str = ""  # where mean and std come from, for people

    def to_record(self) -> dict[str, Any]:
        """What a study records about its folder (JSON-safe)."""
        size = self.img_size
        return {
            "dataset": self.name,
            "classes": list(self.classes),
            "counts": {"train": list(self.counts[0]), "test": list(self.counts[1])},
            "test_split": self.test_split,
            "img_size": list(size) if isinstance(size, tuple) else size,
            "in_channels": self.in_channels,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "normalization": self.normalization,
        }

    @classmethod
    def from_record(cls, settings: FolderSettings, record: dict[str, Any]) -> FolderInfo:
        """The folder a study recorded (:meth:`to_record`), without looking at it."""
        blank = cls(
            name=settings.kind,
            num_classes=1,
            in_channels=settings.in_channels,
            img_size=settings.img_size or record["img_size"],
            event_based=settings.kind == EVENT_FOLDER,
            settings=settings,
        )
        return blank.with_record(record)

    def with_record(self, record: dict[str, Any]) -> FolderInfo:
        """This folder as ``record`` (:meth:`to_record`) describes it."""
        from dataclasses import replace

        counts = record["counts"]
        mean, std = record.get("mean"), record.get("std")
        return replace(
            self,
            num_classes=len(record["classes"]),
            img_size=canonical_size(record["img_size"]),
            classes=tuple(record["classes"]),
            counts=(tuple(counts["train"]), tuple(counts["test"])),
            test_split=record.get("test_split", "test"),
            mean=None if mean is None else tuple(float(v) for v in mean),
            std=None if std is None else tuple(float(v) for v in std),
            normalization=str(record.get("normalization", "")),
        )

    def change(self, listing: FolderListing) -> str | None:
        """How ``listing`` differs from this folder's classes and counts (None: it does not)."""
        if listing.classes != self.classes:
            added = sorted(set(listing.classes) - set(self.classes))
            gone = sorted(set(self.classes) - set(listing.classes))
            parts = [f"class {c!r} added" for c in added[:2]]
            parts += [f"class {c!r} gone" for c in gone[:2]]
            return ", ".join(parts) or "the classes are in another order"
        for split, recorded, found in zip(
            ("train", self.test_split), self.counts, listing.counts(), strict=True
        ):
            if recorded != found:
                label = next(
                    i for i, (a, b) in enumerate(zip(recorded, found, strict=True)) if a != b
                )
                return (
                    f"{split}/{self.classes[label]}: {found[label]} files now, {recorded[label]} "
                    f"recorded; {sum(found)} in {split}/ now, {sum(recorded)} recorded"
                )
        return None


def _split_dir(kind: str, root: Path) -> tuple[Path, Path | None, str]:
    """The training split's folder, the test split's (None: missing) and its name."""
    base = root / EVENTS_DIR if kind == EVENT_FOLDER else root
    names = ("test",) if kind == EVENT_FOLDER else ("test", "val")
    for name in names:
        if (base / name).is_dir():
            return base / "train", base / name, name
    return base / "train", None, "test"


def _layout(kind: str) -> str:
    if kind == EVENT_FOLDER:
        return f"{EVENTS_DIR}/train/<class>/*.npz and {EVENTS_DIR}/test/<class>/*.npz"
    return "train/<class>/* and test/<class>/* (or val/<class>/*), images Pillow reads"


def _class_files(kind: str, split: Path, keep: Callable[[Path], bool]) -> dict[str, list[str]]:
    """Each class folder of ``split`` and its files ``keep`` accepts, sorted; an empty class
    folder is a DataError. (``os.scandir`` knows an entry's type without a ``stat`` of each of
    ImageNet's 1.3 million files.)"""
    with os.scandir(split) as entries:
        classes = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"{kind}: '{split}' holds no class folder; expected {_layout(kind)}")
    out = {}
    for name in classes:
        with os.scandir(split / name) as entries:
            files = sorted(
                e.path for e in entries
                if e.is_file() and not e.name.startswith(".") and keep(Path(e.name))
            )  # fmt: skip
        if not files:
            what = "no .npz events file" if kind == EVENT_FOLDER else "no image file"
            raise DataError(
                f"{kind}: class folder '{split / name}' holds {what}; add its samples or "
                "remove the folder"
            )
        out[name] = files
    return out


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """The file name endings of every format Pillow reads (``.png``, ``.jpg``, ``.webp``...)."""
    from PIL import Image

    Image.init()
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in image_extensions()


def thread_map(func: Callable[[Any], Any], items: Sequence[Any], what: str, progress: bool):
    """``func`` over ``items`` in a pool of threads, results in order (a bar with ``progress``)."""
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        results: Iterable[Any] = pool.map(func, items)
        if progress:
            from rich.progress import track

            results = track(results, description=what, total=len(items))
        return list(results)


def unreadable(path: str, exc: Exception, doing: str) -> DataError:
    return DataError(
        f"imagefolder: '{path}' cannot be {doing} ({type(exc).__name__}: {exc}); replace the "
        "file or remove it"
    )


def header_size(path: str) -> tuple[int, int]:
    """``(height, width)`` from an image file's header (a file Pillow cannot open: DataError)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception as exc:  # Pillow raises many kinds for a damaged file
        raise unreadable(path, exc, "read as an image") from None
    return height, width


def check_headers(listing: FolderListing, progress: bool = False) -> list[tuple[int, int]]:
    """Every image's ``(height, width)``; the first file Pillow cannot open is a DataError."""
    paths = [p for p, _ in (*listing.train, *listing.test)]
    return thread_map(header_size, paths, "reading the image headers", progress)


def common_size(listing: FolderListing) -> ImageSize:
    """The one size of every image of a folder that gives no ``img_size``; images of several
    sizes, or a size the token-grid rule cannot serve, are a DataError."""
    from autospikformer.model.shapes import SIZE_RULE, num_pools

    paths = [p for p, _ in (*listing.train, *listing.test)]
    sizes = check_headers(listing)
    first = sizes[0]
    for path, size in zip(paths, sizes, strict=True):
        if size != first:
            raise DataError(
                f"imagefolder: images of several sizes ('{paths[0]}' is {first[1]}x{first[0]}, "
                f"'{path}' {size[1]}x{size[0]}): give data.img_size to resize and crop them to "
                "one size"
            )
    try:
        num_pools(first)
    except ValueError:
        raise DataError(
            f"imagefolder: the images are {first[1]}x{first[0]} (allowed: {SIZE_RULE}); give "
            "data.img_size to resize them"
        ) from None
    return canonical_size(first)


def list_folder(kind: str, root: str | Path | None) -> FolderListing:
    """The classes and samples of a folder; a missing folder or split, an empty class folder
    or test classes other than the training ones are one DataError each."""
    folder = require_root(kind, root)
    if not folder.is_dir():
        raise DataError(f"{kind}: data folder '{folder}' does not exist (data.root, --data-root)")
    train_dir, test_dir, test_name = _split_dir(kind, folder)
    if not train_dir.is_dir():
        raise DataError(f"{kind}: no training split '{train_dir}'; expected {_layout(kind)}")
    if test_dir is None:
        wanted = "test/" if kind == EVENT_FOLDER else "test/ or val/"
        raise DataError(
            f"{kind}: no test split beside '{train_dir}' (expected {wanted} with the same class "
            "folders); move part of each class there"
        )
    keep: Callable[[Path], bool] = is_image_file
    if kind == EVENT_FOLDER:
        keep = lambda p: p.suffix == ".npz"  # noqa: E731
    train = _class_files(kind, train_dir, keep)
    test = _class_files(kind, test_dir, keep)
    if list(test) != list(train):
        extra = sorted(set(test) - set(train)) or sorted(set(train) - set(test))
        where = test_dir if set(extra) <= set(test) else train_dir
        raise DataError(
            f"{kind}: the class folders of '{train_dir}' and '{test_dir}' differ ('{extra[0]}' "
            f"only in '{where}'); both splits need the same classes"
        )
    classes = tuple(train)

    def samples(files: dict[str, list[str]]) -> list[tuple[str, int]]:
        return [(f, label) for label, name in enumerate(classes) for f in files[name]]

    return FolderListing(classes, samples(train), samples(test), test_name)


def folder_info(
    settings: FolderSettings, root: str | Path | None, listing: FolderListing | None = None
) -> FolderInfo:
    """The :class:`FolderInfo` of the folder at ``root`` (``listing``: its listing, when made
    already); the image size is read from the images' headers when the settings give none. The
    normalisation is the given one, or None."""
    listing = listing or list_folder(settings.kind, root)
    size = settings.img_size
    if size is None:  # an image folder of one fixed size: read it from the headers
        size = common_size(listing)
    given = settings.mean is not None
    return FolderInfo(
        name=settings.kind,
        num_classes=len(listing.classes),
        in_channels=settings.in_channels,
        img_size=size,
        event_based=settings.kind == EVENT_FOLDER,
        settings=settings,
        classes=listing.classes,
        counts=listing.counts(),
        test_split=listing.test_split,
        mean=settings.mean,
        std=settings.std,
        normalization="given in the study file" if given else "",
    )


def checked_listing(info: FolderInfo, root: str | Path | None) -> FolderListing:
    """The folder's listing, refused (one DataError) when it differs from ``info``'s classes
    and counts: the folder changed since it was recorded."""
    listing = list_folder(info.name, root)
    change = info.change(listing)
    if change is not None:
        raise DataError(
            f"{info.name}: the folder '{root}' changed since it was recorded ({change}); "
            "restore it, or register a new study for the new folder"
        )
    return listing
