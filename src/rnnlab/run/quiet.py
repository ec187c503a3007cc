"""A run's output is its own, and standard error holds only errors: what libraries print at every
start (advertisements, notes, progress of a learning-rate range test, Optuna's study line) goes to
the run's log (Hydra's: train.log and standard output) or is dropped, and under DDP only the main
process logs."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from rnnlab import compat

# Notes for Lightning's developers, not for a run's user: dropped.
NOISE = (
    # Lightning 2.6 with torch 2.13 at every fit and validate (lightning/pytorch/utilities/_pytree.py).
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    # ModelCheckpoint at every resume: rnnlab.run.rundir refuses a directory holding another run's
    # checkpoints, so those found there are this run's own.
    r".*Checkpoint directory .* exists and is not empty.*",
)
WARNINGS_LOGGER = "py.warnings"  # the logger logging.captureWarnings uses


class _DropAdvertisements(logging.Filter):
    """Lightning 2.6 logs "💡 Tip: ... litlogger / litmodels" at every Trainer construction and fit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in record.getMessage()


_FILTER = _DropAdvertisements()


def silence_advertisements() -> None:
    """Install the filter on the logger Lightning's rank_zero_info writes to (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def lightning_logs_to_the_run_log() -> None:
    """Called at the start of a run (train.py, eval.py). Lightning's own messages ("GPU available: ...",
    "`Trainer.fit` stopped ...") and Python warnings (Lightning's notes such as the model summary's
    under bf16) go where the run's log goes, not to standard error, which then holds only errors: a
    user's mistake stays one line there. The learning-rate finder's bar goes to standard output
    (idempotent)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        # Lightning attaches a stderr handler to its package loggers (and to `lightning`) and stops propagation.
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is not None \
                    and getattr(handler.stream, "name", "") == "<stderr>":
                logger.removeHandler(handler)
        logger.propagate = True
    warnings_to_the_run_log()
    lr_finder_bar_to_stdout()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning as logging.captureWarnings installs it: the formatted warning, logged."""
    if file is not None:  # a stream asked for explicitly is kept
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
    logging.getLogger(WARNINGS_LOGGER).warning("%s", text)


def warnings_to_the_run_log() -> None:
    """Python warnings are logged (to the run's log) instead of written to standard error; NOISE is dropped.
    Not logging.captureWarnings itself: it does nothing once it has captured, and a warnings.catch_warnings
    block ended since (pytest has one around each test) restores the earlier warnings.showwarning."""
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=pattern)  # idempotent: an equal filter is replaced
    warnings.showwarning = _show_warning


def lr_finder_bar_to_stdout() -> None:
    """Lightning's learning-rate finder (tune.lr_find=true) draws its own tqdm bar on standard error
    whatever Trainer(enable_progress_bar) says (rnnlab.compat.wrap_lr_finder_bar: a private module
    global). Wrapped, the bar goes to standard output, beside the training bar, and only when it is a
    terminal (tqdm's disable=None): a log file or a pipe gets no bar."""
    def on_stdout(original):
        def bar(*args, **kwargs):
            kwargs.setdefault("file", sys.stdout)
            kwargs.setdefault("disable", None)
            return original(*args, **kwargs)
        return bar

    compat.wrap_lr_finder_bar(on_stdout)


RANK_VARIABLES = compat.RANK_VARIABLES  # the environment variables a process's rank is read from


def process_rank() -> int:
    """This process's rank in a multi-process run (0 when it is not one); Lightning only imported when it is."""
    if not any(os.environ.get(name) for name in RANK_VARIABLES):
        return 0
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


class OtherProcessesLogOnlyErrors(Callback):
    """Hydra callback (conf/hydra/default.yaml). Under DDP Lightning starts the processes of ranks > 0
    by running the command again (LOCAL_RANK set, `hydra.job.name=train_ddp_process_<rank>`); Hydra
    sets up their logging as the main process's, so each would print the config and the results again
    and write `<job name>.log` beside train.log. Before Hydra sets it up (on_run_start comes before
    the job's logging configuration), their logging config loses its file handlers and keeps only
    errors on the others."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if process_rank() == 0:
            return
        logging_config = OmegaConf.select(config, "hydra.job_logging")
        if not isinstance(logging_config, DictConfig) or not isinstance(logging_config.get("handlers"), DictConfig):
            return
        with read_write(logging_config), open_dict(logging_config):
            handlers = logging_config.handlers
            files = [name for name, handler in handlers.items()
                     if isinstance(handler, DictConfig) and "filename" in handler]
            for name in files:
                del handlers[name]
            for handler in handlers.values():
                if isinstance(handler, DictConfig):
                    handler.level = "ERROR"
            for holder in [logging_config.get("root"), *(logging_config.get("loggers") or {}).values()]:
                if isinstance(holder, DictConfig) and holder.get("handlers"):
                    holder.handlers = [name for name in holder.handlers if name not in files]


class OptunaLogsToTheRunLog(Callback):
    """Hydra callback (conf/hydra/default.yaml). Optuna, imported by its sweeper after Hydra has set up
    logging, gives its loggers their own stderr handler ("A new study created in memory with name:
    ..."); before the sweeper is made, they are pointed at Hydra's log instead (standard output)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if "optuna" not in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")):
            return
        try:
            import optuna
        except ImportError:  # the sweeper's own error names the extra to install (rnnlab.cli.common)
            return
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
