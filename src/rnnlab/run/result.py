"""A run's end as a value, and the one function that acts on it.

A training run (rnnlab.run.job) and an evaluation (rnnlab.run.eval_job) return a `RunResult` instead of
printing and exiting where they stop; `finish` is the one place that writes metrics.json (through
rnnlab.run.outputs.write_metrics), prints the final line, logs the summary and picks the exit status.
What runs before any run exists (the run-directory guard, a command's own errors) has no record to
write: `end_before_run` prints its line and gives the same exit status for the same kind of end.

This module imports neither torch nor Lightning: train.py's error path imports it before a run starts.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnlab import compat
from rnnlab.errors import USER_ERROR_EXIT
from rnnlab.run.outputs import write_metrics

log = logging.getLogger(__name__)

# The exit status of each way a run ends: 0 a result (or nothing to do), 2 the user's mistake, 1 anything
# that stopped it (a stop signal, a divergence, a checkpoint that could not be written).
EXIT_CODES = {
    "ok": 0, "debug": 0, "tuned": 0, "finished": 0,
    "config_error": USER_ERROR_EXIT,
    "diverged": 1, "checkpoint_error": 1, "interrupted": 1,
}


def exit_code(status: str) -> int:
    """The exit status of a run that ended with `status` (EXIT_CODES)."""
    return EXIT_CODES[status]


@dataclass
class RunResult:
    """How a run ended. `metrics`: its record, what metrics.json holds; `write`: False when metrics.json
    is left as it is (a finished run, a refused resume of a run with results, a refused evaluation);
    `line`: the one final line (stderr for a failure, stdout otherwise); `notes`: the summary, logged at
    INFO; `error`: re-raised inside a multirun, so Hydra marks that job failed and the others go on;
    `value`: what the task function returns (a sweeper's objective)."""

    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    write: bool = True
    line: str | None = None
    notes: list[str] = field(default_factory=list)
    error: BaseException | None = None
    value: float | None = None

    @property
    def exit_code(self) -> int:
        return exit_code(self.status)


def end_progress_lines() -> None:
    """Close the progress bars still open (an error or a stop in the middle of an epoch leaves Lightning's
    bars and the learning-rate finder's unfinished, the cursor at the end of a bar's line), so the line
    printed next starts on its own line and no bar is redrawn after it (rnnlab.compat.open_progress_bars)."""
    for bar in compat.open_progress_bars():
        try:
            bar.close()
        except Exception:  # a bar whose stream is gone: nothing to end
            pass


def report(line: str, stream=None, logger: logging.Logger = log) -> None:
    """Print a run's final line, on its own line: to standard error unless `stream` says otherwise; the
    run's log file (train.log) keeps it too, without a second copy on the terminal."""
    end_progress_lines()
    print(line, file=stream or sys.stderr)
    record = logger.makeRecord(logger.name, logging.INFO if stream else logging.WARNING, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def end_before_run(status: str, line: str) -> int:
    """The end of what runs before a run exists (the run-directory guard, a command's arguments, Hydra
    composing the config): no run directory of its own and no record to write, so only the line, on
    standard error, and the exit status `finish` gives the same `status`."""
    print(line, file=sys.stderr)
    return exit_code(status)


def _main_process() -> bool:
    """Under DDP every process ends the run; one (rank 0) writes the record and prints the line. Lightning
    is imported here, not above: train.py's error path imports this module before any run."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def finish(result: RunResult, output_dir: Path, logger: logging.Logger = log) -> float | None:
    """Every run's end: metrics.json (unless `result.write` is False), then the final line and the summary
    (through `logger`, the job's own, so the run's log names it), then the exit status: a failure exits
    (SystemExit) or, inside a multirun, re-raises its error; a result returns `result.value`."""
    main = _main_process()
    if result.write and main:
        try:
            write_metrics(output_dir, result.metrics)
        except OSError as write_error:
            if result.exit_code == 0:  # a result that cannot be recorded is no result
                raise
            # The disk that refused a checkpoint may refuse metrics.json too: the line still says what happened.
            logger.error("metrics.json could not be written: %s", write_error)
    if result.error is not None and _in_multirun():
        raise result.error
    if main:
        if result.line is not None:
            report(result.line, sys.stdout if result.exit_code == 0 else None, logger)
        for note in result.notes:
            logger.info("%s", note)
    if result.exit_code:
        sys.exit(result.exit_code)
    return result.value
