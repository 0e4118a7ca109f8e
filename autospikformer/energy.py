"""The energy model of SPEC section 4: dense MACs per layer, measured input rates, SOPs, mJ.

Per image with T time steps:

- ``SOPs(l) = fr_in(l) * T * MACs(l)``: ``MACs(l)`` is the layer's dense multiply-accumulate count
  for one time step and one image, ``fr_in(l)`` the mean of the layer's input over time, batch and
  elements. Residual-stream inputs hold spike *counts* (0, 1, 2, ...): each unit of count is one
  accumulate, so ``fr_in`` is simply the mean input value.
- ``E = E_MAC * MACs(first conv) + E_AC * sum of SOPs(l)`` over every other conv, linear, the two
  SSA products and the head. The first conv sees the real image, identical at every step, so it is
  counted once, as MACs. BN folds into the preceding layer, LIF updates and residual additions
  are free.

Rates are measured by forward hooks during an ordinary evaluation pass (:class:`EnergyMeter`), so
accuracy and energy come from the same batches. The hooks keep running sums as tensors on the
model's device and never synchronise with the host; the numbers are read once, in
:meth:`EnergyMeter.report`. :func:`dense_macs` and :func:`estimate_energy_mj` give the same
per-layer counts from the architecture alone, for budgets checked before any evaluation.
See ``docs/energy.md`` for the convention and how it differs from spikingjelly's op counter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from autospikformer.model.spikformer import model_variant, num_pools, sps_widths
from autospikformer.search.architecture import Architecture

E_MAC_PJ = 4.6  # one 32-bit float multiply-accumulate, 45 nm CMOS (Horowitz 2014)
E_AC_PJ = 0.9  # one 32-bit float accumulate, 45 nm CMOS
PJ_TO_MJ = 1e-9
FIRST_CONV = "sps.convs.0"
KERNEL = 3  # every SPS conv is 3x3, stride 1, padding 1

COLUMNS = ("layer", "kind", "op", "dense_macs", "input_rate", "ops", "energy_mj")


# --- the layers of one architecture, in execution order ----------------------------------------
@dataclass(frozen=True)
class _Layer:
    name: str
    kind: str  # 'conv' | 'linear' | 'matmul' | 'head'
    module: str  # module whose hook measures it (its input, or for a matmul the LIF of q or v)


def _layers(arch: Architecture) -> list[_Layer]:
    """Every counted layer of ``arch``: the names are module paths (plus the two SSA products)."""
    out = [_Layer(f"sps.convs.{i}", "conv", f"sps.convs.{i}") for i in range(4)]
    out.append(_Layer("sps.rpe_conv", "conv", "sps.rpe_conv"))
    for i in range(arch.depth):
        p = f"blocks.{i}"
        out += [
            _Layer(f"{p}.attn.q.linear", "linear", f"{p}.attn.q.linear"),
            _Layer(f"{p}.attn.k.linear", "linear", f"{p}.attn.k.linear"),
            _Layer(f"{p}.attn.v.linear", "linear", f"{p}.attn.v.linear"),
            _Layer(f"{p}.attn.q@k^T", "matmul", f"{p}.attn.q.lif"),
            _Layer(f"{p}.attn.attn@v", "matmul", f"{p}.attn.v.lif"),
            _Layer(f"{p}.attn.proj.linear", "linear", f"{p}.attn.proj.linear"),
            _Layer(f"{p}.mlp.fc1.linear", "linear", f"{p}.mlp.fc1.linear"),
            _Layer(f"{p}.mlp.fc2.linear", "linear", f"{p}.mlp.fc2.linear"),
        ]
    out.append(_Layer("head", "head", "head"))
    return out


def _lif_names(arch: Architecture) -> list[str]:
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


# --- analytic counts ------------------------------------------------------------------------
def dense_macs(
    arch: Architecture, *, in_channels: int = 3, img_size: int = 32, num_classes: int = 10
) -> pd.DataFrame:
    """Dense MACs per layer for one image and one time step, from the shapes alone.

    Same layer names and order as :meth:`EnergyMeter.report`; used for budgets before a candidate
    is evaluated. The head runs once per image on the token/time mean: its row is ``E * classes``.
    """
    dim = arch.embed_dim
    chans = (in_channels, *sps_widths(dim))
    pools = num_pools(img_size)
    size, macs = img_size, {}
    for i in range(4):
        macs[f"sps.convs.{i}"] = chans[i + 1] * chans[i] * KERNEL * KERNEL * size * size
        if i >= 4 - pools:
            size = (size + 1) // 2  # MaxPool(3, stride 2, pad 1)
    macs["sps.rpe_conv"] = dim * dim * KERNEL * KERNEL * size * size
    tokens = size * size  # the pooled grid: 8x8 from 16 pixels up, 4x4 for 8x8 digits
    for i in range(arch.depth):
        p, hidden = f"blocks.{i}", arch.mlp_hidden(i)
        for unit in ("q", "k", "v", "proj"):
            macs[f"{p}.attn.{unit}.linear"] = tokens * dim * dim
        # per head N*N*d, over h heads N*N*E: the head count cancels
        macs[f"{p}.attn.q@k^T"] = tokens * tokens * dim
        macs[f"{p}.attn.attn@v"] = tokens * tokens * dim
        macs[f"{p}.mlp.fc1.linear"] = tokens * dim * hidden
        macs[f"{p}.mlp.fc2.linear"] = tokens * hidden * dim
    macs["head"] = dim * num_classes
    rows = [
        {"layer": lay.name, "kind": lay.kind, "op": _op(lay.name), "dense_macs": macs[lay.name]}
        for lay in _layers(arch)
    ]
    return pd.DataFrame(rows, columns=["layer", "kind", "op", "dense_macs"])


def count_parameters(
    arch: Architecture,
    *,
    in_channels: int = 3,
    img_size: int = 32,
    num_classes: int = 10,
    variant: str = "cifar",
) -> int:
    """Parameters of a Spikformer of ``arch`` without building it (BN affine included);
    ``variant="dvs"``: q, k and v without bias."""
    num_pools(img_size)
    qkv_bias = model_variant(variant).qkv_bias
    dim = arch.embed_dim
    chans = (in_channels, *sps_widths(dim))
    total = sum(chans[i + 1] * chans[i] * KERNEL * KERNEL + 2 * chans[i + 1] for i in range(4))
    total += dim * dim * KERNEL * KERNEL + 2 * dim
    for i in range(arch.depth):
        hidden = arch.mlp_hidden(i)
        total += 4 * (dim * dim + dim + 2 * dim) - (0 if qkv_bias else 3 * dim)
        total += dim * hidden + hidden + 2 * hidden + hidden * dim + dim + 2 * dim
    return total + dim * num_classes + num_classes


def _op(name: str) -> str:
    return "MAC" if name == FIRST_CONV else "AC"


# --- the report -----------------------------------------------------------------------------
def _clean(value: Any) -> Any:
    """JSON-safe scalar: numpy types to Python, NaN to None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class EnergyReport:
    """Per-layer table and per-image totals of one architecture's energy.

    ``table`` columns: ``layer``, ``kind`` (conv | linear | matmul | head), ``op`` (MAC for the
    first conv, AC otherwise), ``dense_macs`` (one image, one time step), ``input_rate`` (mean
    input value; NaN for the first conv, which is counted dense), ``ops`` (per image: SOPs, or
    MACs for the first conv), ``energy_mj`` (per image).
    """

    table: pd.DataFrame
    energy_mj: float
    total_sops: float
    mean_firing_rate: float  # spikes / neuron-steps over every LIF output (NaN if not measured)
    num_parameters: int
    time_steps: int
    images: int = 0  # images measured (0: analytic report)
    rate_override: float | None = None  # the forced input rate, if any
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def first_conv_mj(self) -> float:
        return float(self.table.loc[self.table["op"] == "MAC", "energy_mj"].sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: the totals plus one dict per layer."""
        return {
            "energy_mj": _clean(self.energy_mj),
            "total_sops": _clean(self.total_sops),
            "mean_firing_rate": _clean(self.mean_firing_rate),
            "num_parameters": int(self.num_parameters),
            "time_steps": int(self.time_steps),
            "images": int(self.images),
            "rate_override": self.rate_override,
            "e_mac_pj": E_MAC_PJ,
            "e_ac_pj": E_AC_PJ,
            **{k: _clean(v) for k, v in self.extras.items()},
            "layers": [
                {k: _clean(v) for k, v in row.items()} for row in self.table.to_dict("records")
            ],
        }


def _build_report(
    macs: pd.DataFrame,
    rates: dict[str, float],
    *,
    time_steps: int,
    mean_firing_rate: float,
    num_parameters: int,
    images: int,
    rate_override: float | None,
) -> EnergyReport:
    """Apply SPEC section 4 to per-layer dense MACs and input rates."""
    table = macs.copy()
    first = table["layer"] == FIRST_CONV
    table["input_rate"] = [
        math.nan if f else rates[n] for n, f in zip(table["layer"], first, strict=True)
    ]
    table["ops"] = table["input_rate"] * time_steps * table["dense_macs"]
    table.loc[first, "ops"] = table.loc[first, "dense_macs"].astype(float)
    table["energy_mj"] = table["ops"] * E_AC_PJ * PJ_TO_MJ
    table.loc[first, "energy_mj"] = table.loc[first, "ops"] * E_MAC_PJ * PJ_TO_MJ
    table = table[list(COLUMNS)]
    return EnergyReport(
        table=table,
        energy_mj=float(table["energy_mj"].sum()),
        total_sops=float(table.loc[~first, "ops"].sum()),
        mean_firing_rate=mean_firing_rate,
        num_parameters=num_parameters,
        time_steps=time_steps,
        images=images,
        rate_override=rate_override,
    )


def analytic_report(
    arch: Architecture,
    *,
    rate: float,
    in_channels: int = 3,
    img_size: int = 32,
    num_classes: int = 10,
) -> EnergyReport:
    """The report with every non-first-layer input rate set to ``rate`` (no model, no data).

    ``rate=1`` is the upper bound for binary inputs (residual-stream counts can exceed 1).
    """
    macs = dense_macs(arch, in_channels=in_channels, img_size=img_size, num_classes=num_classes)
    return _build_report(
        macs,
        dict.fromkeys(macs["layer"], float(rate)),
        time_steps=arch.time_steps,
        mean_firing_rate=math.nan,
        num_parameters=count_parameters(
            arch, in_channels=in_channels, img_size=img_size, num_classes=num_classes
        ),
        images=0,
        rate_override=float(rate),
    )


def estimate_energy_mj(
    arch: Architecture,
    *,
    rate: float,
    in_channels: int = 3,
    img_size: int = 32,
    num_classes: int = 10,
) -> float:
    """Analytic energy per image (mJ) with every non-first-layer input rate = ``rate``."""
    macs = dense_macs(arch, in_channels=in_channels, img_size=img_size, num_classes=num_classes)
    first = macs["layer"] == FIRST_CONV
    first_pj = E_MAC_PJ * float(macs.loc[first, "dense_macs"].sum())
    rest_pj = E_AC_PJ * rate * arch.time_steps * float(macs.loc[~first, "dense_macs"].sum())
    return (first_pj + rest_pj) * PJ_TO_MJ


# --- measurement ----------------------------------------------------------------------------
_HALF = (torch.float16, torch.bfloat16)


class _Acc:
    """Running sum of a layer's input (a device tensor), its element count and dense MACs."""

    __slots__ = ("elements", "macs", "total")

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.elements = 0
        self.macs = 0

    def add(self, x: torch.Tensor) -> None:
        # float32 sum per call (a float64 reduction costs ~10x on the CPU), accumulated in float64;
        # half-precision inputs (autocast) are summed in float32, not rounded to 8 mantissa bits
        x = x.detach()
        s = x.sum(dtype=torch.float32) if x.dtype in _HALF else x.sum()
        if self.total is None:
            self.total = torch.zeros((), dtype=torch.float64, device=s.device)
        self.total.add_(s)
        self.elements += x.numel()


class EnergyMeter:
    """Measures input rates and dense MACs by forward hooks while the caller evaluates as usual.

    ``with EnergyMeter(supernet, arch) as meter: for x, y in loader: logits = supernet(x, arch)``,
    then ``meter.report()``. Rates accumulate over every batch, weighted by elements. ``arch`` is
    required for a :class:`~autospikformer.model.supernet.SuperSpikformer` (only ``sps``,
    ``blocks[:depth]`` and ``head`` are hooked) and read from ``model.arch`` otherwise. Every
    forward inside the context is counted (keep BN recalibration outside it).
    """

    def __init__(self, model: nn.Module, arch: Architecture | None = None):
        model_arch = getattr(model, "arch", None)
        if arch is None:
            if not isinstance(model_arch, Architecture):
                raise ValueError(
                    "EnergyMeter needs arch= for a supernet (a model without an .arch attribute)"
                )
            arch = model_arch
        elif isinstance(model_arch, Architecture) and model_arch != arch:
            raise ValueError(f"arch {arch} differs from the model's architecture {model_arch}")
        space = getattr(model, "space", None)
        if space is not None and hasattr(space, "check"):
            space.check(arch)
        self.model = model
        self.arch = arch
        self._is_supernet = hasattr(model, "configure")
        self._layers = _layers(arch)
        self._lifs = _lif_names(arch)
        self._handles: list[Any] = []
        self.reset()

    # --- context --------------------------------------------------------------------------
    def __enter__(self) -> EnergyMeter:
        if self._handles:
            raise RuntimeError("this EnergyMeter is already active")
        get = self.model.get_submodule
        for lay in self._layers:
            if lay.kind != "matmul":
                hook = self._first_conv_hook if lay.name == FIRST_CONV else self._weight_hook
                self._handles.append(get(lay.module).register_forward_hook(hook(lay.name)))
        for name in self._lifs:
            self._handles.append(get(name).register_forward_hook(self._lif_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def reset(self) -> None:
        """Forget every measurement (keeps the hooks, if active)."""
        self._acc = {lay.name: _Acc() for lay in self._layers}
        self._lif_acc = {name: _Acc() for name in self._lifs}
        self._matmul_of = {
            lay.module: self._acc[lay.name] for lay in self._layers if lay.kind == "matmul"
        }
        self._images = 0
        self._wrong_arch: Architecture | None = None

    # --- hooks (cheap: one reduction and one in-place add, no host sync) --------------------
    def _weight_hook(self, name: str) -> Any:
        acc = self._acc[name]

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            acc.add(x)
            if isinstance(module, nn.Conv2d):  # out * C_in * kh * kw (groups = 1 in the SPS)
                acc.macs += out.numel() * x.shape[1] * KERNEL * KERNEL
            else:  # a Linear on rows: rows * in * out
                acc.macs += x.numel() * out.shape[-1]

        return hook

    def _first_conv_hook(self, name: str) -> Any:
        acc = self._acc[name]
        steps = self.arch.time_steps

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            acc.elements += x.numel()  # the image: its values are not spikes, no sum needed
            acc.macs += out.numel() * x.shape[1] * KERNEL * KERNEL
            self._images += x.shape[0] // steps
            if self._is_supernet:
                ran = getattr(self.model, "_configured", self.arch)
                if ran is not self.arch and ran != self.arch:
                    self._wrong_arch = ran

        return hook

    def _lif_hook(self, name: str) -> Any:
        acc = self._lif_acc[name]
        matmul = self._matmul_of.get(name)

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            acc.add(out)
            if matmul is not None:  # q@k^T (or attn@v): T*B*h*N*N*d = numel(q) * N
                matmul.total, matmul.elements = acc.total, acc.elements
                matmul.macs += out.numel() * out.shape[-2]

        return hook

    # --- result ---------------------------------------------------------------------------
    def report(self, *, rate_override: float | None = None) -> EnergyReport:
        """Per-layer table and per-image totals; ``rate_override`` forces every input rate
        (1.0 / 0.0 give the closed forms; the mean firing rate stays the measured one)."""
        if self._wrong_arch is not None:
            raise RuntimeError(
                f"the supernet ran {self._wrong_arch} inside a meter for {self.arch}; "
                "use one EnergyMeter per architecture"
            )
        if self._images == 0:
            raise RuntimeError("no forward pass was measured: run the model inside `with meter:`")
        steps, images = self.arch.time_steps, self._images
        missing = [n for n, a in self._acc.items() if a.elements == 0]
        if missing:
            raise RuntimeError(f"layers never ran inside the meter: {', '.join(missing)}")
        # one host transfer for every running sum
        accs = [*self._acc.values(), *self._lif_acc.values()]
        names = [*self._acc, *(f"lif:{n}" for n in self._lif_acc)]
        first_device = next(a.total for a in accs if a.total is not None).device
        totals = torch.stack(
            [
                a.total.to(first_device)
                if a.total is not None
                else torch.zeros((), dtype=torch.float64, device=first_device)
                for a in accs
            ]
        ).tolist()
        sums = dict(zip(names, totals, strict=True))
        rows = []
        for lay in self._layers:
            acc = self._acc[lay.name]
            per_call = images if lay.kind == "head" else images * steps
            if acc.macs % per_call:
                raise RuntimeError(f"{lay.name}: inconsistent shapes across batches")
            rows.append(
                {
                    "layer": lay.name,
                    "kind": lay.kind,
                    "op": _op(lay.name),
                    "dense_macs": acc.macs // per_call,
                }
            )
        macs = pd.DataFrame(rows, columns=["layer", "kind", "op", "dense_macs"])
        if rate_override is None:
            rates = {n: sums[n] / self._acc[n].elements for n in self._acc}
        else:
            rates = dict.fromkeys(self._acc, float(rate_override))
        spikes = sum(sums[f"lif:{n}"] for n in self._lif_acc)
        neuron_steps = sum(a.elements for a in self._lif_acc.values())
        mean_rate = spikes / neuron_steps if neuron_steps else math.nan
        return _build_report(
            macs,
            rates,
            time_steps=steps,
            mean_firing_rate=mean_rate,
            num_parameters=self._num_parameters(),
            images=images,
            rate_override=None if rate_override is None else float(rate_override),
        )

    def lif_rates(self) -> dict[str, float]:
        """Firing rate of each LIF (spikes per neuron-step), for diagnosis."""
        return {
            n: (float(a.total) / a.elements if a.total is not None and a.elements else math.nan)
            for n, a in self._lif_acc.items()
        }

    def _num_parameters(self) -> int:
        if self._is_supernet:
            return int(self.model.num_parameters(self.arch))
        counter = getattr(self.model, "num_parameters", None)
        if callable(counter):
            return int(counter())
        return sum(p.numel() for p in self.model.parameters())
