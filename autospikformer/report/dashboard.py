"""optuna-dashboard on a study's storage, with the front every other view shows.

optuna-dashboard computes a study's Pareto front ("best trials") itself and, unlike Optuna's
``study.best_trials``, counts trials whose constraints are violated (a trial over a budget). The
dashboard served here takes its front from the trials within every constraint, so the dashboard,
``study.best_trials``, ``autospik study show``, the export and ``study compare`` show one front.
(``optuna-dashboard URL`` started on its own still shows its unconstrained front.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from autospikformer.optuna_api import dashboard_front, use_dashboard_front


def _within_budgets(trial: FrozenTrial) -> bool:
    return all(value <= 0 for value in trial.constraints.values())


def _use_feasible_front() -> None:
    """Make optuna-dashboard's front that of the trials within their constraints (once)."""
    original = dashboard_front()
    if getattr(original, "__autospik__", False):
        return

    def feasible_front(
        trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
    ) -> list[FrozenTrial]:
        return original(trials=[t for t in trials if _within_budgets(t)], directions=directions)

    feasible_front.__autospik__ = True  # type: ignore[attr-defined]
    use_dashboard_front(feasible_front)


def dashboard_app(storage: Any) -> Any:
    """The dashboard as a WSGI application over ``storage`` (a URL or an Optuna storage)."""
    import optuna_dashboard

    _use_feasible_front()
    return optuna_dashboard.wsgi(storage)


def serve_dashboard(storage: Any, *, host: str, port: int) -> None:
    """Serve the dashboard on ``host:port`` until interrupted."""
    import optuna_dashboard

    _use_feasible_front()
    optuna_dashboard.run_server(storage, host=host, port=port)
