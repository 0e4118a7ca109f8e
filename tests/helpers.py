"""Small shared test fixtures-as-data."""

from __future__ import annotations

import re

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

# A digits study file that trains and searches in seconds (1 epoch on 128 digits, 128
# evaluation images); DSPS with a population of 4, so that generations turn over quickly.
TINY_STUDY = """
[study]
name = "{name}"
seed = 0
[data]
dataset = "digits"
[space]
preset = "digits"
[train]
epochs = 1
batch_size = 64
lr = 2e-3
warmup_epochs = 0
mixup = 0.0
amp = false
workers = 0
augment = false
train_samples = 128
[search]
sampler = "{sampler}"
trials = 5
calib_batches = 1
batch_size = 128
eval_samples = 128
heartbeat_interval = 1
grace_period = 3
{options}
"""
DSPS_OPTIONS = "[search.options]\npopulation_size = 4\nnum_parents = 2\n"


def tiny_study(
    name: str, sampler: str = "dsps", *, options: dict | None = None, **search: object
) -> str:
    """The text of :data:`TINY_STUDY` for study ``name`` searched by ``sampler``; ``options``
    replace the sampler's ``[search.options]`` (default: DSPS with a population of 4), and
    ``search`` adds keys to ``[search]`` (e.g. ``max_energy_mj=0.001``)."""
    if options is None:
        text = DSPS_OPTIONS if sampler == "dsps" else ""
    else:
        text = "[search.options]\n" + "".join(f"{k} = {v!r}\n" for k, v in options.items())
    study = TINY_STUDY.format(name=name, sampler=sampler, options=text)
    for key, value in search.items():
        line = f"{key} = {value!r}\n"
        study, found = re.subn(rf"^{key} = .*\n", line, study, count=1, flags=re.M)
        if not found:
            study = study.replace("[search]\n", f"[search]\n{line}", 1)
    return study
