"""What a Spikformer's shapes follow from, without torch: the SPS widths and pooling, and the two
model variants. The model builds from these, and the energy and parameter counts are computed
from them without building a model (so the search side never imports torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TOKEN_GRID = 8  # SPS pools inputs of 16 pixels and more down to an 8x8 grid: N = 64 tokens
SUPPORTED_IMG_SIZES = (8, 16, 32, 64, 128)


def sps_widths(embed_dim: int) -> tuple[int, int, int, int]:
    """Channel widths of the four SPS stages: E//8, E//4, E//2, E (integer division for E=348)."""
    return embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim


def num_pools(img_size: int) -> int:
    """How many stride-2 max pools SPS applies (on its last stages).

    Inputs of 16 pixels and more are pooled down to the 8x8 token grid (CIFAR: 2 pools, DVS
    128x128: 4 pools). An 8x8 input (the digits) gets one pool, a 4x4 grid of 16 tokens: attention
    over one token per pixel would cost 16x more and see no more of the image.
    """
    if img_size not in SUPPORTED_IMG_SIZES:
        raise ValueError(f"img_size must be one of {SUPPORTED_IMG_SIZES}, got {img_size}")
    return max(1, int(math.log2(img_size // TOKEN_GRID)))


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
