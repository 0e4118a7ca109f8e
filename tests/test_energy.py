"""The energy models (SPEC sections 4 and 4b): hand-derived MAC and neuron counts, exact rates,
closed forms of both models, a memory count and an ANN equivalent by hand, the event-data
convention, constants as data, records that re-price exactly, the supernet/extract agreement,
spikingjelly's SynOp counter, and the ``autospik energy`` command."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from helpers import TINY_SPACE
from typer.testing import CliRunner

from autospikformer.checkpoint_file import save_checkpoint
from autospikformer.data.base import DatasetInfo, dataset_info
from autospikformer.energy import (
    E_AC_PJ,
    E_MAC_PJ,
    EnergyConstants,
    EnergyError,
    EnergyMeasurement,
    EnergyMeter,
    EnergyModel,
    analytic_report,
    count_parameters,
    dense_macs,
    estimate_energy_mj,
    layer_counts,
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
    assert count_parameters(arch, dataset_info("cifar100")) == 9_359_380
    # SPEC's scale check: about 0.95 mJ at a mean rate of 0.35 (CIFAR-100 head)
    assert 0.8 < estimate_energy_mj(arch, rate=0.35, data=dataset_info("cifar100")) < 1.3


def test_meter_closed_forms_on_a_4_384_forward() -> None:
    arch = spikformer_4_384()
    torch.manual_seed(0)
    model = Spikformer(arch, num_classes=10).eval()
    meter = measure(model, torch.rand(1, 3, 32, 32))
    hand = hand_macs_4_384()
    ones, zeros = meter.report(rate_override=1.0), meter.report(rate_override=0.0)
    assert dict(zip(ones.table["layer"], ones.table["dense_macs"], strict=True)) == hand
    assert (
        dict(zip(ones.table["layer"], ones.table["neurons"], strict=True)) == hand_neurons_4_384()
    )
    others = sum(v for k, v in hand.items() if k != "sps.convs.0")
    first = 4.6 * hand["sps.convs.0"] * PJ
    assert ones.energy_mj == pytest.approx(first + 0.9 * 4 * others * PJ, rel=1e-12)
    assert zeros.energy_mj == pytest.approx(first, rel=1e-12)
    assert ones.images == 1 and ones.num_parameters == 9_324_730
    # the memory model from the same measurement: the analytic closed forms, exactly
    for rate, report in ((1.0, ones), (0.0, zeros)):
        analytic = analytic_report(arch, rate=rate, model=MEMORY)
        priced = report.reprice(MEMORY)
        assert priced.energy_mj == pytest.approx(analytic.energy_mj, rel=1e-12)
        assert priced.memory_mj == pytest.approx(analytic.memory_mj, rel=1e-12)
        assert priced.ann_energy_mj == pytest.approx(analytic.ann_energy_mj, rel=1e-12)


# --------------------------------------------------------------------------- the two models

MEMORY = EnergyModel(name="memory-45nm")
SOP = EnergyModel()
WORD_PJ = 20.0 * 32 / 64  # one 32-bit word from a 32 KB SRAM (20 pJ per 64-bit access): 10 pJ


def hand_neurons_4_384() -> dict[str, int]:
    """The LIF neurons each layer's output drives, per image and step (4-384 on 32x32)."""
    n, e, hidden = 64, 384, 1536
    cells = {  # the SPS LIFs run before the pools
        "sps.convs.0": 48 * 32 * 32,
        "sps.convs.1": 96 * 32 * 32,
        "sps.convs.2": 192 * 32 * 32,
        "sps.convs.3": 384 * 16 * 16,
        "sps.rpe_conv": 384 * 8 * 8,
    }
    for i in range(4):
        p = f"blocks.{i}"
        for unit in ("q", "k", "v"):
            cells[f"{p}.attn.{unit}.linear"] = n * e
        cells[f"{p}.attn.q@k^T"] = 0  # the scores feed attn @ v directly: no neuron
        cells[f"{p}.attn.attn@v"] = n * e  # the attention LIF
        cells[f"{p}.attn.proj.linear"] = n * e
        cells[f"{p}.mlp.fc1.linear"] = n * hidden
        cells[f"{p}.mlp.fc2.linear"] = n * e
    cells["head"] = 0  # logits
    return cells


