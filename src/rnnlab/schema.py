"""The config schema: every option's type and range, checked on the whole composed config before
anything is built, so that a bad value ends with one line and leaves no checkpoint, event file or result.

rnnlab's own classes declare their options once, in their signatures (rnnlab.options: `batch_size:
Annotated[int, POSITIVE_INT] = 32`, cross-field checks given to `@checked`); this module reads them for
each `_target_` node and names a bad value by its config path. Classes of other libraries (the Trainer,
torch's optimizers, Lightning's callbacks) have their rules in THIRD_PARTY_RULES below. Every `_target_`
node is also checked for keys its target does not take (from its signature), and every other node for
keys the config files do not declare for it (rnnlab.declared: `+tune.lr_finder=true`). What remains here
are the rules of top-level keys and the checks that need more than one node (a core against the
memory of the device, early stopping against the checkpoints); checks that need the data (a corpus
too short for one batch, a file that is not UTF-8) stay with the data code.
"""

from __future__ import annotations

import difflib
import inspect
import os
import warnings
from functools import lru_cache
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from rnnlab.declared import SKIPPED, Decl, command_line_key, declared
from rnnlab.errors import ConfigError
from rnnlab.options import (
    BOOL,
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    PREFIX,
    SEED,
    STRING,
    TEMPERATURE,
    Rule,
    check_values,
    choice,
    either,
    integer,
    is_int,
    is_number,
    list_of,
    nullable,
    number,
    rules_of,
    shown,
)

Check = Callable[[str, Any], None]  # (option, value) -> None, or a ConfigError naming the option


# Choices that come from the libraries themselves ---------------------------------------------------------
@lru_cache(maxsize=None)
def _lightning_choices() -> dict[str, tuple]:
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    from rnnlab.compat import precision_choices

    return {"accelerator": ("auto", "cpu", "gpu", *sorted(AcceleratorRegistry.available_accelerators() - {"cpu"})),
            "strategy": ("auto", *StrategyRegistry.available_strategies()),
            "precision": precision_choices()}


def _lightning_choice(name: str) -> Check:
    def check(option: str, value: Any) -> None:
        choice(*_lightning_choices()[name])(option, value)
    return check


DEVICES = either(integer(1), Rule(lambda v: v == -1 and is_int(v), ""), Rule(lambda v: v == "auto", ""),
                 list_of(NON_NEGATIVE_INT),
                 Rule(lambda v: isinstance(v, str) and v.replace(",", "").strip().isdigit(), ""),
                 allowed="must be a positive integer, -1 (all), auto, or a list of device indices")
BATCHES = either(NON_NEGATIVE_INT, number(0, 1), allowed="must be an integer >= 0 (batches) or a fraction in [0, 1]")
BETAS = list_of(FRACTION, 2, allowed="must be two numbers in [0, 1)")
PLUGIN = Rule(lambda v: isinstance(v, dict) and "_target_" in v, "")
PLUGINS = either(PLUGIN, list_of(PLUGIN), allowed="must be a list of nodes with a _target_ (Lightning's Precision, "
                 "CheckpointIO, ClusterEnvironment or LayerSync plugins); a precision by name is trainer.precision")

