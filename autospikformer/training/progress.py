"""The training progress display: a rich bar while an epoch runs (on a terminal) and one summary
line per epoch (always, also when the output goes to a file or a scheduler's log)."""

from __future__ import annotations

from typing import Any


class TrainingProgress:
    """A rich bar (epoch, steps, loss, accuracy, images/s) plus one summary line per epoch.

    Without a terminal there is no bar (a redirected bar leaves one stray, truncated line at the
    end); the summary lines are printed either way.
    """

    def __init__(self, epochs: int, steps: int, start_epoch: int, enabled: bool):
        from rich.console import Console

        self.enabled = enabled
        self.epochs = epochs
        self.steps = steps
        self.start_epoch = start_epoch
        self._console = Console()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> TrainingProgress:
        if not self.enabled or not self._console.is_terminal:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]:.3f}  acc {task.fields[acc]:6.1%}  "
                "{task.fields[ips]:7.0f} img/s"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
        )
        self._progress.__enter__()
        remaining = (self.epochs - self.start_epoch) * self.steps
        self._task = self._progress.add_task(
            f"epoch {self.start_epoch + 1}/{self.epochs}",
            total=remaining,
            loss=0.0,
            acc=0.0,
            ips=0.0,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def update(self, epoch: int, step: int, loss: float, acc: float, ips: float) -> None:
        if self._progress is None:
            return
        done = (epoch - self.start_epoch) * self.steps + step
        self._progress.update(
            self._task,
            completed=done,
            description=f"epoch {epoch + 1}/{self.epochs}",
            loss=loss,
            acc=acc,
            ips=ips,
        )

    def epoch_done(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        extra = "".join(
            f"  {k.removeprefix('test_acc_')} {v:.1%}"
            for k, v in row.items()
            if k.startswith("test_acc_")
        )
        self._console.print(
            f"epoch {row['epoch']}/{self.epochs}  loss {row['train_loss']:.3f}  "
            f"acc {row['train_acc']:.1%}  {row['images_per_s']:.0f} img/s  "
            f"lr {row['lr']:.2e}  {row['seconds']:.1f} s{extra}",
            highlight=False,
        )
