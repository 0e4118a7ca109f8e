"""Tests of the trial <-> architecture bridge (autospikformer.search.suggest)."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from autospikformer.search.architecture import Architecture, spikformer_4_384
from autospikformer.search.dsps import DSPSSampler
from autospikformer.search.samplers import make_sampler
from autospikformer.search.space import SearchSpace
from autospikformer.search.suggest import (
    ARCH_ATTR,
    architecture_from_params,
    architecture_params,
    distributions,
    is_architecture_param,
    param_names,
    suggest_architecture,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_attribute_keys_are_pinned() -> None:
    assert ARCH_ATTR == "autospik:architecture"


def test_param_names_follow_the_contract() -> None:
    assert param_names(2) == [
        "depth",
        "embed_dim",
        "time_steps",
        "mlp_ratio_0",
        "num_heads_0",
        "threshold_0",
        "tau_0",
        "mlp_ratio_1",
        "num_heads_1",
        "threshold_1",
        "tau_1",
    ]
    assert all(is_architecture_param(n) for n in param_names(6))
    assert not any(is_architecture_param(n) for n in ("lr", "tau", "tau_x", "mlp_ratio_", "x_1"))


def test_params_round_trip() -> None:
    arch = Architecture(
        depth=2,
        embed_dim=48,
        mlp_ratio=(3.0, 4.0),
        num_heads=(4, 2),
        threshold=(1.0, 1.2),
        tau=(2.0, 3.0),
        time_steps=4,
    )
    params = architecture_params(arch)
    assert params == {
        "depth": 2,
        "embed_dim": 48,
        "time_steps": 4,
        "mlp_ratio_0": 3.0,
        "num_heads_0": 4,
        "threshold_0": 1.0,
        "tau_0": 2.0,
        "mlp_ratio_1": 4.0,
        "num_heads_1": 2,
        "threshold_1": 1.2,
        "tau_1": 3.0,
    }
    assert architecture_from_params({**params, "lr": 0.1}) == arch


def test_from_params_names_the_missing_parameter() -> None:
    params = architecture_params(spikformer_4_384())
    del params["tau_3"]
    with pytest.raises(ValueError, match="'tau_3'"):
        architecture_from_params(params)
    with pytest.raises(ValueError, match="'depth'"):
        architecture_from_params({"embed_dim": 384})


def test_distributions_are_the_space_choice_lists() -> None:
    space = SearchSpace.load("S_T2+S_S")
    dists = distributions(space)
    assert len(dists) == 3 + 4 * 6
    assert dists["embed_dim"] == CategoricalDistribution((336, 384, 432, 480))
    assert dists["tau_5"] == CategoricalDistribution((1.25, 1.5, 2.0, 3.0, 5.0, 10.0))
    assert len(distributions(space, depth=2)) == 11


def test_suggest_architecture_with_a_fixed_trial() -> None:
    space = SearchSpace.load("S_T2+S_S")
    arch = spikformer_4_384()
    trial = optuna.trial.FixedTrial(architecture_params(arch))
    assert suggest_architecture(trial, space) == arch
    assert trial.user_attrs[ARCH_ATTR] == str(arch)


@pytest.mark.parametrize("name", ["random", "tpe", "nsga2", "dsps"])
def test_suggest_architecture_works_with_every_sampler(name: str) -> None:
    space = SearchSpace.load("digits")
    study = optuna.create_study(
        directions=["maximize", "minimize"],
        sampler=make_sampler(name, space=space, seed=0),
    )

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = suggest_architecture(trial, space)
        return float(arch.embed_dim), float(arch.depth)

    study.optimize(objective, n_trials=12)
    for trial in study.trials:
        arch = architecture_from_params(trial.params)
        assert space.contains(arch)
        # Only the blocks that exist are parameters.
        assert set(trial.params) == set(param_names(arch.depth))
        assert trial.user_attrs[ARCH_ATTR] == str(arch)


def test_make_sampler_types_and_options() -> None:
    space = SearchSpace.load("digits")
    assert isinstance(make_sampler("dsps", space=space, seed=1), DSPSSampler)
    assert isinstance(make_sampler("NSGA2", space=space, seed=1), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("tpe", space=space, seed=1), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", space=space, seed=1), optuna.samplers.RandomSampler)
    dsps = make_sampler("dsps", space=space, seed=1, population_size=8, num_parents=3)
    assert isinstance(dsps, DSPSSampler)
    assert (dsps.population_size, dsps.num_parents) == (8, 3)
    nsga = make_sampler("nsga2", space=space, seed=1, population_size=10)
    assert isinstance(nsga, optuna.samplers.NSGAIISampler)


def test_make_sampler_errors_name_the_problem() -> None:
    space = SearchSpace.load("digits")
    with pytest.raises(
        ValueError,
        match=r"unknown sampler 'cmaes'; allowed: dsps, dsps-plus, nsga2, tpe, gp, random",
    ):
        make_sampler("cmaes", space=space, seed=0)
    with pytest.raises(ValueError, match=r"'feasible'.*only supported by 'dsps'"):
        make_sampler("random", space=space, seed=0, feasible=lambda a: True)
    with pytest.raises(ValueError, match="sampler 'tpe'"):
        make_sampler("tpe", space=space, seed=0, bogus=1)
