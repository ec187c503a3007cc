"""Optimizer and scheduler from the module's plain-data specs (rnnlab.models.spec), the same for every
LightningModule here."""

from __future__ import annotations

from rnnlab.models.spec import optimizer_from_spec, scheduler_from_spec


def configure_optimizers(module):
    """The optimizer of `module.hparams.optimizer` and, if configured, the scheduler of `module.hparams.scheduler` (per epoch)."""
    optimizer = optimizer_from_spec(module.hparams.optimizer, module.parameters())
    if module.hparams.get("scheduler") is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler_from_spec(module.hparams.scheduler, optimizer)}}
