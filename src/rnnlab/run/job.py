"""The task function behind `train.py`: build everything from the Hydra config, train, evaluate,
write metrics.json.

Errors a user can fix (ConfigError), divergence (DivergenceError) and a checkpoint that cannot be
written (CheckpointWriteError, e.g. a full disk) end a single run with one line on stderr and a
metrics.json that records the failure; inside a multirun they are re-raised so Hydra marks that job
failed while the other jobs go on. Ctrl-C and SIGTERM end any phase (rnnlab.run.interrupts): training
at a batch boundary with interrupted.ckpt (rnnlab.callbacks.InterruptCheckpoint), every other phase
at once; one line, `status: interrupted` with the phase and the checkpoint to resume from, exit
status 1, in a multirun too (the whole sweep stops). Resuming a finished run changes nothing and
exits 0 (rnnlab.run.resume.FinishedRun).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.exceptions import MisconfigurationException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from rnnlab.callbacks import InterruptCheckpoint
from rnnlab.checkpoint_io import remove_stale_temporaries
from rnnlab.errors import USER_ERROR_EXIT, CheckpointWriteError, ConfigError, DivergenceError, error_line
from rnnlab.run.build import RunParts, build_run
from rnnlab.run.interrupts import AFTER_TRAINING, BEFORE_TRAINING, TRAINING, Interrupted, Phases
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import RunLogger, checkpoint_step
from rnnlab.run.outputs import trained_metrics, write_metrics
from rnnlab.run.quiet import lightning_logs_to_the_run_log, silence_advertisements
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
    """A `debug=...` preset, Lightning's fast_dev_run or overfit_batches: recorded as status "debug", never as a result."""
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
    """The whole job: seed, build, check, train, evaluate; returns the metrics written to metrics.json.
    Each step runs as a named phase of `phases` (rnnlab.run.interrupts), which a stop signal ends."""
    phases = phases or Phases()
    output_dir = Path(cfg.paths.output_dir)
    parts: RunParts | None = None
    resume: ResumePoint | None = None
    logging_started = False
    trained: dict[str, Any] = {}  # once training is complete: what it recorded (and the LR finder's)
    try:
        with phases.enter("config check"):
            validate(cfg)  # every option's type and range, before anything is built or written
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
                record = {"status": "tuned", **tuned}
                if parts.trainer.is_global_zero:
                    write_metrics(output_dir, record)
                return record

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
            if parts.trainer.is_global_zero:
                write_metrics(output_dir, metrics)
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


def record_interruption(e: Interrupted, output_dir: Path) -> None:
    """metrics.json `status: interrupted` with the phase and the checkpoint to resume from. A stop before
    training that finds the results of an earlier run here (a resume) leaves them: nothing changed."""
    if e.phase in BEFORE_TRAINING and holds_result(output_dir):
        return
    try:
        write_metrics(output_dir, {"status": "interrupted", "phase": e.phase, "signal": e.signal, **e.progress,
                                   "checkpoint": e.checkpoint})
    except OSError as write_error:  # a full disk: the line still says where to resume
        log.error("metrics.json could not be written: %s", write_error)


def end_progress_lines() -> None:
    """Close the progress bars still open (an error or a stop in the middle of an epoch leaves Lightning's
    bars and the learning-rate finder's unfinished, the cursor at the end of a bar's line), so the line
    printed next starts on its own line and no bar is redrawn after it. tqdm keeps its open bars in the
    class attribute `_instances` (tqdm 4, `tqdm.write` clears them the same way);
    tests/runs/test_reliability_faults.py fails if it goes."""
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in sorted(getattr(tqdm, "_instances", ()), key=lambda b: -abs(getattr(b, "pos", 0))):  # lowest first
        try:
            bar.close()
        except Exception:  # a bar whose stream is gone: nothing to end
            pass


