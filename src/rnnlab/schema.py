"""The config schema: every option's type and range, checked on the whole composed config before
anything is built, so that a bad value ends with one line and leaves no checkpoint, event file or result.

A generic validator: each `_target_` node is checked against the rules its class declares in its signature
(rnnlab's own classes: rnnlab.options) or, for other libraries' classes, against rnnlab.library_rules; for
keys its target does not take; and every plain node for keys the config files do not declare
(rnnlab.declared). Beside it: the rules of top-level keys, and the checks that read more than one node
(the Trainer and the core against this machine: rnnlab.trainer_checks; early stopping against the
checkpoints). Checks that need the data (a corpus too short for one batch, a file that is not UTF-8) stay
with the data code.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from rnnlab.declared import check_declared_keys
from rnnlab.errors import ConfigError
from rnnlab.library_rules import LIBRARY_RULES, OptionCheck
from rnnlab.options import (
    BOOL,
    NON_NEGATIVE_INT,
    POSITIVE,
    PREFIX,
    SEED,
    TEMPERATURE,
    Rule,
    check_values,
    choice,
    integer,
    is_number,
    nullable,
    plain_value,
    rules_of,
)
from rnnlab.options import (
    located as _located,
)
from rnnlab.trainer_checks import check_core_fits, check_trainer

# Top-level keys, by path.
PATH_RULES: dict[str, OptionCheck] = {
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
    "rnnlab.models.build_core": [check_core_fits],
    "rnnlab.callbacks.early_stopping": [_check_early_stopping],
    "lightning.pytorch.Trainer": [check_trainer],
    "torch.optim.SGD": [_check_sgd],
}


# The validator -------------------------------------------------------------------------------------------
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
    rules its signature declares (rnnlab's classes, with their cross-field checks) or LIBRARY_RULES."""
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
    third_party = _by_object(LIBRARY_RULES, target)
    rules = third_party if third_party is not None else rules_of(obj)
    values = {}
    for key in keys:
        if OmegaConf.is_missing(node, key):
            if key in rules:
                raise ConfigError(f"{path}.{key} is missing: give a value")
            continue
        try:
            values[key] = plain_value(node[key])
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
EVAL_PATH_RULES: dict[str, OptionCheck] = {
    "num_tokens": NON_NEGATIVE_INT,
    "temperature": TEMPERATURE,
    "seed": SEED,
    "prefix": nullable(PREFIX, "the training run's prefix"),
    "print_config": BOOL,
}


def _check_paths(cfg: DictConfig, rules: dict[str, OptionCheck]) -> None:
    for path, rule in rules.items():
        if OmegaConf.select(cfg, path, default="__absent__") != "__absent__":
            rule(path, plain_value(OmegaConf.select(cfg, path)))


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
    if target.endswith("SineDataModule"):
        return "sine"
    return "timemachine" if data.get("path") in (None, "") else "text"


def _check_task_data(cfg: DictConfig) -> None:
    """The data set belongs to the task: `data=sine` without `task=forecast` would otherwise reach the
    language model with a series (and `task=forecast data=timemachine` a forecast module without horizons)."""
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
