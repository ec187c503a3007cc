"""Lightning's TensorBoardLogger writing a job as TensorBoard runs under `<label>`, Keras-style.

- `<label>/train`: what training logs; its loss and perplexity (or mse) as `metrics/loss`,
  `metrics/ppl` (`metrics/mse`), its step diagnostics as `train/*`, text samples, histograms, the
  projector;
- `<label>/val`: what validation logs, under the same tags (`metrics/loss`, `metrics/ppl`,
  `metrics/bpc`, `metrics/mase`, ..., `metrics/best`, the `metrics/forecast` figures), the test part
  as `~test/*`, and the HParams session (rnnlab.dashboard.session);
- `<evaluated dir name>/<label>/eval` (eval.py, rnnlab.dashboard.run_label.evaluated_label): a
  checkpoint's scores at the checkpoint's step, under the same tags, in the evaluated job's colour.

Why: a Time Series card is one tag, each run one line, so train and validation share a card only as
two runs with one tag (Keras's `train`/`validation` runs and `epoch_loss`). Time Series sorts its
groups by name and opens only the first two (tensorboard/webapp/metrics: groupCardsByTag, then
`slice(0, 2)`): `metrics` opens first, then `train`; `weights` and `~test` sort after. HParams takes
its metric columns from the session's run (the validation scalars) sorted by name and ticks the first
five: `metrics/best` (the monitored metric's running best, one name for every task) comes first.
tests/dashboards/test_dashboard.py fails if TensorBoard changes these rules. metrics.json, the CSV
logger and the tools keep the metric names (`train/loss`, `val/ppl`, `test/*`).

Lightning's logger closes its SummaryWriter when fit ends; the test loop and the evaluation steps
that follow then reopen it, which starts a second event file. Here `finalize` (called by Lightning
after fit and after test) only flushes, and the job closes the writers once, with `close`. Lightning's
`epoch` counter is left out (the step axis is the optimizer step). A resumed run opens its writers
with `purge_step` at the checkpoint's step, so TensorBoard drops the steps the killed run logged
after that checkpoint instead of showing them twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Mapping

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter

from rnnlab import compat
from rnnlab.dashboard import hparams as hp
from rnnlab.dashboard import session as sessions
from rnnlab.options import STRING, checked

EVENT_GLOB = "events.out.tfevents.*"
TRAIN_RUN, VAL_RUN, EVAL_RUN = "train", "val", "eval"
HEADLINE = "metrics/"  # the Time Series group that opens first: train and validation on one card each
TRAIN_HEADLINE = ("train/loss", "train/ppl", "train/mse")  # the training curves shared with validation
BEST = "val/best"  # the running best of the monitored metric (rnnlab.dashboard.charts.BestMetricLogger)


def tensorboard_name(name: str, eval_run: str = VAL_RUN) -> tuple[str, str]:
    """(sub-run, TensorBoard tag) of a metric, figure or text: `train/loss` -> (train, metrics/loss),
    `val/ppl` -> (val, metrics/ppl), `test/x` -> (val, ~test/x), `train/lr` -> (train, train/lr)."""
    if name.startswith("val/"):
        return eval_run, HEADLINE + name[4:]
    if name.startswith("test/"):
        return eval_run, "~" + name
    if name in TRAIN_HEADLINE:
        return TRAIN_RUN, HEADLINE + name[6:]
    return TRAIN_RUN, name


def event_dir(run_dir: str | Path) -> Path:
    """The directory holding a job's TensorBoard runs (`<run dir>/<run label>`)."""
    found = sorted({p.parent.parent for p in Path(run_dir).glob(f"*/*/{EVENT_GLOB}")})
    if len(found) != 1:
        raise FileNotFoundError(f"{run_dir}: expected one directory of TensorBoard runs, found {len(found)}")
    return found[0]


def existing_label(run_dir: str | Path) -> str | None:
    """The label a run directory's TensorBoard runs already have (a resumed or extended run keeps it)."""
    try:
        return event_dir(run_dir).name
    except FileNotFoundError:
        return None


