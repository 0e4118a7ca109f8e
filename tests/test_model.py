"""Spikformer and SuperSpikformer: parameter counts, exact subnet equality, sliced gradients,
per-block neurons, no state leak across batches."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from spikingjelly.activation_based import neuron

from autospikformer import Architecture, SearchSpace, Spikformer, SuperSpikformer
from autospikformer.data.base import DatasetInfo
from autospikformer.energy import count_parameters
from autospikformer.model.supernet import ElasticConv2d, ElasticLinear
from autospikformer.search.architecture import spikformer_2_256, spikformer_4_384

ALL_SPACES = ["S_T1", "S_T2", "S_S", "S_T1+S_S", "S_T2+S_S", "dvs", "digits"]
SIZES = {"dvs": (2, 128), "digits": (1, 8)}

# A small space at CIFAR size (32x32: two pools), cheap enough for exact forward checks on a CPU.
SMALL_CIFAR = {
    "name": "small-cifar",
    "transformer": {
        "embed_dim": [16, 24, 32],
        "mlp_ratio": [1.0, 1.5, 2.0],
        "num_heads": [2, 4],
        "depth": [1, 2, 3],
    },
    "neuron": {"threshold": [0.6, 1.0, 1.4], "tau": [1.5, 2.0, 3.0], "time_steps": [1, 2, 3]},
}


def test_spikformer_4_384_parameter_counts() -> None:
    with torch.device("meta"):
        assert Spikformer(spikformer_4_384(), num_classes=10).num_parameters() == 9_324_730
        assert Spikformer(spikformer_4_384(), num_classes=100).num_parameters() == 9_359_380


def test_dvs_variant_parameter_count() -> None:
    """SPEC section 1: the reference's DVS model, Spikformer-2-256, has 2,566,666 parameters;
    the CIFAR-style block at the same size has 2,568,202 (q, k, v biases: 2 x 3 x 256 more)."""
    arch = spikformer_2_256()
    shape = {"num_classes": 10, "in_channels": 2, "img_size": 128}
    with torch.device("meta"):
        dvs = Spikformer(arch, **shape, variant="dvs")
        cifar = Spikformer(arch, **shape)
        supernet = SuperSpikformer(SearchSpace.load("dvs"), **shape, variant="dvs")
        assert dvs.num_parameters() == 2_566_666 == supernet.num_parameters(arch)
        assert cifar.num_parameters() == 2_568_202
    assert count_parameters(arch, DatasetInfo("dvs", **shape, event_based=True)) == 2_566_666
    assert count_parameters(arch, DatasetInfo("images", **shape)) == 2_568_202
    for block in dvs.blocks:
        assert block.attn.scale == 0.25
        assert all(getattr(block.attn, u).linear.bias is None for u in "qkv")
        assert block.attn.proj.linear.bias is not None and block.mlp.fc1.linear.bias is not None
    assert cifar.blocks[0].attn.scale == 0.125 and cifar.blocks[0].attn.q.linear.bias is not None
    with pytest.raises(ValueError, match="variant must be one of cifar, dvs, got 'imagenet'"):
        Spikformer(arch, **shape, variant="imagenet")


@pytest.mark.parametrize(("variant", "scale"), [("cifar", 0.125), ("dvs", 0.25)])
def test_attention_scale_of_each_variant(variant: str, scale: float) -> None:
    """The attention LIF's input is ``(q k^T * scale) v`` from the q, k, v spikes, by hand."""
    arch = Architecture.uniform(depth=1, embed_dim=32, mlp_ratio=2.0, num_heads=4, time_steps=2)
    torch.manual_seed(0)
    model = Spikformer(arch, num_classes=5, in_channels=2, img_size=16, variant=variant).eval()
    _excite(model)
    attn = model.blocks[0].attn
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(attn, u).lif.register_forward_hook(
            lambda m, a, out, u=u: seen.__setitem__(u, out.detach())
        )
        for u in "qkv"
    ]
    hooks.append(
        attn.attn_lif.register_forward_hook(lambda m, a, out: seen.__setitem__("in", a[0]))
    )
    with torch.no_grad():
        model(torch.rand(3, 2, 2, 16, 16))
    for h in hooks:
        h.remove()
    steps, batch, tokens, dim = seen["q"].shape
    q, k, v = (seen[u].reshape(steps, batch, tokens, 4, dim // 4).transpose(2, 3) for u in "qkv")
    assert q.sum() > 0 and k.sum() > 0 and v.sum() > 0
    want = ((q @ k.transpose(-2, -1)) * scale @ v).transpose(2, 3).reshape(seen["in"].shape)
    assert torch.equal(seen["in"], want)  # spike counts times a power of two: exact


@pytest.mark.parametrize("name", ALL_SPACES)
def test_subnet_parameter_count_equals_standalone(name: str) -> None:
    space = SearchSpace.load(name)
    in_channels, img_size = SIZES.get(name, (3, 32))
    shape = {"num_classes": 100, "in_channels": in_channels, "img_size": img_size}
    variant = "dvs" if name == "dvs" else "cifar"
    rng = random.Random(name)
    with torch.device("meta"):
        supernet = SuperSpikformer(space, **shape, variant=variant)
        archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(25)]
        for arch in archs:
            model = Spikformer(arch, **shape, variant=variant)
            assert supernet.num_parameters(arch) == model.num_parameters(), str(arch)
            events = DatasetInfo(name, **shape, event_based=variant == "dvs")
            assert count_parameters(arch, events) == model.num_parameters()
    # The supernet itself holds exactly the largest subnet's weights.
    largest = space.largest()
    assert sum(p.numel() for p in supernet.parameters()) == supernet.num_parameters(largest)


def _excite(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights and BN statistics large enough that every LIF layer fires."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif name.endswith("bn.weight") or ".bns." in name or name.endswith("rpe_bn.weight"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 1.0)
            else:
                fan_in = tensor[0].numel() if tensor.dim() > 1 else 1
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)


def _spike_means(model: torch.nn.Module, run) -> dict[str, float]:
    """Mean output of every LIF neuron layer during ``run()``, keyed by module name."""
    means: dict[str, float] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, key=name: means.__setitem__(key, out.mean().item())
        )
        for name, m in model.named_modules()
        if isinstance(m, neuron.LIFNode)
    ]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return means


