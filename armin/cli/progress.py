"""A live progress bar for long work (stderr, via rich); silent when disabled or not a terminal."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, total: int, *, enabled: bool = True):
        self.total, self.enabled = total, enabled
        self.bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=True,
                            disable=not enabled)
        self.task_id = None

    def __enter__(self) -> "TrainProgress":
        self.bar.__enter__()
        self.task_id = self.bar.add_task("train", total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def log(self, line: str) -> None:
        """A line printed above the bar (to stdout, flushed, so logs of background runs are live)."""
        if self.enabled:
            self.bar.console.print(line, highlight=False, soft_wrap=True)
        else:
            print(line, flush=True)

    def update(self, step: int, total: int, last_eval: dict) -> None:
        info = "  ".join(f"{k} {v:.3g}" for k, v in last_eval.items() if k in ("eval_loss", "bits_error", "accuracy"))
        self.bar.update(self.task_id, completed=step, info=info)