def checkpoint_step(ckpt_path: str | Path | None) -> int | None:
    """The global step stored in a Lightning checkpoint (None without a readable one)."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return None
    try:
        return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"])
    except Exception:  # not a checkpoint: the resume checks say so
        return None


class RunLogger(TensorBoardLogger):
    """TensorBoardLogger writing the runs `<label>/train` and `<label>/val` (or, with `checkpoint`
    given, eval.py's `<label>/eval` at `step`), one event file each, and no `epoch` scalar."""

    DROPPED = frozenset({"epoch"})

    @checked()
    def __init__(self, save_dir: Annotated[str, STRING], name: Annotated[str, STRING] = "",
                 version: Annotated[str, STRING] = "", checkpoint: str | None = None, step: int | None = None,
                 **kwargs: Any):
        kwargs.setdefault("default_hp_metric", False)
        super().__init__(save_dir=save_dir, name=name, version=version, **kwargs)
        self.checkpoint, self.fixed_step = checkpoint, step
        self.eval_run = EVAL_RUN if checkpoint else VAL_RUN
        self._session: sessions.Session | None = None
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
    def experiment(self) -> SummaryWriter:
        """The SummaryWriter of the `<label>/train` run (torch's writer, the one Lightning picks when
        tensorboard is installed, a dependency of this project); eval.py's `<label>/eval`."""
        if self._experiment is None:  # eval.py: everything into its one run
            self._experiment = self.eval_writer if self.checkpoint else \
                SummaryWriter(log_dir=str(Path(self.log_dir) / TRAIN_RUN), **self._kwargs)
        return self._experiment

    @property
    @rank_zero_experiment
    def eval_writer(self) -> SummaryWriter:
        """The SummaryWriter of the `<label>/val` run (`<label>/eval` in eval.py)."""
        if self._eval_writer is None:
            self._eval_writer = SummaryWriter(log_dir=str(Path(self.log_dir) / self.eval_run), **self._kwargs)
        return self._eval_writer

    def __getstate__(self) -> dict[str, Any]:
        """As Lightning's logger: a copy sent to another process (ddp_spawn) opens its own writers."""
        state = super().__getstate__()
        state["_eval_writer"] = None
        state["_session"] = None
        return state

    def writer_for(self, name: str):
        """(SummaryWriter, TensorBoard tag) for a metric, figure or text named `name`."""
        run, tag = tensorboard_name(name, self.eval_run)
        return (self.experiment if run == TRAIN_RUN else self.eval_writer), tag

    def step_for(self, step: int | None) -> int | None:
        """The step to log at: eval.py's scores at the evaluated checkpoint's step."""
        return self.fixed_step if self.fixed_step is not None else step

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Mapping[str, Any] | None = None, step: int | None = None) -> None:
        """Record the first settings logged as the HParams session of the validation (or eval) run,
        status running; `metrics` are logged as scalars."""
        params = dict(params) if isinstance(params, Mapping) else vars(params)
        self.hparams.update(params)
        if self._session is None:  # the job's settings, logged first; Lightning logs the module's after them
            settings = hp.tensorboard_settings(params)
            if self.checkpoint:
                settings["eval/checkpoint"] = self.checkpoint
            self._session = sessions.Session(Path(self.log_dir) / self.eval_run, settings)
            self._session.write("running")
        if metrics:
            self.log_metrics(metrics, step)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Each metric into its run under its TensorBoard tag (tensorboard_name)."""
        step = self.step_for(step)
        for name, value in metrics.items():
            if name in self.DROPPED:
                continue
            writer, tag = self.writer_for(name)
            writer.add_scalar(tag, value.item() if isinstance(value, torch.Tensor) else value, step)

    def _open_writers(self) -> list:
        return [w for w in dict.fromkeys((self._experiment, self._eval_writer)) if w is not None]

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """End of fit or test: flush (the writers stay open for what follows; `close` ends them)."""
        for writer in self._open_writers():
            writer.flush()
        if status == "success":
            self.save()

    @rank_zero_only
    def close(self, status: str = "success") -> None:
        """The end of the run: its HParams status (rewritten, so a resume's status replaces an
        interruption's), then each writer's one close."""
        if self._session is not None:
            self._session.write(status)
        for writer in self._open_writers():
            writer.flush()
            writer.close()


def log_step(trainer) -> int:
    """The step Lightning logs scalars at (the epoch-end metrics of epoch e share the step of its last
    batch): rnnlab.compat.logging_step, a private loop counter."""
    return compat.logging_step(trainer)


def writers(trainer, name: str) -> list:
    """(SummaryWriter, TensorBoard tag) for `name` in each of the trainer's TensorBoard loggers (on the
    main process only): a RunLogger's run for it (rnnlab.dashboard.logger.RunLogger.writer_for)."""
    if not trainer.is_global_zero:
        return []
    return [lg.writer_for(name) if isinstance(lg, RunLogger) else (lg.experiment, name)
            for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