@pytest.mark.parametrize(
    ("space_name", "in_channels", "img_size", "variant"),
    [("digits", 1, 8, "cifar"), ("small", 3, 32, "cifar"), ("small", 2, 128, "dvs")],
)
def test_supernet_and_extracted_model_compute_the_same(
    space_name: str, in_channels: int, img_size: int, variant: str
) -> None:
    space = (
        SearchSpace.load("digits") if space_name == "digits" else SearchSpace.from_dict(SMALL_CIFAR)
    )
    torch.manual_seed(0)
    supernet = SuperSpikformer(
        space, num_classes=7, in_channels=in_channels, img_size=img_size, variant=variant
    )
    _excite(supernet)
    supernet.eval()
    rng = random.Random(3)
    for i in range(6):
        arch = space.sample(rng) if i > 1 else (space.largest(), space.smallest())[i]
        gen = torch.Generator().manual_seed(i)
        if variant == "dvs":  # event counts [B, T, 2, H, W]
            shape = (4, arch.time_steps, in_channels, img_size, img_size)
            x = (torch.rand(shape, generator=gen) < 0.2).float() * 2
        else:
            x = torch.rand(4, in_channels, img_size, img_size, generator=gen)
        with torch.no_grad():
            fires = _spike_means(supernet, lambda x=x, arch=arch: supernet(x, arch))
            got = supernet(x, arch)
            model = supernet.extract(arch)
            want = model(x)
        assert model.variant == variant
        assert 0.02 < sum(fires.values()) / len(fires) < 0.98, "test input must make neurons fire"
        assert got.std() > 0
        # Same kernels on the same values: the leading-slice views and the copies give the
        # identical bits on the CPU in float32.
        assert torch.equal(got, want), str(arch)


