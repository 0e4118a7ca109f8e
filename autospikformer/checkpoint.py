"""Models from checkpoint files: the supernets stage 1 writes (:func:`load_supernet`) and either
a supernet or a standalone Spikformer (:func:`load_model`, for ``autospik subnet export`` files).

The file format (atomic, checksummed ``torch.save`` dicts) is :mod:`autospikformer.checkpoint_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from autospikformer.checkpoint_file import (
    CHECKSUM_KEY,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    verify_checkpoint,
)
from autospikformer.data.base import canonical_size
from autospikformer.model.spikformer import CHECKPOINT_KIND as SPIKFORMER_KIND
from autospikformer.model.spikformer import Spikformer
from autospikformer.model.supernet import SuperSpikformer
from autospikformer.search.space import SearchSpace

SUPERNET_KIND = "supernet"  # written by the supernet trainer
#: Metadata of a supernet checkpoint that :func:`load_supernet_checkpoint` returns (no tensors).
SUPERNET_META = (
    "kind", "space", "space_fingerprint", "num_classes", "in_channels", "img_size", "dataset",
    "classes", "epoch", "epochs", "config", "world_size", "history", "holdout", "variant",
)  # fmt: skip


# --- models from checkpoints ------------------------------------------------------------
def check_space(ckpt: dict[str, Any], space: SearchSpace, path: str | Path) -> None:
    """Refuse a checkpoint trained on another search space, naming both spaces."""
    fingerprint = ckpt.get("space_fingerprint")
    if fingerprint != space.fingerprint():
        trained = ckpt.get("space", {}).get("name", "?")
        raise CheckpointError(
            f"checkpoint '{path}' was trained on search space {trained!r} "
            f"(fingerprint {fingerprint}), not on {space.name!r} (fingerprint "
            f"{space.fingerprint()}): load it with its own space or train a supernet for "
            f"{space.name!r}"
        )


def load_supernet_checkpoint(
    path: str | Path, *, space: SearchSpace | None = None, map_location: Any = "cpu"
) -> tuple[SuperSpikformer, dict[str, Any]]:
    """The supernet of a checkpoint (eval mode) and the checkpoint's metadata (no tensors)."""
    ckpt = load_checkpoint(path, kind=SUPERNET_KIND, map_location=map_location)
    return _supernet_from(ckpt, path, space)


def _supernet_from(
    ckpt: dict[str, Any], path: str | Path, space: SearchSpace | None
) -> tuple[SuperSpikformer, dict[str, Any]]:
    saved_space = SearchSpace.from_dict(ckpt["space"])
    if saved_space.fingerprint() != ckpt.get("space_fingerprint"):
        raise CheckpointError(
            f"checkpoint '{path}' is inconsistent: its space does not match its fingerprint"
        )
    if space is not None:
        check_space(ckpt, space, path)
    model = SuperSpikformer(
        space or saved_space,
        num_classes=int(ckpt["num_classes"]),
        in_channels=int(ckpt["in_channels"]),
        img_size=canonical_size(ckpt["img_size"]),
        variant=str(ckpt.get("variant", "cifar")),  # older files hold the image model
    )
    model.load_state_dict(ckpt["state_dict"])
    model.to(next(iter(ckpt["state_dict"].values())).device)
    model.eval()
    return model, {**{k: ckpt[k] for k in SUPERNET_META if k in ckpt}, "variant": model.variant}


def load_supernet(
    path: str | Path, *, space: SearchSpace | None = None, map_location: Any = "cpu"
) -> SuperSpikformer:
    """Rebuild the supernet of a checkpoint written by stage 1's trainer (eval mode).

    A ``space`` other than the one the checkpoint was trained on, or a damaged file, raises one
    :class:`CheckpointError`.
    """
    return load_supernet_checkpoint(path, space=space, map_location=map_location)[0]


def load_model(path: str | Path, *, map_location: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A supernet (verified, as :func:`load_supernet_checkpoint`) or a standalone Spikformer.

    Returns the model in eval mode and its metadata: ``kind``, the input shape
    (``num_classes``, ``in_channels``, ``img_size``), the model ``variant`` (``"cifar"`` for files
    written before variants existed) and, for a supernet, its ``space`` dict.
    """
    data = read_checkpoint(path, map_location=map_location)
    kind = data.get("kind")
    if kind == SUPERNET_KIND:
        verify_checkpoint(data, path, kind=kind)
        return _supernet_from(data, path, None)
    if kind != SPIKFORMER_KIND:
        raise CheckpointError(
            f"'{path}' is neither a Spikformer nor a supernet checkpoint (kind={kind!r})"
        )
    if CHECKSUM_KEY in data:  # older standalone files have none
        verify_checkpoint(data, path)
    try:
        model = Spikformer.from_checkpoint(data)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint '{path}' is incomplete or does not match its config ({exc!s:.200})"
        ) from None
    shapes = {k: int(data[k]) for k in ("num_classes", "in_channels")}
    shapes["img_size"] = canonical_size(data["img_size"])
    return model.eval(), {"kind": kind, **shapes, "variant": model.variant}
