"""Model parts as plain data: what a checkpoint stores, and the builders that make objects from it.

A checkpoint's hyperparameters hold only names, numbers, strings and lists, so it loads with
`torch.load(weights_only=True)` and survives moves and renames of Python callables. A *spec* is a
config node of conf/model, conf/optimizer or a scheduler as a plain dict, e.g.
`{"_target_": "rnnlab.models.build_core", "kind": "lstm", "hidden_size": 256}` (for a recurrent
core `_target_` may be left out: `{"kind": "gru"}`) or `{"_target_": "torch.optim.SGD", "lr": 1.0}`.
`_partial_` (in configs written before 2026-12) is ignored: the builders supply the run-time arguments
(input size, parameters, optimizer).

Each builder accepts only targets of its kind (the core factory or an nn.Module class, an
optimizer class, a scheduler class), so a spec read from a checkpoint cannot call arbitrary code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from rnnlab.errors import ConfigError

# The checkpoint format this code writes and reads (`checkpoint[FORMAT_KEY]`). Format 1 (no key)
# pickled the core and optimizer factories (functools.partial) and needs full unpickling.
FORMAT_KEY = "rnnlab_format"
CHECKPOINT_FORMAT = 2
CORE_FACTORY = "rnnlab.models.build_core"


def plain_spec(spec: Any, option: str = "spec") -> dict | None:
    """A config node (DictConfig or dict) as a plain dict without `_partial_`; None stays None."""
    if spec is None:
        return None
    if isinstance(spec, (DictConfig, ListConfig)):
        spec = OmegaConf.to_container(spec, resolve=True)
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{option} must be a config node with _target_ and its options (plain data), "
                          f"not {type(spec).__name__}")
    return {str(k): _plain_value(v) for k, v in spec.items() if k != "_partial_"}


def _plain_value(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, Mapping):
        return {str(k): _plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"{value!r} is not plain data (a number, string, list or mapping): checkpoints store only those")


def _target(spec: Mapping, default: str | None, option: str) -> Callable:
    name = spec.get("_target_", default)
    if not isinstance(name, str):
        raise ConfigError(f"{option}._target_ is missing: give the class or factory to build")
    try:
        return get_object(name)
    except Exception:
        raise ConfigError(f"{option}._target_={name!r} cannot be imported") from None


def _options(spec: Mapping) -> dict:
    return {k: v for k, v in spec.items() if not k.startswith("_")}


def core_target(spec: Mapping) -> Callable[..., nn.Module]:
    """The core's factory: rnnlab.models.build_core (by `kind`) or an nn.Module class such as the book's MLP."""
    from rnnlab.models.cores import build_core

    target = _target(spec, CORE_FACTORY, "model")
    if target is not build_core and not (isinstance(target, type) and issubclass(target, nn.Module)):
        raise ConfigError(f"model._target_={spec.get('_target_')!r} is invalid: must be {CORE_FACTORY} "
                          "or an nn.Module class")
    return target


def core_from_spec(spec: Mapping, input_size: int) -> nn.Module:
    """Build the core a spec describes, for inputs of width `input_size`."""
    return core_target(spec)(input_size=input_size, **_options(spec))


def optimizer_from_spec(spec: Mapping, params) -> torch.optim.Optimizer:
    """Build the optimizer a spec describes (a torch.optim.Optimizer class and its arguments) over `params`."""
    target = _target(spec, None, "optimizer")
    if not (isinstance(target, type) and issubclass(target, torch.optim.Optimizer)):
        raise ConfigError(f"optimizer._target_={spec.get('_target_')!r} is invalid: "
                          "must be a torch.optim.Optimizer class")
    return target(params, **_options(spec))


def scheduler_from_spec(spec: Mapping, optimizer: torch.optim.Optimizer):
    """Build the learning-rate scheduler a spec describes (a torch.optim.lr_scheduler class) for `optimizer`."""
    target = _target(spec, None, "module.scheduler")
    if not (isinstance(target, type) and issubclass(target, torch.optim.lr_scheduler.LRScheduler)):
        raise ConfigError(f"module.scheduler._target_={spec.get('_target_')!r} is invalid: "
                          "must be a torch.optim.lr_scheduler class")
    return target(optimizer, **_options(spec))


def spec_of_partial(factory: Any) -> dict | None:
    """The spec of a format-1 checkpoint's factory (a functools.partial or a class), for conversion."""
    import functools

    if factory is None:
        return None
    func, args, kwargs = factory, (), {}
    if isinstance(factory, functools.partial):
        func, args, kwargs = factory.func, factory.args, dict(factory.keywords)
    name = f"{func.__module__}.{func.__qualname__}"
    if name.startswith("rnnlab.models.cores.") and func.__name__ == "build_core":
        name = CORE_FACTORY
        if args:
            kwargs = {"kind": args[0], **kwargs}
    elif args:
        raise ConfigError(f"cannot convert {factory!r}: positional arguments")
    return {"_target_": name, **_plain_value(kwargs)}
