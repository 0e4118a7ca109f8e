"""The genetic operators of DSPS and DSPS+ on architectures: crossover, mutation, the single-gene
move, and growing or trimming the per-block lists when the depth changes.

Every operator draws from the ``random.Random`` it is given and from nothing else, so a draw seeded
by (seed, draw index) repeats (docs/search.md, "Seeds and resumes").
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from autospikformer.search.architecture import PER_BLOCK_FIELDS, Architecture
from autospikformer.search.space import SearchSpace


def resize_blocks(
    arch: Architecture, depth: int, space: SearchSpace, rng: random.Random
) -> dict[str, list[Any]]:
    """Per-block lists of ``arch`` trimmed or grown (uniform new blocks) to ``depth`` entries."""
    blocks = {field: list(getattr(arch, field))[:depth] for field in PER_BLOCK_FIELDS}
    for _ in range(arch.depth, depth):
        for field in PER_BLOCK_FIELDS:
            blocks[field].append(rng.choice(space.choices[field]))
    return blocks


def crossover(a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
    """Gene-wise crossover: each gene from either parent; a block only one parent has is its."""
    depth = rng.choice((a.depth, b.depth))
    blocks: dict[str, list[Any]] = {field: [] for field in PER_BLOCK_FIELDS}
    for i in range(depth):
        donors = [p for p in (a, b) if i < p.depth]
        for field in PER_BLOCK_FIELDS:
            blocks[field].append(getattr(rng.choice(donors), field)[i])
    return Architecture(
        depth=depth,
        embed_dim=rng.choice((a.embed_dim, b.embed_dim)),
        time_steps=rng.choice((a.time_steps, b.time_steps)),
        **blocks,
    )


def mutate(arch: Architecture, space: SearchSpace, prob: float, rng: random.Random) -> Architecture:
    """Each gene moves to another value of its choice list with probability ``prob``."""

    def gene(value: Any, choices: Iterable[Any]) -> Any:
        others = [c for c in choices if c != value]
        if others and rng.random() < prob:
            return rng.choice(others)
        return value

    c = space.choices
    depth = int(gene(arch.depth, c["depth"]))
    embed_dim = int(gene(arch.embed_dim, c["embed_dim"]))
    time_steps = int(gene(arch.time_steps, c["time_steps"]))
    blocks = resize_blocks(arch, depth, space, rng)
    for i in range(min(depth, arch.depth)):  # grown blocks are already uniform draws
        for field in PER_BLOCK_FIELDS:
            blocks[field][i] = gene(blocks[field][i], c[field])
    return Architecture(depth=depth, embed_dim=embed_dim, time_steps=time_steps, **blocks)


def single_gene_move(arch: Architecture, space: SearchSpace, rng: random.Random) -> Architecture:
    """``arch`` with one gene (a global field, or one block's field) moved to another value;
    a depth move trims the blocks or grows uniform ones, as DSPS's mutation does."""
    c = space.choices
    genes: list[tuple[str, int | None]] = [
        (f, None) for f in ("depth", "embed_dim", "time_steps") if len(c[f]) > 1
    ]
    genes += [(f, i) for f in PER_BLOCK_FIELDS if len(c[f]) > 1 for i in range(arch.depth)]
    if not genes:
        return arch
    field, block = rng.choice(genes)
    fields: dict[str, Any] = {
        "depth": arch.depth,
        "embed_dim": arch.embed_dim,
        "time_steps": arch.time_steps,
        **{f: list(getattr(arch, f)) for f in PER_BLOCK_FIELDS},
    }
    if block is None:
        value = rng.choice([v for v in c[field] if v != getattr(arch, field)])
        fields[field] = value
        if field == "depth":
            fields.update(resize_blocks(arch, int(value), space, rng))
    else:
        values = fields[field]
        values[block] = rng.choice([v for v in c[field] if v != values[block]])
    return Architecture(**fields)


def impose(
    arch: Architecture, fixed: dict[str, Any], space: SearchSpace, rng: random.Random
) -> Architecture:
    """``arch`` with the enqueued (or already suggested) parameter values imposed."""
    depth = int(fixed.get("depth", arch.depth))
    blocks = resize_blocks(arch, depth, space, rng)
    for field in PER_BLOCK_FIELDS:
        for i in range(depth):
            name = f"{field}_{i}"
            if name in fixed:
                blocks[field][i] = fixed[name]
    return Architecture(
        depth=depth,
        embed_dim=int(fixed.get("embed_dim", arch.embed_dim)),
        time_steps=int(fixed.get("time_steps", arch.time_steps)),
        **blocks,
    )
