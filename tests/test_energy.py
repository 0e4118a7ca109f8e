"""The energy model (SPEC section 4): hand-derived MAC counts, exact rates, closed forms, the
supernet/extract agreement, spikingjelly's SynOp counter, and the ``autospik energy`` command."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from helpers import TINY_SPACE
from typer.testing import CliRunner

from autospikformer.checkpoint import save_checkpoint
from autospikformer.energy import (
    E_AC_PJ,
    E_MAC_PJ,
    EnergyMeter,
    analytic_report,
    count_parameters,
    dense_macs,
    estimate_energy_mj,
)
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.architecture import Architecture, spikformer_4_384
from autospikformer.search.space import SearchSpace, SearchSpaceError

PJ = 1e-9  # 1 pJ in mJ


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and far faster on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(depth: int = 1, time_steps: int = 2, dim: int = 32) -> Architecture:
    return Architecture.uniform(
        depth=depth, embed_dim=dim, mlp_ratio=2.0, num_heads=2, time_steps=time_steps
    )


def lively(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Eval mode, weights and BN affine drawn so that neurons fire (a fresh init is
    nearly silent)."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):  # fan-in scaled, input-driven
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * (2 / fan_in**0.5)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=gen) * 1.5
    return model.eval()


def measure(model: torch.nn.Module, x: torch.Tensor, arch: Architecture | None = None):
    with torch.no_grad(), EnergyMeter(model, arch) as meter:
        model(x) if arch is None else model(x, arch)
    return meter


# --------------------------------------------------------------------------- closed forms


def hand_macs_4_384() -> dict[str, int]:
    """Spikformer-4-384 on 3x32x32, 10 classes: one image, one time step, derived by hand."""
    n, e, hidden = 64, 384, 1536  # 8x8 tokens, embed dim, 4 * 384
    macs = {
        # Conv3x3 MACs = C_out * C_in * 9 * H_out * W_out; pools after stages 3 and 4
        "sps.convs.0": 48 * 3 * 9 * 32 * 32,
        "sps.convs.1": 96 * 48 * 9 * 32 * 32,
        "sps.convs.2": 192 * 96 * 9 * 32 * 32,
        "sps.convs.3": 384 * 192 * 9 * 16 * 16,
        "sps.rpe_conv": 384 * 384 * 9 * 8 * 8,
    }
    for i in range(4):
        p = f"blocks.{i}.attn"
        for unit in ("q", "k", "v"):
            macs[f"{p}.{unit}.linear"] = n * e * e
        macs[f"{p}.q@k^T"] = 12 * n * n * 32  # 12 heads of N*N*d, d = 32
        macs[f"{p}.attn@v"] = 12 * n * n * 32
        macs[f"{p}.proj.linear"] = n * e * e
        macs[f"blocks.{i}.mlp.fc1.linear"] = n * e * hidden
        macs[f"blocks.{i}.mlp.fc2.linear"] = n * hidden * e
    macs["head"] = e * 10
    return macs


def test_dense_macs_and_closed_forms_spikformer_4_384() -> None:
    arch = spikformer_4_384()
    hand = hand_macs_4_384()
    table = dense_macs(arch)
    assert dict(zip(table["layer"], table["dense_macs"], strict=True)) == hand
    assert list(table["layer"]) == list(hand)  # execution order
    assert hand["sps.convs.0"] == 1_327_104
    others = sum(v for k, v in hand.items() if k != "sps.convs.0")
    assert others == 467_140_608 + 4 * 116_391_936 + 3840  # SPS, 4 blocks, head
    upper = E_MAC_PJ * 1_327_104 * PJ + E_AC_PJ * 4 * others * PJ
    assert estimate_energy_mj(arch, rate=1.0) == pytest.approx(upper, rel=1e-12)
    assert estimate_energy_mj(arch, rate=0.0) == pytest.approx(4.6 * 1_327_104 * PJ, rel=1e-12)
    assert upper == pytest.approx(3.36387, rel=1e-5)
    report = analytic_report(arch, rate=1.0)
    assert report.energy_mj == pytest.approx(upper, rel=1e-12)
    assert report.total_sops == 4 * others
    assert report.num_parameters == 9_324_730  # SPEC section 1
    assert count_parameters(arch, num_classes=100) == 9_359_380
    # SPEC's scale check: about 0.95 mJ at a mean rate of 0.35 (CIFAR-100 head)
    assert 0.8 < estimate_energy_mj(arch, rate=0.35, num_classes=100) < 1.3


def test_meter_closed_forms_on_a_4_384_forward() -> None:
    arch = spikformer_4_384()
    torch.manual_seed(0)
    model = Spikformer(arch, num_classes=10).eval()
    meter = measure(model, torch.rand(1, 3, 32, 32))
    hand = hand_macs_4_384()
    ones, zeros = meter.report(rate_override=1.0), meter.report(rate_override=0.0)
    assert dict(zip(ones.table["layer"], ones.table["dense_macs"], strict=True)) == hand
    others = sum(v for k, v in hand.items() if k != "sps.convs.0")
    first = 4.6 * hand["sps.convs.0"] * PJ
    assert ones.energy_mj == pytest.approx(first + 0.9 * 4 * others * PJ, rel=1e-12)
    assert zeros.energy_mj == pytest.approx(first, rel=1e-12)
    assert ones.images == 1 and ones.num_parameters == 9_324_730


# --------------------------------------------------------------------------- exact rates


def hand_built(depth: int = 2) -> Spikformer:
    """Zero weights, so every neuron's drive is its BN bias: a known spike pattern.

    With tau 2 and threshold 1 a LIF driven by a constant b fires at every step for b = 3
    (v = 1.5), at steps 2 and 4 for b = 1.5 (v = 0.75, 1.125) and never for b = 0. Channel biases
    3, 0, 1.5, 0 repeated give rates 1, 0, 0.5, 0: every layer fires at 0.375 exactly. The k
    neurons are silent, so attn = 0 and the attention LIF never fires.
    """
    arch = Architecture.uniform(depth=depth, embed_dim=32, mlp_ratio=2.0, num_heads=2)  # T=4
    model = Spikformer(arch, num_classes=10, in_channels=1, img_size=16).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.zeros_(m.weight)
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.data.fill_(1.0)
            m.bias.data = torch.tensor([3.0, 0.0, 1.5, 0.0]).repeat(m.num_features // 4)
    for block in model.blocks:
        block.attn.k.bn.bias.data.zero_()
    return model


def test_rates_are_exact_on_a_known_spike_pattern() -> None:
    model = hand_built(depth=2)
    meter = EnergyMeter(model)
    with torch.no_grad(), meter:
        model(torch.randn(3, 1, 16, 16))
        model(torch.randn(5, 1, 16, 16))
    report = meter.report()
    rates = dict(zip(report.table["layer"], report.table["input_rate"], strict=True))
    assert math.isnan(rates.pop("sps.convs.0"))
    expected = {f"sps.convs.{i}": 0.375 for i in (1, 2, 3)} | {"sps.rpe_conv": 0.375}
    stream = 0.75  # SPS output: rpe spikes + stage-4 spikes, spike counts 0, 1, 2
    for i in range(2):
        p = f"blocks.{i}"
        for unit in ("q", "k", "v"):
            expected[f"{p}.attn.{unit}.linear"] = stream
        expected[f"{p}.attn.q@k^T"] = 0.375  # rate of q
        expected[f"{p}.attn.attn@v"] = 0.375  # rate of v
        expected[f"{p}.attn.proj.linear"] = 0.0  # the silent attention LIF
        stream += 0.375  # + proj spikes
        expected[f"{p}.mlp.fc1.linear"] = stream
        expected[f"{p}.mlp.fc2.linear"] = 0.375
        stream += 0.375  # + fc2 spikes
    expected["head"] = stream  # mean over tokens and T of the residual stream: 2.25
    assert rates == expected
    assert report.images == 8 and report.time_steps == 4
    # the mean firing rate weights every neuron-step once: SPS LIFs (4, 8, 16, 32 channels at
    # 16x16, rpe 32 at 8x8) all at 0.375; per block q, v, proj, fc2 (64x32) and fc1 (64x64) at
    # 0.375, k and the attention LIF (64x32 each) silent
    sps = 4 * 256 + 8 * 256 + 16 * 256 + 32 * 256 + 32 * 64
    firing, silent = 4 * 64 * 32 + 64 * 64, 2 * 64 * 32
    assert report.mean_firing_rate == pytest.approx(
        0.375 * (sps + 2 * firing) / (sps + 2 * (firing + silent)), rel=1e-15
    )
    lif = meter.lif_rates()
    assert lif["blocks.1.attn.k.lif"] == 0.0 and lif["sps.lifs.3"] == 0.375
    # SOPs = rate * T * MACs is the exact accumulate count: fc2 gets 0.375 * 4 steps * 64 tokens
    # * 64 inputs spikes per image, each fanning out to 32 outputs
    ops = dict(zip(report.table["layer"], report.table["ops"], strict=True))
    assert ops["blocks.0.mlp.fc2.linear"] == 0.375 * 4 * 64 * 64 * 32
    assert ops["sps.convs.0"] == 4 * 1 * 9 * 16 * 16  # dense MACs, once: 4 out, 1 in
    expected_mj = 4.6 * ops["sps.convs.0"] * PJ + 0.9 * PJ * sum(
        v for k, v in ops.items() if k != "sps.convs.0"
    )
    assert report.energy_mj == pytest.approx(expected_mj, rel=1e-12)


def test_rates_accumulate_over_batches_weighted_by_elements() -> None:
    arch = tiny()
    model = lively(Spikformer(arch, num_classes=10, in_channels=1, img_size=8))
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(3, 1, 8, 8, generator=gen) * 3, torch.randn(7, 1, 8, 8, generator=gen) * 3
    ra, rb = measure(model, a).report(), measure(model, b).report()
    meter = EnergyMeter(model)
    with torch.no_grad(), meter:
        model(a)
        model(b)
    both = meter.report()
    assert both.images == 10
    weighted = (3 * ra.table["input_rate"] + 7 * rb.table["input_rate"]) / 10
    assert both.table["input_rate"].iloc[1:].tolist() == pytest.approx(
        weighted.iloc[1:].tolist(), rel=1e-12
    )
    assert both.energy_mj == pytest.approx((3 * ra.energy_mj + 7 * rb.energy_mj) / 10, rel=1e-12)
    assert 0.01 < both.mean_firing_rate < 0.9  # the model is alive
    # hooks are gone after the context; reset forgets
    model(a)
    assert meter.report().images == 10
    assert all(not m._forward_hooks for m in model.modules())
    meter.reset()
    with pytest.raises(RuntimeError, match="no forward pass"):
        meter.report()


# --------------------------------------------------------------------------- supernet


def _space(**over: object) -> SearchSpace:
    neuron = {"threshold": [0.6, 1.0], "tau": [1.5, 2.0], "time_steps": [1, 2, 4]}
    return SearchSpace.from_dict({**TINY_SPACE, "neuron": neuron, **over})


@pytest.mark.parametrize(
    ("space", "in_channels", "img_size"),
    [(SearchSpace.load("digits"), 1, 8), (_space(), 3, 32)],
    ids=["digits-8x8", "tiny-32x32"],
)
def test_hook_macs_equal_dense_macs_for_random_architectures(
    space: SearchSpace, in_channels: int, img_size: int
) -> None:
    torch.manual_seed(0)
    net = SuperSpikformer(space, num_classes=7, in_channels=in_channels, img_size=img_size).eval()
    rng = random.Random(3)
    x = torch.rand(2, in_channels, img_size, img_size)
    for _ in range(3):
        arch = space.sample(rng)
        report = measure(net, x, arch).report()
        expected = dense_macs(arch, in_channels=in_channels, img_size=img_size, num_classes=7)
        assert report.table["layer"].tolist() == expected["layer"].tolist()
        assert report.table["dense_macs"].tolist() == expected["dense_macs"].tolist()
        n_params = count_parameters(arch, in_channels=in_channels, img_size=img_size, num_classes=7)
        assert report.num_parameters == n_params == net.num_parameters(arch)


def test_subnet_and_extracted_model_report_the_same_energy() -> None:
    space = SearchSpace.load("digits")
    net = lively(SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8), seed=2)
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    rng = random.Random(0)
    for _ in range(2):
        arch = space.sample(rng)
        sub = measure(net, x, arch).report()
        alone = measure(net.extract(arch), x).report()
        assert sub.table.equals(alone.table)
        assert sub.energy_mj == alone.energy_mj and sub.total_sops == alone.total_sops
        assert sub.mean_firing_rate == alone.mean_firing_rate > 0
        assert sub.num_parameters == alone.num_parameters


def test_meter_needs_the_arch_the_supernet_runs() -> None:
    space = SearchSpace.load("digits")
    net = SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8).eval()
    with pytest.raises(ValueError, match="needs arch="):
        EnergyMeter(net)
    with pytest.raises(SearchSpaceError, match="not in space"):
        EnergyMeter(net, spikformer_4_384())
    small, large = space.smallest(), space.largest()
    with torch.no_grad(), EnergyMeter(net, large) as meter:
        net(torch.rand(2, 1, 8, 8), small)
    with pytest.raises(RuntimeError, match="use one EnergyMeter per architecture"):
        meter.report()
    with pytest.raises(ValueError, match="differs"):
        EnergyMeter(Spikformer(small, num_classes=10, in_channels=1, img_size=8), large)


# --------------------------------------------------------------------------- scaling


def one_block_ac_macs(dim: int, hidden: int, tokens: int = 64) -> int:
    return 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * hidden


def test_energy_grows_with_time_steps_embed_dim_and_depth_as_the_formula_says() -> None:
    rate = 0.3
    base = spikformer_4_384(time_steps=2)
    first = 4.6 * 1_327_104 * PJ
    e2 = estimate_energy_mj(base, rate=rate)
    e4 = estimate_energy_mj(spikformer_4_384(time_steps=4), rate=rate)
    assert e4 - first == pytest.approx(2 * (e2 - first), rel=1e-12)  # linear in T
    deeper = Architecture.uniform(depth=5, embed_dim=384, mlp_ratio=4, num_heads=12, time_steps=2)
    assert estimate_energy_mj(deeper, rate=rate) - e2 == pytest.approx(
        0.9 * PJ * rate * 2 * one_block_ac_macs(384, 1536), rel=1e-12
    )
    # embed dim 384 -> 480 (width 60 first stage): every term from the shapes
    wide = Architecture.uniform(depth=4, embed_dim=480, mlp_ratio=4, num_heads=12, time_steps=2)
    sps = 120 * 60 * 9 * 1024 + 240 * 120 * 9 * 1024 + 480 * 240 * 9 * 256 + 480 * 480 * 9 * 64
    ac = sps + 4 * one_block_ac_macs(480, 1920) + 480 * 10
    expected = 4.6 * 60 * 3 * 9 * 1024 * PJ + 0.9 * PJ * rate * 2 * ac
    assert estimate_energy_mj(wide, rate=rate) == pytest.approx(expected, rel=1e-12)
    assert estimate_energy_mj(wide, rate=rate) > e2 * 1.4


def test_measured_energy_scales_with_time_steps_on_shared_weights() -> None:
    space = _space()
    net = lively(SuperSpikformer(space, num_classes=10, in_channels=3, img_size=8), seed=1)
    x = torch.rand(2, 3, 8, 8)
    fields = {"depth": 2, "embed_dim": 32, "mlp_ratio": 2.0, "num_heads": 4}
    reports = {
        t: measure(net, x, Architecture.uniform(**fields, time_steps=t)).report(rate_override=1.0)
        for t in (1, 2, 4)
    }
    first = reports[1].table["energy_mj"].iloc[0]
    for t in (2, 4):
        assert reports[t].total_sops == t * reports[1].total_sops
        assert reports[t].energy_mj - first == pytest.approx(t * (reports[1].energy_mj - first))


# --------------------------------------------------------------------------- spikingjelly


def test_cross_check_with_spikingjelly_synop_counter() -> None:
    """Where both count accumulates driven by binary spikes the totals agree exactly; each
    difference is the one docs/energy.md names."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

    arch = tiny(depth=1, time_steps=2)
    model = lively(Spikformer(arch, num_classes=10, in_channels=1, img_size=8), seed=5)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    seen: dict[str, torch.Tensor] = {}
    taps = [
        model.get_submodule(n).register_forward_hook(
            lambda m, a, o, n=n: seen.__setitem__(n, a[0] if "lif" not in n else o)
        )
        for n in ("blocks.0.attn.q.linear", "blocks.0.attn.q.lif", "blocks.0.attn.k.lif",
                  "sps.convs.1", "sps.convs.2", "sps.convs.3", "sps.rpe_conv")
    ]  # fmt: skip
    counter = SynOpCounter()
    with torch.no_grad(), EnergyMeter(model) as meter, DispatchCounterMode([counter]):
        model(x)
    for tap in taps:
        tap.remove()
    ours = dict(zip(meter.report().table["layer"], meter.report().table["ops"] * 4, strict=True))
    sj = {k.removeprefix("Spikformer."): sum(v.values()) for k, v in counter.records.items()}

    # 1. linears fed by binary spikes: nnz * out_features, exactly our rate * T * MACs
    for name in ("blocks.0.attn.proj.linear", "blocks.0.mlp.fc2.linear"):
        assert ours[name] > 0 and sj[name] == pytest.approx(ours[name], abs=1e-6)
    # 2. attn @ v (attn holds multiples of 1/8, not spikes): nnz(v) * N, as ours; q @ k^T (both
    # binary): spikingjelly counts coincidences (sum of q k^T), we count every spike of q * N
    q = seen["blocks.0.attn.q.lif"]
    k = seen["blocks.0.attn.k.lif"]
    qh = q.reshape(*q.shape[:3], 2, 16).transpose(2, 3)
    kh = k.reshape(*k.shape[:3], 2, 16).transpose(2, 3)
    coincidences = float((qh @ kh.transpose(-2, -1)).sum())
    attn = (qh @ kh.transpose(-2, -1)) * 0.125
    assert not bool(((attn == 0) | (attn == 1)).all())  # precondition: attn is not binary
    assert sj["blocks.0.attn"] == pytest.approx(
        coincidences + ours["blocks.0.attn.attn@v"] + ours["blocks.0.attn.proj.linear"]
    )
    assert ours["blocks.0.attn.q@k^T"] == float(q.sum()) * q.shape[-2] >= coincidences
    # 3. convs fed by spikes: spikingjelly drops the taps that fall on the zero padding;
    # we count the dense 3x3 fan-out (9 * C_out per spike)
    for name in ("sps.convs.1", "sps.convs.2", "sps.convs.3", "sps.rpe_conv"):
        spikes = seen[name]  # 8x8 maps, 4x4 for the rpe conv after the one pool
        size = spikes.shape[-1]
        edge = torch.tensor([2.0, *[3.0] * (size - 2), 2.0])  # valid taps of rows 0..size-1
        valid = edge[:, None] * edge[None, :]
        c_out = model.get_submodule(name).out_channels
        assert ours[name] == pytest.approx(float(spikes.sum()) * 9 * c_out)
        assert sj[name] == pytest.approx(float((spikes * valid).sum()) * c_out)
        assert sj[name] < ours[name]
    # 4. non-spike inputs: spikingjelly counts nothing (the image, the residual stream of spike
    # counts 0/1/2, the token-mean at the head); we count MACs for the image, mean value * T * MACs
    assert not bool(
        ((seen["blocks.0.attn.q.linear"] == 0) | (seen["blocks.0.attn.q.linear"] == 1)).all()
    )
    for name in ("sps.convs.0", "blocks.0.attn.q.linear", "blocks.0.mlp.fc1.linear", "head"):
        assert sj[name] == 0 and ours[name] > 0


