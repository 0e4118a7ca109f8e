"""Image folders of your own (PNG and JPEG in class folders) at any input size: the class list,
counts and split, resizing, the normalisation, the trial engine's uint8 images, a whole study,
a resumed study refusing a changed folder, and bad input as one line each; and the token grid,
energy and parameter counts at sizes beyond the named sets."""

from __future__ import annotations

import math
import stat
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from folder_files import write_image_folder
from helpers import TINY_SPACE, study_text
from optuna.trial import TrialState
from PIL import Image
from typer.testing import CliRunner

from autospikformer.data.base import DataError, DatasetInfo
from autospikformer.data.folders import (
    FolderInfo,
    FolderSettings,
    check_headers,
    folder_info,
    list_folder,
)
from autospikformer.data.imagefolder import pixel_statistics
from autospikformer.data.loading import build_dataset, check_dataset, make_loader
from autospikformer.energy.counts import KERNEL, count_parameters, layer_counts
from autospikformer.model.shapes import num_pools, token_grid
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace
from autospikformer.study.config import StudyConfig, StudyConfigError
from autospikformer.study.storage import DATA_ATTR, study_record
from autospikformer.training.evaluate import SubnetEvaluator

COUNTS = {"b_dog": (4, 2), "a_cat": (3, 1), "c_emu": (5, 2)}  # sorted: a_cat, b_dog, c_emu


def settings(**table: object) -> FolderSettings:
    return FolderSettings.from_table("imagefolder", dict(table))


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """PNG and JPEG images of several sizes; the test split named ``val`` as ImageNet ships it;
    a text file and a hidden file that are not images."""
    root = tmp_path_factory.mktemp("images")
    written = write_image_folder(root, COUNTS, test_name="val")
    (root / "train" / "a_cat" / "notes.txt").write_text("not an image")
    (root / "train" / "a_cat" / ".DS_Store").write_bytes(b"\0")
    return root, written


# --------------------------------------------------------------------------- the folder


def test_classes_counts_and_the_val_split(mixed_root) -> None:
    root, written = mixed_root
    info = folder_info(settings(img_size=16), root)
    assert isinstance(info, FolderInfo) and isinstance(info, DatasetInfo)
    assert info.classes == ("a_cat", "b_dog", "c_emu")  # sorted folder names
    assert info.counts == ((3, 4, 5), (1, 2, 2))  # the text and hidden files are no images
    assert (info.test_split, info.num_classes, info.in_channels, info.img_size) == ("val", 3, 3, 16)
    assert (info.variant, info.event_based) == ("cifar", False)
    train = build_dataset(info, root, train=True, augment=False)
    test = build_dataset(info, root, train=False)
    assert (len(train), len(test)) == (12, 5)
    assert train.targets == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    assert test.targets == [0, 1, 1, 2, 2]
    assert [Path(p).parent.parent.name for p, _ in test.samples] == ["val"] * 5
    assert all(Path(p).parent.name == info.classes[label] for p, label in train.samples)
    assert set(p for p, _ in (*train.samples, *test.samples)) == set(written)


def test_a_fixed_size_folder_is_read_pixel_for_pixel(tmp_path: Path) -> None:
    """Without img_size every image must have one size, used as it is (here 12x20: not
    square); PNG pixels arrive exactly, and a sample is (pixels / 255 - mean) / std."""
    written = write_image_folder(tmp_path, {"x": (3, 1), "y": (2, 1)}, sizes=[(12, 20)])
    info = folder_info(settings(), tmp_path)
    assert info.img_size == (12, 20) and info.hw == (12, 20)
    test = build_dataset(info, tmp_path, train=False)
    images, labels = test.uint8_images()
    assert images.dtype == torch.uint8 and tuple(images.shape) == (2, 3, 12, 20)
    assert labels.tolist() == [0, 1]
    for k, (path, _) in enumerate(test.samples):
        assert torch.equal(images[k], torch.from_numpy(written[path].copy()).permute(2, 0, 1))
    mean = torch.tensor(test.info.mean).view(3, 1, 1)
    std = torch.tensor(test.info.std).view(3, 1, 1)
    x, _ = test[0]
    torch.testing.assert_close(x, (images[0].float() / 255 - mean) / std, rtol=0, atol=1e-6)
    assert torch.equal(x, images[0].float().mul(1 / (255 * std)).sub(mean / std))
    gray = build_dataset(
        folder_info(settings(channels="grayscale"), tmp_path), tmp_path, train=False
    )
    with Image.open(gray.samples[1][0]) as image:
        want = torch.from_numpy(np.array(image.convert("L"))).unsqueeze(0)
    assert gray.info.in_channels == 1 and torch.equal(gray.uint8(1), want)


