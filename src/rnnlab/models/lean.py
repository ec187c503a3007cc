"""A LightningModule base whose per-step bookkeeping stays cheap."""

from __future__ import annotations

import lightning as L

from rnnlab.models.optim import configured_lr

# Lightning sets `_current_fx_name` around every hook it calls (about 45 times per training step);
# nn.Module.__setattr__ would check each against parameters, buffers and submodules (several
# microseconds a time, a visible share of a small model's step).
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name"})


class LeanLightningModule(L.LightningModule):
    """LightningModule that sets Lightning's per-hook bookkeeping attributes directly, with an `lr`
    attribute (the optimizer's learning rate) for Lightning's learning-rate finder to read and set."""

    _lr_override: float | None = None

    @property
    def lr(self) -> float | None:
        """The learning rate configure_optimizers uses: the optimizer config's, or the LR finder's suggestion."""
        if self._lr_override is not None:
            return self._lr_override
        return configured_lr(self.hparams.get("optimizer"))

    @lr.setter
    def lr(self, value: float | None) -> None:
        self._lr_override = value

    def __setattr__(self, name, value):
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
