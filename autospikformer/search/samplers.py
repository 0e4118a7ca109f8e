"""The samplers a study can name, with their options' defaults, and the one place that builds them."""

from __future__ import annotations

from typing import Any

import optuna

from autospikformer.search.dsps import DSPSSampler
from autospikformer.search.dsps_plus import DSPSPlusSampler
from autospikformer.search.space import SearchSpace

#: Each sampler a study file can name, with its own parameters (``[search.options]``) and their
#: defaults. DSPS defaults are the paper's (population 50, 20 parents, crossover 0.3, mutation 0.4).
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    "dsps": {"population_size": 50, "num_parents": 20, "crossover_prob": 0.3, "mutation_prob": 0.4},
    "dsps-plus": {
        "population_size": 50,
        "num_parents": 20,
        "crossover_prob": 0.3,
        "mutation_prob": 0.4,
        "candidates": 16,
        "local_prob": 0.2,
        "pool_prob": 0.0,
        "pool_prior": 1.0,
        "tie_break": "crowding",
        "acquisition": "ehvi",
        "interactions": "time_steps",
        "accuracy_model": "ridge",
    },
    "nsga2": {"population_size": 50, "crossover_prob": 0.9, "swapping_prob": 0.5},
    "tpe": {"n_startup_trials": 10, "multivariate": True},
    "gp": {"n_startup_trials": 10, "warn_independent_sampling": False},
    "random": {},
}
#: Our evolutionary samplers: they take ``feasible`` (reject a candidate before it is evaluated)
#: and draw by (seed, draw index), so one seed serves every worker and a resumed run repeats.
DSPS_SAMPLERS = ("dsps", "dsps-plus")
#: Names of the samplers :func:`make_sampler` builds.
SAMPLER_NAMES = tuple(SAMPLER_OPTIONS)


def make_sampler(
    name: str, *, space: SearchSpace, seed: int | None, **options: Any
) -> optuna.samplers.BaseSampler:
    """Build the sampler called ``name`` (one of :data:`SAMPLER_NAMES`) for a study over ``space``.

    ``options`` go to the sampler's constructor: ``population_size``, ``feasible`` ... for
    ``"dsps"`` (:class:`~autospikformer.search.dsps.DSPSSampler`) and ``"dsps-plus"``
    (:class:`~autospikformer.search.dsps_plus.DSPSPlusSampler`); Optuna's keyword arguments for
    ``"nsga2"`` (``NSGAIISampler``, population 50 by default like DSPS), ``"tpe"``
    (``TPESampler``), ``"gp"`` (``GPSampler``) and ``"random"`` (``RandomSampler``). Optuna's
    samplers do not know the space; they learn it from the suggestions of
    :func:`~autospikformer.search.suggest.suggest_architecture`, and they honour the
    constraints a trial stores (``trial.set_constraint``) by themselves.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in SAMPLER_NAMES:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLER_NAMES)}")
    if key not in DSPS_SAMPLERS and "feasible" in options:
        raise ValueError(
            f"option 'feasible' (reject candidates before evaluation) is only supported by "
            f"{', '.join(repr(k) for k in DSPS_SAMPLERS)}, not {key!r}"
        )
    try:
        if key == "dsps":
            return DSPSSampler(space=space, seed=seed, **options)
        if key == "dsps-plus":
            return DSPSPlusSampler(space=space, seed=seed, **options)
        if key == "gp":
            return optuna.samplers.GPSampler(seed=seed, **options)
        if key == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, **options)
        if key == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **options)
        return optuna.samplers.RandomSampler(seed=seed, **options)
    except TypeError as exc:
        raise ValueError(f"sampler {key!r}: {exc}") from None
