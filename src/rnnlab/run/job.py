"""The task function behind `train.py`: build everything from the Hydra config, train, evaluate,
write metrics.json.

Errors a user can fix (ConfigError) and divergence (DivergenceError) end a single run with one
line on stderr and a metrics.json that records the failure; inside a multirun they are re-raised
so Hydra marks that job failed while the other jobs go on.
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
from rnnlab.errors import ConfigError, DivergenceError
from rnnlab.run.build import RunParts, build_run
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import RunLogger, checkpoint_step
from rnnlab.run.outputs import trained_metrics, write_metrics
from rnnlab.run.resume import check_checkpoint

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
    """Lightning's fit; on Ctrl-C, record the interruption and say how to resume before exiting."""
    trainer = parts.trainer
    try:
        # Our checkpoints store the core and optimizer factories: full unpickling (trusted files only).
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt_path, weights_only=False)
    except SystemExit:
        if trainer.interrupted and trainer.is_global_zero:
            saved = [cb.path for cb in trainer.callbacks if isinstance(cb, InterruptCheckpoint) and cb.path]
            hint = f"; resume with ckpt_path={saved[0]}" if saved else ""
            write_metrics(output_dir, {"status": "interrupted", "epochs": trainer.current_epoch,
                                       "global_step": trainer.global_step, "checkpoint": saved[0] if saved else None})
            print(f"interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}{hint}", file=sys.stderr)
        raise


def evaluate(parts: RunParts) -> dict[str, Any]:
    """The evaluation steps of the config's `evaluation` group, in order, after training."""
    metrics: dict[str, Any] = {}
    for step in parts.evaluation.values():
        metrics.update(step(parts.trainer, parts.module, parts.datamodule))
    return metrics


def start_logging(parts: RunParts, cfg: DictConfig) -> None:
    """Before training: a resumed run's event file starts at the checkpoint's step (TensorBoard then
    drops what a killed run logged after it); the run's settings go to the HParams dashboard."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":
        ckpt = parts.trainer.checkpoint_callback
        ckpt_path = str(Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}") if ckpt else None
    step = checkpoint_step(ckpt_path)
    for logger in parts.trainer.loggers:
        if isinstance(logger, RunLogger):
            logger.resume_at(step)
        logger.log_hyperparams(flat_settings(cfg))


def finish_logging(parts: RunParts, status: str = "success") -> None:
    """The end of the run: each logger closes once (one event file per run)."""
    for logger in parts.trainer.loggers:
        if isinstance(logger, RunLogger):
            logger.close(status)
        else:
            logger.finalize(status)


def train_and_evaluate(cfg: DictConfig) -> dict[str, Any]:
    """The whole job: seed, build, check, train, evaluate; returns the metrics written to metrics.json."""
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    check_accelerator(cfg.trainer)
    validate_trainer_options(cfg.trainer)
    parts = build_run(cfg)
    log.info("data: %s", parts.datamodule.describe())
    check_checkpoint(cfg.get("ckpt_path"), parts.module)
    start_logging(parts, cfg)

    start = time.perf_counter()
    train(parts, cfg.get("ckpt_path"), output_dir)
    metrics: dict[str, Any] = {"status": "ok", **trained_metrics(parts.trainer)}
    metrics.update(evaluate(parts))
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    metrics["seed"] = cfg.seed
    finish_logging(parts)
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
    except (ConfigError, DivergenceError) as e:
        record = {"status": "config_error" if isinstance(e, ConfigError) else "diverged", "error": str(e)}
        last = output_dir / "checkpoints" / "last.ckpt"
        if isinstance(e, DivergenceError) and last.is_file():
            record["last_good_checkpoint"] = str(last)
        write_metrics(output_dir, record)
        if _is_multirun():
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, ConfigError) else 1)
    summary = {k: v for k, v in metrics.items()
               if v is not None and (k.startswith(("val/", "test/mse_k", "test/mse_multistep")) or k in ("train/ppl", "epochs", "tokens_per_s"))}
    log.info("final: %s", json.dumps(summary))
    if "sample" in metrics:
        log.info("sample: %s", metrics["sample"])
    log.info("run directory: %s", output_dir)
    return metrics.get(cfg.get("optimized_metric"))
