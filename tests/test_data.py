"""Data sets: every loader reads files these tests write in the sets' exact on-disk formats."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from event_files import (
    CIFAR10_NAMES,
    CLASS_SIZES,
    expected_frames,
    sample_events,
    write_aedat3,
    write_cifar10dvs_extract,
)

from autospikformer.data.base import DATASETS, DataError, dataset_info
from autospikformer.data.events import read_events
from autospikformer.data.images import CIFAR_MEAN, CIFAR_STD, digits_split_indices
from autospikformer.data.loading import build_dataset, build_frames, make_loader, subset

# --------------------------------------------------------------------------- writers


def _py2(value: object) -> bytes:
    """One value in the pickle opcodes Python 2's cPickle wrote the CIFAR archives with."""
    if isinstance(value, bytes):  # a Python 2 ``str``
        if len(value) < 256:
            return b"U" + bytes([len(value)]) + value
        return b"T" + struct.pack("<i", len(value)) + value
    if isinstance(value, int):
        return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)
    if isinstance(value, list):
        return b"](" + b"".join(_py2(v) for v in value) + b"e"
    if isinstance(value, np.ndarray):  # numpy 1.x: _reconstruct + (version, shape, dtype, ...)
        assert value.dtype == np.uint8
        dtype = (
            b"cnumpy\ndtype\n" + _py2(b"u1") + b"K\x00K\x01\x87R"
            + b"(K\x03" + _py2(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        )  # fmt: skip
        shape = b"(" + b"".join(_py2(int(d)) for d in value.shape) + b"t"
        return (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
            + _py2(b"b") + b"\x87R(K\x01" + shape + dtype + b"\x89"
            + _py2(value.tobytes()) + b"tb"
        )  # fmt: skip
    raise TypeError(type(value))


def _dump(path: Path, obj: dict) -> None:
    """A protocol-2 pickle of a dict with Python 2 ``str`` keys, like the official files."""
    body = b"".join(_py2(k) + _py2(v) for k, v in obj.items())
    path.write_bytes(b"\x80\x02}(" + body + b"u.")


def write_cifar10(folder: Path, n: int = 6, seed: int = 0) -> dict[str, tuple[np.ndarray, list]]:
    """The python-version layout: five train batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for fname in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        _dump(
            folder / fname,
            {
                b"batch_label": fname.encode(),
                b"labels": labels,
                b"data": data,
                b"filenames": [f"img_{fname}_{i}.png".encode() for i in range(n)],
            },
        )
        written[fname] = (data, labels)
    _dump(
        folder / "batches.meta",
        {b"num_cases_per_batch": n, b"label_names": [s.encode() for s in CIFAR10_NAMES],
         b"num_vis": 3072},
    )  # fmt: skip
    return written


def write_cifar100(folder: Path, n: int = 8) -> dict[str, tuple[np.ndarray, list, list]]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for fname in ("train", "test"):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        coarse = [f // 5 for f in fine]
        _dump(
            folder / fname,
            {b"filenames": [b"x.png"] * n, b"batch_label": fname.encode(),
             b"fine_labels": fine, b"coarse_labels": coarse, b"data": data},
        )  # fmt: skip
        written[fname] = (data, fine, coarse)
    _dump(
        folder / "meta",
        {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
         b"coarse_label_names": [f"s{i}".encode() for i in range(20)]},
    )  # fmt: skip
    return written


def expected_cifar_image(row: np.ndarray, name: str) -> torch.Tensor:
    """A CIFAR row (1024 red, 1024 green, 1024 blue, each row-major) as the model input."""
    img = torch.from_numpy(row.reshape(3, 32, 32).astype(np.float32)) / 255.0
    mean = torch.tensor(CIFAR_MEAN[name]).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD[name]).view(3, 1, 1)
    return (img - mean) / std


# --------------------------------------------------------------------------- registry, digits


def test_registry_and_unknown_name() -> None:
    assert dataset_info("cifar100") == DATASETS["cifar100"]
    assert (dataset_info("dvs128").num_classes, dataset_info("dvs128").in_channels) == (11, 2)
    assert dataset_info("digits").img_size == 8 and not dataset_info("digits").event_based
    assert dataset_info("cifar10dvs").event_based
    with pytest.raises(DataError, match="cifar10, cifar100, cifar10dvs, dvs128"):
        dataset_info("mnist")
    with pytest.raises(DataError, match="unknown data set"):
        build_dataset("imagenet", None, train=True)


def test_digits_split_is_fixed_stratified_and_normalized() -> None:
    from sklearn.datasets import load_digits

    train_idx, test_idx = digits_split_indices()
    assert (len(train_idx), len(test_idx)) == (1437, 360)
    assert set(train_idx).isdisjoint(test_idx) and len(set(train_idx) | set(test_idx)) == 1797
    # the split is part of the project's results: it must never change
    assert list(test_idx[:8]) == [0, 2, 4, 17, 21, 26, 28, 31]
    assert hashlib.sha256(np.sort(test_idx).astype("<i8").tobytes()).hexdigest()[:16] == (
        DIGITS_TEST_FINGERPRINT
    )
    digits = load_digits()
    y = digits.target
    for c in range(10):
        n_c = int((y == c).sum())
        assert int((y[test_idx] == c).sum()) in (n_c // 5, n_c // 5 + 1)

    train = build_dataset("digits", None, train=True)
    test = build_dataset("digits", "/nonexistent/ignored", train=False)
    assert (len(train), len(test)) == (1437, 360)
    x0, label0 = train[0]
    assert x0.shape == (1, 8, 8) and x0.dtype == torch.float32 and isinstance(label0, int)
    raw = digits.images.astype(np.float32) / 16.0
    mean, std = raw[train_idx].mean(), raw[train_idx].std()
    k = 17
    expected = torch.from_numpy((raw[test_idx[k]] - mean) / std)
    image, label = test[k]
    torch.testing.assert_close(image[0], expected)
    assert label == int(y[test_idx[k]])
    all_train = torch.stack([train[i][0] for i in range(len(train))])
    assert abs(float(all_train.mean())) < 1e-4 and abs(float(all_train.std()) - 1) < 1e-3
    # no augmentation, even on the train split: reads are identical
    assert torch.equal(train[5][0], build_dataset("digits", None, train=True)[5][0])
    with pytest.warns(UserWarning, match="no augmentation"):
        again = build_dataset("digits", None, train=True, augment=True)
    assert torch.equal(again[5][0], train[5][0])


DIGITS_TEST_FINGERPRINT = "6708f8ccc741cc5f"  # sha256 of the sorted test indices (int64 LE)


# --------------------------------------------------------------------------- CIFAR


def test_cifar10_round_trip_from_archive_folder(tmp_path: Path) -> None:
    written = write_cifar10(tmp_path / "cifar-10-batches-py", n=6)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # parent or the folder itself
        train = build_dataset("cifar10", root, train=True, augment=False)
        test = build_dataset("cifar10", str(root), train=False)  # augment=None: none for test
        assert (len(train), len(test)) == (30, 6)
        assert train.classes == CIFAR10_NAMES
        data3, labels3 = written["data_batch_3"]
        for i in range(6):
            image, label = train[12 + i]  # batches are concatenated in order 1..5
            assert image.shape == (3, 32, 32) and image.dtype == torch.float32
            torch.testing.assert_close(image, expected_cifar_image(data3[i], "cifar10"))
            assert label == labels3[i] and isinstance(label, int)
        data_t, labels_t = written["test_batch"]
        torch.testing.assert_close(test[4][0], expected_cifar_image(data_t[4], "cifar10"))
        assert [test[i][1] for i in range(6)] == labels_t


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    written = write_cifar100(tmp_path / "cifar-100-python")
    train = build_dataset("cifar100", tmp_path, train=True, augment=False)
    test = build_dataset("cifar100", tmp_path, train=False)
    data, fine, coarse = written["test"]
    assert len(train) == 8 and [test[i][1] for i in range(8)] == fine != coarse
    torch.testing.assert_close(test[3][0], expected_cifar_image(data[3], "cifar100"))
    assert train.classes[7] == "c7"


def test_cifar_missing_folder_names_files_and_source(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        build_dataset("cifar10", tmp_path / "nowhere", train=True)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("none of its files", "data_batch_1", "data_batch_5", "test_batch", "batches.meta",
                 "CIFAR-10 python version", "Krizhevsky", str(tmp_path / "nowhere")):  # fmt: skip
        assert part in msg
    with pytest.raises(DataError, match=r"train, test, meta.*CIFAR-100 python version"):
        build_dataset("cifar100", tmp_path, train=False)
    with pytest.raises(DataError, match="pass its path"):
        build_dataset("cifar10", None, train=True)


def test_cifar_missing_truncated_or_malformed_file(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"CIFAR-10: missing data_batch_3 in '.*batches-py'; "):
        build_dataset("cifar10", tmp_path, train=False)  # every file is checked, either split

    write_cifar10(folder)
    blob = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(blob[: len(blob) // 2])
    build_dataset("cifar10", tmp_path, train=True)  # the train split does not read test_batch
    with pytest.raises(DataError, match=r"test_batch' is truncated"):
        build_dataset("cifar10", tmp_path, train=False)

    write_cifar10(folder)
    _dump(folder / "data_batch_2", {b"labels": [1, 2], b"data": np.zeros((2, 3000), np.uint8)})
    with pytest.raises(DataError, match=r"data_batch_2'.*expected \[N, 3072\] uint8"):
        build_dataset("cifar10", tmp_path, train=True)
    _dump(folder / "data_batch_2", {b"labels": [1], b"data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(DataError, match="2 images but 1 labels"):
        build_dataset("cifar10", tmp_path, train=True)


def test_cifar_augmentation_changes_train_not_test(tmp_path: Path) -> None:
    write_cifar10(tmp_path, n=8)
    torch.manual_seed(0)
    plain = build_dataset("cifar10", tmp_path, train=True, augment=False)
    augmented = build_dataset("cifar10", tmp_path, train=True)  # None: reference policy
    changed = 0
    for i in range(len(plain)):
        img, label = augmented[i]
        assert img.shape == (3, 32, 32) and img.dtype == torch.float32 and label == plain[i][1]
        changed += not torch.equal(img, plain[i][0])
    assert changed >= len(plain) // 2
    assert not torch.equal(augmented[0][0], augmented[0][0])  # a fresh draw on every read
    test_a = build_dataset("cifar10", tmp_path, train=False)
    test_b = build_dataset("cifar10", tmp_path, train=False, augment=False)
    for i in range(8):
        assert torch.equal(test_a[i][0], test_b[i][0]) and torch.equal(test_a[i][0], test_a[i][0])


# --------------------------------------------------------------------------- loaders


def test_make_loader_is_seeded_and_subset_is_fixed() -> None:
    data = build_dataset("digits", None, train=False)

    def order(seed: int) -> list[int]:
        loader = make_loader(data, batch_size=64, train=True, seed=seed)
        return [int(v) for _, y in loader for v in y]

    torch.manual_seed(123)
    first = order(7)
    torch.manual_seed(999)  # the global RNG does not matter
    assert order(7) == first and order(8) != first
    assert len(first) == 320  # drop_last for training: 360 // 64 full batches
    test_loader = make_loader(data, batch_size=64, train=False)
    labels = [int(v) for _, y in test_loader for v in y]
    assert labels == data.targets  # test loaders keep order and every sample
    assert len(make_loader(data, batch_size=64, train=True, drop_last=False)) == 6

    a, b, c = subset(data, 50, seed=3), subset(data, 50, seed=3), subset(data, 50, seed=4)
    assert len(a) == 50 and a.indices == b.indices != c.indices
    assert torch.equal(a[0][0], data[a.indices[0]][0])
    assert len(subset(data, 10_000, seed=0)) == len(data)
    with pytest.raises(ValueError):
        subset(data, 0, seed=0)


# --------------------------------------------------------------------------- DVS


@pytest.fixture(scope="module")
def cifar10dvs_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """extract/<class>/cifar10_<class>_<i>.aedat, as the figshare zips unpack."""
    root = tmp_path_factory.mktemp("cifar10dvs")
    return root, write_cifar10dvs_extract(root, CLASS_SIZES, events_per_sample=6)


def test_cifar10dvs_frames_labels_and_split(cifar10dvs_root: tuple[Path, dict]) -> None:
    from spikingjelly.datasets import CIFAR10DVS, split_to_train_test_set
    from spikingjelly.datasets.utils import integrate_events_by_fixed_frames_number

    root, events = cifar10dvs_root
    train = build_dataset("cifar10dvs", root, train=True, augment=False, time_steps=2)
    test = build_dataset("cifar10dvs", root, train=False, time_steps=2)
    assert (root / "events_np" / "cat").is_dir()
    assert (root / "autospikformer_events" / "test" / "index.json").is_file()
    assert not list(root.glob("frames_number_*"))  # no per-T frame folder: one event cache
    assert len(train) + len(test) == sum(CLASS_SIZES)
    for c, size in enumerate(CLASS_SIZES):
        n_train = sum(t == c for t in train.targets)
        assert n_train == -(-9 * size // 10) and sum(t == c for t in test.targets) == size - n_train
    # file-name order: the lexicographically last files of each class are the test samples
    assert [Path(p).stem for p, t in test.samples if t == 2] == ["cifar10_bird_9"]
    assert [Path(p).stem for p, t in test.samples if t == 5] == ["cifar10_dog_8", "cifar10_dog_9"]
    # the same split as spikingjelly's split_to_train_test_set(0.9, ..., 10) (Spikformer's)
    whole = CIFAR10DVS(str(root), data_type="event")
    ref_train, ref_test = split_to_train_test_set(0.9, whole, 10)
    assert [Path(whole.samples[i][0]).stem for i in ref_test.indices] == [
        Path(p).stem for p, _ in test.samples
    ]
    assert len(ref_train) == len(train)
    for ds in (train, test):
        for k in (0, len(ds) - 1):
            frames, label = ds[k]
            stem = Path(ds.samples[k][0]).stem
            assert frames.shape == (2, 2, 128, 128) and frames.dtype == torch.float32
            assert label == CIFAR10_NAMES.index(stem.split("_")[1])
            torch.testing.assert_close(frames, expected_frames(events[stem], 2))
    # every T from the same cache, bit for bit spikingjelly's own integration (T=8 > 6 events:
    # every event in the last frame); the integer counts equal the float frames
    for steps, ds in build_frames("cifar10dvs", root, train=False, time_steps=[1, 3, 5, 8]).items():
        counts, labels = ds.counts()
        assert counts.dtype == torch.uint8 and counts.shape == (len(ds), steps, 2, 128, 128)
        assert labels.tolist() == ds.targets
        for k in range(len(ds)):
            ref = integrate_events_by_fixed_frames_number(
                read_events(ds.samples[k][0]), "number", steps, 128, 128
            )
            assert torch.equal(ds[k][0], torch.from_numpy(ref).float())
            assert torch.equal(counts[k].float(), ds[k][0])


def test_each_events_file_is_read_once(
    cifar10dvs_root: tuple[Path, dict], tmp_path: Path, events_reads: list[str]
) -> None:
    """Every T of both splits, opened many times: each events file is read exactly once."""
    import shutil

    shutil.copytree(cifar10dvs_root[0] / "extract", tmp_path / "extract")
    reads = events_reads
    for _ in range(2):
        for train in (True, False):
            for steps, ds in build_frames(
                "cifar10dvs", tmp_path, train=train, time_steps=[1, 2, 4]
            ).items():
                assert ds[0][0].shape[0] == steps and len(ds.counts([0, 1])[0]) == 2
        build_dataset("cifar10dvs", tmp_path, train=False, time_steps=16)[0]
    files = sorted(str(p) for p in (tmp_path / "events_np").rglob("*.npz"))
    assert len(files) == sum(CLASS_SIZES) and sorted(reads) == files  # once each, in all
    # a changed folder is read again (the cache names the files it was read from)
    gone = Path(files[-1])
    gone.unlink()
    reads.clear()
    test = build_dataset("cifar10dvs", tmp_path, train=False, time_steps=2)
    assert str(gone) not in {p for p, _ in test.samples}
    assert sorted(reads) == sorted(p for p, _ in test.samples)
    # a damaged events file is named, and no half-built cache is left behind
    Path(test.samples[0][0]).write_bytes(b"PK\x03\x04 not an npz")
    with pytest.raises(DataError, match=r"cannot be read .* delete it and run again"):
        build_dataset("cifar10dvs", tmp_path, train=False, time_steps=2)
    assert [p.name for p in (tmp_path / "autospikformer_events").iterdir()] == ["test", "train"]


def test_large_counts_widen_the_integer_frames(tmp_path: Path) -> None:
    """spikingjelly's own events_np stage is read as is; counts above 255 are kept exactly."""
    folder = tmp_path / "DVS128Gesture" / "events_np"
    rng = np.random.default_rng(3)
    written = {}
    for label in range(11):  # torchvision's folder listing wants every class
        (folder / "train" / str(label)).mkdir(parents=True)
        ev = sample_events(rng, 20)
        if label == 3:  # 400 events on one pixel, then 5 on another
            ev = [(i, 17, 9, 1) for i in range(400)] + [(400 + i, 1, 2, 0) for i in range(5)]
        columns = {k: np.array([e[i] for e in ev]) for i, k in enumerate("txyp")}
        np.savez(folder / "train" / str(label) / "user01_led_0.npz", **columns)
        written[label] = ev
    frames = build_frames("dvs128", tmp_path, train=True, augment=False, time_steps=[1, 4])
    one, labels = frames[1].counts()
    assert labels.tolist() == [0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9]  # spikingjelly's text order
    hot = labels.tolist().index(3)
    assert one.dtype == torch.int16 and int(one[hot, 0, 1, 9, 17]) == 400
    four, _ = frames[4].counts()
    assert four.dtype == torch.uint8 and four[hot, :, 1, 9, 17].tolist() == [101, 101, 101, 97]
    for k, label in enumerate(labels.tolist()):
        assert torch.equal(four[k].float(), expected_frames(written[label], 4))
        assert torch.equal(one[k].float(), frames[1][k][0])


def test_dvs_augmentation_moves_train_frames(cifar10dvs_root: tuple[Path, dict]) -> None:
    root, _ = cifar10dvs_root
    torch.manual_seed(0)
    plain = build_dataset("cifar10dvs", root, train=True, augment=False, time_steps=2)
    augmented = build_dataset("cifar10dvs", root, train=True, time_steps=2)
    test = build_dataset("cifar10dvs", root, train=False, time_steps=2)
    changed = 0
    for i in range(10):
        a, p = augmented[i][0], plain[i][0]
        assert a.shape == p.shape and float(a.sum()) <= float(p.sum())  # shifted, never added
        changed += not torch.equal(a, p)
    assert changed >= 8
    assert torch.equal(test[0][0], test[0][0])


def _gesture_trial(rng: np.random.Generator, rows: list[int]) -> tuple[list, list, list]:
    """Events of one recording and its label rows (class 1..11, start, end)."""
    events, csv_rows, per_row = [], [], []
    t = 1000
    for cls in rows:
        ev = sample_events(rng, 4, t0=t)
        events += ev
        csv_rows.append((cls, t, t + 100))
        per_row.append(ev)
        t += 500
    return events, csv_rows, per_row


@pytest.fixture(scope="module")
def dvs128_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """extract/DvsGesture/: recordings, their _labels.csv and trials_to_{train,test}.txt."""
    root = tmp_path_factory.mktemp("dvs128") / "DVS128Gesture"  # found below the given root
    gesture = root / "extract" / "DvsGesture"
    gesture.mkdir(parents=True)
    rng = np.random.default_rng(1)
    trials = {
        "user01_fluorescent": list(range(1, 12)),
        "user02_led": [*range(1, 12), 3],  # a second sample of class 3 (label 2)
    }
    expected = {}
    for name, rows in trials.items():
        events, csv_rows, per_row = _gesture_trial(rng, rows)
        write_aedat3(gesture / f"{name}.aedat", events)
        lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{a},{b}" for c, a, b in csv_rows]
        (gesture / f"{name}_labels.csv").write_text("\n".join(lines) + "\n")
        seen: dict[int, int] = {}
        for (cls, _, _), ev in zip(csv_rows, per_row, strict=True):
            k = seen.get(cls - 1, 0)
            seen[cls - 1] = k + 1
            expected[f"{name}_{k}", cls - 1] = ev
    (gesture / "trials_to_train.txt").write_text("user01_fluorescent.aedat\n")
    (gesture / "trials_to_test.txt").write_text("user02_led.aedat\n\n")
    return root.parent, expected


def test_dvs128_frames_and_labels(dvs128_root: tuple[Path, dict]) -> None:
    root, expected = dvs128_root
    train = build_dataset("dvs128", root, train=True, time_steps=2, augment=False)
    test = build_dataset("dvs128", root, train=False, time_steps=2)
    assert (len(train), len(test)) == (11, 12)
    assert sorted(train.targets) == list(range(11))
    assert sorted(test.targets) == sorted([*range(11), 2])
    for ds in (train, test):
        for k in range(len(ds)):
            frames, label = ds[k]
            stem = Path(ds.samples[k][0]).stem
            assert frames.shape == (2, 2, 128, 128) and frames.dtype == torch.float32
            torch.testing.assert_close(frames, expected_frames(expected[stem, label], 2))
    # label k is gesture k+1 of the csv (spikingjelly's folder order 0, 1, 10, 2, ... undone)
    ten = [s for s, t in zip(test.samples, test.targets, strict=True) if t == 10]
    assert len(ten) == 1 and Path(ten[0][0]).parent.name == "10"


def test_dvs_errors(tmp_path: Path, dvs128_root: tuple[Path, dict]) -> None:
    with pytest.raises(DataError, match="time_steps"):
        build_dataset("dvs128", tmp_path, train=True)
    with pytest.raises(DataError) as err:
        build_dataset("cifar10dvs", tmp_path / "none", train=True, time_steps=4)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("CIFAR10-DVS not found", "download/<class>.zip", "extract/<class>/*.aedat",
                 "airplane.zip https://ndownloader.figshare.com/files/7712788",
                 f"'{tmp_path / 'none'}'", f"'{tmp_path / 'none' / 'CIFAR10DVS' / 'download'}'"):  # fmt: skip
        assert part in msg
    with pytest.raises(DataError, match=r"DvsGesture.tar.gz.*trials_to_train.txt.*ibm"):
        build_dataset("dvs128", tmp_path / "none", train=True, time_steps=4)

    # an archive that is not the real one (the MD5 differs): named, never deleted or re-fetched
    (tmp_path / "g" / "download").mkdir(parents=True)
    (tmp_path / "g" / "download" / "DvsGesture.tar.gz").write_bytes(b"partial")
    with pytest.raises(DataError, match=r"DvsGesture.tar.gz' fails its MD5 check"):
        build_dataset("dvs128", tmp_path / "g", train=True, time_steps=4)
    assert (tmp_path / "g" / "download" / "DvsGesture.tar.gz").exists()
    assert not (tmp_path / "g" / "extract").exists()
    (tmp_path / "c" / "download").mkdir(parents=True)
    with pytest.raises(DataError, match=r"airplane.zip' is missing"):
        build_dataset("cifar10dvs", tmp_path / "c", train=True, time_steps=4)

    # an incomplete extract folder: the first missing file is named, nothing is left half-built
    src = dvs128_root[0] / "DVS128Gesture" / "extract" / "DvsGesture"
    gesture = tmp_path / "h" / "extract" / "DvsGesture"
    gesture.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "user02_led_labels.csv":
            (gesture / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match=r"missing '.*user02_led_labels.csv' \(1 file"):
        build_dataset("dvs128", tmp_path / "h", train=True, time_steps=2)
    assert not (tmp_path / "h" / "events_np").exists()
    (tmp_path / "x" / "extract" / "airplane").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no '.*airplane/\*.aedat' files"):
        build_dataset("cifar10dvs", tmp_path / "x", train=True, time_steps=2)

    # a conversion killed half-way is redone from extract/, or named when it cannot be
    (gesture / "user02_led_labels.csv").write_bytes((src / "user02_led_labels.csv").read_bytes())
    (tmp_path / "h" / "events_np" / "train").mkdir(parents=True)
    (tmp_path / "h" / "events_np.building").touch()
    with pytest.warns(UserWarning, match="half-converted"):
        redone = build_dataset("dvs128", tmp_path / "h", train=False, time_steps=2)
    assert len(redone) == 12 and not (tmp_path / "h" / "events_np.building").exists()
    (tmp_path / "k" / "events_np").mkdir(parents=True)
    (tmp_path / "k" / "events_np.building").touch()
    with pytest.raises(DataError, match="interrupted and neither 'extract' nor 'download'"):
        build_dataset("dvs128", tmp_path / "k", train=True, time_steps=2)


# --------------------------------------------------------------------------- N-MNIST, N-Caltech101


def write_atis(path: Path, events: list[tuple[int, ...]]) -> None:
    """ATIS .bin (N-MNIST, N-Caltech101): 40 bits an event, x (8), y (8), p (1), t (23)."""
    out = bytearray()
    for t, x, y, p in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(out))


