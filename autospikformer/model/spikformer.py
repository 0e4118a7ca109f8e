"""Spikformer (Zhou et al., ICLR 2023) as one standalone model, readable top to bottom.

Layout conventions (SPEC section 1):
- activations are time-major, ``[T, B, ...]``; static images are repeated over T, event frames
  arrive as ``[B, T, C, H, W]`` and are transposed;
- every LIF is spikingjelly's multi-step ``LIFNode``: hard reset to 0, ``detach_reset=True``,
  sigmoid surrogate, its membrane in float32 also under autocast; per-block threshold and tau
  go to every LIF of the block, the attention LIF keeps half of the block's threshold; SPS
  neurons keep tau 2.0 and threshold 1.0;
- a token-wise ``Linear -> BN1d`` runs on ``[T*B*N, C]`` rows: BN1d over 2-D input normalises each
  channel over all rows, exactly the statistics of the reference's transposed ``[T*B, C, N]``
  layout, without two transposes per layer.

The building blocks take a :class:`LayerKit` so that the supernet (``model/supernet.py``) builds the very
same modules from weight-entangled layers: a subnet and its extracted model share this forward code
and their state-dict keys.

Two variants, as the reference trains (SPEC section 1): ``"cifar"`` for images and ``"dvs"`` for
event data, whose q, k and v have no bias and whose attention scale is 0.25. The pooling follows
the input size in both (a 128x128 DVS input pools after every SPS stage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import functional, neuron, surrogate
from torch import nn

from autospikformer.checkpoint_file import (
    CHECKSUM_KEY,
    CheckpointError,
    read_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from autospikformer.data.base import DatasetInfo, ImageSize, canonical_size
from autospikformer.model.shapes import VariantName, model_variant, num_pools, sps_widths
from autospikformer.search.architecture import Architecture

# spikingjelly registers its LIF kernel as a torch ``triton_op``; where Triton is missing (torch's
# CPU-only build) torch logs "Triton not available" at the first forward pass, twice, into every
# user's log. The CPU path never uses Triton: that one message is dropped, nothing else.
logging.getLogger("torch._library.triton").addFilter(
    lambda record: "Triton not available" not in record.getMessage()
)

SPS_THRESHOLD = 1.0
SPS_TAU = 2.0
CHECKPOINT_KIND = "spikformer"  # the "kind" entry of a file written by Spikformer.save


class FloatLIF(neuron.LIFNode):
    """spikingjelly's LIF with its membrane at least in float32.

    Under autocast a layer's output is bfloat16 or float16; spikingjelly runs its fused LIF
    kernel only on a float32 membrane and would fall back to a step-by-step loop, so half
    precision is cast up. Float32 and float64 inputs (runs without autocast, a model in double
    precision for gradient checks) pass through unchanged.
    """

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return super().forward(x, *args, **kwargs)

    def multi_step_forward(self, x_seq: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self._exact_fast_path(x_seq, args, kwargs):
            return self._forward_without_grad(x_seq)
        return super().multi_step_forward(x_seq, *args, **kwargs)

    def _exact_fast_path(self, x_seq: torch.Tensor, args: tuple, kwargs: dict) -> bool:
        """Inference on the CPU, where spikingjelly's kernel is its autograd-ready reference
        loop: eleven tensor operations a step and a stack of the charged membranes it then
        discards. Everything else (training, CUDA kernels, monitors of the voltage) keeps it."""
        return (
            not torch.is_grad_enabled()
            and x_seq.device.type == "cpu"
            and x_seq.dtype == torch.float32
            and not (args or kwargs or self.store_v_seq)
            and self._neuron_precision is None
            and self.decay_input
            and self.v_reset == 0.0
            and isinstance(self.v_threshold, float)
            and self.v_threshold > 0.0
        )

    def _forward_without_grad(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The same spikes and membrane, bit for bit, in six operations a step: charge
        ``h = v + (x - v) / tau`` in the kernel's order, fire where ``h >= threshold`` (the
        kernel's ``h - threshold >= 0``: rounding keeps the sign), hard reset to 0 as a product
        with the float mask of the neurons that did not fire (the kernel's
        ``spike * 0 + (1 - spike) * h``, also for NaN and infinity)."""
        (v,) = self.materialize_states((x_seq,), tuple(self._memories.values()), "m")
        spikes = torch.empty_like(x_seq)
        silent = torch.empty_like(x_seq[0])
        for x, out in zip(x_seq, spikes, strict=True):
            h = torch.sub(x, v).div_(self.tau).add_(v)
            torch.ge(h, self.v_threshold, out=out)
            v = h.mul_(torch.lt(h, self.v_threshold, out=silent))
        self._memories["v"] = v
        self.v_seq = None
        return spikes


