"""SuperSpikformer: one set of weights for every architecture of a transformer space.

Weight entanglement (AutoFormer): every layer is built at its largest shape and a subnet uses the
leading slice of each weight, bias and BN statistic. The elastic layers below are plain torch
layers whose ``forward`` slices to the active size set by :meth:`SuperSpikformer.configure`, so a
training step that samples a new architecture rebuilds nothing and copies no weight. Threshold,
tau and T carry no weights ("alternate choice"): ``configure`` writes them into the LIF neurons.

The supernet is built from the same ``SPS``/``Block`` modules as :class:`Spikformer`, so both run
one forward code path and share state-dict keys; ``extract`` copies leading slices key by key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from autospikformer.data.base import DatasetInfo, ImageSize
from autospikformer.model.shapes import VariantName, sps_widths
from autospikformer.model.spikformer import (
    SPS,
    Block,
    LayerKit,
    Spikformer,
    SpikformerBase,
    init_weights,
)
from autospikformer.search.architecture import Architecture
from autospikformer.search.space import SearchSpace


class ElasticLinear(nn.Linear):
    """``nn.Linear`` at full size whose forward uses ``weight[:out, :in]`` and ``bias[:out]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        self.active = (out_features, in_features)

    def set_active(self, out_features: int, in_features: int) -> None:
        self.active = (out_features, in_features)

    def active_numel(self) -> int:
        out, inp = self.active
        return out * inp + (out if self.bias is not None else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, inp = self.active
        bias = self.bias[:out] if self.bias is not None else None
        return F.linear(x, self.weight[:out, :inp], bias)


class ElasticConv2d(nn.Conv2d):
    """``nn.Conv2d`` at full size whose forward uses the filters ``weight[:out, :in]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs: object):
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)  # type: ignore[arg-type]
        if self.bias is not None:
            raise ValueError("ElasticConv2d supports bias=False only (as every SPS conv)")
        self.active = (out_channels, in_channels)

    def set_active(self, out_channels: int, in_channels: int) -> None:
        self.active = (out_channels, in_channels)

    def active_numel(self) -> int:
        out, inp = self.active
        return out * inp * self.weight.shape[2] * self.weight.shape[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, inp = self.active
        return self._conv_forward(x, self.weight[:out, :inp], None)


class _ElasticBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the first ``active`` channels: affine and running statistics sliced.

    Running-statistic updates in train mode write through the slice views into the full buffers,
    so recalibrating one subnet leaves the other channels' statistics untouched.
    """

    def __init__(self, num_features: int, **kwargs: object):
        super().__init__(num_features, **kwargs)  # type: ignore[arg-type]
        self.active = num_features

    def set_active(self, num_features: int) -> None:
        self.active = num_features

    def active_numel(self) -> int:
        return 2 * self.active if self.affine else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        channels = self.active
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:channels] if self.running_mean is not None else None,
            self.running_var[:channels] if self.running_var is not None else None,
            self.weight[:channels] if self.affine else None,
            self.bias[:channels] if self.affine else None,
            use_batch_stats,
            momentum,
            self.eps,
        )


class ElasticBatchNorm1d(_ElasticBatchNorm):
    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {x.dim()}D input)")


class ElasticBatchNorm2d(_ElasticBatchNorm):
    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")


ELASTIC = LayerKit(
    conv=ElasticConv2d, bn2d=ElasticBatchNorm2d, linear=ElasticLinear, bn1d=ElasticBatchNorm1d
)


