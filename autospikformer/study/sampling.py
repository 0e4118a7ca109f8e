"""The sampler of a study's workers, wired from the study's configuration: its options, its seed
and its budgets.

DSPS and DSPS+ draw by (seed, draw index), so every worker takes the study's seed as it is and a
resumed run repeats; Optuna's samplers keep their generator in the process, so each worker start
gets its own seed (the study's bare seed would propose the study's first candidates again after a
restart). docs/search.md ("Seeds and resumes").
"""

from __future__ import annotations

from optuna.samplers import BaseSampler

from autospikformer.search.samplers import DSPS_SAMPLERS, make_sampler
from autospikformer.study.config import StudyConfig


def study_sampler(
    config: StudyConfig, *, worker_index: int = 0, trials_so_far: int = 0
) -> BaseSampler:
    """The sampler ``config`` names, with its study-file options, ``alpha`` for DSPS, the budgets
    known before evaluation as ``feasible`` for DSPS and DSPS+, and the seed policy above."""
    search = config.search
    options = dict(search.options)
    if search.sampler == "dsps":
        options["alpha"] = search.alpha
    if search.sampler in DSPS_SAMPLERS:
        seed = config.seed
        if config.budgets.any:
            options["feasible"] = config.budgets.feasible
    else:
        seed = config.seed + worker_index + 7919 * trials_so_far
    return make_sampler(search.sampler, space=config.space, seed=seed, **options)