def make_lif(threshold: float = 1.0, tau: float = 2.0) -> neuron.LIFNode:
    """The reference LIF: multi-step, hard reset to 0, detached reset, sigmoid surrogate."""
    return FloatLIF(
        tau=tau,
        v_threshold=threshold,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.Sigmoid(),
        step_mode="m",
    )


@dataclass(frozen=True)
class LayerKit:
    """Constructors of the four weight layers: plain torch layers for the standalone model,
    weight-entangled ones for the supernet (``model/supernet.py``); each is called as its torch
    counterpart is."""

    conv: type[nn.Conv2d] = nn.Conv2d
    bn2d: type[nn.BatchNorm2d] = nn.BatchNorm2d
    linear: type[nn.Linear] = nn.Linear
    bn1d: type[nn.BatchNorm1d] = nn.BatchNorm1d


PLAIN = LayerKit()


class SPS(nn.Module):
    """Spiking Patch Splitting: four Conv3x3-BN-LIF stages, pools on the last stages, a relative
    position branch added to the stage-4 output; returns tokens ``[T, B, N, E]``."""

    def __init__(
        self, in_channels: int, embed_dim: int, img_size: ImageSize, kit: LayerKit = PLAIN
    ):
        super().__init__()
        widths = sps_widths(embed_dim)
        pools = num_pools(img_size)
        chans = (in_channels, *widths)
        self.convs = nn.ModuleList(
            kit.conv(chans[i], chans[i + 1], 3, padding=1, bias=False) for i in range(4)
        )
        self.bns = nn.ModuleList(kit.bn2d(w) for w in widths)
        self.lifs = nn.ModuleList(make_lif(SPS_THRESHOLD, SPS_TAU) for _ in widths)
        self.pool_after = tuple(i >= 4 - pools for i in range(4))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe_conv = kit.conv(embed_dim, embed_dim, 3, padding=1, bias=False)
        self.rpe_bn = kit.bn2d(embed_dim)
        self.rpe_lif = make_lif(SPS_THRESHOLD, SPS_TAU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch = x.shape[:2]
        x = x.flatten(0, 1)
        for conv, bn, lif, pool in zip(
            self.convs, self.bns, self.lifs, self.pool_after, strict=True
        ):
            x = bn(conv(x))
            x = lif(x.reshape(steps, batch, *x.shape[1:])).flatten(0, 1)
            if pool:
                x = self.pool(x)
        feat = x
        x = self.rpe_bn(self.rpe_conv(x))
        x = self.rpe_lif(x.reshape(steps, batch, *x.shape[1:])).flatten(0, 1) + feat
        x = x.reshape(steps, batch, x.shape[1], -1)  # [T, B, E, N]
        return x.transpose(2, 3).contiguous()  # [T, B, N, E]


class LinearBNLIF(nn.Module):
    """Token-wise ``Linear -> BN1d -> LIF`` on ``[T, B, N, C_in]`` -> ``[T, B, N, C_out]``.

    Args:
        in_features: channels in.
        out_features: channels out.
        kit: the layer constructors (plain, or the supernet's elastic ones).
        bias: the linear layer's bias (the DVS variant's q, k and v have none).
    """

    def __init__(
        self, in_features: int, out_features: int, kit: LayerKit = PLAIN, bias: bool = True
    ):
        super().__init__()
        self.linear = kit.linear(in_features, out_features, bias=bias)
        self.bn = kit.bn1d(out_features)
        self.lif = make_lif()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        y = self.bn(self.linear(x.reshape(-1, x.shape[-1])))
        return self.lif(y.reshape(*shape, y.shape[-1]))


class SSA(nn.Module):
    """Spiking Self-Attention: spike q, k, v; ``attn = q k^T * scale`` without softmax
    (scale 0.125, or 0.25 in the DVS variant, whose q, k, v have no bias).

    Args:
        embed_dim: token channels E (split evenly over the heads).
        num_heads: attention heads.
        kit: the layer constructors (plain, or the supernet's elastic ones).
        variant: ``"cifar"`` or ``"dvs"`` (:data:`~autospikformer.model.shapes.VARIANTS`).
    """

    def __init__(
        self, embed_dim: int, num_heads: int, kit: LayerKit = PLAIN, variant: VariantName = "cifar"
    ):
        super().__init__()
        spec = model_variant(variant)
        self.num_heads = num_heads
        self.scale = spec.attn_scale
        self.q = LinearBNLIF(embed_dim, embed_dim, kit, bias=spec.qkv_bias)
        self.k = LinearBNLIF(embed_dim, embed_dim, kit, bias=spec.qkv_bias)
        self.v = LinearBNLIF(embed_dim, embed_dim, kit, bias=spec.qkv_bias)
        self.attn_lif = make_lif(threshold=0.5)
        self.proj = LinearBNLIF(embed_dim, embed_dim, kit)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch, tokens, channels = x.shape
        x = x.reshape(steps, batch, tokens, self.num_heads, channels // self.num_heads)
        return x.transpose(2, 3)  # [T, B, h, N, d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch, tokens, _ = x.shape
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn @ v).transpose(2, 3).reshape(steps, batch, tokens, -1)
        return self.proj(self.attn_lif(x))


class MLP(nn.Module):
    """``Linear -> BN -> LIF -> Linear -> BN -> LIF`` over tokens, E -> hidden -> E.

    Args:
        embed_dim: token channels E.
        hidden: the hidden width, ``round(mlp_ratio * E)``.
        kit: the layer constructors (plain, or the supernet's elastic ones).
    """

    def __init__(self, embed_dim: int, hidden: int, kit: LayerKit = PLAIN):
        super().__init__()
        self.fc1 = LinearBNLIF(embed_dim, hidden, kit)
        self.fc2 = LinearBNLIF(hidden, embed_dim, kit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x))