def test_both_models_closed_forms_from_the_shapes_alone() -> None:
    arch = spikformer_4_384()
    macs, cells = hand_macs_4_384(), hand_neurons_4_384()
    counts = layer_counts(arch)
    assert dict(zip(counts["layer"], counts["neurons"], strict=True)) == cells
    m0 = macs["sps.convs.0"]
    rest = sum(macs.values()) - m0
    n_all = sum(cells.values())
    assert n_all == 1_449_984
    steps = 4
    for rate in (1.0, 0.0):
        sop = analytic_report(arch, rate=rate)
        expected = 4.6 * m0 + 0.9 * rate * steps * rest  # arithmetic only
        assert sop.energy_mj == pytest.approx(expected * PJ, rel=1e-12)
        assert sop.compute_mj == sop.energy_mj and sop.memory_mj == 0.0
        mem = analytic_report(arch, rate=rate, model=MEMORY)
        # compute: the synaptic ops plus one neuron update (a MAC and an AC) per neuron and step
        compute = expected + (4.6 + 0.9) * steps * n_all
        # memory: a weight read per op, a potential read and write per neuron and step
        memory = WORD_PJ * (m0 + rate * steps * rest + 2 * steps * n_all)
        assert mem.compute_mj == pytest.approx(compute * PJ, rel=1e-12)
        assert mem.memory_mj == pytest.approx(memory * PJ, rel=1e-12)
        assert mem.energy_mj == pytest.approx((compute + memory) * PJ, rel=1e-12)
        assert estimate_energy_mj(arch, rate=rate, model=MEMORY) == pytest.approx(
            mem.energy_mj, rel=1e-12
        )
    # the dense ANN equivalent (every MAC at E_MAC, T = 1, the same memory model): no rate in it
    ann_sop = 4.6 * (m0 + rest)
    ann_mem = ann_sop + 0.9 * n_all + WORD_PJ * (m0 + rest + 2 * n_all)
    for rate in (0.0, 0.35, 1.0):
        assert analytic_report(arch, rate=rate).ann_energy_mj == pytest.approx(ann_sop * PJ)
        assert analytic_report(arch, rate=rate, model=MEMORY).ann_energy_mj == pytest.approx(
            ann_mem * PJ, rel=1e-12
        )
    # the figures docs/energy.md shows for the paper's rate 0.35
    sop, mem = analytic_report(arch, rate=0.35), analytic_report(arch, rate=0.35, model=MEMORY)
    assert (round(sop.energy_mj, 3), round(sop.ann_energy_mj, 3)) == (1.181, 4.297)
    assert (round(mem.energy_mj, 2), round(mem.ann_energy_mj, 2)) == (14.40, 13.67)
    assert (round(sop.ann_ratio, 3), round(mem.ann_ratio, 3)) == (0.275, 1.054)
    assert (round(mem.compute_mj, 3), round(mem.memory_mj, 3)) == (1.213, 13.187)
    figures = [
        analytic_report(arch, rate=r, model=m).energy_mj for m in (SOP, MEMORY) for r in (1, 0)
    ]
    assert [round(f, 4) for f in figures] == [3.3639, 0.0061, 40.8335, 0.1673]


