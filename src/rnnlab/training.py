"""The task function behind `train.py`: build everything from the Hydra config, fit, write metrics.json.

Errors a user can fix (ConfigError) and divergence (DivergenceError) end a single run with one
line on stderr and a metrics.json that records the failure; inside a multirun they are re-raised
so Hydra marks that job failed while the other jobs go on.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import get_method, instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden
from omegaconf import DictConfig, OmegaConf

from rnnlab.callbacks import InterruptCheckpoint
from rnnlab.errors import ConfigError, DivergenceError
from rnnlab.metrics import finite_or_none

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
# Training batches are gathered on the training device from a corpus already there
# (rnnlab.data.sampling.window_loader): Lightning's advice to add DataLoader workers does not apply.
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
# With check_val_every_n_epoch > 1 the end-of-epoch checkpoint runs before the first validation has
# logged the monitored metric; Lightning warns then, and raises by itself if it is still missing
# after a validation (a misnamed metric), so the early warning only misleads.
warnings.filterwarnings("ignore", message=r".*could not find the monitored key in the returned metrics.*")


def build(node: DictConfig, name: str = "", **kwargs) -> Any:
    """hydra.utils.instantiate, with a user error inside the target surfaced as one clear line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        match = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if isinstance(cause, TypeError) and match:
            target = get_method(node._target_)
            allowed = [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
            raise ConfigError(f"{name + '.' if name else ''}{match.group(1)} is not an option of {node._target_}: "
                              f"allowed are {', '.join(allowed)}") from None
        raise


def check_accelerator(trainer_cfg: DictConfig) -> None:
    """Name the option when the requested accelerator is missing, before Lightning does it less clearly."""
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine: use cpu or auto")


def check_checkpoint(ckpt_path: str | None, module: L.LightningModule) -> None:
    """A resume checkpoint must exist and hold this model's weights (same parameter names and shapes)."""
    if ckpt_path in (None, "last"):
        return
    if not Path(ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a file: give a checkpoint path, last, or null")
    try:
        # mmap: only the tensors' metadata is read here; Lightning loads the weights once, in fit.
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        saved = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    except Exception as e:  # not a Lightning checkpoint at all
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a readable Lightning checkpoint ({type(e).__name__})") from None
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if saved != wanted:
        diff = sorted(set(saved) ^ set(wanted)) or sorted(k for k in wanted if saved[k] != wanted[k])
        raise ConfigError(f"ckpt_path={ckpt_path!r} holds another model's weights (differs in {diff[0]}, ...): "
                          "resume with the model, data and options it was trained with")


def validate_trainer_options(trainer_cfg: DictConfig) -> None:
    """Options Lightning would accept silently or reject obscurely, named here."""
    max_epochs, max_steps = trainer_cfg.get("max_epochs"), trainer_cfg.get("max_steps", -1)
    ok = isinstance(max_epochs, int) and not isinstance(max_epochs, bool) and (
        max_epochs >= 1 or (max_epochs == -1 and isinstance(max_steps, int) and max_steps > 0))
    if not ok:
        raise ConfigError(f"trainer.max_epochs={max_epochs!r} is invalid: must be a positive integer "
                          "(or -1 together with a positive trainer.max_steps)")


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as flat scalar hyperparameters for TensorBoard's HParams view."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if not str(k).startswith("_"):
                    walk(v, f"{prefix}{k}/")
        else:
            out[prefix.rstrip("/")] = node if isinstance(node, (int, float, str, bool)) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return {k: v for k, v in out.items() if k.split("/")[0] in ("data", "model", "optimizer", "module", "trainer", "seed")}


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json atomically: a reader never sees a half-written file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = output_dir / METRICS_FILE, output_dir / (METRICS_FILE + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Build data, model, trainer from `cfg`, train, and return the final metrics (also written to metrics.json)."""
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = build(cfg.data, "data")
    datamodule.setup("fit")
    log.info("data: %s", datamodule.describe())
    module = build(cfg.module, "module", **datamodule.module_kwargs())

    check_accelerator(cfg.trainer)
    validate_trainer_options(cfg.trainer)
    callbacks = [build(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [build(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    try:
        trainer: L.Trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers)
    except (MisconfigurationException, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"trainer: {e}") from None
    for logger in trainer.loggers:
        logger.log_hyperparams(flat_hparams(cfg))

    ckpt_path = cfg.get("ckpt_path")
    check_checkpoint(ckpt_path, module)
    start = time.perf_counter()
    try:
        # Our checkpoints store the core and optimizer factories: full unpickling (trusted files only).
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False)
    except SystemExit:
        if trainer.interrupted and trainer.is_global_zero:
            saved = [cb.path for cb in trainer.callbacks if isinstance(cb, InterruptCheckpoint) and cb.path]
            hint = f"; resume with ckpt_path={saved[0]}" if saved else ""
            write_metrics(output_dir, {"status": "interrupted", "epochs": trainer.current_epoch,
                                       "global_step": trainer.global_step, "checkpoint": saved[0] if saved else None})
            print(f"interrupted at epoch {trainer.current_epoch}, step {trainer.global_step}{hint}", file=sys.stderr)
        raise

    metrics: dict[str, Any] = {"status": "ok"}
    for name, value in trainer.callback_metrics.items():
        if "/" in name and value.numel() == 1:
            metrics[name] = finite_or_none(value)
    if is_overridden("test_step", module) and is_overridden("test_dataloader", datamodule):
        # Test the weights that scored best on validation (early stopping), as Lightning's ckpt_path="best" does.
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        for results in trainer.test(module, datamodule=datamodule, verbose=False, ckpt_path=best or None,
                                    weights_only=False):
            metrics.update({k: finite_or_none(v) for k, v in results.items()})
    metrics["epochs"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    if "train/tokens_per_s" in metrics:
        metrics["tokens_per_s"] = metrics["train/tokens_per_s"]
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    metrics["seed"] = cfg.seed
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.best_model_path:
        metrics["best/" + str(ckpt.monitor)] = finite_or_none(ckpt.best_model_score)
        metrics["best_checkpoint"] = ckpt.best_model_path
    for cb in trainer.callbacks:
        if hasattr(cb, "summary"):
            metrics.update(cb.summary(trainer, module))
    final = {f"final/{k}": v for k, v in metrics.items() if "/" in k and isinstance(v, float)
             and not k.startswith(("train/loss", "train/grad_norm", "lr-"))}
    for logger in trainer.loggers:  # with metrics, TensorBoard's HParams view lists this run and its results
        logger.log_hyperparams(flat_hparams(cfg), metrics=final)
        logger.finalize("success")
    if trainer.is_global_zero:
        write_metrics(output_dir, metrics)
    return metrics


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main_task(cfg: DictConfig) -> float | None:
    """Hydra task: run `fit`, report, and turn user errors into one line instead of a traceback."""
    if cfg.get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    output_dir = Path(cfg.paths.output_dir)
    try:
        metrics = fit(cfg)
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