def test_gradients_touch_only_the_sliced_weights() -> None:
    space = SearchSpace.from_dict(SMALL_CIFAR)
    torch.manual_seed(0)
    supernet = SuperSpikformer(space, num_classes=5, in_channels=3, img_size=32)
    _excite(supernet)
    arch = Architecture(
        depth=2,
        embed_dim=24,
        mlp_ratio=(1.0, 1.5),
        num_heads=(2, 4),
        threshold=(0.6, 1.0),
        tau=(2.0, 1.5),
        time_steps=2,
    )
    x = torch.rand(3, 3, 32, 32)
    loss = supernet(x, arch).square().sum()
    loss.backward()
    checked = 0
    for name, module in supernet.named_modules():
        if not isinstance(module, (ElasticLinear, ElasticConv2d)):
            continue
        grad = module.weight.grad
        if name.startswith("blocks.2."):  # beyond the depth: never used
            assert grad is None
            continue
        out, inp = module.active
        inside = grad[:out, :inp]
        outside = grad.clone()
        outside[:out, :inp] = 0
        assert torch.count_nonzero(outside) == 0, name
        assert torch.count_nonzero(inside) > 0, name
        if module.bias is not None:
            assert torch.count_nonzero(module.bias.grad[out:]) == 0, name
        checked += 1
    assert checked == 5 + 2 * 6 + 1  # SPS convs + 6 linears per block + head


def test_threshold_and_tau_change_only_their_block() -> None:
    space = SearchSpace.load("digits")
    torch.manual_seed(0)
    supernet = SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8).eval()
    _excite(supernet, seed=1)
    base = Architecture(
        depth=2,
        embed_dim=48,
        mlp_ratio=(2.0, 3.0),
        num_heads=(4, 2),
        threshold=(1.0, 1.0),
        tau=(2.0, 2.0),
        time_steps=3,
    )
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = _spike_means(supernet, lambda: supernet(x, base))
        for changed in (
            Architecture(**{**base.to_dict(), "threshold": (1.0, 1.4)}),
            Architecture(**{**base.to_dict(), "tau": (2.0, 1.25)}),
        ):
            new = _spike_means(supernet, lambda a=changed: supernet(x, a))
            before = [k for k in ref if not k.startswith("blocks.1.")]
            assert all(new[k] == ref[k] for k in before), "SPS and block 0 must not change"
            moved = [k for k in ref if k.startswith("blocks.1.") and new[k] != ref[k]]
            assert len(moved) >= 5, moved  # the block's LIFs fire differently
    # Higher threshold fires less in the changed block's first neurons.
    with torch.no_grad():
        high = _spike_means(
            supernet,
            lambda: supernet(x, Architecture(**{**base.to_dict(), "threshold": (1.0, 1.4)})),
        )
    assert high["blocks.1.attn.q.lif"] < ref["blocks.1.attn.q.lif"]


def test_block_neurons_follow_the_spec() -> None:
    arch = Architecture(
        depth=2,
        embed_dim=32,
        mlp_ratio=(2.0, 2.0),
        num_heads=(2, 2),
        threshold=(1.2, 0.8),
        tau=(3.0, 1.25),
        time_steps=2,
    )
    model = Spikformer(arch, num_classes=10, in_channels=1, img_size=8)
    for i, block in enumerate(model.blocks):
        for unit in (
            block.attn.q,
            block.attn.k,
            block.attn.v,
            block.attn.proj,
            block.mlp.fc1,
            block.mlp.fc2,
        ):
            assert (unit.lif.v_threshold, unit.lif.tau) == (arch.threshold[i], arch.tau[i])
        assert block.attn.attn_lif.v_threshold == arch.threshold[i] / 2
        assert block.attn.attn_lif.tau == arch.tau[i]
    assert all(
        (lif.v_threshold, lif.tau) == (1.0, 2.0) for lif in [*model.sps.lifs, model.sps.rpe_lif]
    )
    assert all(
        lif.detach_reset and lif.v_reset == 0.0 and lif.step_mode == "m"
        for lif in model.modules()
        if isinstance(lif, neuron.LIFNode)
    )


