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
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from rnnlab.callbacks import InterruptCheckpoint
from rnnlab.checkpoint_io import remove_stale_temporaries
from rnnlab.errors import CheckpointWriteError, ConfigError, DivergenceError
from rnnlab.run.build import RunParts, build_run
from rnnlab.run.outputs import flat_hparams, trained_metrics, write_metrics
from rnnlab.run.resume import FinishedRun, check_checkpoint, checkpoint_dir

log = logging.getLogger(__name__)
# Training batches are gathered on the training device from a corpus already there
# (rnnlab.data.sampling.window_loader): Lightning's advice to add DataLoader workers does not apply.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
# With check_val_every_n_epoch > 1 the end-of-epoch checkpoint runs before the first validation has
# logged the monitored metric; Lightning warns then, and raises by itself if it is still missing
# after a validation (a misnamed metric), so the early warning only misleads.
warnings.filterwarnings("ignore", message=r".*could not find the monitored key in the returned metrics.*")


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """Name the option when the requested accelerator is missing, before Lightning does it less clearly."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine: use cpu or auto")


def validate_trainer_options(trainer_cfg: DictConfig) -> None:
    """Options Lightning would accept silently or reject obscurely, named here."""
    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps", -1)
    ok = isinstance(max_epochs, int) and not isinstance(max_epochs, bool) and (
        max_epochs >= 1 or (max_epochs == -1 and isinstance(max_steps, int) and max_steps > 0))
    if not ok:
        raise ConfigError(f"trainer.max_epochs={max_epochs!r} is invalid: must be a positive integer "
                          "(or -1 together with a positive trainer.max_steps)")


def train(parts: RunParts, ckpt_path: str | None, output_dir: Path) -> None:
    """Lightning's fit; on Ctrl-C or SIGTERM, record the interruption and say how to resume, exit status 1."""
    trainer = parts.trainer
    interrupt = next((cb for cb in trainer.callbacks if isinstance(cb, InterruptCheckpoint)), None)
    try:
        # Checkpoints hold only data (rnnlab.models.spec): loaded without unpickling code.
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt_path, weights_only=True)
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


def log_results(parts: RunParts, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """The run's settings with its results, for TensorBoard's HParams view; then close the loggers."""
    final = {f"final/{k}": v for k, v in metrics.items() if "/" in k and isinstance(v, float)
             and not k.startswith(("train/loss", "train/grad_norm", "lr-"))}
    for logger in parts.trainer.loggers:
        logger.log_hyperparams(flat_hparams(cfg), metrics=final)
        logger.finalize("success")


def train_and_evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The whole job: seed, build, check, train, evaluate; returns the metrics written to metrics.json."""
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    check_accelerator(cfg.trainer)
    validate_trainer_options(cfg.trainer)
    parts = build_run(cfg)
    log.info("data: %s", parts.datamodule.describe())
    # Before anything is written: a refused resume leaves the run directory as it was.
    ckpt_path = check_checkpoint(cfg.get("ckpt_path"), parts.module, parts.trainer, output_dir)
    remove_stale_temporaries(checkpoint_dir(parts.trainer, output_dir))  # left by a process killed while saving
    for logger in parts.trainer.loggers:
        logger.log_hyperparams(flat_hparams(cfg))

    start = time.perf_counter()
    train(parts, ckpt_path, output_dir)
    metrics: dict[str, Any] = {"status": "ok", **trained_metrics(parts.trainer)}
    metrics.update(evaluate(parts))
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    metrics["seed"] = cfg.seed
    log_results(parts, cfg, metrics)
    if parts.trainer.is_global_zero:
        write_metrics(output_dir, metrics)
    return metrics


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main_task(cfg: DictConfig) -> float | None:
    """Hydra task: run the job, report, and turn user errors into one line instead of a traceback."""
    if cfg.get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
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
        if isinstance(e, (DivergenceError, CheckpointWriteError)) and last.is_file():
            record["last_good_checkpoint"] = str(last)
        write_metrics(output_dir, record)
        if _is_multirun():
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    summary = {k: v for k, v in metrics.items()
               if v is not None and (k.startswith(("val/", "test/mse_k", "test/mse_multistep", "test/mase_k", "test/naive_mase_k", "test/snaive_mase_k")) or k in ("train/ppl", "epochs", "tokens_per_s"))}
    log.info("final: %s", json.dumps(summary))
    if "sample" in metrics:
        log.info("sample: %s", metrics["sample"])
    log.info("run directory: %s", output_dir)
    return metrics.get(cfg.get("optimized_metric"))