def test_memory_count_of_one_layer_by_hand() -> None:
    """fc2 of the hand-built model: 64 tokens, 64 inputs firing at 0.375, 32 outputs, T = 4."""
    model = hand_built(depth=2)
    meter = measure(model, torch.randn(2, 1, 16, 16))
    report = meter.report(model=MEMORY)
    row = report.table.set_index("layer").loc["blocks.0.mlp.fc2.linear"]
    # 0.375 * 4 steps * 64 tokens * 64 inputs = 6,144 spikes, each read 32 weights: 196,608
    assert row["ops"] == 196_608 and row["neurons"] == 64 * 32
    # weight reads 196,608 + (2,048 neurons x 4 steps) x (read + write) 16,384 = 212,992 words
    # of 10 pJ
    assert row["memory_mj"] == pytest.approx(2_129_920 * PJ, rel=1e-12)
    # 196,608 accumulates x 0.9 pJ + 8,192 neuron updates x (4.6 + 0.9) pJ
    assert row["compute_mj"] == pytest.approx((176_947.2 + 45_056) * PJ, rel=1e-12)
    assert row["energy_mj"] == pytest.approx((2_129_920 + 222_003.2) * PJ, rel=1e-12)
    # its ANN: 131,072 MACs x 4.6 + 2,048 compares x 0.9 + (131,072 + 2 x 2,048) words x 10
    assert row["ann_mj"] == pytest.approx((602_931.2 + 1_843.2 + 1_351_680) * PJ, rel=1e-12)
    # sop-45nm prices the same measurement by its accumulates alone
    sop = report.reprice(SOP).table.set_index("layer").loc["blocks.0.mlp.fc2.linear"]
    assert sop["energy_mj"] == pytest.approx(176_947.2 * PJ, rel=1e-12) and sop["memory_mj"] == 0
    assert sop["ann_mj"] == pytest.approx(602_931.2 * PJ, rel=1e-12)


def test_ann_equivalent_by_hand_for_a_tiny_model() -> None:
    arch = tiny(depth=1, time_steps=2, dim=32)  # MLP ratio 2: hidden 64
    # 1x8x8 input: SPS widths 4, 8, 16, 32 at 8x8, one pool, so the rpe conv and N = 16 at 4x4
    macs = (
        4 * 1 * 9 * 64 + 8 * 4 * 9 * 64 + 16 * 8 * 9 * 64 + 32 * 16 * 9 * 64  # SPS convs
        + 32 * 32 * 9 * 16  # rpe conv
        + 4 * 16 * 32 * 32 + 2 * 16 * 16 * 32  # q, k, v, proj; the two products
        + 16 * 32 * 64 + 16 * 64 * 32  # fc1, fc2
        + 32 * 10  # head
    )  # fmt: skip
    neurons = (4 + 8 + 16 + 32) * 64 + 32 * 16 + 6 * 16 * 32 + 16 * 64  # SPS, rpe, 6 LIFs, fc1
    assert (macs, neurons) == (684_608, 8_448)
    shape = {"in_channels": 1, "img_size": 8, "num_classes": 10}
    sop = analytic_report(arch, rate=0.5, data=DatasetInfo("digits-shaped", **shape))
    assert sop.ann_energy_mj == pytest.approx(3_149_196.8 * PJ, rel=1e-12)  # 4.6 x 684,608
    mem = analytic_report(arch, rate=0.5, model=MEMORY, data=DatasetInfo("digits-shaped", **shape))
    # 4.6 x 684,608 + 0.9 x 8,448 + 10 x (684,608 + 2 x 8,448) = 10,171,840 pJ
    assert mem.ann_compute_mj == pytest.approx((3_149_196.8 + 7_603.2) * PJ, rel=1e-12)
    assert mem.ann_memory_mj == pytest.approx(7_015_040 * PJ, rel=1e-12)
    assert mem.ann_energy_mj == pytest.approx(10_171_840 * PJ, rel=1e-12)
    # a real forward gives the same ANN equivalent (shapes only) and one SNN/ANN ratio
    model = lively(Spikformer(arch, **shape))
    measured = measure(model, torch.rand(3, 1, 8, 8) * 2).report(model=MEMORY)
    assert measured.ann_energy_mj == pytest.approx(mem.ann_energy_mj, rel=1e-12)
    assert measured.ann_ratio == measured.energy_mj / measured.ann_energy_mj
    assert measured.to_dict()["ann_ratio"] == measured.ann_ratio


