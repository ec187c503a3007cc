"""Build a run's parts from the composed config: data, LightningModule, callbacks, loggers, Trainer,
and the evaluation steps that follow training."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import get_method, instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from rnnlab.checkpoint_io import AtomicCheckpointIO
from rnnlab.errors import ConfigError


@dataclass
class RunParts:
    datamodule: L.LightningDataModule
    module: L.LightningModule
    trainer: L.Trainer
    evaluation: dict[str, Any] = field(default_factory=dict)  # name -> step(trainer, module, datamodule) -> metrics


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
        if isinstance(cause, (MisconfigurationException, ValueError)):
            # The Trainer's (or an optimizer's) own argument checks: one line that names the group.
            raise ConfigError(f"{name}: {str(cause).strip().splitlines()[0]}") from None
        raise


def build_group(nodes: DictConfig | None, name: str) -> dict[str, Any]:
    """Every non-null entry of a config group of objects (callbacks, loggers, evaluation steps), by name."""
    return {key: build(node, f"{name}.{key}") for key, node in (nodes or {}).items() if node is not None}


def build_run(cfg: DictConfig) -> RunParts:
    """Data first (the module needs its vocabulary or series), then the module, then the Trainer."""
    datamodule = build(cfg.data, "data")
    datamodule.setup("fit")
    module = build(cfg.module, "module", **datamodule.module_kwargs())
    callbacks = list(build_group(cfg.get("callbacks"), "callbacks").values())
    loggers = list(build_group(cfg.get("logger"), "logger").values())
    # Checkpoints written beside their target, fsynced and renamed (rnnlab.checkpoint_io), on every filesystem.
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()])
    return RunParts(datamodule, module, trainer, build_group(cfg.get("evaluation"), "evaluation"))