def atis_events(rng: np.random.Generator, n: int, hw: tuple[int, int]) -> list[tuple[int, ...]]:
    return [
        (
            10 * i + 1,
            int(rng.integers(0, hw[1])),
            int(rng.integers(0, hw[0])),
            int(rng.integers(0, 2)),
        )
        for i in range(n)
    ]


def frames_of(events: list[tuple[int, ...]], steps: int, hw: tuple[int, int]) -> torch.Tensor:
    frames = torch.zeros(steps, 2, *hw)
    per = len(events) // steps
    for i, (_, x, y, p) in enumerate(events):
        frames[min(i // per, steps - 1), p, y, x] += 1
    return frames


def test_nmnist_from_its_extracted_archives(tmp_path: Path) -> None:
    """extract/{Train,Test}/<digit>/*.bin, as Train.zip and Test.zip unpack: 34x34 frames, the
    official split, label = digit (10 pools to a 9x9 token grid)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "NMNIST"
    written = {}
    for split, per_class in (("Train", 2), ("Test", 1)):
        for digit in range(10):
            for i in range(per_class):
                ev = atis_events(rng, 12, (34, 34))
                write_atis(root / "extract" / split / str(digit) / f"{i:05d}.bin", ev)
                written[split.lower(), digit, f"{i:05d}"] = ev
    assert dataset_info("nmnist").img_size == 34 and dataset_info("nmnist").event_based
    train = build_dataset("nmnist", tmp_path, train=True, augment=False, time_steps=3)
    test = build_dataset("nmnist", tmp_path, train=False, time_steps=3)
    assert (len(train), len(test)) == (20, 10)
    assert sorted(train.targets) == sorted(list(range(10)) * 2)
    for split, ds in (("train", train), ("test", test)):
        for k, (path, label) in enumerate(ds.samples):
            assert Path(path).parent.name == str(label)
            want = frames_of(written[split, label, Path(path).stem], 3, (34, 34))
            assert torch.equal(ds[k][0], want)
    torch.manual_seed(0)
    shifted = build_dataset("nmnist", tmp_path, train=True, time_steps=3)
    assert shifted.transform.flip is False and shifted.transform.max_shift == 3  # digits: no flip


def test_ncaltech101_from_its_extracted_archive(tmp_path: Path) -> None:
    """extract/Caltech101/<class>/*.bin for the 101 classes: 180x240 frames (not square),
    split 9:1 per class in file-name order as CIFAR10-DVS."""
    rng = np.random.default_rng(1)
    names = sorted([f"class_{k:03d}" for k in range(100)] + ["BACKGROUND_Google"])
    written = {}
    for k, name in enumerate(names):
        for i in range(10 if k == 3 else 1):
            ev = atis_events(rng, 8, (180, 240))
            write_atis(tmp_path / "extract" / "Caltech101" / name / f"image_{i:04d}.bin", ev)
            written[name, f"image_{i:04d}"] = ev
    info = dataset_info("ncaltech101")
    assert (info.num_classes, info.img_size, info.hw) == (101, (180, 240), (180, 240))
    train = build_dataset("ncaltech101", tmp_path, train=True, augment=False, time_steps=2)
    test = build_dataset("ncaltech101", tmp_path, train=False, time_steps=2)
    assert (len(train), len(test)) == (109, 1)  # ceil(0.9 n) of each class trains
    assert train.classes == names and test.targets == [3]
    assert Path(test.samples[0][0]).stem == "image_0009"
    for ds in (train, test):
        for k in (0, len(ds) - 1):
            path, label = ds.samples[k]
            want = frames_of(written[names[label], Path(path).stem], 2, (180, 240))
            assert torch.equal(ds[k][0], want)
    assert build_dataset("ncaltech101", tmp_path, train=True, time_steps=2).transform.flip
    # the (180, 240) frames pool to a 12x15 token grid
    from autospikformer.model.shapes import token_grid

    assert token_grid(info.img_size) == (12, 15)


def test_nmnist_and_ncaltech101_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        build_dataset("nmnist", tmp_path / "none", train=True, time_steps=2)
    msg = str(err.value)
    for part in ("N-MNIST not found", "download/Train.zip and Test.zip", "extract/{Train,Test}",
                 "download Train.zip and Test.zip by hand from Garrick Orchard's N-MNIST page "
                 "(https://www.garrickorchard.com/datasets/n-mnist)"):  # fmt: skip
        assert part in msg
    (tmp_path / "a" / "download").mkdir(parents=True)
    (tmp_path / "a" / "download" / "Caltech101.zip").write_bytes(b"partial")
    with pytest.raises(DataError, match=r"Caltech101.zip' fails its MD5 check"):
        build_dataset("ncaltech101", tmp_path / "a", train=True, time_steps=2)
    write_atis(
        tmp_path / "b" / "extract" / "Caltech101" / "only" / "image_0001.bin", [(1, 2, 3, 0)]
    )
    with pytest.raises(DataError, match=r"N-Caltech101: 1 class folders found in '.*Caltech101'"):
        build_dataset("ncaltech101", tmp_path / "b", train=True, time_steps=2)
    write_atis(tmp_path / "c" / "extract" / "Train" / "0" / "00001.bin", [(1, 2, 3, 0)])
    (tmp_path / "c" / "extract" / "Train" / "0" / "notes.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"N-MNIST: unexpected '.*Train/0/notes.txt' \(spikingjelly"
    ):
        build_dataset("nmnist", tmp_path / "c", train=True, time_steps=2)
    assert not (tmp_path / "c" / "events_np").exists()