class SuperSpikformer(SpikformerBase):
    """The supernet of a :class:`SearchSpace`; ``forward(x, arch)`` runs one subnet.

    ``forward_features(x, arch)``, ``forward_head(features)`` and ``embed(x, arch)`` are the
    standalone model's parts (:class:`~autospikformer.model.spikformer.Spikformer`) for subnet
    ``arch``; ``forward_tokens(tokens, arch)`` runs the blocks on SPS tokens computed earlier
    (the trial engine computes SPS once per embed dim and time steps).

    Args:
        space: the search space; every layer holds its largest shape.
        num_classes, in_channels, img_size: the input and output shape, as a Spikformer's.
        variant: the standalone model's (``"dvs"``: q, k, v without bias, attention scale
            0.25); every subnet and every extracted model is of that variant.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        num_classes: int,
        in_channels: int = 3,
        img_size: ImageSize = 32,
        variant: VariantName = "cifar",
    ):
        super().__init__()
        self._set_shape(num_classes, in_channels, img_size, variant)
        self.space = space
        dim, depth = space.max_embed_dim, space.max_depth
        heads = int(max(space.choices["num_heads"]))
        self.sps = SPS(in_channels, dim, img_size, ELASTIC)
        self.blocks = nn.ModuleList(
            Block(dim, heads, space.max_mlp_hidden, ELASTIC, self.variant) for _ in range(depth)
        )
        self.head = ElasticLinear(dim, num_classes)
        init_weights(self)
        self._configured: Architecture | None = None

    def configure(self, arch: Architecture) -> None:
        """Set every layer's active slice and every block's neurons for ``arch`` (no allocation)."""
        if arch == self._configured:
            return
        self.space.check(arch)
        dim = arch.embed_dim
        chans = (self.in_channels, *sps_widths(dim))
        for i, (conv, bn) in enumerate(zip(self.sps.convs, self.sps.bns, strict=True)):
            conv.set_active(chans[i + 1], chans[i])
            bn.set_active(chans[i + 1])
        self.sps.rpe_conv.set_active(dim, dim)
        self.sps.rpe_bn.set_active(dim)
        for i in range(arch.depth):
            block = self.blocks[i]
            hidden = arch.mlp_hidden(i)
            block.attn.num_heads = arch.num_heads[i]
            for unit in (block.attn.q, block.attn.k, block.attn.v, block.attn.proj):
                unit.linear.set_active(dim, dim)
                unit.bn.set_active(dim)
            block.mlp.fc1.linear.set_active(hidden, dim)
            block.mlp.fc1.bn.set_active(hidden)
            block.mlp.fc2.linear.set_active(dim, hidden)
            block.mlp.fc2.bn.set_active(dim)
            block.set_neurons(arch.threshold[i], arch.tau[i])
        self.head.set_active(self.num_classes, dim)
        self._configured = arch

    @classmethod
    def for_data(cls, space: SearchSpace, data: DatasetInfo) -> SuperSpikformer:
        """The supernet of ``space`` for the shape and variant of data set ``data``."""
        return cls(
            space,
            num_classes=data.num_classes,
            in_channels=data.in_channels,
            img_size=data.img_size,
            variant=data.variant,  # type: ignore[arg-type]
        )

    def embed(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """Subnet ``arch``'s SPS tokens ``[T, B, N, E]`` (neurons reset first)."""
        self.configure(arch)
        return self._embed(x, arch.time_steps)

    def forward_features(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """Subnet ``arch``'s tokens after its blocks, ``[T, B, N, E]``."""
        return self._blocks(self.embed(x, arch), arch.depth)

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        return self.forward_head(self.forward_features(x, arch))

    def forward_tokens(self, tokens: torch.Tensor, arch: Architecture) -> torch.Tensor:
        """Subnet ``arch``'s tokens after its blocks from its SPS tokens ``[T, B, N, E]``
        (``embed``'s output, computed once and reused): ``forward_head(forward_tokens(embed(x,
        arch), arch))`` is ``forward(x, arch)``, exactly."""
        self.configure(arch)
        return self._blocks_on(tokens, arch.depth)

    def active_modules(self, arch: Architecture) -> list[nn.Module]:
        """The modules a subnet of ``arch`` uses (SPS, its first ``depth`` blocks, the head)."""
        return [self.sps, *self.blocks[: arch.depth], self.head]

    def num_parameters(self, arch: Architecture) -> int:
        """Parameters of the subnet ``arch``: the sizes of the slices it uses."""
        self.configure(arch)
        return sum(
            m.active_numel()
            for top in self.active_modules(arch)
            for m in top.modules()
            if hasattr(m, "active_numel")
        )

    @torch.no_grad()
    def extract(self, arch: Architecture) -> Spikformer:
        """A standalone :class:`Spikformer` holding copies of the subnet's sliced weights and BN
        statistics (in the supernet's train/eval mode, on its device and dtype)."""
        self.configure(arch)
        ref = next(self.parameters())
        model = Spikformer(
            arch,
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            img_size=self.img_size,
            variant=self.variant,
        ).to(device=ref.device, dtype=ref.dtype)
        source = self.state_dict()
        target = model.state_dict()
        for key, dst in target.items():
            src = source[key]
            dst.copy_(src[tuple(slice(0, n) for n in dst.shape)])
        model.train(self.training)
        return model
