"""The library internals rnnlab cannot do without, in one place (Lightning 2.6, torch 2.13).

Everything else uses public APIs. Each name here says what it reaches and what the public API lacks
(measured); tests/test_compat.py fails if the library changes under any of them. Lightning and torch
are imported inside the functions: the run-directory guard reads RANK_VARIABLES without them.
"""

from __future__ import annotations

import typing
from contextlib import AbstractContextManager
from typing import Callable

# Lightning ---------------------------------------------------------------------------------------------

# The environment variables Lightning reads a process's rank from, in its order (the constant tuple of the
# private lightning.fabric.utilities.rank_zero._get_rank). Public is only the result, rank_zero_only.rank,
# which needs Lightning imported: 4-5 s on 2 CPU cores for a run the guard refuses in about 1 s without.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")

# The logger of Lightning's SIGTERM handler (_SignalConnector._sigterm_notifier_fn logs "Received SIGTERM:
# 15" whatever arrived): rnnlab.callbacks renames the signal in that line when it forwards a SIGINT.
SIGNAL_LOG = "lightning.pytorch.trainer.connectors.signal_connector"


def precision_choices() -> tuple:
    """Every value Trainer(precision=...) accepts: the Literal members of the Trainer's own annotation.

    Public: read from Trainer.__init__'s signature, not from the private Literal it names
    (lightning.fabric.connector._PRECISION_INPUT); Lightning has no public list of them."""
    from lightning.pytorch import Trainer

    annotation = typing.get_type_hints(Trainer.__init__)["precision"]  # Optional[Union[Literal[...], ...]]
    members = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    return tuple(v for m in members if typing.get_origin(m) is typing.Literal for v in typing.get_args(m))


def logging_step(trainer) -> int:
    """The step Lightning sends logged scalars at (the epoch-end metrics of epoch e at the step of its
    last batch), for what rnnlab writes to TensorBoard itself (text, histograms, figures, metrics/best).

    Private: `fit_loop.epoch_loop._batches_that_stepped`, the counter Lightning's logger connector,
    LearningRateMonitor and DeviceStatsMonitor read. The public `trainer.global_step` is one ahead of it
    in on_validation_end (the loop counts the batch after its validation), so a sample or figure
    would sit one step right of the validation scalars it belongs with (measured in tests/test_compat.py)."""
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def mark_received_sigterm(trainer) -> None:
    """Make the Trainer stop after this batch as if SIGTERM had arrived, without Lightning's handler.

    Private: Trainer.received_sigterm is a read-only property over `_signal_connector.received_sigterm`;
    the one public way to set it is the SIGTERM handler, which under DDP broadcasts from inside the
    handler and hangs every rank (measured: `trainer=ddp_cpu trainer.devices=2`, Ctrl-C)."""
    trainer._signal_connector.received_sigterm = True


def release_ranks_waiting_for_sigterm(trainer) -> None:
    """Rank 0 stopped alone after a batch; the other ranks wait in the broadcast with which Lightning's
    training loop shares rank 0's SIGTERM flag before each batch: send them 1 and join the barrier that
    follows, so that they raise SIGTERMException at the same batch.

    Private protocol: `_TrainingEpochLoop._broadcast_sigterm_tensor` (a broadcast from rank 0 and a
    barrier); no public API stops every rank at one batch."""
    import torch

    flag = torch.tensor([1], device=trainer.strategy.root_device)
    torch.distributed.broadcast(flag, src=0)
    torch.distributed.barrier()


def wrap_lr_finder_bar(wrap: Callable[[Callable], Callable]) -> None:
    """Replace the tqdm of Lightning's learning-rate finder by `wrap(tqdm)` (once: a wrapper keeps the
    original as `__wrapped__`).

    Private: the finder's callback (`_LRCallback.on_train_batch_start`) calls the module global `tqdm` of
    lightning.pytorch.tuner.lr_finder on standard error with its refresh rate hard-wired, whatever
    Trainer(enable_progress_bar) says; Tuner.lr_find has no option for its bar."""
    from lightning.pytorch.tuner import lr_finder

    if getattr(lr_finder.tqdm, "__wrapped__", None) is None:
        wrapped = wrap(lr_finder.tqdm)
        wrapped.__wrapped__ = lr_finder.tqdm
        lr_finder.tqdm = wrapped


# torch -------------------------------------------------------------------------------------------------

def rnn_tracing(enabled: bool) -> AbstractContextManager:
    """A context in which torch.compile traces (`enabled`) or leaves eager the built-in nn.RNN/GRU/LSTM.

    Private: `torch._dynamo.config.allow_rnn`; torch.compiler has no public switch for it (torch 2.13), and
    without it dynamo graph-breaks at every built-in recurrence."""
    import torch._dynamo.config

    return torch._dynamo.config.patch(allow_rnn=enabled)
