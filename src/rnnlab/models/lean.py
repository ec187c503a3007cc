"""A LightningModule base whose per-step bookkeeping stays cheap."""

from __future__ import annotations

import lightning as L

# Lightning sets `_current_fx_name` around every hook it calls (about 45 times per training step);
# nn.Module.__setattr__ would check each against parameters, buffers and submodules (several
# microseconds a time, a visible share of a small model's step).
_PLAIN_ATTRIBUTES = frozenset({"_current_fx_name"})


class LeanLightningModule(L.LightningModule):
    """LightningModule that sets Lightning's per-hook bookkeeping attributes directly."""

    def __setattr__(self, name, value):
        if name in _PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
