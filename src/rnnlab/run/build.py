"""Build a run's parts from the composed config: data, LightningModule, callbacks, loggers, Trainer,
and the evaluation steps that follow training."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.plugins.io import CheckpointIO
from omegaconf import DictConfig, OmegaConf

from rnnlab.checkpoint_io import AsyncAtomicCheckpointIO, AtomicCheckpointIO
from rnnlab.errors import ConfigError
from rnnlab.extras import missing_package
from rnnlab.options import config_path

log = logging.getLogger(__name__)


@dataclass
class RunParts:
    datamodule: L.LightningDataModule
    module: L.LightningModule
    trainer: L.Trainer
    evaluation: dict[str, Any] = field(default_factory=dict)  # name -> step(trainer, module, datamodule) -> metrics


def build(node: DictConfig, name: str = "", **kwargs) -> Any:
    """hydra.utils.instantiate, with a user error inside the target surfaced as one clear line.

    rnnlab.schema has checked every option before; this is the fallback for what only the target
    itself can tell (the Trainer's checks of devices against the machine, for example)."""
    try:
        with config_path(name):
            return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, ImportError):  # an optional extra (a logger's package) is not installed
            raise ConfigError(missing_package(name, cause) or f"{name} needs a package that is not installed: "
                              f"{str(cause).strip().splitlines()[0]}") from None
        if isinstance(cause, (MisconfigurationException, ValueError, TypeError)):
            # The Trainer's (or a callback's) own argument checks, or a package an option needs: one line.
            lines = str(cause).strip().splitlines()
            raise ConfigError(f"{name}: {lines[0] if lines else type(cause).__name__}") from None
        raise


def build_group(nodes: DictConfig | None, name: str) -> dict[str, Any]:
    """Every non-null entry of a config group of objects (callbacks, loggers, evaluation steps), by name;
    a factory may return None for an entry that its options switch off (callbacks.early_stopping)."""
    built = {key: build(node, f"{name}.{key}") for key, node in (nodes or {}).items() if node is not None}
    return {key: obj for key, obj in built.items() if obj is not None}


def trainer_plugins(trainer: DictConfig) -> list[Any]:
    """The config's `trainer.plugins` and the checkpoint writer: checkpoints are written beside their target,
    fsynced and renamed (rnnlab.checkpoint_io), on every filesystem, by a writer thread while training goes on
    (AsyncAtomicCheckpointIO), unless the config names a CheckpointIO plugin of its own, which then writes them
    (with a warning in the run's log: not atomically by us)."""
    node = trainer.get("plugins")
    given = [] if node is None else build(node, "trainer.plugins", _convert_="all")
    plugins = list(given) if isinstance(given, (list, tuple)) else [given]
    own = [p for p in plugins if isinstance(p, CheckpointIO)]
    if own and isinstance(own[0], (AtomicCheckpointIO, AsyncAtomicCheckpointIO)):
        return plugins  # rnnlab's writer, e.g. AtomicCheckpointIO: every write done before training goes on
    if own:
        log.warning("trainer.plugins: checkpoints are written by %s, not by rnnlab's atomic writer (a kill while "
                    "saving may leave a partial file)", type(own[0]).__name__)
        return plugins
    return [*plugins, AsyncAtomicCheckpointIO()]


def unchanged_deterministic(value: Any) -> Any:
    """`trainer.deterministic`, with false passed as None when torch's flag is already off: Lightning then leaves
    the flag alone instead of calling torch.use_deterministic_algorithms(False), which changes nothing there but
    imports torch._inductor and torch._dynamo to set the compiler's copy of the flag (with
    rnnlab.compat.defer_dynamo_import, about 1.5 s of an evaluation's start-up on a 2-core CPU; a training run
    imports them anyway with torch's optimizer: docs/performance.md "Issue 29, round three"). A process where an
    earlier run turned it on (a multirun sweeping trainer.deterministic) still gets it turned off."""
    import torch

    if value is False and not torch.are_deterministic_algorithms_enabled():
        return None
    return value


def build_trainer(options: DictConfig | dict, **kwargs) -> L.Trainer:
    """The Trainer of a training run or an evaluation, trainer.deterministic as unchanged_deterministic says."""
    if isinstance(options, DictConfig):
        options = OmegaConf.to_container(options, resolve=True)
    options = {**options, "deterministic": unchanged_deterministic(options.get("deterministic"))}
    return build(OmegaConf.create(options), "trainer", **kwargs)


def build_run(cfg: DictConfig) -> RunParts:
    """Data first (the module needs its vocabulary or series), then the module, then the Trainer."""
    datamodule = build(cfg.data, "data")
    datamodule.setup("fit")
    module = build(cfg.module, "module", **datamodule.module_kwargs())
    callbacks = list(build_group(cfg.get("callbacks"), "callbacks").values())
    if cfg.trainer.get("fast_dev_run") or cfg.trainer.get("enable_checkpointing") is False:
        # One switch turns off both checkpoints (best and last; Lightning refuses enable_checkpointing=false
        # beside a ModelCheckpoint). Under fast_dev_run Lightning skips checkpoints, except ModelCheckpoint's
        # save_last in on_train_end (2.6): without the callbacks no last.ckpt from one batch passes for a result.
        callbacks = [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)]
    if cfg.trainer.get("enable_progress_bar") is False:  # the one switch: the bar from the progress_bar group goes too
        callbacks = [cb for cb in callbacks if not isinstance(cb, ProgressBar)]
    loggers = list(build_group(cfg.get("logger"), "logger").values())
    # The plugins are built above: the node goes without them (a single plugin node would not merge with a list).
    options = OmegaConf.to_container(cfg.trainer, resolve=True)
    options.pop("plugins", None)
    trainer = build_trainer(options, callbacks=callbacks, logger=loggers, plugins=trainer_plugins(cfg.trainer))
    return RunParts(datamodule, module, trainer, build_group(cfg.get("evaluation"), "evaluation"))
