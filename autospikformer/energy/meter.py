"""EnergyMeter: per-layer input rates, dense MACs and neurons, measured by forward hooks while the
caller evaluates as usual, so that accuracy and energy come from the same batches.

The hooks keep running sums as tensors on the model's device and never synchronise with the
host; the numbers are read once, in :meth:`EnergyMeter.report`, which prices them under any
energy model (``docs/energy.md``). The first conv of a static image needs no sum (it is counted
once, as MACs); with ``event_data=True`` its input (spike-count frames) is summed like every
other layer's.

The trial engine computes SPS once per embed dim and time steps (``training/evaluate.py``): a
meter with ``part="embed"`` measures SPS alone and hands its rows over as :class:`EmbedRows`;
a meter given those rows (``embed=rows``) measures only the blocks and the head and joins the
two, so that its report is, bit for bit, the report of a meter over the whole pass (each
layer's input sum is its own exact ``math.fsum``, whichever pass measured it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from autospikformer.energy.counts import (
    FIRST_CONV,
    KERNEL,
    SPIKES,
    counted_layers,
    first_conv_rule,
    lif_names,
)
from autospikformer.energy.models import EnergyModel
from autospikformer.energy.report import COUNT_COLUMNS, EnergyReport, build_report
from autospikformer.search.architecture import Architecture

_HALF = (torch.float16, torch.bfloat16)
_FOLD_EVERY = 256  # per-call sums kept before they are folded into one float64 partial sum


class _InputSums:
    """A layer's input sums (one device scalar per call), its element count and dense MACs;
    ``stored``: the exact total of a pass measured before (an :class:`EmbedRows` row)."""

    __slots__ = ("elements", "macs", "stored", "sums")

    def __init__(self) -> None:
        self.sums: list[torch.Tensor] = []
        self.elements = 0
        self.macs = 0
        self.stored: float | None = None

    def add(self, x: torch.Tensor) -> None:
        # one float32 reduction per call and nothing else on the device (a float64 reduction
        # costs ~10x on the CPU); the per-call sums are added exactly, in float64, by report().
        # Half-precision inputs (autocast) are summed in float32, not rounded to 8 mantissa bits.
        if x.requires_grad:
            x = x.detach()
        self.sums.append(x.sum(dtype=torch.float32) if x.dtype in _HALF else x.sum())
        self.elements += x.numel()
        if len(self.sums) >= _FOLD_EVERY:  # bounded memory over long passes; in place, the list
            self.sums[:] = [torch.stack(self.sums).sum(dtype=torch.float64)]  # may be shared

    @property
    def measured(self) -> bool:
        return bool(self.sums) or self.stored is not None


#: What a meter hooks: the whole subnet, SPS alone, or the blocks and the head.
Part = Literal["model", "embed", "blocks"]


def _in_part(name: str, part: Part) -> bool:
    """Whether layer or LIF ``name`` (a module path) is measured by a meter of ``part``."""
    return part == "model" or name.startswith("sps.") == (part == "embed")


@dataclass(frozen=True)
class EmbedRows:
    """SPS's share of one measured pass: per counted SPS layer ``(name, input sum or None,
    elements, MACs)``, per SPS LIF ``(name, output sum, elements)``, and the images.

    SPS depends only on the embed dim E and the time steps T, so the rows of one (E, T) serve
    every subnet with that pair measured on the same images; ``EnergyMeter(..., embed=rows)``
    joins them to the blocks' rows.
    """

    embed_dim: int
    time_steps: int
    event_data: bool
    images: int
    layers: tuple[tuple[str, float | None, int, int], ...]
    lifs: tuple[tuple[str, float, int], ...]


class EnergyMeter:
    """Measures input rates, dense MACs and neurons by forward hooks during an evaluation.

    ``with EnergyMeter(supernet, arch) as meter: for x, y in loader: logits = supernet(x, arch)``,
    then ``meter.report()``. Rates accumulate over every batch, weighted by elements. ``arch`` is
    required for a :class:`~autospikformer.model.supernet.SuperSpikformer` (only ``sps``,
    ``blocks[:depth]`` and ``head`` are hooked) and read from ``model.arch`` otherwise. Every
    forward inside the context is counted (keep BN recalibration outside it). ``event_data``
    says that the inputs are event frames (SPEC section 4: the first conv is then counted like
    every other layer); by default it follows the model's variant (``"dvs"``: event frames), and
    the evaluator sets it from the data set. ``part="embed"`` measures SPS alone
    (:meth:`embed_rows`); ``embed=rows`` measures the blocks and the head and joins ``rows``.
    """

    def __init__(
        self,
        model: nn.Module,
        arch: Architecture | None = None,
        *,
        event_data: bool | None = None,
        part: Part = "model",
        embed: EmbedRows | None = None,
    ):
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
        if event_data is None:
            event_data = getattr(model, "variant", "cifar") == "dvs"
        self.event_data = bool(event_data)
        self.part: Part = "blocks" if embed is not None else part
        if self.part not in ("model", "embed", "blocks"):
            raise ValueError(f"part: {part!r} is not allowed (allowed: model, embed, blocks)")
        if embed is not None:
            self._check_embed(embed, arch)
        elif self.part == "blocks":
            raise ValueError("part='blocks' needs embed= (the SPS rows measured before)")
        self.embed = embed
        self._is_supernet = hasattr(model, "configure")
        self._layers = counted_layers(arch)
        self._lifs = lif_names(arch)
        self._handles: list[Any] = []
        self._accumulators()
        self.reset()

    # --- context --------------------------------------------------------------------------
    def __enter__(self) -> EnergyMeter:
        if self._handles:
            raise RuntimeError("this EnergyMeter is already active")
        get = self.model.get_submodule
        for lay in self._layers:
            if lay.kind != "matmul" and _in_part(lay.name, self.part):
                hook = self._first_conv_hook if lay.name == FIRST_CONV else self._weight_hook
                self._handles.append(get(lay.module).register_forward_hook(hook(lay.name)))
        for name in self._lifs:
            if _in_part(name, self.part):
                self._handles.append(get(name).register_forward_hook(self._lif_hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _accumulators(self) -> None:
        self._acc = {lay.name: _InputSums() for lay in self._layers}
        self._lif_acc = {name: _InputSums() for name in self._lifs}
        self._matmul_of = {
            lay.module: self._acc[lay.name] for lay in self._layers if lay.kind == "matmul"
        }
        self._shared = self._inputs_from_lifs()
        for layer, lif in self._shared.items():  # the LIF's sums are the layer's input sums
            self._acc[layer].sums = self._lif_acc[lif].sums

    def reset(self) -> None:
        """Forget every measurement (keeps the hooks, if active)."""
        for acc in [*self._acc.values(), *self._lif_acc.values()]:
            acc.sums.clear()  # in place: shared lists stay shared
            acc.elements = acc.macs = 0
            acc.stored = None
        self._images = 0
        self._wrong_arch: Architecture | None = None
        if self.embed is not None:  # SPS as measured before: its exact totals and counts
            for name, total, elements, macs in self.embed.layers:
                acc = self._acc[name]
                acc.stored, acc.elements, acc.macs = total, elements, macs
            for name, total, elements in self.embed.lifs:
                acc = self._lif_acc[name]
                acc.stored, acc.elements = total, elements

    def _check_embed(self, embed: EmbedRows, arch: Architecture) -> None:
        """Rows of another (E, T), or of the other first-conv convention, cannot be joined."""
        ours = (arch.embed_dim, arch.time_steps, self.event_data)
        theirs = (embed.embed_dim, embed.time_steps, embed.event_data)
        if ours != theirs:
            raise ValueError(
                f"SPS rows of (E, T, event data) = {theirs} cannot be joined to a meter of {ours}"
            )

    def _inputs_from_lifs(self) -> dict[str, str]:
        """Layers whose input is exactly one LIF's output, only reshaped (the SPS convs after an
        unpooled stage, proj after the attention LIF, fc2 after fc1): their rate is that LIF's,
        so its output is summed once."""
        shared = {}
        for i in range(self.arch.depth):
            p = f"blocks.{i}"
            shared[f"{p}.attn.proj.linear"] = f"{p}.attn.attn_lif"
            shared[f"{p}.mlp.fc2.linear"] = f"{p}.mlp.fc1.lif"
        pooled = getattr(self.model.get_submodule("sps"), "pool_after", (True,) * 4)
        for i in range(1, 4):
            if not pooled[i - 1]:
                shared[f"sps.convs.{i}"] = f"sps.lifs.{i - 1}"
        return shared

    # --- hooks (cheap: at most one reduction, no host sync) ---------------------------------
    def _weight_hook(self, name: str) -> Any:
        acc = self._acc[name]
        summed = name not in self._shared
        counts_images = name == "head" and self.part == "blocks"  # no first conv runs

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            if summed:
                acc.add(x)
            else:  # the LIF hook before it summed these very values
                acc.elements += x.numel()
            if isinstance(module, nn.Conv2d):  # out * C_in * kh * kw (groups = 1 in the SPS)
                acc.macs += out.numel() * x.shape[1] * KERNEL * KERNEL
            else:  # a Linear on rows: rows * in * out
                acc.macs += x.numel() * out.shape[-1]
            if counts_images:  # the head sees one row per image
                self._images += x.shape[0]
                self._note_arch()

        return hook

    def _note_arch(self) -> None:
        """Remember a supernet pass of another architecture inside this meter."""
        if self._is_supernet:
            ran = getattr(self.model, "_configured", self.arch)
            if ran is not self.arch and ran != self.arch:
                self._wrong_arch = ran

    def _first_conv_hook(self, name: str) -> Any:
        acc = self._acc[name]
        steps = self.arch.time_steps
        events = self.event_data

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            if events:  # spike-count frames: their mean is the input rate
                acc.add(x)
            else:  # the image: its values are not spikes, no sum needed
                acc.elements += x.numel()
            acc.macs += out.numel() * x.shape[1] * KERNEL * KERNEL
            self._images += x.shape[0] // steps
            self._note_arch()

        return hook

    def _lif_hook(self, name: str) -> Any:
        acc = self._lif_acc[name]
        matmul = self._matmul_of.get(name)

        def hook(module: nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            acc.add(out)
            if matmul is not None:  # q@k^T (or attn@v): T*B*h*N*N*d = numel(q) * N
                matmul.sums, matmul.elements = acc.sums, acc.elements  # the rate of q (or v)
                matmul.macs += out.numel() * out.shape[-2]

        return hook

    # --- result ---------------------------------------------------------------------------
    def report(
        self, *, rate_override: float | None = None, model: EnergyModel | None = None
    ) -> EnergyReport:
        """Per-layer table and per-image totals under ``model`` (None: ``sop-45nm``).

        ``rate_override`` forces every input rate (1.0 / 0.0 give the closed forms; the mean
        firing rate stays the measured one). ``report(...).reprice(other)`` prices the same
        measurement under another model.
        """
        if self._wrong_arch is not None:
            raise RuntimeError(
                f"the supernet ran {self._wrong_arch} inside a meter for {self.arch}; "
                "use one EnergyMeter per architecture"
            )
        if self.part == "embed":
            raise RuntimeError("a meter of SPS alone gives its rows (embed_rows), not a report")
        if self._images == 0:
            raise RuntimeError("no forward pass was measured: run the model inside `with meter:`")
        if self.embed is not None and self._images != self.embed.images:
            raise RuntimeError(
                f"the blocks ran on {self._images} images, the SPS rows joined to them were "
                f"measured on {self.embed.images}"
            )
        steps, images = self.arch.time_steps, self._images
        missing = [n for n, a in self._acc.items() if a.elements == 0]
        if missing:
            raise RuntimeError(f"layers never ran inside the meter: {', '.join(missing)}")
        sums = self._totals()
        first_op, first_counted = first_conv_rule(self.event_data)
        counts: dict[str, list[Any]] = {name: [] for name in COUNT_COLUMNS}
        for lay in self._layers:
            acc = self._acc[lay.name]
            per_call = images if lay.kind == "head" else images * steps
            cells = self._lif_acc[lay.lif].elements if lay.lif is not None else 0
            if acc.macs % per_call or cells % (images * steps):
                raise RuntimeError(f"{lay.name}: inconsistent shapes across batches")
            first = lay.name == FIRST_CONV
            counts["layer"].append(lay.name)
            counts["kind"].append(lay.kind)
            counts["op"].append(first_op if first else "AC")
            counts["counted"].append(first_counted if first else SPIKES)
            counts["dense_macs"].append(acc.macs // per_call)
            counts["neurons"].append(cells // (images * steps))
        if rate_override is None:
            rates = [sums[n] / a.elements if a.measured else math.nan for n, a in self._acc.items()]
        else:
            rates = [float(rate_override)] * len(self._acc)
        spikes = sum(sums[f"lif:{n}"] for n in self._lif_acc)
        neuron_steps = sum(a.elements for a in self._lif_acc.values())
        mean_rate = spikes / neuron_steps if neuron_steps else math.nan
        return build_report(
            counts,
            rates,
            time_steps=steps,
            model=model,
            event_data=self.event_data,
            mean_firing_rate=mean_rate,
            num_parameters=self._num_parameters(),
            images=images,
            rate_override=None if rate_override is None else float(rate_override),
        )

    def _totals(self) -> dict[str, float]:
        """Every layer's and LIF's input sum (LIFs as ``lif:<name>``), in one host transfer,
        added exactly (``math.fsum`` of the per-call float32 sums); a stored row's total is
        that same fsum, taken when its pass was measured."""
        named = [*self._acc.items(), *((f"lif:{n}", a) for n, a in self._lif_acc.items())]
        flat = [s for _, a in named if a.stored is None for s in a.sums]
        values = torch.stack(flat).tolist() if flat else []  # float32 (or wider), exact as floats
        out, start = {}, 0
        for name, acc in named:
            if acc.stored is not None:
                out[name] = acc.stored
                continue
            out[name] = math.fsum(values[start : start + len(acc.sums)])
            start += len(acc.sums)
        return out

    def embed_rows(self) -> EmbedRows:
        """SPS's rows of the pass measured by this ``part="embed"`` meter (see :class:`EmbedRows`)."""
        if self.part != "embed":
            raise RuntimeError("embed_rows() needs a meter of SPS alone (part='embed')")
        if self._wrong_arch is not None or self._images == 0:
            raise RuntimeError(f"no pass of {self.arch} was measured inside this meter")
        sums = self._totals()
        accs = [(lay.name, self._acc[lay.name]) for lay in self._layers]
        layers = tuple(
            (name, sums[name] if acc.measured else None, acc.elements, acc.macs)
            for name, acc in accs
            if _in_part(name, "embed")
        )
        lifs = tuple(
            (name, sums[f"lif:{name}"], acc.elements)
            for name, acc in self._lif_acc.items()
            if _in_part(name, "embed")
        )
        return EmbedRows(
            self.arch.embed_dim, self.arch.time_steps, self.event_data, self._images, layers, lifs
        )

    def lif_rates(self) -> dict[str, float]:
        """Firing rate of each LIF (spikes per neuron-step), for diagnosis."""
        sums = self._totals()
        return {
            n: (sums[f"lif:{n}"] / a.elements if a.measured and a.elements else math.nan)
            for n, a in self._lif_acc.items()
        }

    def _num_parameters(self) -> int:
        if self._is_supernet:
            return int(self.model.num_parameters(self.arch))
        counter = getattr(self.model, "num_parameters", None)
        if callable(counter):
            return int(counter())
        return sum(p.numel() for p in self.model.parameters())
