"""The task function behind `train.py`: build everything from the Hydra config, train, evaluate;
the run's end is a `RunResult` that rnnlab.run.result.finish records, reports and exits with.

Errors a user can fix (ConfigError), divergence (DivergenceError) and a checkpoint that cannot be
written (CheckpointWriteError, e.g. a full disk) end a single run with one line on stderr and a
metrics.json that records the failure; inside a multirun they are re-raised so Hydra marks that job
failed while the other jobs go on. Ctrl-C and SIGTERM end any phase (rnnlab.run.interrupts): training
at a batch boundary with interrupted.ckpt (rnnlab.callbacks.InterruptCheckpoint), every other phase
at once; one line, `status: interrupted` with the phase and the checkpoint to resume from, exit
status 1, in a multirun too (the whole sweep stops). Resuming a finished run changes nothing and
exits 0 (rnnlab.run.resume.FinishedRun). The summary shows the metrics `task.summary` names.
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from rnnlab.callbacks import InterruptCheckpoint
from rnnlab.checkpoint_io import remove_stale_temporaries
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import RunLogger, checkpoint_step
from rnnlab.errors import CheckpointWriteError, ConfigError, DivergenceError, error_line
from rnnlab.run.build import RunParts, build_run
from rnnlab.run.interrupts import AFTER_TRAINING, BEFORE_TRAINING, TRAINING, Interrupted, Phases
from rnnlab.run.outputs import trained_metrics
from rnnlab.run.quiet import lightning_logs_to_the_run_log, silence_advertisements
from rnnlab.run.result import RunResult, finish
from rnnlab.run.resume import FinishedRun, ResumePoint, check_checkpoint, checkpoint_dir
from rnnlab.run.tune import find_learning_rate
from rnnlab.schema import validate

log = logging.getLogger(__name__)
# Training batches are gathered on the training device from a corpus already there
# (rnnlab.data.sampling.window_loader): Lightning's advice to add DataLoader workers does not apply.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
# With check_val_every_n_epoch > 1 the end-of-epoch checkpoint runs before the first validation has
# logged the monitored metric; Lightning warns then, and raises by itself if it is still missing
# after a validation (a misnamed metric), so the early warning only misleads.
warnings.filterwarnings("ignore", message=r".*could not find the monitored key in the returned metrics.*")
silence_advertisements()


def is_debug_run(cfg: DictConfig) -> bool:
    """A `debug=...` preset, Lightning's fast_dev_run or overfit_batches: recorded as status "debug", never as
    a result."""
    trainer = cfg.trainer
    return bool(cfg.get("debug_run") or trainer.get("fast_dev_run") or trainer.get("overfit_batches"))


def trainer_error_line(message: str) -> str:
    """Lightning's message for a fraction of batches that rounds to none, as the option and what is allowed."""
    m = re.search(r"check ([\d.e-]+) of the `(\w+)_dataloader` but [\d.e-]+ \* (\d+) < 1", message)
    if m:
        limit, stage, n = m.groups()
        return (f"trainer.limit_{stage}_batches={limit} is invalid: {limit} of {n} {stage} batches is less than one "
                f"batch; use at least {1 / int(n):.3g} or a number of batches (an integer)")
    return f"trainer: {message.strip().splitlines()[0]}"


def interrupt_callback(trainer) -> InterruptCheckpoint | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, InterruptCheckpoint)), None)


def train(parts: RunParts, resume: ResumePoint, phases: Phases) -> None:
    """Lightning's fit; a stop signal ends it at a batch boundary with interrupted.ckpt, as `Interrupted`."""
    trainer = parts.trainer
    interrupt = interrupt_callback(trainer)
    try:
        # Checkpoints hold only data (rnnlab.models.spec): loaded without unpickling code.
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=resume.path, weights_only=True)
    except MisconfigurationException as e:
        # The Trainer's checks that need the data (e.g. limit_train_batches=0.1 of 4 batches): one line.
        raise ConfigError(trainer_error_line(str(e))) from None
    except SystemExit:  # Lightning's exit after KeyboardInterrupt, or its SIGTERMException
        if not trainer.interrupted:
            raise
        if interrupt is not None and interrupt.save_error is not None:
            raise interrupt.save_error from None  # interrupted.ckpt could not be written (a full disk)
        name = (interrupt.signal if interrupt is not None else None) or phases.signal or "SIGINT"
        # Stopped before training started (setup, the sanity check): the resume point is the one it started from.
        saved = interrupt.path if interrupt is not None and interrupt.path else resume.path
        raise Interrupted(name, TRAINING, saved, {"epochs": trainer.current_epoch,
                                                  "global_step": trainer.global_step}) from None