def test_the_normalisation_is_the_training_pixels_mean_and_std(tmp_path: Path) -> None:
    written = write_image_folder(tmp_path, {"x": (3, 1), "y": (2, 1)}, sizes=[(12, 20)])
    info = folder_info(settings(), tmp_path)
    train = build_dataset(info, tmp_path, train=True, augment=False)
    pixels = np.stack([written[p] for p, _ in train.samples]).astype(np.float64) / 255
    assert train.info.mean == pytest.approx(pixels.mean(axis=(0, 1, 2)), rel=1e-12)
    assert train.info.std == pytest.approx(pixels.std(axis=(0, 1, 2)), rel=1e-12)
    assert train.info.normalization == "computed from 5 training images"
    # at most norm_samples images: a fixed draw of 2 of the 5
    mean, _, used = pixel_statistics(train, 2)
    assert used == 2 and mean == pixel_statistics(train, 2)[0] and mean != train.info.mean
    given = folder_info(settings(mean=[0.5, 0.5, 0.5], std=[0.25, 0.5, 1.0]), tmp_path)
    test = build_dataset(given, tmp_path, train=False)
    assert (test.info.mean, test.info.normalization) == ((0.5, 0.5, 0.5), "given in the study file")
    x, _ = test[0]
    torch.testing.assert_close(x[2], test.uint8(0)[2].float() / 255 - 0.5, rtol=0, atol=1e-6)


def test_evaluation_resizes_to_cover_and_crops_the_centre(tmp_path: Path) -> None:
    """A 30x20 (width x height) PNG at img_size 16: scaled by max(16 / 0.875 / 30, 16 / 0.875 /
    20) to 27x18, then its centre 16x16 (offsets round(5.5) = 6 and 1, as torchvision centres)."""
    write_image_folder(tmp_path, {"x": (1, 1)}, sizes=[(20, 30)])
    info = folder_info(settings(img_size=16), tmp_path)
    test = build_dataset(info, tmp_path, train=False)
    path = test.samples[0][0]
    with Image.open(path) as image:
        resized = np.array(image.convert("RGB").resize((27, 18), Image.Resampling.BILINEAR))
    want = torch.from_numpy(resized[1:17, 6:22]).permute(2, 0, 1)
    assert torch.equal(test.uint8(0), want)


def test_training_draws_random_crops_the_test_split_does_not(mixed_root) -> None:
    root, _ = mixed_root
    info = folder_info(settings(img_size=[16, 24]), root)
    train = build_dataset(info, root, train=True)
    torch.manual_seed(0)
    first = train[0][0]
    again = train[0][0]
    torch.manual_seed(0)
    assert torch.equal(train[0][0], first)  # seeded: repeatable
    assert tuple(first.shape) == (3, 16, 24) and not torch.equal(first, again)
    test = build_dataset(info, root, train=False)
    assert torch.equal(test[1][0], test[1][0])


def test_the_evaluator_keeps_uint8_images_and_normalises_a_batch_at_a_time(mixed_root) -> None:
    root, _ = mixed_root
    info = folder_info(settings(img_size=[16, 24]), root)
    torch.manual_seed(0)
    supernet = SuperSpikformer.for_data(SearchSpace.from_dict(TINY_SPACE), info)
    evaluator = SubnetEvaluator(
        supernet, dataset=info, data_root=root, calib_batches=2, calib_batch_size=4,
        batch_size=2, device="cpu",
    )  # fmt: skip
    calib, test = evaluator.splits(1)
    assert calib is not None and calib.inputs.dtype == test.inputs.dtype == torch.uint8
    assert tuple(test.inputs.shape) == (5, 3, 16, 24) and len(calib) == 8
    arch = Architecture.uniform(depth=1, embed_dim=32, mlp_ratio=2.0, num_heads=4, time_steps=2)
    result = evaluator.evaluate(arch)
    model = evaluator.standalone(arch)
    loader = make_loader(build_dataset(info, root, train=False), batch_size=2, train=False)
    with torch.no_grad():
        logits = torch.cat([model(x) for x, _ in loader])
        held = torch.cat([model(x) for x, _ in test])
    assert torch.equal(held, logits)  # the device's batches are the loader's samples
    assert result.accuracy == int((logits.argmax(-1) == test.labels).sum()) / 5
    other = SuperSpikformer(SearchSpace.from_dict(TINY_SPACE), num_classes=3, img_size=16)
    with pytest.raises(DataError, match=r"3x16x24 inputs, but this supernet was built for 3 "):
        SubnetEvaluator(other, dataset=info, data_root=root)


