"""Lightning's TensorBoardLogger writing a job as two TensorBoard runs, one event file each.

- `<label>`: what training logs (`train/*`, histograms, text samples, the projector);
- `<label>/eval`: the HParams session (this job's settings, rnnlab.dashboard.hparams) and what
  evaluation logs (`val/*`, and the test part's scores as `~test/*`).

Why two runs: TensorBoard's HParams table takes its metric columns from every scalar of the session's
run and the runs below it, sorted by name, and shows the first five; in one run those would be the
`train/*` step diagnostics, with `val/ppl` hidden. Why `~test`: Time Series sorts its groups by name
and opens only the first two (tensorboard/webapp/metrics: groupCardsByTag, then `slice(0, 2)`), so
every group besides `train` and `val` must sort after `val`; `test` would come first and fold `val`.
metrics.json, the CSV logger and the tools keep `test/*`. tests/dashboards/test_dashboard.py fails
if TensorBoard changes either rule.

Lightning's logger closes its SummaryWriter when fit ends; the test loop and the evaluation steps
that follow then reopen it, which starts a second event file. Here `finalize` (called by Lightning
after fit and after test) only flushes, and the job closes the writers once, with `close`. Lightning's
`epoch` counter is left out (the step axis is the optimizer step). A resumed run opens its writers
with `purge_step` at the checkpoint's step, so TensorBoard drops the steps the killed run logged
after that checkpoint instead of showing them twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter

from rnnlab.dashboard import hparams as hp

EVENT_GLOB = "events.out.tfevents.*"
EVAL_RUN = "eval"  # the sub-run of `<label>` holding the HParams session and the evaluation scalars
EVAL_GROUPS = ("val/", "test/")


def tensorboard_tag(name: str) -> str:
    """The TensorBoard tag of a metric: `test/x` becomes `~test/x` (sorted after `train` and `val`)."""
    return "~" + name if name.startswith("test/") else name


def is_eval_tag(name: str) -> bool:
    return name.startswith(EVAL_GROUPS)


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
    """TensorBoardLogger writing the runs `<label>` (training) and `<label>/eval` (HParams session,
    validation and test), one event file each, and no `epoch` scalar."""

    DROPPED = frozenset({"epoch"})

    def __init__(self, save_dir: str, name: str = "", version: str = "", **kwargs: Any):
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
        self._started = False
        self._eval_writer = None

    def resume_at(self, step: int | None) -> None:
        """Before anything is written: drop what earlier writers logged at `step` and later."""
        if step is None:
            return
        if self._experiment is not None or self._eval_writer is not None:
            raise RuntimeError("resume_at must be called before the event file is opened")
        self._kwargs["purge_step"] = step

    @property
    @rank_zero_experiment
    def eval_writer(self):
        """The SummaryWriter of the `<label>/eval` run (the options of `experiment`; torch's writer, the
        one Lightning picks when tensorboard is installed, a dependency of this project)."""
        if self._eval_writer is None:
            self._eval_writer = SummaryWriter(log_dir=str(Path(self.log_dir) / EVAL_RUN), **self._kwargs)
        return self._eval_writer

    def __getstate__(self) -> dict[str, Any]:
        """As Lightning's logger: a copy sent to another process (ddp_spawn) opens its own writers."""
        state = super().__getstate__()
        state["_eval_writer"] = None
        return state

    def writer_for(self, name: str):
        """(SummaryWriter, TensorBoard tag) for a metric, figure or text named `name`."""
        return (self.eval_writer if is_eval_tag(name) else self.experiment), tensorboard_tag(name)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Mapping[str, Any] | None = None, step: int | None = None) -> None:
        """Record the settings once, as HParams session info; `metrics` are logged as scalars."""
        params = dict(params) if isinstance(params, Mapping) else vars(params)
        self.hparams.update(params)
        if not self._started:
            self.eval_writer._get_file_writer().add_summary(hp.session_start(params), 0)
            self._started = True
        if metrics:
            self.log_metrics(metrics, step)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Training metrics as Lightning logs them; evaluation metrics into the eval run."""
        metrics = {k: v for k, v in metrics.items() if k not in self.DROPPED}
        super().log_metrics({k: v for k, v in metrics.items() if not is_eval_tag(k)}, step)
        for name, value in metrics.items():
            if is_eval_tag(name):
                writer, tag = self.writer_for(name)
                writer.add_scalar(tag, value.item() if isinstance(value, torch.Tensor) else value, step)

    def _open_writers(self) -> list:
        return [w for w in (self._experiment, self._eval_writer) if w is not None]

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End of fit or test: flush (the writers stay open for what follows; `close` ends them)."""
        for writer in self._open_writers():
            writer.flush()
        if status == "success":
            self.save()

    @rank_zero_only
    def close(self, status: str = "success") -> None:
        """The end of the run: its HParams status, then each writer's one close."""
        if self._started:
            self.eval_writer._get_file_writer().add_summary(hp.session_end(status), 0)
        for writer in self._open_writers():
            writer.flush()
            writer.close()


def log_step(trainer) -> int:
    """The step Lightning logs scalars at (the epoch-end metrics of epoch e share the step of its last
    batch); Lightning's own LearningRateMonitor and DeviceStatsMonitor read this loop counter too."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def writers(trainer, name: str) -> list:
    """(SummaryWriter, TensorBoard tag) for `name` in each of the trainer's TensorBoard loggers (on the
    main process only): a RunLogger's run for it (rnnlab.dashboard.logger.RunLogger.writer_for)."""
    if not trainer.is_global_zero:
        return []
    return [lg.writer_for(name) if isinstance(lg, RunLogger) else (lg.experiment, name)
            for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