def late_signal(trainer) -> str | None:
    """A stop signal that arrived after the last training batch, when nothing was left to stop at."""
    interrupt = interrupt_callback(trainer)
    return interrupt.signal if interrupt is not None and interrupt.pending else None


def evaluate(parts: RunParts) -> dict[str, Any]:
    """The evaluation steps of the config's `evaluation` group, in order, after training."""
    metrics: dict[str, Any] = {}
    for step in parts.evaluation.values():
        metrics.update(step(parts.trainer, parts.module, parts.datamodule))
    return metrics


def start_logging(parts: RunParts, cfg: DictConfig, ckpt_path: str | None) -> None:
    """Before training: a resumed run's event file starts at the checkpoint's step (TensorBoard then
    drops what a killed run logged after it); the run's settings go to the HParams dashboard."""
    if ckpt_path == "last":
        ckpt = parts.trainer.checkpoint_callback
        ckpt_path = str(Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}") if ckpt else None
    step = checkpoint_step(ckpt_path)
    settings = flat_settings(cfg)
    for logger in parts.trainer.loggers:
        if isinstance(logger, RunLogger):
            logger.resume_at(step)
            logger.log_hyperparams(flat_settings(cfg, keep_null=True))  # unset settings shown as null
        elif type(logger).__name__ == "MLFlowLogger":
            # MLflow's file store keeps a parameter as a file named by its key: `optimizer` and
            # `optimizer/lr` would be a file and a directory of one name.
            logger.log_hyperparams({k.replace("/", "."): v for k, v in settings.items()})
        else:
            logger.log_hyperparams(settings)


def finish_logging(parts: RunParts, status: str = "success") -> None:
    """The end of the run: each logger closes once (one event file per TensorBoard run and process)."""
    for logger in parts.trainer.loggers:
        if isinstance(logger, RunLogger):
            logger.close(status)
        else:
            logger.finalize(status)


def train_and_evaluate(cfg: DictConfig, phases: Phases | None = None) -> dict[str, Any]:
    """The whole job: seed, build, check, train, evaluate; returns the run's record (what `finish` writes
    to metrics.json). Each step runs as a named phase of `phases` (rnnlab.run.interrupts), which a stop
    signal ends; once the record is complete, a stop signal has nothing left to stop."""
    phases = phases or Phases()
    output_dir = Path(cfg.paths.output_dir)
    parts: RunParts | None = None
    resume: ResumePoint | None = None
    logging_started = False
    trained: dict[str, Any] = {}  # once training is complete: what it recorded (and the LR finder's)
    try:
        with phases.enter("config check"):
            validate(cfg)  # every option's type and range, before anything is built or written
            summary_patterns(cfg)  # task.summary, read when the run ends: refused before it trains
        with phases.enter("data build"):
            L.seed_everything(cfg.seed, workers=True, verbose=False)
            parts = build_run(cfg)
            log.info("data: %s", parts.datamodule.describe())
        with phases.enter("checkpoint check"):
            # Before anything is written: a refused resume leaves the run directory as it was.
            resume = check_checkpoint(cfg.get("ckpt_path"), parts.module, parts.trainer, output_dir)
            remove_stale_temporaries(checkpoint_dir(parts.trainer, output_dir))  # left by a process killed while saving
            start_logging(parts, cfg, resume.path)  # the first write of an event file: after every check
            logging_started = True

        tuned: dict[str, Any] = {}
        if cfg.get("tune") and cfg.tune.get("lr_find") and not resume.trained:  # (trained: nothing left to tune)
            with phases.enter("LR finder"):
                tuned = find_learning_rate(parts, cfg.tune, output_dir)
            if not cfg.tune.get("apply"):
                phases.ignore_signals()
                return {"status": "tuned", **tuned}

        start = time.perf_counter()
        with phases.enter(TRAINING):
            train(parts, resume, phases)
        status = "debug" if is_debug_run(cfg) else "ok"
        # A resume of a run interrupted after its training trains nothing: the metrics are the ones recorded.
        trained = {**tuned, **resume.trained, **trained_metrics(parts.trainer)}
        metrics: dict[str, Any] = {"status": status, **trained}
        with phases.enter("evaluation"):
            phases.stop_if(late_signal(parts.trainer))  # the user asked to stop: evaluation can be resumed
            metrics.update(evaluate(parts))
        with phases.enter("final writes"):
            metrics["seconds"] = round(time.perf_counter() - start, 2)
            metrics["seed"] = cfg.seed
            finish_logging(parts)
        phases.ignore_signals()  # the record is complete: finish writes it whole
        return metrics
    except (DivergenceError, CheckpointWriteError):
        if logging_started:
            finish_logging(parts, "failed")  # the HParams status: not left running
        raise
    except Interrupted as e:
        phases.ignore_signals()  # a second Ctrl-C would leave half the record
        where_to_resume(e, cfg, output_dir, parts, resume, trained)
        if logging_started:
            try:
                finish_logging(parts, "interrupted")
            except Exception:  # the interruption is what is reported, not a logger that could not close
                log.exception("closing the loggers after the interruption failed")
        raise


