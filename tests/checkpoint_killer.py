"""A supernet training that SIGKILLs itself at a chosen moment of its first checkpoint write.

Usage: ``python tests/checkpoint_killer.py OUT_DIR EPOCHS MOMENT [FRACTION [SPACE]]``

MOMENT is where in :func:`autospikformer.checkpoint_file.save_checkpoint` the process dies:
``write`` after FRACTION of the checkpoint's bytes reached its temporary file, ``fsync`` with
every byte written but before the file is flushed to disk and renamed, ``replace`` right after
the rename (before the folder is synced), ``none`` not at all (the run finishes). The kill is a
real ``SIGKILL`` of this process: nothing of Python's clean-up runs. The training is the tiny
digits recipe of :func:`recipe` (one thread), which the test also runs unkilled; SPACE ``big``
trains a Spikformer-4-384-sized supernet instead, whose 112 MB checkpoints take seconds to write
(``benchmarks/faults.py`` kills it from outside at random moments of those writes).
"""

from __future__ import annotations

import io
import os
import signal
import sys
from pathlib import Path
from typing import Any

import torch
from helpers import TINY_SPACE  # the tests folder: sys.path[0] when run as a script

from autospikformer.search.space import SearchSpace
from autospikformer.training.config import TrainConfig
from autospikformer.training.trainer import train_supernet

sys.path.insert(0, str(Path(__file__).parent))


BIG_SPACE = {
    "name": "big",
    "transformer": {"embed_dim": [384], "mlp_ratio": [4.0], "num_heads": [12], "depth": [4]},
    "neuron": {"threshold": [1.0], "tau": [2.0], "time_steps": [1]},
}


def recipe(epochs: int, space: str = "tiny") -> dict[str, Any]:
    """The keyword arguments of ``train_supernet`` for the killed runs and the reference."""
    batch = 32 if space == "tiny" else 8
    return {
        "space": SearchSpace.from_dict(TINY_SPACE if space == "tiny" else BIG_SPACE),
        "dataset": "digits",
        "data_root": None,
        "config": TrainConfig.preset("digits").replace(
            epochs=epochs, batch_size=batch, train_samples=2 * batch, warmup_epochs=1
        ),
        "device": "cpu",
        "progress": False,
    }


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(moment: str, fraction: float) -> None:
    """Patch the calls ``save_checkpoint`` makes so that the first checkpoint write dies."""
    import autospikformer.checkpoint_file as checkpoint

    if moment == "write":
        real_save = torch.save

        def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: int(len(data) * fraction)])
            f.flush()
            os.fsync(f.fileno())
            _die()

        checkpoint.torch.save = save  # type: ignore[assignment]
    elif moment == "fsync":
        checkpoint.os.fsync = lambda fd: _die()  # type: ignore[assignment]
    elif moment == "replace":
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            real_replace(src, dst)
            if Path(dst).name == "supernet.pt":  # not the metrics file the trainer also renames
                _die()

        checkpoint.os.replace = replace  # type: ignore[assignment]
    elif moment != "none":
        raise SystemExit(f"unknown moment {moment!r}")


def main(argv: list[str]) -> None:
    out, epochs, moment = argv[0], int(argv[1]), argv[2]
    fraction = float(argv[3]) if len(argv) > 3 else 0.5
    space = argv[4] if len(argv) > 4 else "tiny"
    torch.set_num_threads(1)
    arm(moment, fraction)
    train_supernet(out_dir=out, resume=True, **recipe(epochs, space))


if __name__ == "__main__":
    main(sys.argv[1:])
