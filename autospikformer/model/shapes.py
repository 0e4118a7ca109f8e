"""What a Spikformer's shapes follow from, without torch: the SPS widths and pooling, and the two
model variants. The model builds from these, and the energy and parameter counts are computed
from them without building a model (so the search side never imports torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from autospikformer.data.base import ImageSize, image_hw

TOKEN_GRID = 8  # SPS pools the shorter side down to a grid of at least 8 (N = 64 for 32 and 128)
MAX_POOLS = 4  # one pool after each of the four SPS stages at most (the reference's ImageNet model)
MIN_SIDE, MAX_SIDE = 8, 1024  # a larger side would give more than 64 x 64 = 4096 tokens
SIZE_RULE = (
    f"every side from {MIN_SIDE} to {MAX_SIDE} pixels, as one integer or [height, width]: "
    "SPS pools the shorter side to a grid of 8 or more, at most 4 times (32 -> 8x8, "
    "128 -> 8x8, 224 -> 14x14)"
)


def sps_widths(embed_dim: int) -> tuple[int, int, int, int]:
    """Channel widths of the four SPS stages: E//8, E//4, E//2, E (integer division for E=348)."""
    return embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim


def num_pools(img_size: ImageSize) -> int:
    """How many stride-2 max pools SPS applies (on its last stages), the same on both sides.

    The reference's rule at every size: pool while the shorter side stays at 8 or more, at most
    once per stage (CIFAR 32: 2 pools, 8x8 tokens; DVS 128: 4 pools, 8x8; ImageNet 224: 4 pools
    after every stage, 14x14; 64: 3 pools, 8x8; 34: 2 pools, 9x9). An 8x8 input (the digits)
    gets one pool, a 4x4 grid of 16 tokens: attention over one token per pixel would cost 16x
    more and see no more of the image. A side outside 8..1024 is refused (ValueError).
    """
    try:
        height, width = image_hw(img_size)
    except ValueError:
        height = width = 0
    if not MIN_SIDE <= min(height, width) <= max(height, width) <= MAX_SIDE:
        raise ValueError(f"img_size: {img_size!r} is not allowed (allowed: {SIZE_RULE})")
    halvings = (min(height, width) // TOKEN_GRID).bit_length() - 1  # floor(log2(side / 8))
    return min(MAX_POOLS, max(1, halvings))


def token_grid(img_size: ImageSize) -> tuple[int, int]:
    """The token grid ``(h, w)`` after SPS: each side halved (rounded up, as ``MaxPool(3, 2, 1)``
    does) :func:`num_pools` times; N = h * w tokens."""
    height, width = image_hw(img_size)
    scale = 2 ** num_pools(img_size)
    return -(-height // scale), -(-width // scale)


#: The model variants: the reference's image model and its event-data model.
VariantName = Literal["cifar", "dvs"]


@dataclass(frozen=True)
class Variant:
    """What differs between the reference's image model and its event-data model."""

    name: str
    qkv_bias: bool  # q, k and v Linear layers carry a bias
    attn_scale: float  # multiplies q @ k^T (equivalently (q @ k^T) @ v: there is no softmax)


VARIANTS: dict[str, Variant] = {
    "cifar": Variant("cifar", qkv_bias=True, attn_scale=0.125),
    "dvs": Variant("dvs", qkv_bias=False, attn_scale=0.25),
}


def model_variant(name: str) -> Variant:
    """The :class:`Variant` called ``name``; an unknown name lists the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {name!r}") from None