class Block(nn.Module):
    """``x = x + SSA(x); x = x + MLP(x)`` (no LayerNorm, as the reference computes)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        hidden: int,
        kit: LayerKit = PLAIN,
        variant: VariantName = "cifar",
    ):
        super().__init__()
        self.attn = SSA(embed_dim, num_heads, kit, variant)
        self.mlp = MLP(embed_dim, hidden, kit)

    def set_neurons(self, threshold: float, tau: float) -> None:
        """Give every LIF of the block this threshold and tau (attention LIF: half threshold)."""
        for unit in (
            self.attn.q,
            self.attn.k,
            self.attn.v,
            self.attn.proj,
            self.mlp.fc1,
            self.mlp.fc2,
        ):
            unit.lif.v_threshold = threshold
            unit.lif.tau = tau
        self.attn.attn_lif.v_threshold = threshold / 2
        self.attn.attn_lif.tau = tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


def init_weights(model: nn.Module) -> None:
    """Reference init: truncated normal (std 0.02) for linear weights, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def time_major(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """``[B, C, H, W]`` images -> repeated ``[T, B, C, H, W]``; ``[B, T, C, H, W]`` frames -> ``[T, B, ...]``."""
    if x.dim() == 4:
        return x.unsqueeze(0).expand(time_steps, *x.shape).contiguous()
    if x.dim() == 5:
        if x.shape[1] != time_steps:
            raise ValueError(
                f"input has {x.shape[1]} frames but the architecture uses T={time_steps}"
            )
        return x.transpose(0, 1).contiguous()
    raise ValueError(
        f"expected [B, C, H, W] images or [B, T, C, H, W] frames, got {tuple(x.shape)}"
    )


class SpikformerBase(nn.Module):
    """What :class:`Spikformer` and the supernet share: the input shape (checked in one place)
    and the forward pass in timm's parts: SPS, the blocks, the head."""

    sps: SPS
    blocks: nn.ModuleList
    head: nn.Module

    def _set_shape(
        self, num_classes: int, in_channels: int, img_size: ImageSize, variant: VariantName
    ) -> None:
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: {value!r} is not allowed (allowed: an integer >= 1)")
        num_pools(img_size)  # refuses a size the token-grid rule cannot serve
        self.variant = model_variant(variant).name
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.img_size = canonical_size(img_size)

    def _embed(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        functional.reset_net(self)  # no neuron state leaks from the previous batch
        return self.sps(time_major(x, time_steps))

    def _blocks(self, tokens: torch.Tensor, depth: int) -> torch.Tensor:
        for block in self.blocks[:depth]:
            tokens = block(tokens)
        return tokens

    def _blocks_on(self, tokens: torch.Tensor, depth: int) -> torch.Tensor:
        """The first ``depth`` blocks on SPS tokens computed earlier (their neurons reset first,
        as a whole forward pass resets them): the trial engine's reuse of SPS outputs."""
        functional.reset_net(self.blocks)
        return self._blocks(tokens, depth)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from the blocks' tokens ``[T, B, N, E]``: mean over tokens and T, then
        the linear head."""
        return self.head(features.mean(dim=2).mean(dim=0))


class Spikformer(SpikformerBase):
    """One Spikformer of a given :class:`Architecture`; ``forward(x)`` returns class logits.

    ``x`` is ``[B, C, H, W]`` images (repeated over T) or ``[B, T, C, H, W]`` event frames.
    ``forward_features(x)`` gives the tokens after the blocks (``[T, B, N, E]``),
    ``forward_head(features)`` the logits from them, ``embed(x)`` the SPS tokens alone.

    Args:
        arch: the architecture (depth, width, per-block MLP ratio, heads and neurons, T).
        num_classes: classes of the head.
        in_channels: input channels (3 for images, 2 for event polarities).
        img_size: input height and width: an integer, or ``(height, width)``.
        variant: ``"cifar"`` (the reference's image model) or ``"dvs"`` (its event-data model:
            q, k, v without bias, attention scale 0.25).
    """

    def __init__(
        self,
        arch: Architecture,
        *,
        num_classes: int,
        in_channels: int = 3,
        img_size: ImageSize = 32,
        variant: VariantName = "cifar",
    ):
        super().__init__()
        self._set_shape(num_classes, in_channels, img_size, variant)
        self.arch = arch
        dim = arch.embed_dim
        self.sps = SPS(in_channels, dim, img_size)
        self.blocks = nn.ModuleList(
            Block(dim, arch.num_heads[i], arch.mlp_hidden(i), variant=self.variant)
            for i in range(arch.depth)
        )
        for block, threshold, tau in zip(self.blocks, arch.threshold, arch.tau, strict=True):
            block.set_neurons(threshold, tau)
        self.head = nn.Linear(dim, num_classes)
        init_weights(self)

    @classmethod
    def for_data(cls, arch: Architecture, data: DatasetInfo) -> Spikformer:
        """The model of ``arch`` for the shape and variant of data set ``data``."""
        return cls(
            arch,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            img_size=data.img_size,
            variant=data.variant,  # type: ignore[arg-type]
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The SPS tokens ``[T, B, N, E]`` of the input (neurons reset first)."""
        return self._embed(x, self.arch.time_steps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The tokens after the blocks, ``[T, B, N, E]``."""
        return self._blocks(self.embed(x), self.arch.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- checkpoints ------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "architecture": self.arch.to_dict(),
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "img_size": self.img_size,
            "variant": self.variant,
        }

    def save(self, path: str | Path, **extra: Any) -> Path:
        """Write weights and the config needed to rebuild the model (plus ``extra`` metadata),
        atomically and checksummed, as every checkpoint (:func:`save_checkpoint`)."""
        payload = {"kind": CHECKPOINT_KIND, **self.config(), "state_dict": self.state_dict()}
        return save_checkpoint({**payload, **extra}, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Spikformer:
        """Rebuild a model written by :meth:`save` (a damaged file: one CheckpointError line;
        files written before checkpoints carried a checksum still load)."""
        data = read_checkpoint(path, map_location=map_location)
        if data.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(
                f"'{path}' is not a standalone Spikformer checkpoint (autospik subnet export)"
            )
        if CHECKSUM_KEY in data:
            verify_checkpoint(data, path)
        return cls.from_checkpoint(data)

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> Spikformer:
        """The model held by the dict of a file :meth:`save` wrote (already read); files written
        before the DVS variant existed hold the image model."""
        model = cls(
            Architecture.from_dict(data["architecture"]),
            num_classes=data["num_classes"],
            in_channels=data["in_channels"],
            img_size=canonical_size(data["img_size"]),
            variant=data.get("variant", "cifar"),
        )
        model.load_state_dict(data["state_dict"])
        return model
