"""A study's budgets (``search.max_params``, ``search.max_energy_mj``) as Optuna constraint values.

Before evaluation a candidate is priced from its architecture alone: its exact parameter count,
and the analytic energy at the assumed firing rate ``search.energy_rate``; one over a budget is
never evaluated. After evaluation the measured energy is the ``max_energy_mj`` constraint (Optuna
keeps a constraint's first value, so the estimate is never stored on an evaluated trial).
docs/search.md ("Budgets") says how every sampler and every view honours them.
"""

from __future__ import annotations

from dataclasses import dataclass

from autospikformer.data.base import DatasetInfo
from autospikformer.energy.counts import count_parameters
from autospikformer.energy.models import EnergyModel
from autospikformer.energy.report import estimate_energy_mj
from autospikformer.search.architecture import Architecture

#: Budget name -> (Optuna constraint value, > 0 breaks it; why, in words)
Priced = dict[str, tuple[float, str]]


@dataclass(frozen=True)
class Budgets:
    """The budgets of one study, priced for its data and energy model."""

    data: DatasetInfo
    energy: EnergyModel
    max_params: int | None = None
    max_energy_mj: float | None = None
    energy_rate: float = 0.35

    @property
    def any(self) -> bool:
        return self.max_params is not None or self.max_energy_mj is not None

    def before_evaluation(self, arch: Architecture) -> Priced:
        """Each budget's constraint value from the architecture alone, and why it breaks."""
        out: Priced = {}
        if self.max_params is not None:
            params = count_parameters(arch, self.data)
            out["max_params"] = (
                float(params - self.max_params),
                f"{params} parameters > max_params {self.max_params}",
            )
        if self.max_energy_mj is not None:
            energy = estimate_energy_mj(
                arch, rate=self.energy_rate, data=self.data, model=self.energy
            )
            out["max_energy_mj"] = (
                float(energy - self.max_energy_mj),
                f"estimated {energy:.4g} mJ at rate {self.energy_rate} > "
                f"max_energy_mj {self.max_energy_mj}",
            )
        return out

    def reject(self, arch: Architecture) -> str | None:
        """Why ``arch`` breaks a budget before evaluation, or None."""
        return next(
            (why for value, why in self.before_evaluation(arch).values() if value > 0), None
        )

    def feasible(self, arch: Architecture) -> bool:
        """The samplers' ``feasible``: True when no budget is broken before evaluation."""
        return self.reject(arch) is None

    def measured_energy(self, energy_mj: float) -> float | None:
        """The ``max_energy_mj`` constraint value of a measured energy (None: no such budget)."""
        return None if self.max_energy_mj is None else float(energy_mj) - self.max_energy_mj