def test_no_neuron_state_leaks_between_batches() -> None:
    space = SearchSpace.load("digits")
    torch.manual_seed(0)
    supernet = SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8).eval()
    _excite(supernet)
    arch = space.largest()
    a, b = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        fresh = supernet(b, arch).clone()
        supernet(a, arch)
        after = supernet(b, arch)
        other = supernet(b, space.smallest())
        again = supernet(b, arch)
    assert torch.equal(fresh, after)
    assert torch.equal(fresh, again)
    assert other.shape == fresh.shape and not torch.equal(fresh, other)  # another subnet's logits


def test_event_frames_at_dvs_size() -> None:
    arch = Architecture.uniform(depth=1, embed_dim=32, mlp_ratio=2.0, num_heads=2, time_steps=2)
    model = Spikformer(arch, num_classes=11, in_channels=2, img_size=128).eval()
    frames = (torch.rand(2, 2, 2, 128, 128) > 0.8).float()  # [B, T, C, H, W]
    with torch.no_grad():
        out = model(frames)
    assert out.shape == (2, 11)
    with pytest.raises(ValueError, match="input has 3 frames but the architecture uses T=2"):
        model(torch.zeros(1, 3, 2, 128, 128))


def test_full_s_t2_supernet_runs_at_batch_one() -> None:
    space = SearchSpace.load("S_T2+S_S")
    supernet = SuperSpikformer(space, num_classes=100).eval()
    assert sum(p.numel() for p in supernet.parameters()) == supernet.num_parameters(space.largest())
    with torch.no_grad():
        for arch in (space.largest(), space.smallest()):
            assert supernet(torch.rand(1, 3, 32, 32), arch).shape == (1, 100)


def test_arch_outside_the_space_is_refused() -> None:
    supernet = SuperSpikformer(
        SearchSpace.load("digits"), num_classes=10, in_channels=1, img_size=8
    )
    with pytest.raises(ValueError, match="embed_dim=96"):
        supernet(
            torch.rand(1, 1, 8, 8),
            Architecture.uniform(depth=1, embed_dim=96, mlp_ratio=2, num_heads=2),
        )


def test_extracted_model_saves_and_loads(tmp_path: Path) -> None:
    space = SearchSpace.load("digits")
    supernet = SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8)
    _excite(supernet)
    supernet.eval()
    arch = space.sample(random.Random(5))
    model = supernet.extract(arch)
    model.save(tmp_path / "m.pt", accuracy=0.5)
    loaded = Spikformer.load(tmp_path / "m.pt").eval()
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.arch == arch
    # the variant travels with the file; a file from before variants existed is the image model
    dvs = SuperSpikformer(space, num_classes=10, in_channels=2, img_size=16, variant="dvs")
    dvs.extract(arch).save(tmp_path / "dvs.pt")
    assert Spikformer.load(tmp_path / "dvs.pt").variant == "dvs"
    old = torch.load(tmp_path / "m.pt", weights_only=True)
    del old["variant"], old["checksum"]  # written before variants and checksums existed
    torch.save(old, tmp_path / "old.pt")
    assert Spikformer.load(tmp_path / "old.pt").variant == "cifar"
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is a text file, not a checkpoint"):
        Spikformer.load(tmp_path / "bad.pt")