# --------------------------------------------------------------------------- bad input


def _break(root: Path, how: str) -> None:
    if how == "empty class":
        (root / "train" / "d_owl").mkdir()
        (root / "test" / "d_owl").mkdir()
    elif how == "corrupt image":
        (root / "train" / "x" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    elif how == "no test split":
        (root / "test").rename(root / "holdout")
    elif how == "classes differ":
        (root / "test" / "y").rename(root / "test" / "z")
    elif how == "tiny images":
        for path in root.rglob("*.*"):
            Image.new("RGB", (6, 4)).save(path, format="PNG")


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("empty class", r"^imagefolder: class folder '.*train/d_owl' holds no image file; add"),
        ("corrupt image", r"^imagefolder: '.*train/x/9\.png' cannot be read as an image \("),
        ("no test split", r"^imagefolder: no test split beside '.*train' \(expected test/ or val/"),
        ("classes differ", r"^imagefolder: the class folders of '.*' and '.*' differ \('z' only in '.*test'\)"),
        ("mixed sizes", r"^imagefolder: images of several sizes \('.*' is 30x20, '.*' 25x33\): give "),
        ("tiny images", r"^imagefolder: the images are 6x4 \(allowed: every side from 8 to 1024 "),
    ],
)  # fmt: skip
def test_a_bad_folder_is_one_line(tmp_path: Path, how: str, message: str) -> None:
    sizes = None if how == "mixed sizes" else [(20, 30)]
    write_image_folder(tmp_path, {"x": (2, 1), "y": (2, 1)}, sizes=sizes)
    _break(tmp_path, how)
    given = {} if how in ("mixed sizes", "tiny images") else {"img_size": 16}
    with pytest.raises(DataError, match=message) as caught:
        info = folder_info(settings(**given), tmp_path)
        check_headers(list_folder("imagefolder", tmp_path))
        check_dataset(info, tmp_path)
    assert "\n" not in str(caught.value)


def test_a_corrupt_image_found_while_decoding_is_one_line(tmp_path: Path) -> None:
    """A file whose header reads but whose data is cut off fails when decoded, in a loader
    worker too, as one line naming it."""
    write_image_folder(tmp_path, {"x": (2, 1), "y": (2, 1)}, sizes=[(20, 30)])
    info = folder_info(settings(img_size=16, mean=[0.5] * 3, std=[0.5] * 3), tmp_path)
    path = tmp_path / "train" / "y" / "1.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # the header reads, the pixels are cut off
    train = build_dataset(info, tmp_path, train=True)
    loader = torch.utils.data.DataLoader(train, batch_size=4, num_workers=1)
    with pytest.raises(DataError) as caught:
        next(iter(loader))
    assert str(caught.value).startswith(f"imagefolder: '{path}' cannot be decoded (OSError: ")
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"img_size": 4}, r"data\.img_size: 4 is not allowed \(allowed: every side from 8 to 1024"),
        ({"img_size": [16, 2000]}, r"data\.img_size: \[16, 2000\] is not allowed"),
        ({"channels": "cmyk"}, r"data\.channels: 'cmyk' is not allowed \(allowed: rgb, grayscale\)"),
        ({"mean": [0.5, 0.5, 0.5]}, r"data\.mean: give mean and std together, or neither"),
        ({"mean": [0.5], "std": [0.2]}, r"data\.mean: \[0\.5\] is not allowed \(allowed: a list of 3"),
        ({"mean": [0.5] * 3, "std": [0.2, 0, 1]}, r"data\.std: 0 is not allowed \(allowed: a number > 0"),
        ({"sensor_size": [34, 34]}, r"data\.sensor_size: not a setting of an imagefolder \(allowed:"),
        ({"norm_samples": 0}, r"data\.norm_samples: 0 is not allowed \(allowed: an integer >= 1\)"),
        ({"root": None}, r"data\.root: missing \(allowed: the path of the imagefolder\)"),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line(data: dict, message: str) -> None:
    table = {"dataset": "imagefolder", "root": "x", **data}
    table = {k: v for k, v in table.items() if v is not None}
    study = {"study": {"name": "s"}, "data": table, "space": {"preset": "digits"}}
    with pytest.raises(StudyConfigError, match=message):
        StudyConfig.from_dict(study)
    with pytest.raises(StudyConfigError, match=r"data\.img_size: only for a folder of your own"):
        StudyConfig.from_dict({**study, "data": {"dataset": "cifar10", "img_size": 64}})


