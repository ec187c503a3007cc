"""A run's settings for TensorBoard's HParams dashboard, written as that run's session info only.

No run writes an experiment summary: TensorBoard then builds the experiment from every run's session
info, so the columns are the union of all runs' settings (a language-model run and a sine run side
by side), it marks the settings whose values differ and lists them first, and its metrics are the
scalars of the session run (the validation run: metrics/ppl, metrics/best, ~test/...).
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

# The config groups a user chooses, in the order they are shown.
GROUPS = ("task", "model", "optimizer", "module", "data", "trainer")
# Settings that say where or how a run executes, not what it trains.
NOISE = {
    "task/monitor", "task/summary", "data/val_batch_size",
    "trainer/default_root_dir", "trainer/accelerator", "trainer/devices", "trainer/strategy", "trainer/num_nodes",
    "trainer/enable_progress_bar", "trainer/enable_model_summary", "trainer/enable_checkpointing",
    "trainer/num_sanity_val_steps", "trainer/log_every_n_steps", "trainer/use_distributed_sampler",
    "trainer/check_val_every_n_epoch", "trainer/deterministic", "trainer/benchmark", "trainer/profiler",
    "trainer/fast_dev_run", "trainer/limit_train_batches", "trainer/limit_val_batches",
}


def _short_target(target: str) -> str:
    return str(target).rsplit(".", 1)[-1]


def flat_settings(cfg: DictConfig, keep_null: bool = False) -> dict[str, Any]:
    """The chosen config groups as flat `group/key` settings with bool, int, float or str values.

    Each setting appears once, where it is defined: a value that interpolates another setting (the
    module's `core: ${model}`, `optimizer: ${optimizer}`, the data's `seed: ${seed}`) is left out;
    null values are left out (`keep_null`: kept as None); lists become text; a nested object's
    `_target_` becomes its class name (`optimizer: SGD`, `module/scheduler: CosineAnnealingLR`).
    """
    out: dict[str, Any] = {"seed": cfg.get("seed")}

    def walk(node: DictConfig, prefix: str) -> None:
        for key in node.keys():
            name = f"{prefix}/{key}"
            if key == "_target_" and prefix == "model" and "kind" not in node:
                out["model/kind"] = _short_target(node[key])  # the MLP: the cores name themselves by `kind`
            elif key == "_target_" and prefix not in ("model", "data", "module", "trainer"):
                out[prefix] = _short_target(node[key])
            if str(key).startswith("_") or name in NOISE or OmegaConf.is_interpolation(node, key):
                continue
            value = node[key]
            if isinstance(value, DictConfig):
                walk(value, name)
            elif value is None:
                if keep_null:
                    out[name] = None
            elif isinstance(value, (bool, int, float, str)):
                out[name] = value
            else:  # a list
                out[name] = str(OmegaConf.to_container(value, resolve=True))

    for group in GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig):
            walk(node, group)
    return out if keep_null else {k: v for k, v in out.items() if v is not None}


# Shown first in HParams: TensorBoard lists the settings that differ first, then the others, each in name
# order, and ticks the first five; the other settings are named `~<name>`, which sorts after these.
HEADLINE = ("task/name", "model/kind", "model/hidden_size", "model/num_layers", "optimizer", "optimizer/lr")
NULL = "null"


def tensorboard_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as HParams shows them: the headline ones (always present, `null` when unset) by
    their name, the others as `~<name>`; a null value as the text `null`, so a setting given in some
    runs and unset in others is marked as differing."""
    out = {name: settings.get(name) for name in HEADLINE}
    out.update({f"~{name}": value for name, value in settings.items() if name not in HEADLINE})
    return {name: NULL if value is None else value for name, value in out.items()}


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> summary_pb2.Summary:
    """A summary value holding hparams plugin data, as tensorboard.plugins.hparams.summary_v2 writes it."""
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR)
    return summary


def session_start(settings: dict[str, Any], start_time: float | None = None) -> summary_pb2.Summary:
    """This run's settings with their types (booleans as booleans). The group name stays empty, so
    TensorBoard names the session after the run."""
    info = plugin_data_pb2.SessionStartInfo(start_time_secs=start_time or time.time())
    for name, value in settings.items():
        if isinstance(value, bool):
            info.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            info.hparams[name].number_value = value
        else:
            info.hparams[name].string_value = str(value)
    return _summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=info))


# TensorBoard 2.21 knows no "aborted": an interrupted run is a failure until its resume ends it.
STATUS = {"success": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE,
          "interrupted": api_pb2.STATUS_FAILURE, "running": api_pb2.STATUS_RUNNING}


def session_end(status: str) -> summary_pb2.Summary:
    """How the run ended, for the HParams table's status column (any other status: a failure)."""
    info = plugin_data_pb2.SessionEndInfo(status=STATUS.get(status, api_pb2.STATUS_FAILURE),
                                          end_time_secs=time.time())
    return _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=info))