def where_to_resume(e: Interrupted, cfg: DictConfig, output_dir: Path, parts: RunParts | None,
                    resume: ResumePoint | None, trained: dict[str, Any]) -> None:
    """Fill in where the interrupted run resumes from (unless training said so itself) and its progress."""
    if e.phase in BEFORE_TRAINING:  # nothing trained here: the checkpoint the run started from, if any
        if resume is not None:
            e.checkpoint = resume.path
        elif cfg.get("ckpt_path") == "last":
            last = output_dir / "checkpoints" / "last.ckpt"
            e.checkpoint = str(last) if last.is_file() else None
        else:
            e.checkpoint = cfg.get("ckpt_path")
    elif e.phase in AFTER_TRAINING:  # training is complete: last.ckpt, whose resume runs the evaluation
        callback = parts.trainer.checkpoint_callback if parts is not None else None
        last = Path(checkpoint_dir(parts.trainer, output_dir)) / "last.ckpt" if parts is not None else None
        e.checkpoint = str(last) if callback is not None and last is not None and last.is_file() else None
        e.progress = {**trained, **e.progress}


def interruption_line(e: Interrupted, output_dir: Path) -> str:
    """The one line of an interrupted run: the signal, the phase, and how to resume."""
    epochs, step = e.progress.get("epochs"), e.progress.get("global_step")
    line = f"interrupted by {e.signal} during {e.phase}"
    if e.phase == TRAINING:
        line += f" at epoch {epochs}, step {step}"
    elif e.phase in AFTER_TRAINING:
        line += f" (training is complete: epoch {epochs}, step {step})"
    if e.checkpoint is None:
        return line + ("; nothing to resume: the checkpoints were not saved" if e.phase in AFTER_TRAINING
                       else ": nothing was trained")
    if e.phase in AFTER_TRAINING:
        return line + f"; resume with hydra.run.dir={output_dir} ckpt_path=last to evaluate"
    return line + f"; resume with ckpt_path={e.checkpoint}"


def interrupted_result(e: Interrupted, output_dir: Path) -> RunResult:
    """metrics.json `status: interrupted` with the phase and the checkpoint to resume from, the one line,
    exit status 1 (in a multirun too: the whole sweep stops). A stop before training that finds the
    results of an earlier run here (a resume) leaves them: nothing changed."""
    record = {"status": "interrupted", "phase": e.phase, "signal": e.signal, **e.progress, "checkpoint": e.checkpoint}
    keep = e.phase in BEFORE_TRAINING and holds_result(output_dir)
    return RunResult("interrupted", record, write=not keep, line=interruption_line(e, output_dir))