def test_event_data_closed_forms_every_layer_at_e_ac() -> None:
    """SPEC section 4: event frames differ at every step, so the first conv is counted like every
    other layer; with every rate 1 the whole network costs E_AC * T * MACs."""
    arch = Architecture.uniform(depth=2, embed_dim=32, mlp_ratio=2.0, num_heads=2, time_steps=3)
    shape = {"in_channels": 2, "img_size": 128, "num_classes": 10}
    events = DatasetInfo("frames", **shape, event_based=True)
    counts = layer_counts(arch, events)
    m0 = 4 * 2 * 9 * 128 * 128  # 128x128 is pooled after every stage (128 -> 8)
    assert counts["dense_macs"].iloc[0] == m0 and counts["counted"].iloc[0] == "event-frames"
    total = int(counts["dense_macs"].sum())
    cells = int(counts["neurons"].sum())
    upper = analytic_report(arch, rate=1.0, data=events)
    assert upper.energy_mj == pytest.approx(0.9 * 3 * total * PJ, rel=1e-12)
    assert upper.table["op"].eq("AC").all() and upper.first_conv_rule == "event-frames"
    assert upper.total_sops == 3 * total
    assert analytic_report(arch, rate=0.0, data=events).energy_mj == 0.0
    assert estimate_energy_mj(arch, rate=1.0, data=events) == pytest.approx(
        upper.energy_mj, rel=1e-12
    )
    mem = analytic_report(arch, rate=1.0, data=events, model=MEMORY)
    memory_pj = 0.9 * 3 * total + 5.5 * 3 * cells + WORD_PJ * (3 * total + 2 * 3 * cells)
    assert mem.energy_mj == pytest.approx(memory_pj * PJ, rel=1e-12)
    # a static image of the same shape: the first conv once, as MACs
    static = analytic_report(arch, rate=1.0, data=DatasetInfo("images", **shape))
    assert static.first_conv_rule == "image-once"
    assert static.energy_mj == pytest.approx((4.6 * m0 + 0.9 * 3 * (total - m0)) * PJ, rel=1e-12)
    # measured on spike-count frames [B, T, C, H, W]: the first conv's rate is the frames' mean
    model = lively(Spikformer(arch, **shape))
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 3, (2, 3, 2, 128, 128), generator=gen).float()
    with torch.no_grad(), EnergyMeter(model, event_data=True) as meter:
        model(frames)
    assert meter.report(rate_override=1.0).energy_mj == pytest.approx(upper.energy_mj, rel=1e-12)
    first = meter.report().table.iloc[0]
    assert first["input_rate"] == float(frames.double().sum()) / frames.numel()
    assert first["ops"] == first["input_rate"] * 3 * m0 and first["op"] == "AC"
    assert first["counted"] == "event-frames"


