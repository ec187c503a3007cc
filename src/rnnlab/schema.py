"""The config schema: every option's type and range, checked on the whole composed config before
anything is built, so that a bad value ends with one line and leaves no checkpoint, event file or result.

Rules are declared per config node: by the node's `_target_` (data modules, cores, optimizers, the
LightningModules, callbacks, the Trainer: one line per option), and by path for top-level keys.
Every `_target_` node is also checked for keys its target does not take (from its signature), and every
other node for keys the config files do not declare for it (rnnlab.declared: `+tune.lr_finder=true`).
Cross-field checks that need only the config live here too; checks that need the data (a corpus
too short for one batch, a file that is not UTF-8) stay with the data code.

To add an option: one line in the `_target_`'s table below, e.g. `"max_vocab": nullable(POSITIVE_INT, "all")`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import warnings
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

from rnnlab.data.sampling import SAMPLINGS, SERIES_SAMPLINGS
from rnnlab.data.series import BUNDLED
from rnnlab.data.table import SEP_ALLOWED, SEPARATORS
from rnnlab.data.text import PREPROCESSES, TOKENIZERS
from rnnlab.errors import ConfigError, require_regular_file
from rnnlab.declared import SKIPPED, Decl, command_line_key, declared
from rnnlab.models.cores import COMPILE_OPTIONS, CORES, NONLINEARITIES, build_core

Check = Callable[[str, Any], None]  # (option, value) -> None, or a ConfigError naming the option


def shown(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, 'text', 1.5."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


@dataclass(frozen=True)
class Rule:
    """A value test and what is allowed, as the error line states it."""

    test: Callable[[Any], bool]
    allowed: str

    def __call__(self, option: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(f"{option}={shown(value)} is invalid: {self.allowed}")


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool, not nan or inf, not a string)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(low: int | None = None, high: int | None = None, allowed: str | None = None) -> Rule:
    def test(v):
        return is_int(v) and (low is None or v >= low) and (high is None or v <= high)

    if allowed is None:
        allowed = ("must be a positive integer" if (low, high) == (1, None) else
                   f"must be an integer >= {low}" if high is None else f"must be an integer in [{low}, {high}]")
    return Rule(test, allowed)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           allowed: str | None = None) -> Rule:
    """A finite number in the interval given (bounds closed unless `*_open`)."""
    def test(v):
        return is_number(v) and (low is None or (v > low if low_open else v >= low)) and (
            high is None or (v < high if high_open else v <= high))

    if allowed is None:
        if high is None:
            allowed = f"must be a finite number {'>' if low_open else '>='} {low:g}" if low is not None else \
                "must be a finite number"
        else:
            allowed = f"must lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Rule(test, allowed)


def choice(*values: Any) -> Rule:
    listed = ", ".join(dict.fromkeys(map(str, values)))  # 16 and "16" once
    return Rule(lambda v: not isinstance(v, bool) and v in values, "allowed values are " + listed)


def nullable(rule: Rule, meaning: str) -> Rule:
    """`rule`, or null with the given meaning."""
    return Rule(lambda v: v is None or rule.test(v), f"{rule.allowed}, or null ({meaning})")


def either(*rules: Rule, allowed: str) -> Rule:
    return Rule(lambda v: any(r.test(v) for r in rules), allowed)


def list_of(rule: Rule, length: int | None = None, allowed: str = "") -> Rule:
    def test(v):
        return isinstance(v, (list, tuple)) and len(v) > 0 and (length is None or len(v) == length) and all(
            rule.test(x) for x in v)

    return Rule(test, allowed)


def regular_file_or_null(option: str, value: Any) -> None:
    """null or "" (the bundled corpus), or a path to a regular file (never a FIFO, device or directory).
    A path with ~ is named as given and as expanded (`'~/x' (/home/me/x) does not exist`)."""
    if value not in (None, ""):
        if not isinstance(value, str):
            raise ConfigError(f"{option}={value!r} is invalid: must be a path to a text file, or null")
        try:
            require_regular_file(option, value)
        except ConfigError as e:
            expanded = os.path.expanduser(value)
            if expanded == value:
                raise
            raise ConfigError(str(e).replace(f"{option}={expanded!r}", f"{option}={value!r} ({expanded})", 1)) from None


BOOL = Rule(lambda v: isinstance(v, bool), "must be true or false")
POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
FRACTION = number(0, 1, high_open=True)                      # [0, 1): dropout and friends
OPEN_FRACTION = number(0, 1, low_open=True, high_open=True,  # (0, 1)
                       allowed="must lie strictly between 0 and 1")
NON_NEGATIVE = number(0)
POSITIVE = number(0, low_open=True)
TEMPERATURE = number(0, allowed="must be a finite number >= 0 (0: greedy)")
SEED = integer(0, 2**32 - 1)
STRING = Rule(lambda v: isinstance(v, str), "must be a string")
PREFIX = Rule(lambda v: isinstance(v, str) and v != "", "must be a non-empty string (the text a sample continues)")
DATA_PREFIX = nullable(PREFIX, "the data's sample prefix, data.sample_prefix")


# Choices that come from the libraries themselves ---------------------------------------------------------
@lru_cache(maxsize=None)
def _lightning_choices() -> dict[str, tuple]:
    from lightning.fabric.connector import _PRECISION_INPUT  # the Literal Lightning checks precision against
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    precision = tuple(v for arg in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(arg))
    return {"accelerator": ("auto", "cpu", "gpu", *sorted(AcceleratorRegistry.available_accelerators() - {"cpu"})),
            "strategy": ("auto", *StrategyRegistry.available_strategies()),
            "precision": precision}


def _lightning_choice(name: str) -> Check:
    def check(option: str, value: Any) -> None:
        choice(*_lightning_choices()[name])(option, value)
    return check


DEVICES = either(integer(1), Rule(lambda v: v == -1 and is_int(v), ""), Rule(lambda v: v == "auto", ""),
                 list_of(NON_NEGATIVE_INT), Rule(lambda v: isinstance(v, str) and v.replace(",", "").strip().isdigit(), ""),
                 allowed="must be a positive integer, -1 (all), auto, or a list of device indices")
BATCHES = either(NON_NEGATIVE_INT, number(0, 1), allowed="must be an integer >= 0 (batches) or a fraction in [0, 1]")
HORIZONS = list_of(POSITIVE_INT, allowed="give a non-empty list of positive integer horizons")
BETAS = list_of(FRACTION, 2, allowed="must be two numbers in [0, 1)")
PLUGIN = Rule(lambda v: isinstance(v, dict) and "_target_" in v, "")
PLUGINS = either(PLUGIN, list_of(PLUGIN), allowed="must be a list of nodes with a _target_ (Lightning's Precision, "
                 "CheckpointIO, ClusterEnvironment or LayerSync plugins); a precision by name is trainer.precision")

# Options per `_target_`: one line each. ---------------------------------------------------------------
TARGET_RULES: dict[str, dict[str, Check]] = {
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
    "rnnlab.models.build_core": {
        "kind": choice(*CORES),
        "hidden_size": POSITIVE_INT,
        "num_layers": POSITIVE_INT,
        "bidirectional": BOOL,
        "dropout": FRACTION,
        "nonlinearity": choice(*NONLINEARITIES),
        "compile": Rule(lambda v: isinstance(v, bool) or v in COMPILE_OPTIONS,
                        "must be one of " + ", ".join(str(o).lower() for o in COMPILE_OPTIONS)),
    },
    "rnnlab.models.mlp.AutoregressiveMLP": {"hidden_size": POSITIVE_INT},
    "rnnlab.models.LanguageModel": {
        "embedding_dim": nullable(POSITIVE_INT, "one-hot input"),
        "dropout": FRACTION,
        "weight_drop": FRACTION,
        "token": choice(*TOKENIZERS),
    },
    "rnnlab.models.forecast_model.ForecastModel": {
        "ks": nullable(HORIZONS, "derived from the data"),
        "sampling": choice(*SERIES_SAMPLINGS),
        "num_steps": nullable(POSITIVE_INT, "derived from the data"),
        "eval_context": nullable(POSITIVE_INT, "the whole history"),
        "rollout_steps": nullable(NON_NEGATIVE_INT, "the longest horizon, at most half the window; 0 for the MLP"),
        "residual": BOOL,
        "interval": OPEN_FRACTION,
    },
    "rnnlab.data.TextDataModule": {
        "path": regular_file_or_null,
        "token": choice(*TOKENIZERS),
        "preprocess": choice(*PREPROCESSES),
        "sampling": choice(*SAMPLINGS),
        "batch_size": POSITIVE_INT,
        "num_steps": POSITIVE_INT,
        "val_fraction": OPEN_FRACTION,
        "test_fraction": FRACTION,
        "max_tokens": nullable(NON_NEGATIVE_INT, "all; 0: all"),
        "min_freq": NON_NEGATIVE_INT,
        "max_vocab": nullable(integer(2, allowed="must be an integer >= 2 (<unk> and one token)"), "no cap"),
        "unk": BOOL,
        "cache_dir": nullable(STRING, "no cache"),
        "val_batch_size": POSITIVE_INT,
        "seed": SEED,
        "sample_prefix": nullable(PREFIX, "time traveller on the bundled book, else the corpus's opening"),
    },
    "rnnlab.data.sine.SineDataModule": {
        "T": POSITIVE_INT,
        "noise": NON_NEGATIVE,
        "n_train": POSITIVE_INT,
        "tau": POSITIVE_INT,
        "batch_size": POSITIVE_INT,
        "num_steps": POSITIVE_INT,
        "sampling": choice(*SERIES_SAMPLINGS),
        "eval_context": nullable(POSITIVE_INT, "the whole history"),
        "ks": HORIZONS,
        "mirror": BOOL,
        "seed": SEED,
    },
    "rnnlab.data.series.SeriesDataModule": {
        "path": regular_file_or_null,
        "bundled": nullable(choice(*BUNDLED), "data.path"),
        "sep": Rule(lambda v: v is None or (isinstance(v, str) and v in SEPARATORS), SEP_ALLOWED),
        "time_format": nullable(STRING, "parsed as is"),
        "missing": choice("error", "interpolate"),
        "difference": either(BOOL, choice("auto"), allowed="must be true, false or auto (from the training part)"),
        "season": nullable(POSITIVE_INT, "no seasonal baseline"),
        "val_fraction": OPEN_FRACTION,
        "test_fraction": OPEN_FRACTION,
        "batch_size": nullable(POSITIVE_INT, "derived from the series' length"),
        "num_steps": nullable(POSITIVE_INT, "derived from the series' length"),
        "sampling": choice(*SERIES_SAMPLINGS),
        "tau": POSITIVE_INT,
        "eval_context": nullable(POSITIVE_INT, "the whole history"),
        "ks": nullable(HORIZONS, "1, 4, 16: those the test part fits"),
        "seed": SEED,
    },
    "rnnlab.callbacks.TextSampleLogger": {
        "prefix": DATA_PREFIX, "num_tokens": NON_NEGATIVE_INT, "every_n_epochs": POSITIVE_INT,
        "temperature": TEMPERATURE,
    },
    "rnnlab.callbacks.DivergenceGuard": {
        "every_n_steps": integer(0, allowed="must be an integer >= 0 (0: check epoch metrics only)"),
        "patience": nullable(integer(0, allowed="must be an integer >= 0 (validations in a row; 0: no bound)"),
                             "no bound"),
        "margin": NON_NEGATIVE,
    },
    "rnnlab.callbacks.ProgressBar": {"refresh_rate": NON_NEGATIVE_INT},
    "rnnlab.dashboard.cadence.LoggingCadence": {"min_points": POSITIVE_INT},
    "rnnlab.dashboard.histograms.Histograms": {"every_n_epochs": NON_NEGATIVE_INT},
    "rnnlab.dashboard.forecast.ValidationForecastFigures": {"every_n_epochs": POSITIVE_INT},
    "rnnlab.dashboard.charts.BestMetricLogger": {"mode": choice("min", "max")},
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
    "rnnlab.evaluation.GeneratedSample": {"prefix": DATA_PREFIX, "num_tokens": NON_NEGATIVE_INT,
                                          "temperature": TEMPERATURE},
    "rnnlab.evaluation.DynamicEvaluation": {
        "segment_len": POSITIVE_INT,
        "lr": number(0, allowed="must be a number >= 0"),
        "decay": number(0, 1),
    },
    "rnnlab.ensemble.EnsembleReport": {
        "segment_len": POSITIVE_INT,
        "lr": number(0, allowed="must be a number >= 0"),
        "decay": number(0, 1),
    },
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
        ok = torch.cuda.is_available() or (accelerator == "gpu" and AcceleratorRegistry["mps"]["accelerator"].is_available())
        if not ok:
            raise ConfigError(f"{option}={accelerator} but no CUDA GPU is visible on this machine: use cpu or auto")
    elif not AcceleratorRegistry[accelerator]["accelerator"].is_available():
        raise ConfigError(f"{option}={accelerator} but no {accelerator.upper()} is available on this machine: "
                          "use cpu or auto")


def _check_core(node: dict, path: str, cfg: DictConfig) -> None:
    """Dropout acts between stacked layers in every core (torch's and rnnlab.models.scratch), so with one
    layer it would do nothing; and a core whose weights and gradients alone exceed the memory of the
    device it trains on is refused before anything is allocated."""
    dropout, layers = node.get("dropout", 0.0), node.get("num_layers", 1)
    if dropout and layers == 1:
        raise ConfigError(f"{path}.dropout={dropout:g} has no effect with {path}.num_layers=1: dropout acts between "
                          f"stacked layers; set {path}.num_layers >= 2 or {path}.dropout=0")
    _check_core_fits(node, path, cfg)


def _core_parameters(node: dict) -> int:
    """The parameters of the core the config describes (input width 1: a lower bound), counted on the meta
    device: nothing is allocated, and every kind in CORES counts itself."""
    import torch

    options = {k: node[k] for k in ("kind", "hidden_size", "num_layers", "bidirectional", "nonlinearity") if k in node}
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
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
    if not all(is_int(node.get(k, 1)) for k in ("hidden_size", "num_layers")) or node.get("kind") not in CORES:
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


def _check_text_fractions(node: dict, path: str, cfg: DictConfig) -> None:
    """The held-out parts may be at most half of the corpus: a model scored on more tokens than it trains
    on (data.val_fraction=0.999 trains on 0.1%) is no result."""
    val, test = node.get("val_fraction", 0.1), node.get("test_fraction", 0.0)
    if val + test > 0.5:
        name, value, other, value_other = ("test_fraction", test, "val_fraction", val) if test > val else (
            "val_fraction", val, "test_fraction", test)
        high = 0.5 - value_other
        allowed = (f"it must lie in {'[' if name == 'test_fraction' else '('}0, {high:g}]" if high > 0 else
                   "no value works")
        raise ConfigError(f"{path}.{name}={value:g} is invalid: with {path}.{other}={value_other:g} {allowed} (the "
                          "held-out parts may be at most half of the corpus; the training part is the rest)")


def _check_sgd(node: dict, path: str, cfg: DictConfig) -> None:
    if node.get("nesterov") and (not node.get("momentum") or node.get("dampening", 0)):
        raise ConfigError(f"{path}.nesterov=true is invalid: it needs {path}.momentum > 0 and {path}.dampening=0")


def _check_sine(node: dict, path: str, cfg: DictConfig) -> None:
    T, n_train, tau, num_steps = node.get("T", 1000), node.get("n_train", 600), node.get("tau", 4), node.get("num_steps", 32)
    if n_train > T:
        raise ConfigError(f"{path}.n_train={n_train} is invalid: must be at most {path}.T={T}")
    if tau >= n_train:
        raise ConfigError(f"{path}.tau={tau} is invalid: must be smaller than the training part, {path}.n_train={n_train}")
    if num_steps >= n_train:
        raise ConfigError(f"{path}.num_steps={num_steps} is invalid: must be smaller than the training part, "
                          f"{path}.n_train={n_train}")


def _check_regressor(node: dict, path: str, cfg: DictConfig) -> None:
    rollout = node.get("rollout_steps", 0)
    if not rollout:
        return
    num_steps = OmegaConf.select(cfg, "data.num_steps")
    if is_int(num_steps) and rollout >= num_steps:
        raise ConfigError(f"{path}.rollout_steps={rollout} is invalid: must be smaller than data.num_steps={num_steps}")


def _check_series(node: dict, path: str, cfg: DictConfig) -> None:
    if node.get("path") in (None, "") and node.get("bundled") is None:
        raise ConfigError(f"{path}.path=null is invalid: give a CSV file or {path}.bundled")
    if node.get("val_fraction", 0.1) + node.get("test_fraction", 0.2) >= 1:
        raise ConfigError(f"{path}.test_fraction={node.get('test_fraction')} is invalid: with {path}.val_fraction="
                          f"{node.get('val_fraction')} it leaves no training part")


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


TARGET_CHECKS: dict[str, list[Callable[[dict, str, DictConfig], None]]] = {
    "rnnlab.models.build_core": [_check_core],
    "rnnlab.data.TextDataModule": [_check_text_fractions],
    "rnnlab.callbacks.early_stopping": [_check_early_stopping],
    "lightning.pytorch.Trainer": [_check_trainer],
    "torch.optim.SGD": [_check_sgd],
    "rnnlab.data.sine.SineDataModule": [_check_sine],
    "rnnlab.data.series.SeriesDataModule": [_check_series],
    "rnnlab.models.forecast_model.ForecastModel": [_check_regressor],
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


def check_options(target: str, options: dict[str, Any], name: Callable[[str], str] = lambda o: o) -> None:
    """Check `options` (plain values) with the rules of `target`; errors name each option as `name(option)`.
    For callers outside a composed config: the command-line tools and Hydra callbacks."""
    for option, rule in (_by_object(TARGET_RULES, target) or {}).items():
        if option in options:
            rule(name(option), options[option])


def check_node(node: DictConfig, path: str, cfg: DictConfig | None = None) -> None:
    """One `_target_` node: its target imports, it has no unknown key, and every ruled option is valid."""
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
    rules = _by_object(TARGET_RULES, target) or {}
    values = {}
    for key in keys:
        if key in rules:
            if OmegaConf.is_missing(node, key):
                raise ConfigError(f"{path}.{key} is missing: give a value")
            values[key] = _plain(node[key])
    for key, rule in rules.items():
        if key in values:
            rule(f"{path}.{key}", values[key])
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


# The task each data set belongs to, by its data module's `_target_`.
DATA_TASKS: dict[str, str] = {
    "rnnlab.data.TextDataModule": "lm",
    "rnnlab.data.sine.SineDataModule": "forecast",
    "rnnlab.data.series.SeriesDataModule": "forecast",
}
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
    wanted = _by_object(DATA_TASKS, data._target_)
    if wanted is None or wanted == task:
        return
    name = _data_name(data)
    raise ConfigError(f"data={name} is {DATA_KINDS[wanted]}: {'add' if wanted == 'forecast' else 'use'} "
                      f"task={wanted} (python train.py task={wanted} data={name} ...)")


def _check_resolves(cfg: DictConfig) -> None:
    """Every `${...}` resolves: an interpolation to a key the config lacks means groups that do not go
    together (model=mlp with task=lm reads data.tau) or a required group left out (~model)."""
    from omegaconf.errors import InterpolationKeyError, InterpolationResolutionError

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
