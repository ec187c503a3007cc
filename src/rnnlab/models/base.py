"""The LightningModule base of rnnlab's tasks: a learning rate the LR finder can set, checkpoints stamped
with their format."""

from __future__ import annotations

import lightning as L

from rnnlab.models.optim import configured_lr
from rnnlab.models.spec import CHECKPOINT_FORMAT, FORMAT_KEY


def rename_legacy_states(checkpoint: dict) -> None:
    """A checkpoint written before the last.ckpt callback was Lightning's own keeps the best-epoch
    checkpoint's state under rnnlab's former ModelCheckpoint subclass (Lightning keys a callback's state
    by class name and options): renamed to ModelCheckpoint's key, so a resumed run keeps its best score."""
    states = checkpoint.get("callbacks")
    for key in [k for k in states or {} if isinstance(k, str) and k.startswith(LEGACY_CHECKPOINT_STATE)]:
        states.setdefault("ModelCheckpoint" + key.removeprefix("LastEpochCheckpoint"), states.pop(key))


LEGACY_CHECKPOINT_STATE = "LastEpochCheckpoint{"


class RnnlabModule(L.LightningModule):
    """LightningModule with an `lr` attribute (the optimizer's learning rate) for Lightning's
    learning-rate finder to read and set, and the rnnlab checkpoint format in every checkpoint."""

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

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[FORMAT_KEY] = CHECKPOINT_FORMAT

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rename_legacy_states(checkpoint)  # Lightning restores the callbacks' states after the module's hook
