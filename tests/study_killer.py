"""``autospik study run`` SIGKILLed in the middle of a trial, at a chosen point of the search.

Usage: ``python tests/study_killer.py KILL_AT URL STUDY [study run options ...]``

Runs ``autospik study run STUDY --storage URL ...`` in this process; once the study holds
KILL_AT complete trials, the next trial's evaluation kills the process with a real ``SIGKILL``
(nothing of Python's clean-up runs, the trial is left RUNNING). Deterministic however fast the
trials are (a poll from outside can miss the point when trials take milliseconds).
"""

from __future__ import annotations

import os
import signal
import sys

from autospikformer.threads import passive_waits

passive_waits()

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from autospikformer.training.evaluate import SubnetEvaluator  # noqa: E402


def main(argv: list[str]) -> None:
    kill_at, url, name = int(argv[0]), argv[1], argv[2]
    evaluate = SubnetEvaluator.evaluate

    def evaluate_or_die(self: SubnetEvaluator, *args: object, **kwargs: object) -> object:
        study = optuna.load_study(study_name=name, storage=url)
        if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return evaluate(self, *args, **kwargs)

    SubnetEvaluator.evaluate = evaluate_or_die  # type: ignore[method-assign]
    from autospikformer.cli.app import app

    app(["study", "run", name, "--storage", url, *argv[3:]], prog_name="autospik")


if __name__ == "__main__":
    main(sys.argv[1:])