def test_the_meter_takes_event_data_from_the_model_variant() -> None:
    """A DVS-variant model sees event frames unless told otherwise; an image model, images."""
    arch = Architecture.uniform(depth=1, embed_dim=16, mlp_ratio=1.0, num_heads=2, time_steps=2)
    dvs = lively(Spikformer(arch, num_classes=10, in_channels=2, img_size=16, variant="dvs"))
    frames = torch.randint(0, 3, (2, 2, 2, 16, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), EnergyMeter(dvs) as meter:
        dvs(frames.float())
    assert meter.event_data and meter.report().table.iloc[0]["counted"] == "event-frames"
    assert not EnergyMeter(dvs, event_data=False).event_data
    image = lively(Spikformer(arch, num_classes=10, in_channels=1, img_size=8))
    assert not EnergyMeter(image).event_data
    assert EnergyMeter(image, event_data=True).event_data


def test_constants_are_data_with_units() -> None:
    table = {
        "model": "memory-45nm",
        "e_mac": "4600 fJ",
        "e_ac_pj": 1,
        "word": "16 bits",
        "sram": "1 MB",
        "sram_64kb_pj": 28.0,
    }
    model = EnergyModel.from_table(table)
    c = model.constants
    assert (c.e_mac_pj, c.e_ac_pj, c.word_bits, c.sram_kb) == (pytest.approx(4.6), 1.0, 16, 1024)
    assert c.sram_access_pj == {8.0: 10.0, 32.0: 20.0, 64.0: 28.0, 1024.0: 100.0}
    assert c.word_access_pj == 100.0 * 16 / 64
    assert model.to_table()["sram_1mb_pj"] == 100.0 and model.to_table()["sram_64kb_pj"] == 28.0
    assert EnergyModel.from_table(model.to_table()) == model  # the stored form is a table too
    assert EnergyModel.from_attr(model.to_attr()) == model
    assert EnergyModel.from_attr(None) == EnergyModel() == EnergyModel.from_table({})
    assert EnergyModel().to_attr() == {
        "model": "sop-45nm",
        "constants": {
            "e_mac_pj": 4.6, "e_ac_pj": 0.9, "word_bits": 32, "sram_kb": 32.0,
            "sram_8kb_pj": 10.0, "sram_32kb_pj": 20.0, "sram_1mb_pj": 100.0,
        },
    }  # fmt: skip
    # what makes two models price differently: only the constants a model uses
    cheap = EnergyModel.from_table({"sram_8kb_pj": 1.0})
    assert SOP.differences(cheap) == [] and MEMORY.differences(cheap.with_name("memory-45nm")) == []
    assert MEMORY.differences(EnergyModel.from_table({"model": "memory-45nm", "sram_kb": 8})) == [
        "sram_kb", "sram_32kb_pj", "sram_8kb_pj"
    ]  # fmt: skip
    assert SOP.differences(MEMORY) == ["model"]
    # a lower memory price lowers the memory part in proportion
    arch = tiny()
    base = analytic_report(arch, rate=0.3, data=dataset_info("digits"), model=MEMORY)
    small = EnergyModel.from_table({"model": "memory-45nm", "sram_kb": 8})  # 5 pJ a word
    half = analytic_report(arch, rate=0.3, data=dataset_info("digits"), model=small)
    assert half.memory_mj == pytest.approx(base.memory_mj / 2, rel=1e-12)
    assert half.compute_mj == base.compute_mj


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"e_ac_pj": -0.9}, "energy.e_ac_pj: -0.9 is not allowed (allowed: a number >= 0)"),
        ({"e_ac": "-1 pJ"}, "energy.e_ac: -1.0 is not allowed (allowed: a number >= 0)"),
        ({"e_mac": 4.6}, 'energy.e_mac: 4.6 has no unit (write e_mac_pj = 4.6 or e_mac = "4.6 pJ")'),
        ({"sram_32kb": 20}, "energy.sram_32kb: 20 has no unit (write sram_32kb_pj = 20"),
        ({"word": 32}, 'energy.word: 32 has no unit (write word_bits = 32 or word = "32 bits")'),
        ({"e_mac": "4.6"}, "energy.e_mac: '4.6' is not an energy with its unit (allowed units"),
        ({"e_mac_kb": 4.6}, "energy.e_mac_kb: 'kb' is not a unit of energy (allowed: fJ, pJ"),
        ({"e_mac_pj": "4.6 pJ"}, "energy.e_mac_pj: give a number, the unit is in the key"),
        ({"word_bits": 12.5}, "energy.word_bits: 12.5 is not allowed (allowed: a whole number"),
        ({"sram_kb": 64}, "energy.sram_kb: 64 KB has no access energy (listed sizes: 8 KB, 32 KB, 1 MB"),
        ({"e_mac_pj": 4.6, "e_mac": "4 pJ"}, "energy.e_mac: given twice (as e_mac_pj and e_mac)"),
        ({"e_max_pj": 1}, "energy.e_max_pj: unknown constant (allowed: model, e_mac_pj, e_ac_pj"),
        ({"model": "ann"}, "energy.model: 'ann' is not an energy model (allowed: sop-45nm, memory-45nm)"),
        ({"e_ac_pj": True}, "energy.e_ac_pj: True is not allowed"),
        ({"sram": {"8kb": 10}}, "energy.sram: expected a size with its unit, got {'8kb': 10}"),
    ],
)  # fmt: skip
def test_a_bad_constant_is_one_line_naming_the_key(table: dict, message: str) -> None:
    with pytest.raises(EnergyError) as err:
        EnergyModel.from_table(table)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(EnergyError, match=r"EnergyConstants\.e_mac_pj: -1"):
        EnergyConstants(e_mac_pj=-1)


