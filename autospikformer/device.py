"""Where a model runs: ``resolve_device`` turns a user's device name into a ``torch.device``."""

from __future__ import annotations

import torch

from autospikformer.errors import AutospikError


class DeviceError(AutospikError, ValueError):
    """A device name that is not valid, or names hardware this machine does not have."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available; a bad name or ``cuda`` without a GPU is a DeviceError."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"device {name!r} is not a device name (use auto, cpu, cuda or cuda:N)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {name!r} was asked for but no CUDA GPU is available (use --device cpu)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                f"numbered 0..{torch.cuda.device_count() - 1}"
            )
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise DeviceError(f"device {name!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return dev
