"""SPS computed once per (E, T) and reused (SPEC section 10): exact, bounded, and recorded.

The bar is exactness: a seeded search on digits and one on event data in the on-disk format,
each over 9 (E, T) pairs, store the same trials bit for bit with reuse on and off (values,
parameters, per-layer energy records, every attribute but the seconds and the worker label).
"""

from __future__ import annotations

import dataclasses
import random
import tomllib
from pathlib import Path

import optuna
import pytest
import torch
from event_files import write_cifar10dvs_extract
from helpers import TINY_SPACE, TINY_TRAIN, study_text
from optuna.trial import TrialState

from autospikformer.energy.meter import EnergyMeter
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.space import SearchSpace
from autospikformer.study.config import StudyConfig, StudyConfigError
from autospikformer.study.storage import EVALUATION_ATTR, SECONDS_ATTR, WORKER_ATTR, resolve_study
from autospikformer.study.worker import Worker, WorkerOptions
from autospikformer.training.evaluate import SubnetEvaluator
from autospikformer.training.features import (
    EmbedFeatures,
    FeatureCache,
    PackedCounts,
    default_budget,
    device_memory,
)
from autospikformer.training.trainer import train_supernet

# 3 embed dims x 3 time steps: 9 (E, T) pairs
SPACE = {
    **TINY_SPACE,
    "name": "reuse",
    "transformer": {**TINY_SPACE["transformer"], "embed_dim": [16, 24, 32]},
    "neuron": {**TINY_SPACE["neuron"], "time_steps": [1, 2, 3]},
}
OPTIONS = {"population_size": 6, "num_parents": 3}


