"""Checks of the Trainer's and the core's options against each other and against this machine: the
accelerator is present, the devices make sense on it, the core's weights fit its memory. They read more
than one node of the config (rnnlab.schema.TARGET_CHECKS runs them before anything is built)."""

from __future__ import annotations

import os
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import ConfigError
from rnnlab.options import is_int, located, shown


def check_trainer(node: dict, path: str, cfg: DictConfig) -> None:
    max_epochs, max_steps = node.get("max_epochs"), node.get("max_steps", -1)
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1 or (max_epochs == -1 and max_steps < 1)):
        raise ConfigError(f"{path}.max_epochs={max_epochs!r} is invalid: must be a positive integer "
                          f"(or -1 together with a positive {path}.max_steps)")
    if max_steps == 0:
        raise ConfigError(f"{path}.max_steps=0 is invalid: it trains nothing; give -1 (no limit) or a positive integer")
    if node.get("limit_train_batches") == 0 and not isinstance(node.get("limit_train_batches"), bool):
        raise ConfigError(f"{path}.limit_train_batches={node['limit_train_batches']!r} is invalid: it trains nothing; "
                          "give a number of batches >= 1, a fraction in (0, 1], or null (all)")
    accelerator = node.get("accelerator", "auto")
    if accelerator not in (None, "auto", "cpu"):
        _check_accelerator_available(f"{path}.accelerator", accelerator)
    _check_precision_plugin(node, path)
    devices = node.get("devices", "auto")
    if _runs_on_cpu(accelerator) and devices != "auto" and not (is_int(devices) and devices >= 1) and not (
            isinstance(devices, str) and devices.strip().isdigit() and int(devices) >= 1):
        # Lightning's CPUAccelerator takes a number of processes only (TypeError otherwise, 2.6).
        raise ConfigError(f"{path}.devices={shown(devices)} is invalid on the CPU: give a number of processes (1, or "
                          f"more with {path}.strategy=ddp); -1 (all) and device lists select GPUs "
                          f"({path}.accelerator=gpu)")


def _check_precision_plugin(node: dict, path: str) -> None:
    """A Precision plugin in trainer.plugins and trainer.precision both set the precision (Lightning refuses)."""
    from lightning.pytorch.plugins import Precision

    plugins = node.get("plugins")
    plugins = plugins if isinstance(plugins, list) else [plugins] if plugins else []
    for plugin in plugins:
        obj = located(plugin.get("_target_"))
        if node.get("precision") is not None and isinstance(obj, type) and issubclass(obj, Precision):
            raise ConfigError(f"{path}.precision={node['precision']} and {path}.plugins ({plugin['_target_']}) both "
                              f"set the precision: give one of them ({path}.precision=null with a precision plugin)")


def _runs_on_cpu(accelerator: Any) -> bool:
    """Whether the Trainer will run on the CPU: asked for, or `auto` on a machine without CUDA or MPS."""
    if accelerator == "cpu":
        return True
    if accelerator not in (None, "auto"):
        return False
    import torch

    return not torch.cuda.is_available() and not torch.backends.mps.is_available()


def _check_accelerator_available(option: str, accelerator: str) -> None:
    """A named accelerator must be present on this machine (before Lightning says it less clearly)."""
    import torch
    from lightning.pytorch.accelerators import AcceleratorRegistry

    if accelerator in ("gpu", "cuda"):
        ok = torch.cuda.is_available() or (
            accelerator == "gpu" and AcceleratorRegistry["mps"]["accelerator"].is_available())
        if not ok:
            raise ConfigError(f"{option}={accelerator} but no CUDA GPU is visible on this machine: use cpu or auto")
    elif not AcceleratorRegistry[accelerator]["accelerator"].is_available():
        raise ConfigError(f"{option}={accelerator} but no {accelerator.upper()} is available on this machine: "
                          "use cpu or auto")


def _core_parameters(node: dict) -> int:
    """The parameters of the core the config describes (input width 1: a lower bound), counted on the meta
    device: nothing is allocated, and every kind in CORES counts itself."""
    import torch

    options = {k: node[k] for k in ("kind", "hidden_size", "num_layers", "bidirectional", "nonlinearity") if k in node}
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from rnnlab.models.cores import build_core

        return sum(p.numel() for p in build_core(input_size=1, **options).parameters())


def _memory(cfg: DictConfig) -> tuple[int, str]:
    """Bytes of memory one training process has, and where: the GPU's for CUDA, else the machine's."""
    import torch

    accelerator = OmegaConf.select(cfg, "trainer.accelerator", default="auto")
    if accelerator in ("gpu", "cuda", "auto", None) and torch.cuda.is_available():
        return min(torch.cuda.get_device_properties(i).total_memory
                   for i in range(torch.cuda.device_count())), "each GPU's memory"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    processes = devices if is_int(devices) and devices > 1 and _runs_on_cpu(accelerator) else 1
    return memory // processes, "this machine's memory" + (f" per process of {processes}" if processes > 1 else "")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024


def check_core_fits(node: dict, path: str, cfg: DictConfig) -> None:
    """A core whose weights and gradients alone exceed the memory of the device it trains on is refused
    before anything is allocated."""
    if not all(is_int(node.get(k, 1)) for k in ("hidden_size", "num_layers")):
        return
    precision = str(OmegaConf.select(cfg, "trainer.precision", default=None) or "32")
    width = 8 if precision.startswith("64") else 2 if precision in ("16-true", "bf16-true", "16", "bf16") else 4
    params = _core_parameters(node)
    needed = 2 * width * params  # the weights and their gradients: a lower bound of what training holds
    memory, where = _memory(cfg)
    if needed > memory:
        options = f"{path}.hidden_size={node.get('hidden_size')}" + (
            f" with {path}.num_layers={node['num_layers']}" if node.get("num_layers", 1) > 1 else "") + (
            f" and {path}.bidirectional=true" if node.get("bidirectional") else "")
        raise ConfigError(f"{options} is too large: the {node.get('kind')} core alone has {params:.3g} parameters, "
                          f"{_size(needed)} with their gradients ({width}-byte values), more than {where} "
                          f"({_size(memory)}); use a smaller {path}.hidden_size")
