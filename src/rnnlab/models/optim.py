"""Optimizer and scheduler from the module's plain-data specs (rnnlab.models.spec), the same for every
LightningModule here."""

from __future__ import annotations

from rnnlab.models.spec import optimizer_from_spec, scheduler_from_spec


def configured_lr(optimizer) -> float | None:
    """The learning rate the optimizer spec sets (its `lr`), None if it sets none."""
    return optimizer.get("lr") if optimizer is not None else None


def configure_optimizers(module):
    """The optimizer of `module.hparams.optimizer` (with `module.lr`: the config's learning rate until
    Lightning's LR finder sets another) and, if configured, the scheduler of `module.hparams.scheduler` (per epoch)."""
    spec = dict(module.hparams.optimizer)
    lr = getattr(module, "lr", None)
    if lr is not None:
        spec["lr"] = lr
    optimizer = optimizer_from_spec(spec, module.parameters())
    if module.hparams.get("scheduler") is None:
        return optimizer
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler_from_spec(module.hparams.scheduler, optimizer)}}
