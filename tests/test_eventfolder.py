"""Event folders of your own (``events_np/{train,test}/<class>/*.npz``): classes, counts and
split, frames at the sensor's size and pooled down, the frame cache (each file read once), a
whole study, a resumed study refusing a changed folder, and bad input as one line each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from folder_files import expected_frames, write_event_folder
from helpers import TINY_SPACE, study_text
from optuna.trial import TrialState
from typer.testing import CliRunner

from autospikformer.data.base import DataError
from autospikformer.data.folders import FolderSettings, folder_info
from autospikformer.data.frames import WIDE_CODE_DTYPE
from autospikformer.data.loading import build_dataset, build_frames, check_dataset
from autospikformer.study.config import StudyConfig, StudyConfigError
from autospikformer.study.storage import DATA_ATTR, study_record

SENSOR = (20, 30)  # height x width: not square
COUNTS = {"wave": (3, 1), "clap": (2, 2)}  # sorted: clap, wave


def settings(**table: object) -> FolderSettings:
    return FolderSettings.from_table("eventfolder", {"sensor_size": list(SENSOR), **table})


def test_classes_counts_frames_and_the_cache(tmp_path: Path, events_reads) -> None:
    written = write_event_folder(tmp_path, COUNTS, sensor=SENSOR)
    info = folder_info(settings(), tmp_path)
    assert (info.classes, info.counts) == (("clap", "wave"), ((2, 3), (2, 1)))
    assert (info.img_size, info.in_channels, info.variant) == (SENSOR, 2, "dvs")
    frames = build_frames(info, tmp_path, train=True, augment=False, time_steps=[1, 3])
    assert len(events_reads) == 5  # each training file read once, for both T
    for steps in (1, 3):
        split = frames[steps]
        assert split.targets == [0, 0, 1, 1, 1]
        for k, (path, label) in enumerate(split.samples):
            x, y = split[k]
            assert y == label and Path(path).parent.name == info.classes[label]
            assert torch.equal(x, expected_frames(written[path], steps, SENSOR))
    counts, labels = frames[3].counts()
    assert counts.dtype == torch.uint8 and tuple(counts.shape) == (5, 3, 2, *SENSOR)
    assert labels.tolist() == [0, 0, 1, 1, 1]
    events_reads.clear()
    test = build_dataset(info, tmp_path, train=False, time_steps=2)
    assert len(test) == 3 and test.targets == [0, 0, 1] and len(events_reads) == 3
    events_reads.clear()
    build_frames(info, tmp_path, train=True, time_steps=[4])  # the cache serves any T
    assert events_reads == []
    assert sorted(p.name for p in (tmp_path / "autospikformer_events").iterdir()) == [
        "test",
        "train",
    ]


def test_frames_pooled_to_img_size_sum_each_block(tmp_path: Path) -> None:
    """img_size [10, 15] from a 20x30 sensor: every 2x2 block of sensor pixels summed."""
    written = write_event_folder(tmp_path, COUNTS, sensor=SENSOR)
    info = folder_info(settings(img_size=[10, 15]), tmp_path)
    assert info.img_size == (10, 15)
    split = build_dataset(info, tmp_path, train=True, augment=False, time_steps=2)
    for k, (path, _) in enumerate(split.samples):
        full = expected_frames(written[path], 2, SENSOR)
        pooled = full.reshape(2, 2, 10, 2, 15, 2).sum(dim=(3, 5))
        assert torch.equal(split[k][0], pooled)
    assert (tmp_path / "autospikformer_events" / "train-10x15" / "index.json").is_file()
    # the pooling is exact for any ratio: an event at (x, y) lands in (x * 15 // 30, y * 10 // 20)
    odd = folder_info(settings(img_size=[8, 9]), tmp_path)
    path, _ = split.samples[0]
    ev = written[path]
    got = build_dataset(odd, tmp_path, train=True, augment=False, time_steps=1)[0][0]
    want = torch.zeros(1, 2, 8, 9)
    for x, y, p in zip(ev["x"], ev["y"], ev["p"], strict=True):
        want[0, int(p), int(y) * 8 // 20, int(x) * 9 // 30] += 1
    assert torch.equal(got, want)


def test_a_large_sensor_takes_wide_codes(tmp_path: Path) -> None:
    sensor = (200, 260)  # 2 x 200 x 260 = 104,000 codes: more than 16 bits
    written = write_event_folder(tmp_path, {"a": (1, 1), "b": (1, 1)}, sensor=sensor, events=30)
    info = folder_info(
        FolderSettings.from_table("eventfolder", {"sensor_size": list(sensor)}), tmp_path
    )
    split = build_dataset(info, tmp_path, train=True, augment=False, time_steps=2)
    assert split.split.codes.dtype == WIDE_CODE_DTYPE
    path = split.samples[1][0]
    assert torch.equal(split[1][0], expected_frames(written[path], 2, sensor))


def test_training_shifts_the_clip(tmp_path: Path) -> None:
    write_event_folder(tmp_path, COUNTS, sensor=SENSOR, events=200)
    info = folder_info(settings(), tmp_path)
    train = build_dataset(info, tmp_path, train=True, time_steps=2)
    plain = build_dataset(info, tmp_path, train=True, augment=False, time_steps=2)
    torch.manual_seed(3)
    drawn = [train[0][0] for _ in range(6)]
    assert all(d.sum() <= plain[0][0].sum() for d in drawn)  # a shift drops what leaves the frame
    assert any(not torch.equal(d, plain[0][0]) for d in drawn)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("outside", r"^eventfolder: '.*train/wave/000\.npz' holds events outside the 20x30 "
                    r"\(height x width\) sensor \(x 0\.\.40, y 0\.\.19\): check data\.sensor_size"),
        ("no test split", r"^eventfolder: no test split beside '.*events_np/train' \(expected "
                          r"test/ with the same class folders\)"),
        ("empty class", r"^eventfolder: class folder '.*test/owl' holds no \.npz events file"),
        ("no folder", r"^eventfolder: data folder '.*missing' does not exist"),
        ("not events", r"^eventfolder: '.*train/clap/000\.npz' cannot be read \(.*\); replace the "
                       r"file \(a \.npz with t, x, y, p\) or remove it$"),
    ],
)  # fmt: skip
def test_a_bad_event_folder_is_one_line(tmp_path: Path, how: str, message: str) -> None:
    write_event_folder(tmp_path, COUNTS, sensor=SENSOR)
    raw, root = tmp_path / "events_np", tmp_path
    if how == "outside":
        ev = dict(np.load(raw / "train" / "wave" / "000.npz"))
        ev["x"][5] = 40
        np.savez(raw / "train" / "wave" / "000.npz", **ev)
    elif how == "no test split":
        (raw / "test").rename(raw / "later")
    elif how == "empty class":
        (raw / "train" / "owl").mkdir()
        (raw / "test" / "owl").mkdir()
        (raw / "train" / "owl" / "0.npz").write_bytes(b"")
    elif how == "no folder":
        root = tmp_path / "missing"
    elif how == "not events":
        (raw / "train" / "clap" / "000.npz").write_bytes(b"PK not a zip")
    with pytest.raises(DataError, match=message) as caught:
        info = folder_info(settings(), root)
        check_dataset(info, root)
        build_dataset(info, root, train=True, time_steps=1)
    assert "\n" not in str(caught.value)
    assert not list(tmp_path.glob("autospikformer_events/.train*"))  # no half-built cache


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, r"data\.sensor_size: missing \(allowed: \[height, width\] of the event camera\)"),
        ({"sensor_size": 128}, r"data\.sensor_size: 128 is not allowed \(allowed: \[height, width\]"),
        ({"sensor_size": [34, 34], "img_size": 64}, r"data\.img_size: 64 is not allowed \(allowed: "
                                                    r"at most the sensor's 34x34\)"),
        ({"sensor_size": [34, 34], "channels": "rgb"}, r"data\.channels: not a setting of an "
                                                       r"eventfolder \(allowed: sensor_size, img_size\)"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line(data: dict, message: str) -> None:
    study = {
        "study": {"name": "s"}, "space": {"preset": "dvs"},
        "data": {"dataset": "eventfolder", "root": "x", **data},
    }  # fmt: skip
    with pytest.raises(StudyConfigError, match=message):
        StudyConfig.from_dict(study)


def test_an_event_folder_study_runs_end_to_end_and_refuses_a_changed_folder(
    tmp_path: Path, monkeypatch, events_reads
) -> None:
    """Stage 1 and 2 of a study on a 20x30 event folder pooled to 10x15: the DVS model, every
    events file read once in all, the record; a recording added later stops the next run."""
    from autospikformer.cli.app import app

    root = tmp_path / "events"
    write_event_folder(root, {"clap": (6, 2), "wave": (6, 2)}, sensor=SENSOR)
    (tmp_path / "ev.toml").write_text(
        study_text(
            "ev-tiny", sampler="random", dataset="eventfolder", root=root, space=TINY_SPACE,
            data={"sensor_size": list(SENSOR), "img_size": [10, 15]},
            train={"batch_size": 4, "augment": None, "train_samples": None},
            search={"trials": 2, "calib_batch_size": 4, "batch_size": 4, "eval_samples": None},
        )
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["study", "run", "ev.toml", "--device", "cpu", "--no-export"])
    assert result.exit_code == 0, result.output
    files = sorted(str(p) for p in (root / "events_np").rglob("*.npz"))
    assert len(files) == 16 and sorted(events_reads) == files
    study = optuna.load_study(study_name="ev-tiny", storage="sqlite:///autospik.db")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
    record = study_record(study, DATA_ATTR)
    assert (record["classes"], record["img_size"], record["in_channels"]) == (
        ["clap", "wave"], [10, 15], 2,
    )  # fmt: skip
    assert record["counts"] == {"train": [6, 6], "test": [2, 2]} and record["mean"] is None
    ckpt = torch.load(tmp_path / "runs" / "ev-tiny" / "supernet.pt", weights_only=True)
    assert (ckpt["variant"], ckpt["img_size"], ckpt["in_channels"]) == ("dvs", (10, 15), 2)

    (root / "events_np" / "test" / "wave" / "000.npz").unlink()
    again = CliRunner().invoke(app, ["study", "run", "ev.toml", "--device", "cpu"])
    assert again.exit_code == 1
    line = again.output.strip()
    assert "\n" not in line and line.startswith("error: eventfolder: the folder '")
    assert "(test/wave: 1 files now, 2 recorded; 3 in test/ now, 4 recorded); restore it" in line
