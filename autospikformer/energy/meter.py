"""EnergyMeter: per-layer input rates, dense MACs and neurons, measured by forward hooks while the
caller evaluates as usual, so that accuracy and energy come from the same batches.

The hooks keep running sums as tensors on the model's device and never synchronise with the
host; the numbers are read once, in :meth:`EnergyMeter.report`, which prices them under any
energy model (``docs/energy.md``). The first conv of a static image needs no sum (it is counted
once, as MACs); with ``event_data=True`` its input (spike-count frames) is summed like every
other layer's.
"""

from __future__ import annotations

import math
from typing import Any

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
    """A layer's input sums (one device scalar per call), its element count and dense MACs."""

    __slots__ = ("elements", "macs", "sums")

    def __init__(self) -> None:
        self.sums: list[torch.Tensor] = []
        self.elements = 0
        self.macs = 0

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
        return bool(self.sums)


class EnergyMeter:
    """Measures input rates, dense MACs and neurons by forward hooks during an evaluation.

    ``with EnergyMeter(supernet, arch) as meter: for x, y in loader: logits = supernet(x, arch)``,
    then ``meter.report()``. Rates accumulate over every batch, weighted by elements. ``arch`` is
    required for a :class:`~autospikformer.model.supernet.SuperSpikformer` (only ``sps``,
    ``blocks[:depth]`` and ``head`` are hooked) and read from ``model.arch`` otherwise. Every
    forward inside the context is counted (keep BN recalibration outside it). ``event_data``
    says that the inputs are event frames (SPEC section 4: the first conv is then counted like
    every other layer); by default it follows the model's variant (``"dvs"``: event frames), and
    the evaluator sets it from the data set.
    """

    def __init__(
        self,
        model: nn.Module,
        arch: Architecture | None = None,
        *,
        event_data: bool | None = None,
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
        self._images = 0
        self._wrong_arch: Architecture | None = None

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

        return hook

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
        if self._images == 0:
            raise RuntimeError("no forward pass was measured: run the model inside `with meter:`")
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
        added exactly (``math.fsum`` of the per-call float32 sums)."""
        named = [*self._acc.items(), *((f"lif:{n}", a) for n, a in self._lif_acc.items())]
        flat = [s for _, a in named for s in a.sums]
        if not flat:
            return {name: 0.0 for name, _ in named}
        values = torch.stack(flat).tolist()  # float32 (or wider) scalars, exact as floats
        out, start = {}, 0
        for name, acc in named:
            out[name] = math.fsum(values[start : start + len(acc.sums)])
            start += len(acc.sums)
        return out

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
