"""Architecture and SearchSpace: data in, validated, sampled, counted, round-tripped."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from autospikformer import Architecture, SearchSpace, SearchSpaceError
from autospikformer.resources import preset_names
from autospikformer.search.architecture import spikformer_4_384

PRESETS = ["S_T1", "S_T2", "S_S", "S_T1+S_S", "S_T2+S_S", "dvs", "digits"]


def test_presets_are_shipped() -> None:
    assert set(PRESETS) <= set(preset_names("spaces"))


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_through_json(name: str) -> None:
    space = SearchSpace.load(name)
    again = SearchSpace.from_json(space.to_json())
    assert again == space
    assert again.fingerprint() == space.fingerprint()


def test_paper_grids() -> None:
    t1 = SearchSpace.load("S_T1").choices
    assert t1["embed_dim"] == (336, 348, 360, 372, 384)
    assert t1["mlp_ratio"] == (3.0, 3.2, 3.4, 3.6, 3.8, 4.0)
    assert t1["depth"] == (2, 3, 4)
    t2 = SearchSpace.load("S_T2").choices
    assert t2["embed_dim"] == (336, 384, 432, 480)
    assert len(t2["mlp_ratio"]) == 11 and t2["mlp_ratio"][-1] == 5.0
    assert t2["depth"] == (2, 3, 4, 5, 6)
    ss = SearchSpace.load("S_S").choices
    assert ss["threshold"] == (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0)
    assert ss["tau"] == (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
    assert ss["time_steps"] == (2, 3, 4)


def test_counts_match_closed_forms() -> None:
    # S_S: Spikformer-4-384 fixed, 8 thresholds and 6 taus per block over 4 blocks, 3 time steps.
    assert SearchSpace.load("S_S").count() == 8**4 * 6**4 * 3
    # S_T1: 5 dims x (6 ratios * 2 heads)^d for d in 2..4.
    assert SearchSpace.load("S_T1").count() == 5 * sum(12**d for d in (2, 3, 4))
    # digits: 3 dims x 3 T x sum_d (3 ratios * 2 heads * 5 thresholds * 4 taus)^d.
    assert SearchSpace.load("digits").count() == 9 * (120 + 120**2)


def test_spikformer_4_384_is_in_s_s_and_s_t1_but_not_s_t2() -> None:
    arch = spikformer_4_384()
    assert SearchSpace.load("S_S").contains(arch)
    assert SearchSpace.load("S_T1+S_S").contains(arch)
    assert SearchSpace.load("S_T2").contains(arch)  # 384 is on the 48-step grid
    assert not SearchSpace.load("digits").contains(arch)


def test_largest_and_smallest() -> None:
    space = SearchSpace.load("S_T2+S_S")
    big, small = space.largest(), space.smallest()
    assert (big.depth, big.embed_dim, big.time_steps) == (6, 480, 4)
    assert big.mlp_ratio == (5.0,) * 6 and big.num_heads == (12,) * 6
    assert (small.depth, small.embed_dim, small.time_steps) == (2, 336, 2)
    assert small.threshold == (0.6, 0.6) and small.tau == (1.25, 1.25)
    assert space.contains(big) and space.contains(small)


def test_sample_is_uniform_and_inside() -> None:
    space = SearchSpace.load("S_T2+S_S")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(5000)]
    assert all(space.contains(a) for a in archs)
    depth = Counter(a.depth for a in archs)
    assert set(depth) == {2, 3, 4, 5, 6}
    assert all(abs(n - 1000) < 120 for n in depth.values())  # 4 sigma of a binomial(5000, 0.2)
    taus = Counter(t for a in archs for t in a.tau)
    expected = sum(a.depth for a in archs) / 6
    assert all(abs(n - expected) < 5 * expected**0.5 for n in taus.values())
    assert space.sample(random.Random(7)) == space.sample(random.Random(7))


def test_contains_names_the_off_grid_field() -> None:
    space = SearchSpace.load("S_T1")
    arch = Architecture.uniform(depth=3, embed_dim=384, mlp_ratio=3.1, num_heads=12)
    assert not space.contains(arch)
    with pytest.raises(SearchSpaceError, match=r"mlp_ratio=3.1 \(allowed: 3.0, 3.2"):
        space.check(arch)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


GOOD = """
name = "tiny"
[transformer]
embed_dim = [16, 32]
mlp_ratio = { min = 1.0, max = 2.0, step = 0.5 }
num_heads = [2, 4]
depth = [1, 2]
[neuron]
threshold = [1.0]
tau = [2.0]
time_steps = [1, 2]
"""


def test_custom_file_loads(tmp_path: Path) -> None:
    space = SearchSpace.load(_write(tmp_path, GOOD))
    assert space.name == "tiny"
    assert space.choices["mlp_ratio"] == (1.0, 1.5, 2.0)
    assert space.count() == 2 * 2 * (6 + 36)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("step = 0.5", "step = 0.3", "mlp_ratio: step 0.3 does not divide"),
        ("depth = [1, 2]", "", r"\[transformer\].depth: missing"),
        (
            "num_heads = [2, 4]",
            "num_heads = [2, 3]",
            "num_heads: 3 heads do not divide embed_dim 16",
        ),
        ("tau = [2.0]", "tau = []", "tau: the choice list is empty"),
        ("tau = [2.0]", "tau = [2.0, -1.0]", "tau: choices must be positive"),
        ("tau = [2.0]", "tau = [2.0, 1.0]", r"tau: choices must be > 1 .*got 1\.0"),
        ("tau = [2.0]", "tau = [0.5]", "tau: choices must be > 1"),
        ("time_steps = [1, 2]", "time_steps = [1.5]", "time_steps: choices must be integers"),
        ("tau = [2.0]", "tau = [2.0]\nleak = [1]", r"unknown fields \['leak'\]"),
        ("[neuron]", "[neurons]", r"unknown keys \['neurons'\]"),
        ('name = "tiny"', 'name = "tiny', "not valid TOML"),
        ("embed_dim = [16, 32]", "embed_dim = [16, 16]", "duplicates"),
    ],
)
def test_malformed_file_gets_one_clear_error(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(SearchSpaceError, match=message) as info:
        SearchSpace.load(path)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(SearchSpaceError, match=r"unknown search space 'S_T3'.*S_T1\+S_S"):
        SearchSpace.load("S_T3")


def test_fingerprint_ignores_name_but_not_choices(tmp_path: Path) -> None:
    a = SearchSpace.load(_write(tmp_path, GOOD))
    b = SearchSpace.from_dict({**a.to_dict(), "name": "other"})
    c = SearchSpace.from_dict(json.loads(a.to_json().replace("[1, 2]", "[1, 2, 3]", 1)))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()


# --- Architecture ----------------------------------------------------------------------------
def test_architecture_round_trips() -> None:
    space = SearchSpace.load("S_T2+S_S")
    rng = random.Random(1)
    for _ in range(200):
        arch = space.sample(rng)
        assert Architecture.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
        assert Architecture.parse(str(arch)) == arch
        assert Architecture.parse(arch.to_json()) == arch
        assert hash(Architecture.parse(str(arch))) == hash(arch)


ODD_SPACES = [
    {  # values with many digits (stored rounded to 6 decimals), tiny and large ones
        "transformer": {
            "embed_dim": [24, 48],
            "mlp_ratio": [0.333333, 3.333333, 2.718282, 123456.789012],
            "num_heads": [1, 3],
            "depth": [1, 3],
        },
        "neuron": {
            "threshold": [1e-06, 0.123457, 7.000001],
            "tau": [1.000001, 1.333333, 1e6],
            "time_steps": [1, 7],
        },
    },
    {  # ranges whose steps are not exact in binary
        "transformer": {
            "embed_dim": [12],
            "mlp_ratio": {"min": 0.1, "max": 1.0, "step": 0.1},
            "num_heads": [3],
            "depth": [2],
        },
        "neuron": {
            "threshold": {"min": 0.3, "max": 2.1, "step": 0.3},
            "tau": {"min": 1.1, "max": 1.7, "step": 0.15},
            "time_steps": [2],
        },
    },
]


@pytest.mark.parametrize("name", [*preset_names("spaces"), "odd-0", "odd-1"])
def test_compact_form_round_trips_exactly(name: str) -> None:
    if name.startswith("odd-"):
        space = SearchSpace.from_dict({"name": name, **ODD_SPACES[int(name[-1])]})
    else:
        space = SearchSpace.load(name)
    rng = random.Random(name)
    for _ in range(300):
        arch = space.sample(rng)
        again = Architecture.parse(str(arch))
        assert again == arch and space.contains(again)
        for field in ("mlp_ratio", "threshold", "tau"):  # to the last bit
            assert [v.hex() for v in getattr(again, field)] == [
                v.hex() for v in getattr(arch, field)
            ]


def test_compact_form_is_readable() -> None:
    arch = Architecture(
        depth=2,
        embed_dim=48,
        mlp_ratio=(3.0, 4.0),
        num_heads=(4, 4),
        threshold=(1.0, 1.2),
        tau=(2.0, 1.25),
        time_steps=4,
    )
    assert str(arch) == "d2-e48-t4:r3,4:h4,4:th1,1.2:tau2,1.25"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mlp_ratio": (4.0,)}, "mlp_ratio has 1 values but depth is 2"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"num_heads": (5, 5)}, r"num_heads\[0\]=5 does not divide embed_dim=48"),
        ({"tau": (2.0, 0.0)}, "tau values must be positive"),
        ({"tau": (2.0, 1.0)}, r"tau values must be > 1"),
        ({"threshold": 1.0}, "threshold must be a list"),
    ],
)
def test_architecture_validation_names_the_field(kwargs: dict, message: str) -> None:
    base = {
        "depth": 2,
        "embed_dim": 48,
        "mlp_ratio": (3.0, 4.0),
        "num_heads": (4, 4),
        "threshold": (1.0, 1.0),
        "tau": (2.0, 2.0),
        "time_steps": 4,
    }
    with pytest.raises(ValueError, match=message):
        Architecture(**{**base, **kwargs})


def test_parse_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="expected JSON or the compact form"):
        Architecture.parse("d2-e48")
    with pytest.raises(ValueError, match="missing fields"):
        Architecture.parse('{"depth": 1}')


def test_mlp_hidden_rounds_the_product() -> None:
    arch = Architecture.uniform(depth=1, embed_dim=348, mlp_ratio=3.2, num_heads=12)
    assert arch.mlp_hidden(0) == 1114  # 3.2 * 348 = 1113.6
