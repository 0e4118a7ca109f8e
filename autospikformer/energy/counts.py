"""The layers the energy models count, and their sizes from an architecture's shapes alone.

Per layer, for one image and one time step: the dense multiply-accumulate count (``dense_macs``)
and the neurons its output drives (``neurons``: the LIF after it; none after ``q @ k^T``, whose
scores feed ``attn @ v`` directly, nor after the head). :class:`~autospikformer.energy.EnergyMeter`
measures the same numbers from the shapes it sees, which covers the supernet's sliced weights;
budgets checked before any evaluation use these.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from autospikformer.data.base import CIFAR10, DatasetInfo
from autospikformer.model.shapes import model_variant, num_pools, sps_widths
from autospikformer.search.architecture import Architecture

FIRST_CONV = "sps.convs.0"
KERNEL = 3  # every SPS conv is 3x3, stride 1, padding 1

# How a row's operations are counted (the per-layer table's ``counted`` column)
IMAGE_ONCE = "image-once"  # the first conv of a static image: dense MACs once, at E_MAC
EVENT_FRAMES = "event-frames"  # the first conv of event data: SOPs of the frames, at E_AC
SPIKES = "spikes"  # every other layer: SOPs = rate * T * MACs, at E_AC


@dataclass(frozen=True)
class Layer:
    """One counted layer: its table name, kind, the module whose hook measures its input (for a
    product, the LIF of q or v), and the LIF its output drives (None: no neurons)."""

    name: str
    kind: str  # 'conv' | 'linear' | 'matmul' | 'head'
    module: str
    lif: str | None


def counted_layers(arch: Architecture) -> list[Layer]:
    """Every counted layer of ``arch`` in execution order; names are module paths (plus the two
    SSA products)."""
    out = [Layer(f"sps.convs.{i}", "conv", f"sps.convs.{i}", f"sps.lifs.{i}") for i in range(4)]
    out.append(Layer("sps.rpe_conv", "conv", "sps.rpe_conv", "sps.rpe_lif"))
    for i in range(arch.depth):
        p = f"blocks.{i}"
        out += [
            Layer(f"{p}.attn.q.linear", "linear", f"{p}.attn.q.linear", f"{p}.attn.q.lif"),
            Layer(f"{p}.attn.k.linear", "linear", f"{p}.attn.k.linear", f"{p}.attn.k.lif"),
            Layer(f"{p}.attn.v.linear", "linear", f"{p}.attn.v.linear", f"{p}.attn.v.lif"),
            Layer(f"{p}.attn.q@k^T", "matmul", f"{p}.attn.q.lif", None),
            Layer(f"{p}.attn.attn@v", "matmul", f"{p}.attn.v.lif", f"{p}.attn.attn_lif"),
            Layer(f"{p}.attn.proj.linear", "linear", f"{p}.attn.proj.linear", f"{p}.attn.proj.lif"),
            Layer(f"{p}.mlp.fc1.linear", "linear", f"{p}.mlp.fc1.linear", f"{p}.mlp.fc1.lif"),
            Layer(f"{p}.mlp.fc2.linear", "linear", f"{p}.mlp.fc2.linear", f"{p}.mlp.fc2.lif"),
        ]
    out.append(Layer("head", "head", "head", None))
    return out


def lif_names(arch: Architecture) -> list[str]:
    """Every LIF of the subnet: the mean firing rate averages their outputs."""
    names = [f"sps.lifs.{i}" for i in range(4)] + ["sps.rpe_lif"]
    for i in range(arch.depth):
        p = f"blocks.{i}"
        names += [f"{p}.attn.{u}.lif" for u in ("q", "k", "v")]
        names += [
            f"{p}.attn.attn_lif",
            f"{p}.attn.proj.lif",
            f"{p}.mlp.fc1.lif",
            f"{p}.mlp.fc2.lif",
        ]
    return names


def first_conv_rule(event_data: bool) -> tuple[str, str]:
    """``(op, counted)`` of the first row: MACs once for an image, SOPs for event frames."""
    return ("AC", EVENT_FRAMES) if event_data else ("MAC", IMAGE_ONCE)


def layer_counts(arch: Architecture, data: DatasetInfo = CIFAR10) -> pd.DataFrame:
    """Per layer: ``layer, kind, op, counted, dense_macs, neurons`` (one image, one step), for
    inputs of ``data``'s shape, square or not (default: 3x32x32 images, 10 classes).

    The head runs once per image on the token/time mean: its row is ``E * classes`` MACs. For
    event data the first conv's input is spike-count frames (counted like every other layer).
    """
    dim = arch.embed_dim
    chans = (data.in_channels, *sps_widths(dim))
    pools = num_pools(data.img_size)
    (height, width), macs, cells = data.hw, {}, {}
    for i in range(4):
        pixels = height * width
        macs[f"sps.convs.{i}"] = chans[i + 1] * chans[i] * KERNEL * KERNEL * pixels
        cells[f"sps.convs.{i}"] = chans[i + 1] * pixels  # its LIF runs before the pool
        if i >= 4 - pools:
            height, width = (height + 1) // 2, (width + 1) // 2  # MaxPool(3, stride 2, pad 1)
    tokens = height * width  # the pooled grid: 8x8 for 32 and 128, 14x14 for 224, 4x4 for 8
    macs["sps.rpe_conv"] = dim * dim * KERNEL * KERNEL * tokens
    cells["sps.rpe_conv"] = dim * tokens
    for i in range(arch.depth):
        p, hidden = f"blocks.{i}", arch.mlp_hidden(i)
        for unit in ("q", "k", "v", "proj"):
            macs[f"{p}.attn.{unit}.linear"] = tokens * dim * dim
            cells[f"{p}.attn.{unit}.linear"] = tokens * dim
        # per head N*N*d, over h heads N*N*E: the head count cancels
        macs[f"{p}.attn.q@k^T"] = tokens * tokens * dim
        cells[f"{p}.attn.q@k^T"] = 0
        macs[f"{p}.attn.attn@v"] = tokens * tokens * dim
        cells[f"{p}.attn.attn@v"] = tokens * dim  # the attention LIF
        macs[f"{p}.mlp.fc1.linear"] = tokens * dim * hidden
        cells[f"{p}.mlp.fc1.linear"] = tokens * hidden
        macs[f"{p}.mlp.fc2.linear"] = tokens * hidden * dim
        cells[f"{p}.mlp.fc2.linear"] = tokens * dim
    macs["head"] = dim * data.num_classes
    cells["head"] = 0
    first_op, first_counted = first_conv_rule(data.event_based)
    rows = [
        {
            "layer": lay.name,
            "kind": lay.kind,
            "op": first_op if lay.name == FIRST_CONV else "AC",
            "counted": first_counted if lay.name == FIRST_CONV else SPIKES,
            "dense_macs": macs[lay.name],
            "neurons": cells[lay.name],
        }
        for lay in counted_layers(arch)
    ]
    return pd.DataFrame(rows, columns=["layer", "kind", "op", "counted", "dense_macs", "neurons"])


def dense_macs(arch: Architecture, data: DatasetInfo = CIFAR10) -> pd.DataFrame:
    """Dense MACs per layer for one image and one time step, from the shapes alone.

    Columns ``layer, kind, op, dense_macs``; the same layer names and order as
    :meth:`EnergyMeter.report`.
    """
    return layer_counts(arch, data)[["layer", "kind", "op", "dense_macs"]]


def count_parameters(arch: Architecture, data: DatasetInfo = CIFAR10) -> int:
    """Parameters of a Spikformer of ``arch`` for ``data`` without building it (BN affine
    included); event data takes SPEC section 1's DVS model (q, k and v without bias)."""
    qkv_biases = 3 * arch.embed_dim if model_variant(data.variant).qkv_bias else 0
    num_pools(data.img_size)
    dim = arch.embed_dim
    chans = (data.in_channels, *sps_widths(dim))
    total = sum(chans[i + 1] * chans[i] * KERNEL * KERNEL + 2 * chans[i + 1] for i in range(4))
    total += dim * dim * KERNEL * KERNEL + 2 * dim
    for i in range(arch.depth):
        hidden = arch.mlp_hidden(i)
        total += 4 * (dim * dim + 2 * dim) + dim + qkv_biases  # q, k, v, proj; proj bias
        total += dim * hidden + hidden + 2 * hidden + hidden * dim + dim + 2 * dim
    return total + dim * data.num_classes + data.num_classes