def report(line: str, stream=None) -> None:
    """Print a run's final line, on its own line: to standard error unless `stream` says otherwise; the
    run's log file (train.log) keeps it too, without a second copy on the terminal."""
    end_progress_lines()
    print(line, file=stream or sys.stderr)
    record = log.makeRecord(log.name, logging.INFO if stream else logging.WARNING, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def holds_result(output_dir: Path) -> bool:
    """True when the run directory's metrics.json records a run that trained (finished, interrupted with
    the checkpoint to resume from, diverged with its last good checkpoint): not only a refused config."""
    try:
        status = json.loads((output_dir / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(status, str) and status != "config_error"


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main_task(cfg: DictConfig) -> float | None:
    """Hydra task: run the job, report, and turn user errors into one line instead of a traceback."""
    lightning_logs_to_the_run_log()
    if cfg.get("print_config"):
        try:
            log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
        except InterpolationResolutionError:  # groups that do not go together: the schema names the key
            log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    output_dir = Path(cfg.paths.output_dir)
    with Phases() as phases:
        try:
            metrics = train_and_evaluate(cfg, phases)
        except Interrupted as e:  # any phase: one line, the record, exit status 1 (a multirun stops too)
            main_process = rank_zero_only.rank == 0
            if main_process:
                record_interruption(e, output_dir)
                report(interruption_line(e, output_dir))
            sys.exit(1)
        except FinishedRun as e:  # metrics.json and the checkpoints stay as they are
            report(str(e), sys.stdout)  # not an error: the run is complete, exit status 0
            return e.metrics.get(cfg.get("optimized_metric"))
        except (ConfigError, DivergenceError, CheckpointWriteError) as e:
            phases.ignore_signals()
            report_error(e, cfg, output_dir)
        phases.ignore_signals()  # the run is recorded: a stop signal now has nothing left to stop
        return report_result(metrics, cfg, output_dir)


def report_error(e: ConfigError | DivergenceError | CheckpointWriteError, cfg: DictConfig, output_dir: Path) -> None:
    """One line and metrics.json for a user's error, a divergence or a checkpoint that could not be written;
    exit status 2 (the user's error) or 1, or re-raised inside a multirun (Hydra marks that job failed)."""
    status = {ConfigError: "config_error", DivergenceError: "diverged", CheckpointWriteError: "checkpoint_error"}
    record = {"status": next(v for k, v in status.items() if isinstance(e, k)), "error": str(e)}
    last = output_dir / "checkpoints" / "last.ckpt"
    good = getattr(e, "good_checkpoint", None)  # set when last.ckpt holds diverged weights
    if good is not None:
        if good:
            record["last_good_checkpoint"] = good
    elif isinstance(e, (DivergenceError, CheckpointWriteError)) and last.is_file():
        record["last_good_checkpoint"] = str(last)
    refused_resume = isinstance(e, ConfigError) and cfg.get("ckpt_path") is not None
    main_process = rank_zero_only.rank == 0  # under DDP every process meets the error; one reports it
    if main_process and not (refused_resume and holds_result(output_dir)):  # a refused resume keeps results
        try:
            write_metrics(output_dir, record)
        except OSError as write_error:  # the disk that refused a checkpoint may refuse metrics.json too
            log.error("metrics.json could not be written: %s", write_error)
    if _is_multirun():
        raise e
    if main_process:
        report(error_line(e))
    sys.exit(USER_ERROR_EXIT if isinstance(e, ConfigError) else 1)


def report_result(metrics: dict[str, Any], cfg: DictConfig, output_dir: Path) -> float | None:
    """The finished run's summary in the log (and the learning-rate finder's suggestion on stdout)."""
    summary = {k: v for k, v in metrics.items()
               if v is not None and (k.startswith(("val/", "test/mse_k", "test/mse_multistep", "test/mase_k", "test/naive_mase_k", "test/snaive_mase_k",
                                                     "test/ar_mase_k", "test/coverage_k")) or k in ("train/ppl", "epochs", "tokens_per_s"))}
    if "lr_find/suggestion" in metrics:
        lr = metrics["lr_find/suggestion"]
        hint = "" if metrics["status"] != "tuned" or lr is None else f"; train with it: tune.apply=true or optimizer.lr={lr:.4g}"
        print(f"lr finder: suggested lr {lr if lr is None else format(lr, '.4g')} (configured "
              f"{metrics['lr_find/configured']}){hint}; plot: {metrics.get('lr_find/plot')}")
    if metrics.get("status") == "tuned":
        return None
    if metrics.get("status") == "debug":
        log.info("debug run (recorded as status \"debug\", not as a result)")
    log.info("final: %s", json.dumps(summary))
    if "sample" in metrics:
        log.info("sample: %s", metrics["sample"])
    log.info("run directory: %s", output_dir)
    return metrics.get(cfg.get("optimized_metric"))