def test_a_record_reprices_exactly_as_the_report() -> None:
    arch = tiny(depth=2, time_steps=3)
    model = lively(Spikformer(arch, num_classes=10, in_channels=1, img_size=8), seed=7)
    meter = measure(model, torch.rand(4, 1, 8, 8) * 2)
    custom = EnergyModel.from_table({"model": "memory-45nm", "sram": "8 KB", "word_bits": 8})
    for pricing, other in ((SOP, MEMORY), (MEMORY, SOP), (custom, SOP)):
        report = meter.report(model=pricing)
        stored = json.loads(json.dumps(report.measurement().to_json()))  # what a trial keeps
        record = EnergyMeasurement.from_json(stored)
        assert record.to_json() == stored and record.time_steps == 3 and record.images == 4
        totals = record.totals(pricing)
        assert totals.energy_mj == report.energy_mj
        assert totals.ann_energy_mj == report.ann_energy_mj
        assert (totals.compute_mj, totals.memory_mj) == (report.compute_mj, report.memory_mj)
        fresh = meter.report(model=other)
        assert report.reprice(other).table.equals(fresh.table)
        assert record.totals(other).energy_mj == fresh.energy_mj
    assert len(json.dumps(stored)) < 1500  # a few numbers per layer
    with pytest.raises(EnergyError, match="not a version-1 record"):
        EnergyMeasurement.from_json({"v": 0})
    with pytest.raises(EnergyError, match="one of each per layer"):
        EnergyMeasurement.from_json({**stored, "rates": stored["rates"][:-1]})


def test_dvs_variant_parameter_count() -> None:
    """SPEC section 1: Spikformer-2-256 of the DVS variant (q, k, v without bias) has 2,566,666
    parameters; the CIFAR-style block 2,568,202 at the same size."""
    arch = Architecture.uniform(depth=2, embed_dim=256, mlp_ratio=4.0, num_heads=16, time_steps=16)
    shape = {"in_channels": 2, "img_size": 128, "num_classes": 10}
    assert count_parameters(arch, DatasetInfo("dvs", **shape, event_based=True)) == 2_566_666
    assert count_parameters(arch, DatasetInfo("images", **shape)) == 2_568_202
    assert Spikformer(arch, **shape).num_parameters() == 2_568_202
    with pytest.raises(ValueError, match="variant"):
        Spikformer(arch, **shape, variant="gesture")


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
    # a reset inside the context forgets what came before and keeps measuring
    with torch.no_grad(), meter:
        model(a)
        meter.reset()
        model(b)
    assert meter.report().table.equals(rb.table) and meter.report().images == 7


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
        data = DatasetInfo("shaped", num_classes=7, in_channels=in_channels, img_size=img_size)
        expected = dense_macs(arch, data)
        assert report.table["layer"].tolist() == expected["layer"].tolist()
        assert report.table["dense_macs"].tolist() == expected["dense_macs"].tolist()
        # the neurons each layer drives, seen by the LIF hooks, equal the counts from the shapes
        shaped = layer_counts(arch, data)
        assert report.table["neurons"].tolist() == shaped["neurons"].tolist()
        n_params = count_parameters(arch, data)
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


