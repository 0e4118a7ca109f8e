"""The bridge between Optuna trials and architectures, shared by every sampler and the study runner.

An architecture is flattened into categorical Optuna parameters so that any Optuna sampler
(DSPS, NSGA-II, TPE, random) can search the same study and the dashboard shows readable columns:

* ``depth``, ``embed_dim``, ``time_steps``: one value each;
* per block ``i < depth``: ``mlp_ratio_{i}``, ``num_heads_{i}``, ``threshold_{i}``, ``tau_{i}``.

Blocks beyond the sampled depth are never suggested (a conditional search space), so a trial's
parameters are exactly one architecture. Every parameter is a ``CategoricalDistribution`` over
the space's choice list: the choices are discrete grids, and a categorical keeps the sampler from
proposing values off the grid.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution

from autospikformer.search.architecture import GLOBAL_FIELDS, PER_BLOCK_FIELDS, Architecture
from autospikformer.search.space import SearchSpace

#: Trial user attribute: the compact form ``str(arch)`` of the trial's architecture (set by
#: :func:`suggest_architecture`; one readable column in the dashboard and in exports).
ARCH_ATTR = "autospik:architecture"


def block_param(field: str, block: int) -> str:
    """Parameter name of a per-block field, e.g. ``block_param("tau", 2) == "tau_2"``."""
    if field not in PER_BLOCK_FIELDS:
        raise ValueError(f"{field!r} is not a per-block field; per-block: {list(PER_BLOCK_FIELDS)}")
    return f"{field}_{block}"


def param_names(depth: int) -> list[str]:
    """Parameter names of an architecture of ``depth`` blocks, in suggestion order."""
    names = list(GLOBAL_FIELDS)
    for i in range(depth):
        names.extend(f"{field}_{i}" for field in PER_BLOCK_FIELDS)
    return names


def is_architecture_param(name: str) -> bool:
    """True for ``depth``/``embed_dim``/``time_steps`` and ``<per-block field>_<int>`` names."""
    if name in GLOBAL_FIELDS:
        return True
    field, sep, index = name.rpartition("_")
    return bool(sep) and field in PER_BLOCK_FIELDS and index.isdigit()


def param_field(name: str) -> str:
    """The architecture field an architecture parameter name refers to (``tau_3`` -> ``tau``)."""
    if name in GLOBAL_FIELDS:
        return name
    if not is_architecture_param(name):
        raise ValueError(f"{name!r} is not an architecture parameter")
    return name.rpartition("_")[0]


def distributions(
    space: SearchSpace, depth: int | None = None
) -> dict[str, CategoricalDistribution]:
    """The distribution of each parameter for ``depth`` blocks (default: the space's deepest)."""
    depth = space.max_depth if depth is None else depth
    return {
        name: CategoricalDistribution(space.choices[param_field(name)])
        for name in param_names(depth)
    }


def suggest_architecture(trial: optuna.trial.BaseTrial, space: SearchSpace) -> Architecture:
    """Suggest one architecture of ``space`` through ``trial``; works with any sampler.

    Depth is suggested first so that only the blocks that exist are suggested. The compact form
    of the result is stored as the user attribute :data:`ARCH_ATTR`.
    """
    c = space.choices
    depth = int(trial.suggest_categorical("depth", c["depth"]))
    embed_dim = int(trial.suggest_categorical("embed_dim", c["embed_dim"]))
    time_steps = int(trial.suggest_categorical("time_steps", c["time_steps"]))
    blocks: dict[str, list[Any]] = {field: [] for field in PER_BLOCK_FIELDS}
    for i in range(depth):
        for field in PER_BLOCK_FIELDS:
            blocks[field].append(trial.suggest_categorical(f"{field}_{i}", c[field]))
    arch = Architecture(depth=depth, embed_dim=embed_dim, time_steps=time_steps, **blocks)
    trial.set_user_attr(ARCH_ATTR, str(arch))
    return arch


def architecture_params(arch: Architecture) -> dict[str, float | int]:
    """The trial parameters of ``arch`` (for ``study.enqueue_trial`` and ``create_trial``)."""
    params: dict[str, float | int] = {
        "depth": arch.depth,
        "embed_dim": arch.embed_dim,
        "time_steps": arch.time_steps,
    }
    for i in range(arch.depth):
        for field in PER_BLOCK_FIELDS:
            params[f"{field}_{i}"] = getattr(arch, field)[i]
    return params


def architecture_from_params(params: dict[str, Any]) -> Architecture:
    """Inverse of :func:`architecture_params`; extra (non-architecture) parameters are ignored.

    Raises ``ValueError`` naming the first missing parameter.
    """
    missing = [name for name in GLOBAL_FIELDS if name not in params]
    if missing:
        raise ValueError(f"trial parameters lack {missing[0]!r}: not an architecture")
    depth = int(params["depth"])
    blocks: dict[str, list[Any]] = {field: [] for field in PER_BLOCK_FIELDS}
    for i in range(depth):
        for field in PER_BLOCK_FIELDS:
            name = f"{field}_{i}"
            if name not in params:
                raise ValueError(f"trial parameters lack {name!r} (depth is {depth})")
            blocks[field].append(params[name])
    return Architecture(
        depth=depth,
        embed_dim=int(params["embed_dim"]),
        time_steps=int(params["time_steps"]),
        **blocks,
    )
