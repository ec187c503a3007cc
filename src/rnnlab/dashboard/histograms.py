"""Weight and gradient histograms every few epochs, and the embedding projector."""

from __future__ import annotations

from typing import Annotated

import lightning as L

from rnnlab.dashboard.logger import log_step, writers
from rnnlab.options import NON_NEGATIVE_INT, checked


class Histograms(L.Callback):
    """Every `every_n_epochs` epochs (0: never, the default), histograms of every parameter
    (`weights/<name>`) and of its gradient (`weights/<name>.grad`, after clipping), at the epoch's last
    training batch (Lightning releases the gradients before validation). One `weights` group, which
    TensorBoard's Time Series sorts after `train` and `val`."""

    @checked()
    def __init__(self, every_n_epochs: Annotated[int, NON_NEGATIVE_INT] = 0):
        self.every_n_epochs = every_n_epochs

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_epochs <= 0 or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        if batch_idx + 1 != trainer.num_training_batches:
            return
        step = log_step(trainer)  # the step of this epoch's metrics
        for name, p in pl_module.named_parameters():
            for writer, tag in writers(trainer, f"weights/{name}"):
                writer.add_histogram(tag, p.detach().float().cpu(), step)
                if p.grad is not None:
                    writer.add_histogram(f"{tag}.grad", p.grad.detach().float().cpu(), step)


def token_label(token: str) -> str:
    """A vocabulary entry as one visible line of the projector's metadata file."""
    return {" ": "<space>", "\t": "<tab>", "\n": "<newline>", "": "<empty>"}.get(token, token.encode(
        "unicode_escape").decode("ascii") if not token.isprintable() else token)


class EmbeddingProjector(L.Callback):
    """At the end of training, the learned embedding (`module.embedding_dim` set) in TensorBoard's
    Projector, each point labelled with its token."""

    def on_train_end(self, trainer, pl_module) -> None:
        embedding = getattr(pl_module, "embedding", None)
        if embedding is None:
            return
        labels = [token_label(t) for t in pl_module.vocab.idx_to_token]
        for writer, tag in writers(trainer, "embedding"):
            writer.add_embedding(embedding.weight.detach().float().cpu(), metadata=labels, tag=tag,
                                 global_step=trainer.global_step)
