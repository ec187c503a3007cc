"""Optimizer and scheduler from the config's partials, the same for every LightningModule here."""

from __future__ import annotations


def configure_optimizers(module):
    """`module.hparams.optimizer(params)` and, if configured, `module.hparams.scheduler(optimizer)` (per epoch)."""
    optimizer = module.hparams.optimizer(params=module.parameters())
    if module.hparams.scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": module.hparams.scheduler(optimizer=optimizer)}}