def test_a_folder_config_round_trips_and_knows_its_data(mixed_root) -> None:
    root, _ = mixed_root
    study = {
        "study": {"name": "s"}, "space": {"preset": "digits"},
        "data": {"dataset": "imagefolder", "root": str(root), "img_size": [16, 24]},
    }  # fmt: skip
    config = StudyConfig.from_dict(study)
    assert StudyConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["data"] == {
        "dataset": "imagefolder", "root": str(root), "val_fraction": 0.1, "img_size": [16, 24],
        "channels": "rgb", "norm_samples": 5000,
    }  # fmt: skip
    info = config.data_info
    assert (info.num_classes, info.img_size, info.classes) == (
        3,
        (16, 24),
        ("a_cat", "b_dog", "c_emu"),
    )
    record = {**info.to_record(), "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.2, 0.1]}
    recorded = config.with_data_record(record)
    assert recorded == config  # the record is not part of the configuration
    assert recorded.data_info.mean == (0.1, 0.2, 0.3)
    assert (
        StudyConfig.from_dict({**study, "data": {**study["data"], "root": "/gone"}})
        .with_data_record(record)
        .data_info.classes
        == info.classes
    )  # a recorded folder is known without looking at it


# --------------------------------------------------------------------------- a whole study


def test_an_image_folder_study_runs_end_to_end_and_refuses_a_changed_folder(
    tmp_path: Path, monkeypatch
) -> None:
    """Stage 1 and 2 of a study on a non-square image folder that may not be written; the
    record holds the classes, counts and normalisation; after an image is added, the resumed
    study is refused with one line and the storage keeps what it held."""
    from autospikformer.cli.app import app

    root = tmp_path / "images"
    write_image_folder(root, {"cat": (6, 2), "dog": (6, 2)})
    (tmp_path / "img.toml").write_text(
        study_text(
            "img-tiny", sampler="random", dataset="imagefolder", root=root, space=TINY_SPACE,
            data={"img_size": [16, 24]},
            train={"batch_size": 6, "train_samples": None, "augment": True},
            search={"trials": 2, "calib_batch_size": 4, "batch_size": 4, "eval_samples": None},
        )
    )  # fmt: skip
    monkeypatch.chdir(tmp_path)
    folders = [root, *[p for p in root.rglob("*") if p.is_dir()]]
    files = sorted(root.rglob("*"))
    for folder in folders:  # read-only: nothing is written into the data folder
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = CliRunner().invoke(
            app, ["study", "run", "img.toml", "--device", "cpu", "--no-export"]
        )
    finally:
        for folder in folders:
            folder.chmod(stat.S_IRWXU)
    assert result.exit_code == 0, result.output
    assert sorted(root.rglob("*")) == files
    study = optuna.load_study(study_name="img-tiny", storage="sqlite:///autospik.db")
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 2
    record = study_record(study, DATA_ATTR)
    assert record["classes"] == ["cat", "dog"] and record["img_size"] == [16, 24]
    assert record["counts"] == {"train": [6, 6], "test": [2, 2]}
    assert record["normalization"] == "computed from 12 training images"
    assert len(record["mean"]) == 3 and all(0 < s < 1 for s in record["std"])
    ckpt = torch.load(tmp_path / "runs" / "img-tiny" / "supernet.pt", weights_only=True)
    assert (ckpt["img_size"], ckpt["classes"], ckpt["variant"]) == (
        (16, 24),
        ["cat", "dog"],
        "cifar",
    )

    Image.new("RGB", (30, 20)).save(root / "train" / "dog" / "new.png")
    again = CliRunner().invoke(
        app, ["study", "run", "img.toml", "--device", "cpu", "--trials", "3"]
    )
    assert again.exit_code == 1
    line = again.output.strip()
    assert "\n" not in line and line.startswith("error: imagefolder: the folder")
    assert "changed since it was recorded (train/dog: 7 files now, 6 recorded; 13 in" in line
    study = optuna.load_study(study_name="img-tiny", storage="sqlite:///autospik.db")
    assert len(study.trials) == 2 and study_record(study, DATA_ATTR) == record

    # the supernet of this folder is refused for a folder of other classes
    other = tmp_path / "other"
    write_image_folder(other, {"cat": (2, 1), "owl": (2, 1)})
    (tmp_path / "other.toml").write_text(
        study_text("other", dataset="imagefolder", root=other, space=TINY_SPACE,
                   data={"img_size": [16, 24]})
    )  # fmt: skip
    ckpt_path = str(tmp_path / "runs" / "img-tiny" / "supernet.pt")
    refused = CliRunner().invoke(app, ["study", "run", "other.toml", "--supernet", ckpt_path])
    assert refused.exit_code == 1
    assert "(classes cat, dog), the study 'other' searches 'imagefolder' (classes cat, owl)" in (
        refused.output
    )


def test_a_corrupt_image_stops_the_first_run_and_registers_nothing(tmp_path, monkeypatch) -> None:
    from autospikformer.cli.app import app

    root = tmp_path / "images"
    write_image_folder(root, {"cat": (2, 1), "dog": (2, 1)})
    (root / "test" / "dog" / "bad.jpg").write_bytes(b"\xff\xd8 cut")
    (tmp_path / "img.toml").write_text(
        study_text("bad", dataset="imagefolder", root=root, data={"img_size": 16})
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["study", "run", "img.toml", "--device", "cpu"])
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: imagefolder: '") and "bad.jpg' cannot be read as an" in last
    assert not Path("autospik.db").exists() and not Path("runs").exists()


# --------------------------------------------------------------------------- any input size


@pytest.mark.parametrize(
    ("size", "pools", "grid"),
    [(8, 1, (4, 4)), (16, 1, (8, 8)), (32, 2, (8, 8)), (34, 2, (9, 9)), (64, 3, (8, 8)),
     (128, 4, (8, 8)), (224, 4, (14, 14)), ((180, 240), 4, (12, 15)), ((32, 64), 2, (8, 16)),
     ((130, 173), 4, (9, 11)), (1024, 4, (64, 64))],
)  # fmt: skip
def test_the_token_grid_rule(size, pools: int, grid: tuple[int, int]) -> None:
    assert (num_pools(size), token_grid(size)) == (pools, grid)
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=1)
    if max(grid) <= 16:  # the model's token count is the rule's
        model = Spikformer(arch, num_classes=3, img_size=size).eval()
        height, width = (size, size) if isinstance(size, int) else size
        with torch.no_grad():
            tokens = model.embed(torch.zeros(1, 3, height, width))
        assert tokens.shape[2] == grid[0] * grid[1]


