"""Optimizer and scheduler from the config's partials, the same for every LightningModule here."""

from __future__ import annotations


def configured_lr(optimizer) -> float | None:
    """The learning rate the optimizer config sets (the partial's `lr`), None if it sets none."""
    return getattr(optimizer, "keywords", {}).get("lr")


def configure_optimizers(module):
    """`module.hparams.optimizer(params, lr=module.lr)` and, if configured, `module.hparams.scheduler(optimizer)`
    (per epoch). `module.lr` is the config's learning rate until Lightning's LR finder sets another."""
    lr = getattr(module, "lr", None)
    optimizer = module.hparams.optimizer(params=module.parameters(), **({} if lr is None else {"lr": lr}))
    if module.hparams.scheduler is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": module.hparams.scheduler(optimizer=optimizer)}}
