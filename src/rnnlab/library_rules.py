"""The options of other libraries' classes that configs name (Lightning's Trainer and callbacks, torch's
optimizers and schedulers): their signatures carry no rules, so each option's rule is one line here.
rnnlab.schema checks a `_target_` node of these classes against this table; rnnlab's own classes
declare their rules in their signatures (rnnlab.options)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable

from rnnlab.options import (
    BOOL,
    FRACTION,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    STRING,
    Rule,
    choice,
    either,
    integer,
    is_int,
    list_of,
    nullable,
    number,
)

OptionCheck = Callable[[str, Any], None]  # (option, value) -> None, or a ConfigError naming the option


# Choices that come from the libraries themselves ---------------------------------------------------------
@lru_cache(maxsize=None)
def _lightning_choices() -> dict[str, tuple]:
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    from rnnlab.compat import precision_choices

    return {"accelerator": ("auto", "cpu", "gpu", *sorted(AcceleratorRegistry.available_accelerators() - {"cpu"})),
            "strategy": ("auto", *StrategyRegistry.available_strategies()),
            "precision": precision_choices()}


def _lightning_choice(name: str) -> OptionCheck:
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
LIBRARY_RULES: dict[str, dict[str, OptionCheck]] = {
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