# Options of other libraries' classes, per `_target_`: one line each. ----------------------------------
THIRD_PARTY_RULES: dict[str, dict[str, Check]] = {
    "lightning.pytorch.Trainer": {
        "accelerator": _lightning_choice("accelerator"),
        "strategy": _lightning_choice("strategy"),
        "devices": DEVICES,
        "num_nodes": POSITIVE_INT,
        "precision": lambda o, v: None if v is None else _lightning_choice("precision")(o, v),
        "max_epochs": nullable(integer(-1, allowed="must be a positive integer or -1 (with trainer.max_steps)"),
                               "Lightning's default"),
        "min_epochs": nullable(NON_NEGATIVE_INT, "none"),
        "max_steps": integer(-1, allowed="must be -1 (no limit) or a positive integer"),
        "min_steps": nullable(NON_NEGATIVE_INT, "none"),
        "gradient_clip_val": nullable(NON_NEGATIVE, "no clipping"),
        "gradient_clip_algorithm": nullable(choice("norm", "value"), "norm"),
        "log_every_n_steps": nullable(integer(0, allowed="must be an integer >= 0 (0: no per-step logging)"),
                                      "50"),
        "check_val_every_n_epoch": nullable(POSITIVE_INT, "validate on val_check_interval only"),
        "val_check_interval": nullable(either(POSITIVE_INT, number(0, 1, low_open=True),
                                              allowed="must be a positive integer (batches) or a fraction in (0, 1]"),
                                       "once per epoch"),
        "limit_train_batches": nullable(BATCHES, "all"),
        "limit_val_batches": nullable(BATCHES, "all"),
        "limit_test_batches": nullable(BATCHES, "all"),
        "overfit_batches": BATCHES,
        "num_sanity_val_steps": nullable(integer(-1, allowed="must be an integer >= -1 (-1: all)"), "2"),
        "accumulate_grad_batches": POSITIVE_INT,
        "fast_dev_run": either(BOOL, NON_NEGATIVE_INT, allowed="must be true, false or an integer >= 0"),
        "enable_progress_bar": nullable(BOOL, "true"),
        "enable_model_summary": nullable(BOOL, "true"),
        "enable_checkpointing": nullable(BOOL, "true"),
        "deterministic": nullable(either(BOOL, choice("warn"), allowed="must be true, false or warn"), "false"),
        "benchmark": nullable(BOOL, "cuDNN's default"),
        "detect_anomaly": BOOL,
        "use_distributed_sampler": BOOL,
        "inference_mode": BOOL,
        "sync_batchnorm": BOOL,
        "reload_dataloaders_every_n_epochs": NON_NEGATIVE_INT,
        "plugins": nullable(PLUGINS, "the atomic checkpoint writer only"),
    },
    "torch.optim.SGD": {
        "lr": POSITIVE, "momentum": NON_NEGATIVE, "dampening": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
        "nesterov": BOOL, "maximize": BOOL,
    },
    "torch.optim.Adam": {
        "lr": POSITIVE, "betas": BETAS, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "amsgrad": BOOL,
        "maximize": BOOL,
    },
    "torch.optim.AdamW": {
        "lr": POSITIVE, "betas": BETAS, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "amsgrad": BOOL,
        "maximize": BOOL,
    },
    "torch.optim.lr_scheduler.CosineAnnealingLR": {"T_max": POSITIVE_INT, "eta_min": NON_NEGATIVE},
    "torch.optim.lr_scheduler.StepLR": {"step_size": POSITIVE_INT, "gamma": POSITIVE},
    "rnnlab.callbacks.early_stopping": {
        "patience": nullable(NON_NEGATIVE_INT, "off"),
        "monitor": STRING,
        "mode": choice("min", "max"),
        "min_delta": NON_NEGATIVE,
        "check_finite": BOOL,
        "stopping_threshold": nullable(number(), "none"),
        "divergence_threshold": nullable(number(), "none"),
        "check_on_train_epoch_end": nullable(BOOL, "Lightning's choice"),
    },
    "lightning.pytorch.callbacks.ModelCheckpoint": {
        "save_top_k": integer(-1, allowed="must be an integer >= -1 (-1: all)"),
        "mode": choice("min", "max"),
        "save_last": nullable(either(BOOL, choice("link"), allowed="must be true, false or link"), "false"),
        "every_n_epochs": nullable(NON_NEGATIVE_INT, "every epoch"),
        "every_n_train_steps": nullable(NON_NEGATIVE_INT, "off"),
        "save_on_train_epoch_end": nullable(BOOL, "Lightning's choice"),
    },
    "lightning.pytorch.callbacks.LearningRateMonitor": {"logging_interval": nullable(choice("step", "epoch"), "both")},
    "lightning.pytorch.callbacks.EMAWeightAveraging": {"decay": number(0, 1),
                                                       "update_every_n_steps": POSITIVE_INT},
}

