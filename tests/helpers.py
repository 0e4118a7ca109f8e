"""Small shared test fixtures-as-data."""

from __future__ import annotations

# A space small enough for real training and evaluation in a test (8x8 inputs, 1-2 blocks).
TINY_SPACE = {
    "name": "tiny",
    "transformer": {
        "embed_dim": [16, 32],
        "mlp_ratio": [1.0, 2.0],
        "num_heads": [2, 4],
        "depth": [1, 2],
    },
    "neuron": {"threshold": [0.8, 1.0], "tau": [1.5, 2.0], "time_steps": [1, 2]},
}
