"""A live progress bar for long work (stderr, via rich); silent when disabled or not a terminal."""

from __future__ import annotations

import sys

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


class StudyProgress:
    """The driver's live line: done/total, running, failed, pruned, diverged, lost, best, ETA.

    On a terminal it redraws one line; otherwise it prints a line whenever the counts change.
    """

    def __init__(self, *, enabled: bool = True):
        self.enabled, self.tty = enabled, sys.stderr.isatty()
        self.last = ""

    def __enter__(self) -> "StudyProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.enabled and self.tty and self.last:
            sys.stderr.write("\n")
            self.last = ""

    def describe(self, p) -> str:
        eta = p.eta_s()
        best = "-" if p.best is None else f"{p.best:.4g}"
        eta_text = "-" if eta is None else f"{eta / 60:.1f} min"
        return (f"trials {p.done}/{p.total} done | {p.running} running | {p.failed} failed | {p.pruned} pruned | "
                f"{p.diverged} diverged | {p.lost} lost | best {best} | ETA {eta_text}")

    def update(self, p) -> None:
        if not self.enabled:
            return
        line = self.describe(p)
        if line == self.last:
            return
        if self.tty:
            sys.stderr.write("\r\033[2K" + line)
        else:
            counts_changed = line.split(" | ETA")[0] != self.last.split(" | ETA")[0]
            if counts_changed:
                sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self.last = line
