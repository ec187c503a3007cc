"""The task function behind `train.py`: build everything from the Hydra config, train, evaluate,
write metrics.json.

Errors a user can fix (ConfigError), divergence (DivergenceError) and a checkpoint that cannot be
written (CheckpointWriteError, e.g. a full disk) end a single run with one line on stderr and a
metrics.json that records the failure; inside a multirun they are re-raised so Hydra marks that job
failed while the other jobs go on. Ctrl-C and SIGTERM stop training at a batch boundary with
interrupted.ckpt (rnnlab.callbacks.InterruptCheckpoint), `status: interrupted` and exit status 1.
Resuming a finished run changes nothing and exits 0 (rnnlab.run.resume.FinishedRun).
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
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import RunLogger, checkpoint_step
from rnnlab.run.outputs import trained_metrics, write_metrics
from rnnlab.run.quiet import lightning_logs_to_the_run_log, silence_advertisements
from rnnlab.run.resume import FinishedRun, check_checkpoint, checkpoint_dir
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
# Lightning 2.6 with torch 2.13 warns at every fit that it still uses torch's deprecated LeafSpec
# (lightning/pytorch/utilities/_pytree.py): a note for Lightning's developers, not for a run's user.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
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


def train(parts: RunParts, ckpt_path: str | None, output_dir: Path) -> None:
    """Lightning's fit; on Ctrl-C or SIGTERM, record the interruption and say how to resume, exit status 1."""
    trainer = parts.trainer
    interrupt = next((cb for cb in trainer.callbacks if isinstance(cb, InterruptCheckpoint)), None)
    try:
        # Checkpoints hold only data (rnnlab.models.spec): loaded without unpickling code.
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt_path, weights_only=True)
    except MisconfigurationException as e:
        # The Trainer's checks that need the data (e.g. limit_train_batches=0.1 of 4 batches): one line.
        raise ConfigError(trainer_error_line(str(e))) from None
    except SystemExit as e:  # Lightning's exit after KeyboardInterrupt, or its SIGTERMException
        if not trainer.interrupted:
            raise
        if trainer.is_global_zero:
            saved = interrupt.path if interrupt is not None else None
            hint = f"; resume with ckpt_path={saved}" if saved else ""
            write_metrics(output_dir, {"status": "interrupted", "signal": interrupt.signal if interrupt else None,
                                       "epochs": trainer.current_epoch, "global_step": trainer.global_step,
                                       "checkpoint": saved})
            by = f" by {interrupt.signal}" if interrupt is not None and interrupt.signal else ""
            print(f"interrupted{by} at epoch {trainer.current_epoch}, step {trainer.global_step}{hint}", file=sys.stderr)
        raise SystemExit(1) from e
    if interrupt is not None and interrupt.pending:
        log.warning("%s arrived after the last training batch: training is complete, finishing the run", interrupt.signal)


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
        if type(logger).__name__ == "MLFlowLogger":
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


def train_and_evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The whole job: seed, build, check, train, evaluate; returns the metrics written to metrics.json."""
    output_dir = Path(cfg.paths.output_dir)
    validate(cfg)  # every option's type and range, before anything is built or written
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    parts = build_run(cfg)
    log.info("data: %s", parts.datamodule.describe())
    # Before anything is written: a refused resume leaves the run directory as it was.
    ckpt_path = check_checkpoint(cfg.get("ckpt_path"), parts.module, parts.trainer, output_dir)
    remove_stale_temporaries(checkpoint_dir(parts.trainer, output_dir))  # left by a process killed while saving
    start_logging(parts, cfg, ckpt_path)  # the first write of an event file: after every check

    tuned: dict[str, Any] = {}
    if cfg.get("tune") and cfg.tune.get("lr_find"):
        tuned = find_learning_rate(parts, cfg.tune, output_dir)
        if not cfg.tune.get("apply"):
            record = {"status": "tuned", **tuned}
            if parts.trainer.is_global_zero:
                write_metrics(output_dir, record)
            return record

    start = time.perf_counter()
    train(parts, ckpt_path, output_dir)
    status = "debug" if is_debug_run(cfg) else "ok"
    metrics: dict[str, Any] = {"status": status, **tuned, **trained_metrics(parts.trainer)}
    metrics.update(evaluate(parts))
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    metrics["seed"] = cfg.seed
    finish_logging(parts)
    if parts.trainer.is_global_zero:
        write_metrics(output_dir, metrics)
    return metrics


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
    try:
        metrics = train_and_evaluate(cfg)
    except FinishedRun as e:  # metrics.json and the checkpoints stay as they are
        print(str(e), file=sys.stderr)
        return e.metrics.get(cfg.get("optimized_metric"))
    except (ConfigError, DivergenceError, CheckpointWriteError) as e:
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
            write_metrics(output_dir, record)
        if _is_multirun():
            raise
        if main_process:
            print(error_line(e), file=sys.stderr)
        sys.exit(USER_ERROR_EXIT if isinstance(e, ConfigError) else 1)
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