@pytest.mark.parametrize("size", [4, 7, 1025, (8, 2048), (0, 32), "32", 32.0])
def test_a_size_the_rule_cannot_serve_is_one_line(size) -> None:
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=1)
    with pytest.raises(
        ValueError,
        match=r"^img_size: .* is not allowed \(allowed: every side from 8 to 1024 pixels",
    ):
        Spikformer(arch, num_classes=3, img_size=size)


@pytest.mark.parametrize(
    ("size", "pooled"),  # the side at each SPS conv (pooled after it when the next one is smaller)
    [(64, (64, 64, 32, 16, 8)), (224, (224, 112, 56, 28, 14))],
)
def test_energy_counts_follow_the_input_size(size: int, pooled: tuple[int, ...]) -> None:
    """Closed forms at 64 (3 pools, 8x8 tokens) and 224 (a pool after every stage, 14x14)."""
    arch = Architecture.uniform(depth=2, embed_dim=64, mlp_ratio=4.0, num_heads=4, time_steps=2)
    data = DatasetInfo("folder", num_classes=7, in_channels=3, img_size=size)
    counts = layer_counts(arch, data).set_index("layer")
    chans = (3, 8, 16, 32, 64)
    for i in range(4):
        want = chans[i + 1] * chans[i] * KERNEL * KERNEL * pooled[i] ** 2
        assert counts.loc[f"sps.convs.{i}", "dense_macs"] == want
        assert counts.loc[f"sps.convs.{i}", "neurons"] == chans[i + 1] * pooled[i] ** 2
    n = pooled[4] ** 2
    assert counts.loc["sps.rpe_conv", "dense_macs"] == 64 * 64 * 9 * n
    assert counts.loc["blocks.1.attn.q.linear", "dense_macs"] == n * 64 * 64
    assert counts.loc["blocks.1.attn.q@k^T", "dense_macs"] == n * n * 64
    assert counts.loc["blocks.0.mlp.fc1.linear", "dense_macs"] == n * 64 * 256
    assert counts.loc["head", "dense_macs"] == 64 * 7
    # the measured counts of a real model at that size are the same
    from autospikformer.energy.meter import EnergyMeter

    model = Spikformer(arch, num_classes=7, img_size=size).eval()
    with EnergyMeter(model) as meter, torch.no_grad():
        model(torch.rand(1, 3, size, size))
    measured = meter.report().table.set_index("layer")["dense_macs"]
    assert measured.to_dict() == counts["dense_macs"].to_dict()
    # parameters do not depend on the size; the model's count is the formula's
    assert count_parameters(arch, data) == model.num_parameters()
    assert count_parameters(arch, data) == count_parameters(arch, DatasetInfo("c", 7, 3, 32))