# --------------------------------------------------------------------------- CLI


runner = CliRunner()


def _cli(*args: str):
    from autospikformer.cli.app import app

    return runner.invoke(app, ["energy", *args])


def test_cli_analytic_upper_bound() -> None:
    arch = spikformer_4_384()
    result = _cli(str(arch), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["energy_mj"] == pytest.approx(estimate_energy_mj(arch, rate=1.0), rel=1e-12)
    assert data["rate_override"] == 1.0 and data["mean_firing_rate"] is None
    assert len(data["layers"]) == 38 and data["layers"][0]["input_rate"] is None
    assert data["num_parameters"] == 9_324_730
    text = _cli(arch.to_json())
    assert text.exit_code == 0, text.output
    assert "upper bound: every input rate 1" in text.stdout
    assert "blocks.3.mlp.fc2.linear" in text.stdout and "3.36" in text.stdout


def test_cli_errors_are_one_line(tmp_path) -> None:
    bad = _cli("d2-e48")
    assert (
        bad.exit_code == 1 and "error:" in bad.output and "cannot read architecture" in bad.output
    )
    assert len(bad.output.strip().splitlines()) == 1
    off = _cli(str(spikformer_4_384()), "--space", "digits")
    assert off.exit_code == 1 and "not in space 'digits'" in off.output
    missing = _cli(str(tiny()), "--checkpoint", str(tmp_path / "none.pt"))
    assert missing.exit_code == 1 and "no checkpoint" in missing.output
    (tmp_path / "arch.json").write_text(tiny().to_json())
    from_file = _cli(f"@{tmp_path / 'arch.json'}", "--json")
    assert from_file.exit_code == 0 and json.loads(from_file.stdout)["time_steps"] == 2


def test_cli_measures_a_standalone_checkpoint_on_digits(tmp_path) -> None:
    pytest.importorskip("autospikformer.data.loading")
    arch = tiny(time_steps=2)
    model = lively(Spikformer(arch, num_classes=10, in_channels=1, img_size=8), seed=3)
    path = tmp_path / "model.pt"
    model.save(path)
    result = _cli(str(arch), "--checkpoint", str(path), "--dataset", "digits", "--batches", "2",
                  "--batch-size", "16", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["images"] == 32 and 0.0 <= data["accuracy"] <= 1.0
    assert data["rate_override"] is None and 0 < data["mean_firing_rate"] < 1
    # the same numbers as a meter over the same batches
    from autospikformer.data.loading import build_dataset, make_loader

    loader = make_loader(build_dataset("digits", None, train=False), batch_size=16, train=False)
    meter = EnergyMeter(model)
    with torch.no_grad(), meter:
        for i, (x, _) in enumerate(loader):
            if i == 2:
                break
            model(x)
    assert data["energy_mj"] == pytest.approx(meter.report().energy_mj, rel=1e-9)
    wrong = _cli(str(tiny(time_steps=4)), "--checkpoint", str(path), "--dataset", "digits")
    assert wrong.exit_code == 1 and "holds" in wrong.output


def test_cli_measures_a_supernet_checkpoint(tmp_path) -> None:
    pytest.importorskip("autospikformer.data.loading")
    space = SearchSpace.load("digits")
    net = lively(SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8), seed=4)
    path = tmp_path / "supernet.pt"
    save_checkpoint(
        {"kind": "supernet", "space": space.to_dict(), "space_fingerprint": space.fingerprint(),
         "state_dict": net.state_dict(), "num_classes": 10, "in_channels": 1, "img_size": 8},
        path,
    )  # fmt: skip
    arch = space.sample(random.Random(1))
    result = _cli(str(arch), "--checkpoint", str(path), "--dataset", "digits", "--batches", "1",
                  "--batch-size", "8")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "measured on 8 digits test images" in result.stdout
    outside = _cli(str(spikformer_4_384()), "--checkpoint", str(path), "--dataset", "digits")
    assert outside.exit_code == 1
    assert len(outside.output.strip().splitlines()) == 1 and "not in space" in outside.output