def test_cli_energy_models_constants_and_the_ann_equivalent(tmp_path) -> None:
    arch = spikformer_4_384()
    result = _cli(str(arch), "--energy-model", "memory-45nm", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = analytic_report(arch, rate=1.0, model=MEMORY)
    assert data["energy_model"] == "memory-45nm" and data["constants"]["sram_kb"] == 32
    assert data["energy_mj"] == pytest.approx(expected.energy_mj, rel=1e-12)
    assert data["memory_mj"] == pytest.approx(expected.memory_mj, rel=1e-12)
    assert data["ann_energy_mj"] == pytest.approx(expected.ann_energy_mj, rel=1e-12)
    assert data["ann_ratio"] == pytest.approx(expected.ann_ratio, rel=1e-12)
    assert {"compute_mj", "memory_mj", "ann_mj", "neurons"} <= set(data["layers"][0])
    text = _cli(str(arch), "--energy-model", "memory-45nm")
    assert text.exit_code == 0, text.output
    for part in ("blocks.3.attn.proj.linear", "compute", "memory", "dense ANN equivalent",
                 "SNN / ANN = 2.99", "memory-45nm: E_MAC 4.6 pJ", "10 pJ an access"):  # fmt: skip
        assert part in text.stdout, part
    sop = _cli(str(arch))
    assert "SNN / ANN = 0.783" in sop.stdout and "arithmetic only" in sop.stdout
    # constants from a file's [energy] table (a study file works)
    study = tmp_path / "priced.toml"
    study.write_text('[study]\nname = "x"\n[energy]\nmodel = "memory-45nm"\nsram = "8 KB"\n')
    cheap = json.loads(_cli(str(arch), "--constants", str(study), "--json").stdout)
    assert cheap["constants"]["sram_kb"] == 8 and cheap["energy_model"] == "memory-45nm"
    small = EnergyModel.from_table({"model": "memory-45nm", "sram_kb": 8})
    assert cheap["energy_mj"] == pytest.approx(
        analytic_report(arch, rate=1.0, model=small).energy_mj, rel=1e-12
    )
    renamed = json.loads(_cli(str(arch), "--constants", str(study), "--energy-model",
                              "sop-45nm", "--json").stdout)  # fmt: skip
    assert renamed["energy_model"] == "sop-45nm" and renamed["memory_mj"] == 0
    # bad input: one line each
    bad = tmp_path / "bad.toml"
    bad.write_text("[energy]\ne_ac = 0.9\n")
    for args, fragment in (
        (("--energy-model", "ann-45nm"), "--energy-model: 'ann-45nm' is not an energy model"),
        (("--constants", str(bad)), "bad.toml: energy.e_ac: 0.9 has no unit (write e_ac_pj"),
        (("--constants", str(tmp_path / "none.toml")), "--constants: file"),
        (("--constants", str(tmp_path / "bad.toml" / "x")), "--constants: file"),
    ):
        out = _cli(str(arch), *args)
        assert out.exit_code == 1 and fragment in out.output, out.output
        assert len(out.output.strip().splitlines()) == 1


def test_cli_event_data_counts_the_first_conv_as_sops() -> None:
    arch = Architecture.uniform(depth=1, embed_dim=32, mlp_ratio=2.0, num_heads=2, time_steps=8)
    result = _cli(str(arch), "--dataset", "cifar10dvs", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["event_data"] and data["first_conv"] == "event-frames"
    assert (data["in_channels"], data["img_size"]) == (2, 128)
    macs = sum(layer["dense_macs"] for layer in data["layers"])
    assert data["energy_mj"] == pytest.approx(0.9 * 8 * macs * PJ, rel=1e-12)
    assert all(layer["op"] == "AC" for layer in data["layers"])
    assert data["num_parameters"] == count_parameters(arch, dataset_info("cifar10dvs"))
    text = _cli(str(arch), "--dataset", "dvs128")
    assert "first conv: sps.convs.0 counted as SOPs of the event frames at 0.9 pJ" in text.stdout
    image = _cli(str(arch), "--dataset", "cifar10")
    assert "counted once as MACs at 4.6 pJ (a static image)" in image.stdout


def test_supernet_eval_prices_with_the_chosen_model(tmp_path) -> None:
    from autospikformer.cli.app import app
    from autospikformer.training.evaluate import SubnetEvaluator

    space = SearchSpace.load("digits")
    net = lively(SuperSpikformer(space, num_classes=10, in_channels=1, img_size=8), seed=6)
    path = tmp_path / "supernet.pt"
    save_checkpoint(
        {"kind": "supernet", "space": space.to_dict(), "space_fingerprint": space.fingerprint(),
         "state_dict": net.state_dict(), "num_classes": 10, "in_channels": 1, "img_size": 8,
         "dataset": "digits", "epoch": 1},
        path,
    )  # fmt: skip
    args = ["supernet", "eval", str(path), "--arch", "smallest", "--calib-batches", "1",
            "--batch-size", "64", "--eval-samples", "64", "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, [*args, "--energy-model", "memory-45nm", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    fresh = SubnetEvaluator(
        net, dataset="digits", data_root=None, calib_batches=1, batch_size=64, eval_samples=64,
        device="cpu", energy_model=MEMORY,
    ).evaluate(space.smallest())  # fmt: skip
    assert data["energy_model"] == "memory-45nm"
    assert data["energy_mj"] == pytest.approx(fresh.energy_mj, rel=1e-12)
    assert data["ann_energy_mj"] == pytest.approx(fresh.report.ann_energy_mj, rel=1e-12)
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "(sop-45nm)" in text.stdout
    assert "dense ANN equivalent" in text.stdout and "SNN / ANN" in text.stdout


def test_rates_over_many_batches_are_exact_and_kept_in_bounded_memory() -> None:
    """Hundreds of batches: the per-call sums are folded into float64 partials as they come,
    and the rates equal the exact ones (the hand-built spike pattern fires at 0.375)."""
    model = hand_built(depth=1)
    meter = EnergyMeter(model)
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad(), meter:
        for _ in range(300):
            model(x)
    assert max(len(a.sums) for a in meter._acc.values()) < 256
    rates = dict(zip(*(meter.report().table[c] for c in ("layer", "input_rate")), strict=True))
    assert rates["blocks.0.mlp.fc2.linear"] == 0.375 and rates["sps.convs.1"] == 0.375
    assert rates["head"] == 1.5 and meter.report().images == 300


def test_cli_takes_the_shape_from_the_space_preset() -> None:
    """A digits architecture priced with --space digits is priced for 1x8x8 digits (the trial's
    parameter count), not for the 3x32x32 default; --help names that default."""
    arch = Architecture.parse("d1-e32-t2:r2:h2:th1.2:tau2")
    data = json.loads(_cli(str(arch), "--space", "digits", "--json").stdout)
    assert (data["in_channels"], data["img_size"], data["num_classes"]) == (1, 8, 10)
    assert data["num_parameters"] == count_parameters(arch, dataset_info("digits")) == 24_678
    default = json.loads(_cli(str(arch), "--json").stdout)
    assert (default["in_channels"], default["img_size"]) == (3, 32)
    assert default["num_parameters"] == count_parameters(arch) != data["num_parameters"]
    from autospikformer.cli.app import app

    wide = runner.invoke(app, ["energy", "--help"], env={"COLUMNS": "400"}).output
    assert "else cifar10: 3x32x32 images, 10 classes." in wide
