"""Lightning's TensorBoardLogger with one event file per run.

Lightning's logger closes its SummaryWriter when fit ends; the test loop and the evaluation steps
that follow then reopen it, which starts a second event file. Here `finalize` (called by Lightning
after fit and after test) only flushes, and the job closes the writer once, with `close`. Settings go
to the HParams dashboard as this run's session info only (rnnlab.dashboard.hparams), and Lightning's
`epoch` counter is left out of the scalars (the step axis is the optimizer step). A resumed run opens
its writer with `purge_step` at the checkpoint's step, so TensorBoard drops the steps the killed run
logged after that checkpoint instead of showing them twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from rnnlab.dashboard import hparams as hp

EVENT_GLOB = "events.out.tfevents.*"


def event_dir(run_dir: str | Path) -> Path:
    """The directory holding a run's event files (`<run dir>/<run label>`)."""
    found = sorted({p.parent for p in Path(run_dir).glob(f"*/{EVENT_GLOB}")})
    if len(found) != 1:
        raise FileNotFoundError(f"{run_dir}: expected one directory of TensorBoard event files, found {len(found)}")
    return found[0]


def checkpoint_step(ckpt_path: str | Path | None) -> int | None:
    """The global step stored in a Lightning checkpoint (None without a readable one)."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    try:
        return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # not a checkpoint: the resume checks say so
        return None


class RunLogger(TensorBoardLogger):
    """TensorBoardLogger writing one event file per run, HParams session info, no `epoch` scalar."""

    DROPPED = frozenset({"epoch"})

    def __init__(self, save_dir: str, name: str = "", version: str = "", **kwargs: Any):
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
        self._started = False

    def resume_at(self, step: int | None) -> None:
        """Before anything is written: drop what earlier writers logged at `step` and later."""
        if step is None:
            return
        if self._experiment is not None:
            raise RuntimeError("resume_at must be called before the event file is opened")
        self._kwargs["purge_step"] = step

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Mapping[str, Any] | None = None, step: int | None = None) -> None:
        """Record the settings once, as HParams session info; `metrics` are logged as scalars."""
        params = dict(params) if isinstance(params, Mapping) else vars(params)
        self.hparams.update(params)
        if not self._started:
            self.experiment._get_file_writer().add_summary(hp.session_start(params), 0)
            self._started = True
        if metrics:
            self.log_metrics(metrics, step)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k not in self.DROPPED}, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End of fit or test: flush (the writer stays open for what follows; `close` ends it)."""
        if self._experiment is not None:
            self._experiment.flush()
        if status == "success":
            self.save()

    @rank_zero_only
    def close(self, status: str = "success") -> None:
        """The end of the run: its HParams status, then the writer's one close."""
        if self._started:
            self.experiment._get_file_writer().add_summary(hp.session_end(status), 0)
        if self._experiment is not None:
            self._experiment.flush()
            self._experiment.close()


def log_step(trainer) -> int:
    """The step Lightning logs scalars at (the epoch-end metrics of epoch e share the step of its last
    batch); Lightning's own LearningRateMonitor and DeviceStatsMonitor read this loop counter too."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def writers(trainer) -> list:
    """The SummaryWriters of the trainer's TensorBoard loggers (on the main process only)."""
    if not trainer.is_global_zero:
        return []
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