# Top-level keys, by path.
PATH_RULES: dict[str, Check] = {
    "seed": SEED,
    "print_config": BOOL,
    "ckpt_path": nullable(Rule(lambda v: isinstance(v, str) and v != "", "must be a checkpoint path or last"),
                          "train from scratch"),
    "tune.lr_find": BOOL,
    "tune.apply": BOOL,
    "tune.min_lr": POSITIVE,
    "tune.max_lr": POSITIVE,
    "tune.num_training": integer(2, allowed="must be an integer >= 2 (steps of the range test)"),
    "tune.mode": choice("exponential", "linear"),
}


# Cross-field checks that need only the config -------------------------------------------------------
def _check_trainer(node: dict, path: str, cfg: DictConfig) -> None:
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
        obj = _located(plugin.get("_target_"))
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


def _check_core_fits(node: dict, path: str, cfg: DictConfig) -> None:
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


def _check_sgd(node: dict, path: str, cfg: DictConfig) -> None:
    if node.get("nesterov") and (not node.get("momentum") or node.get("dampening", 0)):
        raise ConfigError(f"{path}.nesterov=true is invalid: it needs {path}.momentum > 0 and {path}.dampening=0")


def _check_early_stopping(node: dict, path: str, cfg: DictConfig) -> None:
    """Stopping and the checkpoints read one metric the same way: a `mode` that differs from the
    checkpoint's would stop on the worst values."""
    checkpoint = OmegaConf.select(cfg, "callbacks.model_checkpoint", default=None)
    if node.get("patience") is None or not isinstance(checkpoint, DictConfig):
        return
    if node.get("monitor") == checkpoint.get("monitor") and "mode" in node and node["mode"] != checkpoint.get("mode"):
        raise ConfigError(f"{path}.mode={node['mode']} is invalid: callbacks.model_checkpoint keeps the "
                          f"{checkpoint.get('monitor')} with mode={checkpoint.get('mode')}; use the same mode")


def _check_tune(cfg: DictConfig) -> None:
    low, high = OmegaConf.select(cfg, "tune.min_lr"), OmegaConf.select(cfg, "tune.max_lr")
    if is_number(low) and is_number(high) and low >= high:
        raise ConfigError(f"tune.min_lr={low} is invalid: must be smaller than tune.max_lr={high}")


# Checks that read more than the node (the rest of the config, the machine), by `_target_`.
TARGET_CHECKS: dict[str, list[Callable[[dict, str, DictConfig], None]]] = {
    "rnnlab.models.build_core": [_check_core_fits],
    "rnnlab.callbacks.early_stopping": [_check_early_stopping],
    "lightning.pytorch.Trainer": [_check_trainer],
    "torch.optim.SGD": [_check_sgd],
}


# The validator -------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _located(target: str | None) -> Any:
    """The object a `_target_` names (None if it cannot be imported)."""
    if not isinstance(target, str):
        return None
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception:
        return None


def _by_object(table: dict[str, Any], target: str) -> Any:
    """The table entry for `target`, matched by the object it names, so re-exports match too."""
    if target in table:
        return table[target]
    obj = _located(target)
    return next((v for k, v in table.items() if obj is not None and _located(k) is obj), None)