def test_a_saved_model_is_checksummed_and_written_whole(tmp_path: Path, monkeypatch) -> None:
    """Spikformer.save writes as every checkpoint does: a checksum refuses altered weights, and
    a write that dies midway leaves the previous file as it was and no partial file beside it."""
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=2)
    model = Spikformer(arch, num_classes=10, in_channels=1, img_size=8)
    path = tmp_path / "m.pt"
    model.save(path)
    before = path.read_bytes()
    data = torch.load(path, weights_only=True)
    assert len(data["checksum"]) == 64
    data["state_dict"]["head.weight"][0, 0] += 1.0
    torch.save(data, tmp_path / "altered.pt")
    with pytest.raises(ValueError, match="does not match its checksum"):
        Spikformer.load(tmp_path / "altered.pt")

    def dies_midway(obj, fh, *args, **kwargs):  # the disk fills up halfway through
        fh.write(before[: len(before) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space left"):
        Spikformer(arch, num_classes=10, in_channels=1, img_size=8).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["altered.pt", "m.pt"]


def test_a_model_in_double_precision_runs_in_double_precision() -> None:
    """Gradient checks move a model to float64: its membranes stay float64 (only half precision,
    under autocast, is cast up to float32)."""
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=2)
    model = Spikformer(arch, num_classes=10, in_channels=1, img_size=8).double()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    out = model(x)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float64
    assert all(p.grad.dtype == torch.float64 for p in model.parameters() if p.grad is not None)
    lif = model.blocks[0].mlp.fc1.lif
    assert lif.v.dtype == torch.float64
    half = lif(torch.rand(2, 3, 4, dtype=torch.bfloat16))
    assert half.dtype == torch.float32


def test_only_torchs_triton_probe_warning_is_dropped() -> None:
    """Without Triton (torch's CPU build) spikingjelly's kernel registration makes torch log
    "Triton not available"; the model module drops that message and no other."""
    import logging

    import autospikformer.model.spikformer  # noqa: F401  (installs the filter)

    logger = logging.getLogger("torch._library.triton")

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, None, None)

    assert not logger.filter(record("Triton not available, find_triton_kernels = []"))
    assert logger.filter(record("Triton kernel failed to compile"))


@pytest.mark.parametrize("tau", [1.5, 2.0, 3.0, 10 / 3])
@pytest.mark.parametrize("threshold", [0.25, 0.5, 1.0, 1.75])
def test_inference_lif_fires_as_spikingjellys_kernel(tau: float, threshold: float) -> None:
    """Without autograd on the CPU the LIF runs its own loop; its spikes and membrane equal
    spikingjelly's kernel bit for bit: inputs on the threshold, a membrane kept from the previous
    call, NaN and infinity, and every T."""
    from autospikformer.model.spikformer import make_lif

    generator = torch.Generator().manual_seed(7)
    for steps in (1, 2, 5):
        x = torch.randn(steps, 6, 40, generator=generator) * 2
        x[:, :2] = torch.round(x[:, :2] * 8) / 8  # many exact hits of every threshold
        x[0, 5, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
        fast, kernel = make_lif(threshold, tau), make_lif(threshold, tau)
        with torch.no_grad():
            assert fast._exact_fast_path(x, (), {})
            got = (fast(x), fast(x * 0.7), fast.v)
        with torch.enable_grad():  # what training runs: spikingjelly's own kernel
            assert not kernel._exact_fast_path(x, (), {})
            want = (kernel(x), kernel(x * 0.7), kernel.v)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(torch.isnan(a), torch.isnan(b))
            assert torch.equal(a.nan_to_num(), b.detach().nan_to_num())
        assert got[0].sum() > 0 and (got[0] == 0).any()  # both outcomes occur


def test_inference_lif_leaves_training_to_spikingjelly() -> None:
    """With autograd, on half precision inputs before the cast, or with a voltage monitor the
    kernel keeps the step: gradients flow through the surrogate as before."""
    from autospikformer.model.spikformer import make_lif

    lif = make_lif(0.5, 2.0)
    x = torch.rand(3, 4, 5, requires_grad=True)
    lif(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    lif.store_v_seq = True
    with torch.no_grad():
        assert not lif._exact_fast_path(x.detach(), (), {})
        assert not lif._exact_fast_path(x.detach().double(), (), {})
