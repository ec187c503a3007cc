"""Lightning's learning-rate finder (`tune.lr_find=true`): a range test before training, its suggestion
printed and recorded, its plot saved into the run directory, and (with `tune.apply=true`) training
started from the suggested learning rate.

The range test takes `tune.num_training` steps whatever trainer.max_epochs is: Lightning's finder
limits its fit by max_steps but leaves max_epochs as configured, so on data with fewer batches than
that in max_epochs it stopped after max_epochs epochs (3 of 100 steps with one epoch of 3 batches)
and logged the loss as having diverged. Here max_epochs is lifted for the test (the data is read
again for as many epochs as it takes) and restored after it; the steps the test took are recorded
(`lr_find/steps`), and fewer than num_training means the loss did diverge."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig

from rnnlab.errors import ConfigError
from rnnlab.metrics import finite_or_none

log = logging.getLogger(__name__)
PLOT_FILE = "lr_find.png"


def find_learning_rate(parts, tune: DictConfig, output_dir: Path) -> dict[str, Any]:
    """Run Tuner.lr_find on the run's module and data; the module's `lr` is set to the suggestion when applied."""
    module = parts.module
    if getattr(module, "lr", None) is None:
        raise ConfigError("tune.lr_find=true needs an optimizer with an `lr` option (optimizer.lr)")
    configured = module.lr
    fit_loop = parts.trainer.fit_loop
    max_epochs = fit_loop.max_epochs
    fit_loop.max_epochs = -1  # no limit of epochs: the finder's max_steps (num_training) ends it
    try:
        finder = Tuner(parts.trainer).lr_find(
            module, datamodule=parts.datamodule, min_lr=tune.min_lr, max_lr=tune.max_lr,
            num_training=tune.num_training, mode=tune.mode, update_attr=bool(tune.apply), attr_name="lr")
    finally:
        fit_loop.max_epochs = max_epochs
    suggestion = finite_or_none(finder.suggestion()) if finder is not None else None
    result: dict[str, Any] = {"lr_find/suggestion": suggestion, "lr_find/configured": configured}
    if finder is not None:
        steps = len(finder.results.get("lr", []))
        result["lr_find/steps"] = steps
        if steps < tune.num_training:
            log.info("lr finder: stopped after %d of tune.num_training=%d steps: the loss diverged", steps,
                     tune.num_training)
    if finder is not None and parts.trainer.is_global_zero:
        figure = finder.plot(suggest=suggestion is not None)
        figure.savefig(output_dir / PLOT_FILE, dpi=100)
        result["lr_find/plot"] = str(output_dir / PLOT_FILE)
    if suggestion is None:
        log.warning("lr finder: no suggestion (the loss curve had no descent); training would keep lr=%s", configured)
        module.lr = configured
    else:
        log.info("lr finder: suggested learning rate %.4g (configured %.4g); plot: %s", suggestion, configured,
                 output_dir / PLOT_FILE)
    return result