def target_nodes(node: DictConfig | ListConfig, prefix: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every `_target_` node with its dotted path, in lists too (`trainer.plugins[0]`); interpolated
    children (`core: ${model}`) are checked where they are defined, and Hydra's own config is not the task's."""
    if isinstance(node, DictConfig) and "_target_" in node:
        yield prefix.rstrip("."), node
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        if prefix == "" and key == "hydra":
            continue
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node[key]
        if isinstance(child, (DictConfig, ListConfig)):
            yield from target_nodes(child, f"{prefix.rstrip('.')}[{key}]." if isinstance(node, ListConfig)
                                    else f"{prefix}{key}.")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def parameter_names(obj: Any) -> list[str] | None:
    """The keyword options `obj` takes, or None when it takes any (**kwargs) or has no signature."""
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind not in (inspect.Parameter.VAR_POSITIONAL,) and p.name != "self"]


def check_node(node: DictConfig, path: str, cfg: DictConfig | None = None) -> None:
    """One `_target_` node: its target imports, it has no unknown key, and every option is valid: by the
    rules its signature declares (rnnlab's classes, with their cross-field checks) or THIRD_PARTY_RULES."""
    target = node.get("_target_")
    obj = _located(target)
    if obj is None:
        raise ConfigError(f"{path}._target_={target!r} is invalid: it names nothing that can be imported")
    keys = [k for k in node.keys() if not str(k).startswith("_")]
    allowed = parameter_names(obj)
    if allowed is not None:
        for key in keys:
            if key not in allowed:
                raise ConfigError(f"{path}.{key} is not an option of {target}: allowed are "
                                  + ", ".join(a for a in allowed if not a.startswith("_")))
    third_party = _by_object(THIRD_PARTY_RULES, target)
    rules = third_party if third_party is not None else rules_of(obj)
    values = {}
    for key in keys:
        if OmegaConf.is_missing(node, key):
            if key in rules:
                raise ConfigError(f"{path}.{key} is missing: give a value")
            continue
        try:
            values[key] = _plain(node[key])
        except InterpolationResolutionError:  # a resolver that needs a Hydra run (paths.output_dir)
            continue
    name = f"{path}.{{}}".format
    if third_party is not None:
        for key, rule in rules.items():
            if key in values:
                rule(name(key), values[key])
    else:
        check_values(obj, values, name)
    for check in _by_object(TARGET_CHECKS, target) or []:
        check(values, path, cfg if cfg is not None else node)


# eval.py's own options (conf/eval.yaml), by path.
EVAL_PATH_RULES: dict[str, Check] = {
    "num_tokens": NON_NEGATIVE_INT,
    "temperature": TEMPERATURE,
    "seed": SEED,
    "prefix": nullable(PREFIX, "the training run's prefix"),
    "print_config": BOOL,
}


def _check_paths(cfg: DictConfig, rules: dict[str, Check]) -> None:
    for path, rule in rules.items():
        if OmegaConf.select(cfg, path, default="__absent__") != "__absent__":
            rule(path, _plain(OmegaConf.select(cfg, path)))


def check_declared_keys(cfg: DictConfig, entry: str) -> None:
    """Every key of a plain node is one the config files declare for it (rnnlab.declared); a map of named
    objects (callbacks, logger, evaluation) takes any name whose value is a `_target_` node or null."""
    _check_keys(cfg, declared(entry), "")


def _check_keys(node: DictConfig, decl: Decl, prefix: str) -> None:
    if not decl:  # declared empty (eval.yaml's `data: {}`): any key
        return
    named_objects = decl.is_map()
    for key in node.keys():
        key, path = str(key), f"{prefix}{key}"
        if prefix == "" and key in SKIPPED:
            continue
        if OmegaConf.is_interpolation(node, key) or OmegaConf.is_missing(node, key):
            continue
        child = node[key]
        if named_objects:
            if child is not None and not (isinstance(child, DictConfig) and "_target_" in child):
                raise ConfigError(f"{path}={shown(_plain(child))} is invalid: {prefix[:-1]} holds named objects: give "
                                  f"{path} a node with a _target_, or null")
            continue
        if key not in decl:
            close = difflib.get_close_matches(key, list(decl), n=1)
            where = f"{prefix[:-1]} has" if prefix else "the config's top level has"
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"{command_line_key(path)} is not an option: {where} {', '.join(decl)}{hint}")
        if isinstance(decl[key], Decl) and isinstance(child, DictConfig) and "_target_" not in child:
            _check_keys(child, decl[key], f"{path}.")


def validate_eval(cfg: DictConfig, run_cfg: DictConfig) -> None:
    """eval.py's config and the data options it evaluates with (the training run's, with eval's changes)."""
    check_declared_keys(cfg, "eval")
    _check_paths(cfg, EVAL_PATH_RULES)
    for path, node in target_nodes(cfg):
        check_node(node, path, cfg)
    check_node(run_cfg.data, "data", run_cfg)


def _hydra_choices() -> dict:
    """The config groups' options of this run, as Hydra chose them ({} when composed outside a Hydra
    run: tests, notebooks)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return dict(HydraConfig.get().runtime.choices)
    except Exception:
        return {}


def _chosen_groups() -> str:
    """`task=lm, model=mlp, data=timemachine`: the groups of this run, as Hydra chose them."""
    choices = _hydra_choices()
    return ", ".join(f"{g}={choices[g]}" for g in ("task", "model", "data") if choices.get(g) is not None)


DATA_KINDS = {"lm": "a text data set (language modelling)", "forecast": "a forecasting data set"}


def _data_name(data: DictConfig) -> str:
    """The `data=` option that chose this data set: Hydra's choice, else named by its target."""
    chosen = _hydra_choices().get("data")
    if chosen:
        return str(chosen)
    target = str(data.get("_target_"))
    if target.endswith("SeriesDataModule"):
        bundled = data.get("bundled") if not OmegaConf.is_interpolation(data, "bundled") else None
        return str(bundled) if bundled else "series"
    return "sine" if target.endswith("SineDataModule") else "timemachine"


def _check_task_data(cfg: DictConfig) -> None:
    """The data set belongs to the task: `data=sine` without `task=forecast` would otherwise reach the
    language model with a series (and `task=forecast data=timemachine` a regressor without horizons)."""
    task, data = OmegaConf.select(cfg, "task.name", default=None), cfg.get("data")
    if not isinstance(task, str) or not isinstance(data, DictConfig) or "_target_" not in data:
        return
    cls = _located(data._target_)
    wanted = getattr(cls, "task", None)  # rnnlab.data.base: each data set names its task
    if wanted not in DATA_KINDS or wanted == task:
        if isinstance(cls, type):
            from rnnlab.data.base import check_data_module

            check_data_module(cls, task)  # it implements the task's interface, or one line naming what it lacks
        return
    name = _data_name(data)
    raise ConfigError(f"data={name} is {DATA_KINDS[wanted]}: {'add' if wanted == 'forecast' else 'use'} "
                      f"task={wanted} (python train.py task={wanted} data={name} ...)")


def _check_resolves(cfg: DictConfig) -> None:
    """Every `${...}` resolves: an interpolation to a key the config lacks means groups that do not go
    together (model=mlp with task=lm reads data.tau) or a required group left out (~model)."""
    from omegaconf.errors import InterpolationKeyError

    def walk(node: DictConfig | ListConfig) -> None:
        for key in (node.keys() if isinstance(node, DictConfig) else range(len(node))):
            if OmegaConf.is_missing(node, key):
                continue
            try:
                child = node[key]
            except InterpolationKeyError as e:
                chosen = _chosen_groups()
                raise ConfigError(f"{e.full_key} cannot be resolved ({str(e).splitlines()[0]}): the chosen config "
                                  f"groups do not go together{f' ({chosen})' if chosen else ''}") from None
            except InterpolationResolutionError:  # a resolver that needs a Hydra run (paths.output_dir)
                continue
            if isinstance(child, (DictConfig, ListConfig)):
                walk(child)

    walk(cfg)


def validate(cfg: DictConfig) -> None:
    """Validate the whole composed config; the first bad value raises a ConfigError that names it."""
    _check_task_data(cfg)
    _check_resolves(cfg)
    check_declared_keys(cfg, "train")
    _check_paths(cfg, PATH_RULES)
    _check_tune(cfg)
    for path, node in target_nodes(cfg):
        check_node(node, path, cfg)
