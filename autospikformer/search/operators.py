"""The genetic operators of DSPS and DSPS+ on architectures: crossover, mutation, the single-gene
move, the gene-pool draw, and growing or trimming the per-block lists when the depth changes.

Every operator draws from the ``random.Random`` it is given and from nothing else, so a draw seeded
by (seed, draw index) repeats (docs/search.md, "Seeds and resumes").
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
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


def gene_pool_draw(
    pool: Sequence[Architecture], space: SearchSpace, rng: random.Random, prior_weight: float = 1.0
) -> Architecture:
    """A new architecture drawn gene by gene from the values the architectures of ``pool`` hold.

    Each gene takes value ``v`` of its choice list with probability proportional to
    ``count(v) + prior_weight / len(choices)``, ``count`` taken over ``pool`` (block ``i``'s
    genes over the members deeper than ``i``): the frequencies among good architectures,
    smoothed toward uniform by ``prior_weight`` pseudo-observations, as TPE's prior does. Depth
    is drawn first; every draw is one ``rng.random()``.
    """

    def gene(field: str, observed: list[Any]) -> Any:
        choices = space.choices[field]
        counts = Counter(observed)
        weights = [counts[v] + prior_weight / len(choices) for v in choices]
        return rng.choices(choices, weights)[0]

    depth = int(gene("depth", [a.depth for a in pool]))
    blocks: dict[str, list[Any]] = {field: [] for field in PER_BLOCK_FIELDS}
    for i in range(depth):
        deeper = [a for a in pool if a.depth > i]
        for field in PER_BLOCK_FIELDS:
            blocks[field].append(gene(field, [getattr(a, field)[i] for a in deeper]))
    return Architecture(
        depth=depth,
        embed_dim=int(gene("embed_dim", [a.embed_dim for a in pool])),
        time_steps=int(gene("time_steps", [a.time_steps for a in pool])),
        **blocks,
    )