def holds_result(output_dir: Path) -> bool:
    """True when the run directory's metrics.json records a run that trained (finished, interrupted with
    the checkpoint to resume from, diverged with its last good checkpoint): not only a refused config."""
    try:
        status = json.loads((output_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(status, str) and status != "config_error"


# The status each error ends a run with (RunResult.status, metrics.json's `status`).
ERROR_STATUS = {ConfigError: "config_error", DivergenceError: "diverged", CheckpointWriteError: "checkpoint_error"}


def failed_result(e: ConfigError | DivergenceError | CheckpointWriteError, cfg: DictConfig,
                  output_dir: Path) -> RunResult:
    """A user's error, a divergence or a checkpoint that could not be written: metrics.json records it
    (with the last good checkpoint), one line, exit status 2 (the user's error) or 1; inside a multirun
    the error is re-raised (Hydra marks that job failed). A refused resume keeps the results it found."""
    record = {"status": next(v for k, v in ERROR_STATUS.items() if isinstance(e, k)), "error": str(e)}
    last = output_dir / "checkpoints" / "last.ckpt"
    good = getattr(e, "good_checkpoint", None)  # set when last.ckpt holds diverged weights
    if good is not None:
        if good:
            record["last_good_checkpoint"] = good
    elif isinstance(e, (DivergenceError, CheckpointWriteError)) and last.is_file():
        record["last_good_checkpoint"] = str(last)
    refused_resume = isinstance(e, ConfigError) and cfg.get("ckpt_path") is not None
    keep = refused_resume and holds_result(output_dir)
    return RunResult(record["status"], record, write=not keep, line=error_line(e), error=e)


# What the summary shows when the task names nothing (a task config without `summary`).
DEFAULT_SUMMARY = ("val/*", "epochs")


def summary_patterns(cfg: DictConfig) -> tuple[str, ...]:
    """`task.summary`: the metrics the finished run's summary shows, as names or shell-style patterns
    (`val/*`, `test/mase_k*`), in the order the run recorded them."""
    value = OmegaConf.select(cfg, "task.summary", default=None)
    if value is None:
        return DEFAULT_SUMMARY
    if not isinstance(value, ListConfig) or not all(isinstance(v, str) for v in value):
        shown = OmegaConf.to_container(value) if isinstance(value, (ListConfig, DictConfig)) else value
        raise ConfigError(f"task.summary={shown!r} is invalid: must be a list of metric names or patterns "
                          "(e.g. [val/*, epochs])")
    return tuple(value)


def summary_notes(metrics: dict[str, Any], cfg: DictConfig, output_dir: Path) -> list[str]:
    """The finished run's summary in the log: the metrics `task.summary` names, the sample, the run directory."""
    patterns = summary_patterns(cfg)
    summary = {k: v for k, v in metrics.items() if v is not None and any(fnmatchcase(k, p) for p in patterns)}
    notes = ['debug run (recorded as status "debug", not as a result)'] if metrics.get("status") == "debug" else []
    notes.append(f"final: {json.dumps(summary)}")
    if "sample" in metrics:
        notes.append(f"sample: {metrics['sample']}")
    return [*notes, f"run directory: {output_dir}"]


def lr_finder_line(metrics: dict[str, Any]) -> str | None:
    """The learning-rate finder's suggestion (on stdout), with how to train with it after a tuning run."""
    if "lr_find/suggestion" not in metrics:
        return None
    lr = metrics["lr_find/suggestion"]
    tuned_only = metrics["status"] == "tuned" and lr is not None
    hint = f"; train with it: tune.apply=true or optimizer.lr={lr:.4g}" if tuned_only else ""
    return (f"lr finder: suggested lr {lr if lr is None else format(lr, '.4g')} (configured "
            f"{metrics['lr_find/configured']}){hint}; plot: {metrics.get('lr_find/plot')}")


def completed_result(metrics: dict[str, Any], cfg: DictConfig, output_dir: Path) -> RunResult:
    """A run that trained (`ok`, `debug`) or only tuned (`tuned`): its record, the learning-rate finder's
    line, the summary (not after a tuning run), and the optimized metric for a sweeper."""
    status = metrics["status"]
    if status == "tuned":
        return RunResult(status, metrics, line=lr_finder_line(metrics))
    return RunResult(status, metrics, line=lr_finder_line(metrics), notes=summary_notes(metrics, cfg, output_dir),
                     value=metrics.get(cfg.get("optimized_metric")))


def run_training(cfg: DictConfig, phases: Phases) -> RunResult:
    """The job, ended whichever way it ends: a result, a stop signal, an error, or a finished run found."""
    output_dir = Path(cfg.paths.output_dir)
    try:
        return completed_result(train_and_evaluate(cfg, phases), cfg, output_dir)
    except Interrupted as e:  # any phase
        return interrupted_result(e, output_dir)
    except FinishedRun as e:  # metrics.json and the checkpoints stay as they are; exit status 0
        return RunResult("finished", e.metrics, write=False, line=str(e),
                         value=e.metrics.get(cfg.get("optimized_metric")))
    except (ConfigError, DivergenceError, CheckpointWriteError) as e:
        phases.ignore_signals()
        return failed_result(e, cfg, output_dir)


def main_task(cfg: DictConfig) -> float | None:
    """Hydra task: run the job and finish it (rnnlab.run.result.finish: metrics.json, one line, the exit
    status); a user's error is one line instead of a traceback."""
    lightning_logs_to_the_run_log()
    if cfg.get("print_config"):
        try:
            log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        except InterpolationResolutionError:  # groups that do not go together: the schema names the key
            log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    with Phases() as phases:
        result = run_training(cfg, phases)
        phases.ignore_signals()  # the run is over: a stop signal now has nothing left to stop
        return finish(result, Path(cfg.paths.output_dir), log)