# --------------------------------------------------------------------------- storage of counts
@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 4), (1,), (0, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spike_counts_are_packed_in_two_bits_and_come_back_exactly(shape, dtype) -> None:
    values = torch.randint(0, 4, shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    packed = PackedCounts(values)
    numel = values.numel()
    assert packed.nbytes == (numel + 3) // 4 and packed.codes.dtype == torch.uint8
    back = packed.unpack()
    assert back.dtype == dtype and back.shape == values.shape and back.is_contiguous()
    assert torch.equal(back, values)
    for bad in (4.0, -1.0, 0.5, float("nan")):
        wrong = values.reshape(-1).clone() if numel else torch.zeros(1, dtype=dtype)
        wrong[0] = bad
        with pytest.raises(ValueError, match=r"whole counts 0\.\.3"):
            PackedCounts(wrong)


def _features(nbytes: int) -> EmbedFeatures:
    packed = PackedCounts(torch.zeros(4 * nbytes))
    return EmbedFeatures(None, [packed], energy=None, versions=())  # type: ignore[arg-type]


def test_the_cache_evicts_the_least_recently_used_pair_past_its_budget() -> None:
    cache = FeatureCache(budget=250)
    assert cache.put("a", _features(100)) and cache.put("b", _features(100))
    assert cache.get("a") is not None  # "a" is now the most recently used
    assert cache.put("c", _features(100))  # 300 > 250: "b" goes
    assert "b" not in cache and "a" in cache and "c" in cache
    assert (cache.nbytes, cache.evictions, cache.hits, len(cache)) == (200, 1, 1, 2)
    assert cache.get("b") is None and cache.misses == 1
    assert not cache.put("huge", _features(251))  # more than the whole budget: not kept
    assert "huge" not in cache and len(cache) == 2
    assert cache.put("a", _features(250)) and list(cache._pairs) == ["a"]  # replaced in place
    with pytest.raises(ValueError, match=r"budget: -1 is not allowed \(allowed: bytes >= 0\)"):
        FeatureCache(budget=-1)


def test_the_default_budget_is_a_quarter_of_the_device_memory_shared_by_its_workers() -> None:
    cpu = torch.device("cpu")
    assert device_memory(cpu) > 2**28
    assert default_budget(cpu) == device_memory(cpu) // 4
    assert default_budget(cpu, sharing=3) == device_memory(cpu) // 4 // 3


# --------------------------------------------------------------------------- the evaluator
@pytest.fixture(scope="module")
def digits_supernet() -> SuperSpikformer:
    torch.manual_seed(0)
    space = SearchSpace.from_dict(SPACE)
    return SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8)


def evaluators(supernet, **kwargs):
    settings = {"dataset": "digits", "data_root": None, "calib_batches": 2,
                "calib_batch_size": 32, "batch_size": 50, "eval_samples": 120, "device": "cpu",
                **kwargs}  # fmt: skip
    return (
        SubnetEvaluator(supernet, reuse_features=True, **settings),
        SubnetEvaluator(supernet, reuse_features=False, **settings),
    )


def same(a, b) -> bool:
    """Two results are the same but for the seconds and how SPS ran: every field, the per-layer
    table and the stored energy record."""
    first, second = a.to_dict(layers=True), b.to_dict(layers=True)
    for d in (first, second):
        del d["seconds"], d["features"]
    return (
        first == second
        and a.report.table.equals(b.report.table)
        and a.report.measurement().to_json() == b.report.measurement().to_json()
    )


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_trial_on_kept_sps_outputs_is_the_whole_pass_bit_for_bit(digits_supernet, precision):
    on, off = evaluators(digits_supernet, precision=precision)
    rng = random.Random(3)
    space = digits_supernet.space
    seen: set[tuple[int, int]] = set()
    for _ in range(12):
        arch = space.sample(rng)
        reused, whole = on.evaluate(arch), off.evaluate(arch)
        pair = (arch.embed_dim, arch.time_steps)
        assert reused.features == ("reused" if pair in seen else "computed")
        assert whole.features == "off"
        assert same(reused, whole), arch
        seen.add(pair)
    assert len(on.features) == len(seen) and on.features.hits == 12 - len(seen)
    # without recalibration (the supernet's own SPS statistics) and without energy, too
    arch = space.sample(rng)
    assert same(on.evaluate(arch, recalibrate=False), off.evaluate(arch, recalibrate=False))
    plain = on.evaluate(arch, energy=False)
    assert plain.report is None and plain.accuracy == off.evaluate(arch).accuracy


def test_an_image_folder_held_as_uint8_is_reused_exactly(tmp_path) -> None:
    """An image folder's evaluation keeps uint8 images and normalises a batch at a time: SPS's
    kept outputs of those batches give every trial the whole pass's results."""
    from folder_files import write_image_folder

    from autospikformer.data.folders import FolderSettings, folder_info

    write_image_folder(tmp_path, {"a": (5, 3), "b": (4, 3)}, sizes=[(12, 12), (20, 14)])
    info = folder_info(FolderSettings.from_table("imagefolder", {"img_size": 16}), tmp_path)
    torch.manual_seed(0)
    supernet = SuperSpikformer.for_data(SearchSpace.from_dict(SPACE), info)
    settings = {"dataset": info, "data_root": tmp_path, "calib_batches": 2,
                "calib_batch_size": 4, "batch_size": 4, "device": "cpu"}  # fmt: skip
    on = SubnetEvaluator(supernet, reuse_features=True, **settings)
    off = SubnetEvaluator(supernet, reuse_features=False, **settings)
    assert on.splits(1)[1].inputs.dtype == torch.uint8
    rng, kinds = random.Random(5), []
    for _ in range(8):
        arch = supernet.space.sample(rng)
        reused = on.evaluate(arch)
        kinds.append(reused.features)
        assert same(reused, off.evaluate(arch)), arch
    assert "reused" in kinds and "computed" in kinds


def test_kept_outputs_follow_a_change_of_the_sps_weights_or_statistics(digits_supernet) -> None:
    supernet = SuperSpikformer(digits_supernet.space, num_classes=10, in_channels=1, img_size=8)
    supernet.load_state_dict(digits_supernet.state_dict())
    on, off = evaluators(supernet)
    arch = supernet.space.largest()
    first = on.evaluate(arch)
    with torch.no_grad():
        supernet.sps.convs[1].weight.mul_(0.5)  # e.g. a fine-tuning step
    changed = on.evaluate(arch)
    assert changed.features == "computed" and same(changed, off.evaluate(arch))
    assert not same(first, changed)
    assert on.evaluate(arch, recalibrate=False).features == "computed"
    with torch.no_grad():  # the statistics a pass without recalibration uses
        supernet.sps.bns[2].running_var.mul_(2.0)
    stale = on.evaluate(arch, recalibrate=False)
    assert stale.features == "computed"
    assert same(stale, off.evaluate(arch, recalibrate=False))


def test_the_budget_bounds_what_is_kept_and_never_the_results(digits_supernet) -> None:
    space = digits_supernet.space
    small, large = space.smallest(), space.largest()  # E 16, T 1 and E 32, T 3
    probe, off = evaluators(digits_supernet)
    probe.evaluate(small)
    one = probe.features.nbytes
    probe.evaluate(large)
    six = probe.features.nbytes - one
    assert six == 6 * one  # a pair costs images x T x N x E / 4 bytes (calibration included)
    on, _ = evaluators(digits_supernet, feature_budget=6 * one + one // 2)  # one pair at a time
    for arch in (small, large, small, large):
        result = on.evaluate(arch)
        assert result.features == "computed" and same(result, off.evaluate(arch))
        assert len(on.features) == 1 and on.features.nbytes <= 6 * one + one // 2
    assert on.features.evictions == 3
    nothing, _ = evaluators(digits_supernet, feature_budget=0)
    for _ in range(2):
        result = nothing.evaluate(small)
        assert result.features == "computed" and same(result, off.evaluate(small))
    assert len(nothing.features) == 0
    for bad, match in (({"feature_budget": -1}, r"^feature_budget: -1 is not allowed"),
                       ({"reuse_features": "yes"}, r"^reuse_features: 'yes' is not allowed")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            SubnetEvaluator(digits_supernet, dataset="digits", data_root=None, **bad)


def test_sps_rows_join_the_blocks_rows_only_for_their_own_pass(digits_supernet) -> None:
    supernet = digits_supernet
    on, _ = evaluators(supernet)
    arch = supernet.space.largest()
    on.evaluate(arch)
    rows = next(iter(on.features._pairs.values())).energy
    assert (rows.embed_dim, rows.time_steps, rows.images, rows.event_data) == (32, 3, 120, False)
    assert [name for name, *_ in rows.layers] == [
        "sps.convs.0", "sps.convs.1", "sps.convs.2", "sps.convs.3", "sps.rpe_conv",
    ]  # fmt: skip
    assert rows.layers[0][1] is None  # the image's first conv: counted once, no rate
    with pytest.raises(RuntimeError, match="embed_rows"):
        EnergyMeter(supernet, arch, part="embed").report()
    with pytest.raises(ValueError, match=r"cannot be joined to a meter of \(32, 2, False\)"):
        EnergyMeter(supernet, dataclasses.replace(arch, time_steps=2), embed=rows)
    with pytest.raises(ValueError, match="needs embed="):
        EnergyMeter(supernet, arch, part="blocks")
    meter = EnergyMeter(supernet, arch, embed=rows)
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad(), meter:
        supernet.forward_head(supernet.forward_tokens(supernet.embed(x, arch), arch))
    with pytest.raises(RuntimeError, match="blocks ran on 7 images, the SPS rows"):
        meter.report()


# --------------------------------------------------------------------------- settings
def test_reuse_is_a_study_setting_on_by_default() -> None:
    base = tomllib.loads(study_text("s"))
    config = StudyConfig.from_dict(base)
    assert (config.search.reuse_features, config.search.feature_cache_mb) == (True, None)
    stored = config.to_dict()
    del stored["search"]["reuse_features"], stored["search"]["feature_cache_mb"]
    assert StudyConfig.from_dict(stored) == config  # a study stored before the setting
    base["search"].update(reuse_features=False, feature_cache_mb=512)
    config = StudyConfig.from_dict(base)
    assert (config.search.reuse_features, config.search.feature_cache_mb) == (False, 512)
    assert StudyConfig.from_dict(config.to_dict()) == config
    for key, value, allowed in (("reuse_features", "yes", "true, false"),
                                ("feature_cache_mb", -1, "an integer >= 0 or leave it out")):  # fmt: skip
        bad = tomllib.loads(study_text("s"))
        bad["search"][key] = value
        with pytest.raises(StudyConfigError, match=rf"^search\.{key}: .* \(allowed: {allowed}\)"):
            StudyConfig.from_dict(bad)


# --------------------------------------------------------------------------- whole searches
def stored_trials(url: str, name: str) -> tuple[list, list[str]]:
    """Every trial as stored, but for its seconds and worker label; and how each ran SPS."""
    study = optuna.load_study(study_name=name, storage=url)
    rows, features = [], []
    for t in sorted(study.trials, key=lambda t: t.number):
        user = {k: v for k, v in t.user_attrs.items() if k not in (SECONDS_ATTR, WORKER_ATTR)}
        if EVALUATION_ATTR in user:
            evaluation = dict(user[EVALUATION_ATTR])
            features.append(evaluation.pop("features"))
            user[EVALUATION_ATTR] = evaluation
        rows.append((t.number, t.state, t.params, t.values, user, t.system_attrs))
    return rows, features


def search_both_ways(folder: Path, trials: int, search: dict, **study: object) -> None:
    """The same seeded DSPS search with reuse on and off, compared trial by trial."""
    url = f"sqlite:///{folder / 'reuse.db'}"
    checkpoint = None
    for reuse in (True, False):
        name = f"reuse-{reuse}"
        path = folder / f"{name}.toml"
        settings = {**search, "reuse_features": reuse}
        path.write_text(study_text(name, space=SPACE, options=OPTIONS, search=settings, **study))
        _, config, _ = resolve_study(str(path), url, create=True)
        if checkpoint is None:
            checkpoint = train_supernet(
                space=config.space, dataset=config.dataset, data_root=config.data_root,
                out_dir=folder / "supernet", config=config.train, device="cpu", progress=False,
            )  # fmt: skip
        options = WorkerOptions(url, name, trials, str(checkpoint), device="cpu")
        assert Worker(options).run() == trials
    on, how = stored_trials(url, "reuse-True")
    off, plain = stored_trials(url, "reuse-False")
    assert len(on) == len(off) >= trials
    for mine, theirs in zip(on, off, strict=True):
        assert mine == theirs
    pairs = {(t[2]["embed_dim"], t[2]["time_steps"]) for t in on if t[1] == TrialState.COMPLETE}
    assert len(pairs) >= 6  # many (E, T) pairs met
    assert how.count("computed") == len(pairs) and how.count("reused") == len(how) - len(pairs)
    assert set(plain) == {"off"}


def test_a_seeded_digits_search_stores_the_same_trials_with_and_without_reuse(tmp_path) -> None:
    search_both_ways(tmp_path, 24, search={"eval_samples": 64})


def test_an_event_data_search_stores_the_same_trials_with_and_without_reuse(tmp_path) -> None:
    root = tmp_path / "data"
    write_cifar10dvs_extract(root, [10] * 10, events_per_sample=64)  # 90 to train, 10 to test
    search_both_ways(
        tmp_path, 18, dataset="cifar10dvs", root=root,
        train={**TINY_TRAIN, "batch_size": 8, "train_samples": 16},
        search={"calib_batch_size": 8, "batch_size": 4, "eval_samples": None},
    )  # fmt: skip