def test_a_non_square_model_counts_and_runs() -> None:
    arch = Architecture.uniform(depth=1, embed_dim=32, mlp_ratio=2.0, num_heads=4, time_steps=2)
    data = DatasetInfo("wide", num_classes=5, in_channels=2, img_size=(32, 64), event_based=True)
    counts = layer_counts(arch, data).set_index("layer")
    assert counts.loc["sps.convs.0", "dense_macs"] == 4 * 2 * 9 * 32 * 64
    assert counts.loc["blocks.0.attn.q@k^T", "dense_macs"] == (8 * 16) ** 2 * 32
    model = Spikformer.for_data(arch, data).eval()
    assert model.img_size == (32, 64) and model.variant == "dvs"
    assert math.prod(model(torch.rand(3, 2, 2, 32, 64)).shape) == 15
    assert Spikformer(arch, num_classes=5, img_size=(32, 32)).img_size == 32


def test_an_error_line_keeps_a_folder_name_in_brackets(tmp_path: Path, monkeypatch) -> None:
    """Rich would read ``[unlabelled]`` as markup and drop it: the line is escaped."""
    from autospikformer.cli.app import app

    root = tmp_path / "images"
    write_image_folder(root, {"cat": (1, 1)}, sizes=[(20, 30)])
    (root / "train" / "[unlabelled]").mkdir()
    (tmp_path / "s.toml").write_text(
        study_text("s", dataset="imagefolder", root=root, data={"img_size": 16})
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["study", "run", "s.toml", "--device", "cpu"])
    assert result.exit_code == 1
    assert "train/[unlabelled]' holds no image file" in result.output


def test_folder_settings_check_themselves() -> None:
    """Keyword-only, validated at construction (not only through a study file)."""
    with pytest.raises(TypeError):
        FolderSettings("imagefolder")  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"^data\.img_size: 5 is not allowed"):
        FolderSettings(kind="imagefolder", img_size=5)
    with pytest.raises(ValueError, match=r"^data\.mean: not a setting of an eventfolder"):
        FolderSettings(kind="eventfolder", sensor_size=(34, 34), mean=(0.5,), std=(0.5,))
    with pytest.raises(ValueError, match=r"^data\.dataset: 'folder' is not allowed"):
        FolderSettings(kind="folder")
    made = FolderSettings(kind="eventfolder", sensor_size=[34, 34], img_size=[17, 17])
    assert (made.sensor_size, made.img_size, made.in_channels) == ((34, 34), 17, 2)
    assert FolderSettings(kind="imagefolder", mean=[0, 0.5, 1], std=[1, 1, 1]).mean == (
        0.0,
        0.5,
        1.0,
    )
