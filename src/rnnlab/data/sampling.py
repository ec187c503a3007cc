"""The book's two ways of cutting one long sequence into minibatches of windows, as samplers.

A sampler yields, per minibatch, the start positions of its `batch_size` windows; `WindowDataset`
turns start positions into (inputs, targets) with one gather, targets shifted by one step. Text
and the sine series both use these, so the sampling logic lives in one place.

- `RandomSampler` (d2l `seq_data_iter_random`): drop a random offset in [0, num_steps - 1], cut the
  rest into non-overlapping windows, visit them in shuffled order. Neighbouring batches are not
  adjacent, so a model starts each batch from a zero state.
- `SequentialSampler` (d2l `seq_data_iter_sequential`): drop a random offset in [0, num_steps],
  lay the rest out as `batch_size` parallel streams; row i of batch k+1 continues row i of batch k,
  so a model may carry its hidden state across batches.
- `OverlappingSampler` (d2l 9.1's feature-label pairs, series only): every window start once per
  epoch, shuffled; the last batch may be smaller (on one process). Short series get many batches.

Both draw the offset and order from a generator seeded by (seed, epoch): every epoch differs,
every run with the same seed repeats. The number of batches per epoch is the same every epoch
(the book's count at the largest offset), so progress bars and schedules see a fixed length;
for smaller offsets the book would yield at most one more batch, which is dropped.

A checkpoint saved in the middle of an epoch stores the sampler's position (`ResumableLoader`, whose
`state_dict` Lightning's fit loop saves and restores): the resumed epoch continues with the batches
the interrupted one had not trained on, in the same order.

Under data parallelism each of `world_size` processes takes its own contiguous block of
`batch_size` rows from a global batch of `batch_size * world_size` rows, so sequential streams
stay continuous within every process.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from rnnlab.errors import ConfigError

SAMPLINGS = ("random", "sequential")          # text
SERIES_SAMPLINGS = SAMPLINGS + ("overlapping",)  # real-valued series


class _WindowSampler(Sampler[Tensor]):
    name: str  # the data.sampling value that selects it
    max_offset: int  # offsets are drawn from [0, max_offset]

    def __init__(self, length: int, batch_size: int, num_steps: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 epoch_source: Callable[[], int] | None = None, device: torch.device | str | None = None,
                 position_source: Callable[[], int] | None = None, unit: str = "tokens"):
        self.length, self.batch_size, self.num_steps = length, batch_size, num_steps
        # Where the yielded start positions live: the epoch's starts are copied there once, so that
        # batches are gathered on the training device without a per-batch copy (and its host sync).
        self.device = device
        self.seed, self.rank, self.world_size = seed, rank, world_size
        # Where to read the epoch at each iteration (the Trainer's counter): set_epoch alone is not
        # called again when Lightning resumes from a checkpoint, and the order must match the epoch.
        self.epoch, self.epoch_source = 0, epoch_source
        # How many batches of the current epoch have been trained on (the Trainer's counter), for state_dict;
        # a position restored by load_state_dict is skipped to by the next iteration of that epoch.
        self.position_source = position_source
        self._resume_at: tuple[int, int] | None = None
        if self.num_batches() < 1:
            raise ConfigError(
                f"data.batch_size={batch_size} x data.num_steps={num_steps} is too large for a sequence of "
                f"{length} {unit} ({self.name} sampling needs at least one full batch"
                f"{f' per process of {world_size}' if world_size > 1 else ''}): lower batch_size or num_steps"
            )

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at every epoch start: the next iteration draws a new offset and order."""
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)

    def __len__(self) -> int:
        return self.num_batches()

    def num_batches(self) -> int:
        return self._book_num_batches(self.max_offset)

    def _book_num_batches(self, offset: int) -> int:
        raise NotImplementedError

    def _global_starts(self, offset: int, generator: torch.Generator) -> Tensor:
        """Start positions for the book's batches at this offset, shape (num_batches, batch_size * world_size)."""
        raise NotImplementedError

    def starts(self, offset: int, generator: torch.Generator | None = None) -> Tensor:
        """This process's window starts for one epoch at `offset`, shape (num_batches, batch_size)."""
        starts = self._global_starts(offset, generator or self._generator())[: self.num_batches()]
        return starts[:, self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def __iter__(self):
        if self.epoch_source is not None:
            self.epoch = self.epoch_source()
        g = self._generator()
        offset = int(torch.randint(0, self.max_offset + 1, (1,), generator=g))
        starts = self.starts(offset, g)
        if self._resume_at is not None:
            epoch, done = self._resume_at
            self._resume_at = None
            if epoch == self.epoch and 0 < done < len(starts):
                starts = starts[done:]  # the rest of an interrupted epoch, in its order
        return iter(starts if self.device is None else starts.to(self.device))

    def state_dict(self) -> dict:
        """The epoch in progress and how many of its batches were trained on."""
        return {"epoch": self.epoch, "batches_done": self.position_source() if self.position_source else 0}

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue an interrupted epoch: the next iteration, if of that epoch, skips the batches already done."""
        self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches_done"]))


class RandomSampler(_WindowSampler):
    """d2l random sampling: shuffled non-overlapping windows after a random offset in [0, num_steps - 1]."""

    name = "random"

    @property
    def max_offset(self) -> int:
        return self.num_steps - 1

    def _book_num_batches(self, offset: int) -> int:
        num_subseqs = (self.length - offset - 1) // self.num_steps
        return max(num_subseqs // (self.batch_size * self.world_size), 0)

    def _global_starts(self, offset: int, generator: torch.Generator) -> Tensor:
        num_subseqs = (self.length - offset - 1) // self.num_steps
        starts = offset + torch.randperm(num_subseqs, generator=generator) * self.num_steps
        global_batch = self.batch_size * self.world_size
        n = self._book_num_batches(offset)
        return starts[: n * global_batch].reshape(n, global_batch)


class SequentialSampler(_WindowSampler):
    """d2l sequential partitioning: `batch_size` parallel streams after a random offset in [0, num_steps]."""

    name = "sequential"

    @property
    def max_offset(self) -> int:
        return self.num_steps

    def _stream_length(self, offset: int) -> int:
        return (self.length - offset - 1) // (self.batch_size * self.world_size)

    def _book_num_batches(self, offset: int) -> int:
        return max(self._stream_length(offset) // self.num_steps, 0)

    def _global_starts(self, offset: int, generator: torch.Generator) -> Tensor:
        stream_len = self._stream_length(offset)
        rows = torch.arange(self.batch_size * self.world_size) * stream_len
        steps = torch.arange(self._book_num_batches(offset)) * self.num_steps
        return offset + steps[:, None] + rows[None, :]


class OverlappingSampler(_WindowSampler):
    """The book's feature-label pairs: every window start once per epoch, shuffled, in batches; the last
    batch may be smaller on one process (several processes drop it, so each has as many batches)."""

    name = "overlapping"
    max_offset = 0

    def _book_num_batches(self, offset: int) -> int:
        windows, global_batch = self.length - self.num_steps, self.batch_size * self.world_size
        return -(-windows // global_batch) if self.world_size == 1 else windows // global_batch

    def starts(self, offset: int, generator: torch.Generator | None = None) -> list[Tensor]:
        order = torch.randperm(self.length - self.num_steps, generator=generator or self._generator())
        if self.world_size == 1:
            return list(order.split(self.batch_size))
        rows = order[: self.num_batches() * self.batch_size * self.world_size].view(self.num_batches(), -1)
        return list(rows[:, self.rank * self.batch_size:(self.rank + 1) * self.batch_size])

    def __iter__(self):
        return iter([s if self.device is None else s.to(self.device) for s in self._epoch_starts()])

    def _epoch_starts(self) -> list[Tensor]:
        if self.epoch_source is not None:
            self.epoch = self.epoch_source()
        starts = self.starts(0)
        if self._resume_at is not None:
            epoch, done = self._resume_at
            self._resume_at = None
            if epoch == self.epoch and 0 < done < len(starts):
                starts = starts[done:]
        return starts


SAMPLERS = {cls.name: cls for cls in (RandomSampler, SequentialSampler, OverlappingSampler)}


def make_sampler(sampling: str, length: int, batch_size: int, num_steps: int, seed: int = 0,
                 trainer=None, unit: str = "tokens") -> _WindowSampler:
    """The one place that maps `data.sampling` to a sampler class; with a Trainer, rank-aware and
    following the fit loop's epoch counter (the one Lightning passes to set_epoch, right on resume too)."""
    assert sampling in SAMPLERS, (f"sampling={sampling!r}: one of {', '.join(SAMPLERS)} "
                                  "(rnnlab.schema checks data.sampling)")
    cls = SAMPLERS[sampling]
    if trainer is None:
        return cls(length, batch_size, num_steps, seed=seed, unit=unit)
    # The epoch is read when the loader is iterated. On a resume Lightning creates the first iterator
    # in FitLoop.setup_data, before set_epoch and before FitLoop.reset/on_run_start update
    # `trainer.current_epoch` (epoch_progress.current.completed): after an end-of-epoch checkpoint it
    # still reads the finished epoch there, while `epoch_progress.current.processed` already is the
    # next one (the counter Lightning itself passes to set_epoch). Measured on Lightning 2.6;
    # tests/runs/test_resume.py (resume from last.ckpt and from interrupted.ckpt equal an uninterrupted
    # run) fails if this changes. The position is the epoch loop's count of trained batches
    # (`batch_progress.current.processed`), which is what Lightning restores to on a mid-epoch resume.
    fit_loop = trainer.fit_loop
    return cls(length, batch_size, num_steps, seed=seed, rank=trainer.global_rank, world_size=trainer.world_size,
               epoch_source=lambda: fit_loop.epoch_progress.current.processed,
               position_source=lambda: fit_loop.epoch_loop.batch_progress.current.processed,
               device=trainer.strategy.root_device, unit=unit)


def window_loader(sequence: Tensor, sampling: str, batch_size: int, num_steps: int, seed: int = 0,
                  trainer=None, unit: str = "tokens") -> DataLoader:
    """Training batches of windows of `sequence`, the one way both data modules build them.

    With a Trainer the sequence and each epoch's start positions sit on its device, so a batch is
    one gather there: no per-batch host-to-device copy (a character corpus is a few MB).
    """
    sampler = make_sampler(sampling, len(sequence), batch_size, num_steps, seed=seed, trainer=trainer, unit=unit)
    if trainer is not None:
        sequence = sequence.to(trainer.strategy.root_device)
    dataset = WindowDataset(sequence, num_steps)
    if trainer is not None and trainer.overfit_batches > 0:
        # trainer.overfit_batches: Lightning replaces any sampler but torch's SequentialSampler by one that
        # yields integer indices. The same first-epoch batches every epoch are what overfitting wants:
        # a dataset of those batches, read in order by the SequentialSampler Lightning keeps.
        return DataLoader(FixedBatches(dataset, sampler.starts(0)), batch_size=None)
    # Its own generator: iterating a DataLoader draws a (worker) seed from `generator`, by default the
    # global RNG, which would shift every later dropout mask when a resumed run starts an iterator
    # mid-epoch that the uninterrupted run did not.
    return ResumableLoader(dataset, sampler=sampler, batch_size=None, generator=torch.Generator())


class FixedBatches(Dataset):
    """Batch i is the windows at `starts[i]` (one epoch's start positions), for integer-indexing samplers."""

    def __init__(self, windows: "WindowDataset", starts: Tensor):
        self.windows, self.starts = windows, starts

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.windows[self.starts[i]]

    def __len__(self) -> int:
        return len(self.starts)


class ResumableLoader(DataLoader):
    """A DataLoader over a window sampler, with the sampler's position as its state: Lightning's fit
    loop stores `state_dict()` in every checkpoint and restores it before iterating on a resume."""

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.sampler.load_state_dict(state_dict)


class WindowDataset(Dataset):
    """Index with a tensor of start positions; returns (inputs, targets) windows, targets shifted by one.

    Token ids may be stored narrow (uint8/int16/int32, a quarter of int64 or less); the gathered
    windows are widened to int64 on the sequence's device, as embeddings and one-hot need.
    """

    def __init__(self, sequence: Tensor, num_steps: int):
        self.sequence, self.num_steps = sequence, num_steps
        self._span = torch.arange(num_steps + 1, device=sequence.device)
        self._widen = not sequence.is_floating_point() and sequence.dtype != torch.long

    def __getitem__(self, starts: Tensor) -> tuple[Tensor, Tensor]:
        windows = self.sequence[starts.to(self.sequence.device)[:, None] + self._span]
        if self._widen:
            windows = windows.long()
        return windows[:, :-1], windows[:, 1:]

    def __len__(self) -> int:
        return len(self.sequence) - self.num_steps


class EvalStream(Dataset):
    """The held-out stream as `batch_size` continuous rows, cut into column slices of `num_steps`, built
    one batch at a time (a gather on the stream's device) so the whole padded stream never exists.

    Row r holds tokens [r * row_len, (r + 1) * row_len) of the inputs; positions past the stream's end
    are padding: input 0 and target `ignore_index`. `rows` selects this process's rows under DDP.
    """

    def __init__(self, sequence: Tensor, batch_size: int, num_steps: int, ignore_index: int = -100,
                 rows: slice | None = None):
        self.sequence, self.num_steps, self.ignore_index = sequence, num_steps, ignore_index
        self.n_pred = len(sequence) - 1
        self.row_len = -(-self.n_pred // batch_size)
        self._row_starts = (torch.arange(batch_size, device=sequence.device) * self.row_len)[rows or slice(None)]

    def __len__(self) -> int:
        return -(-self.row_len // self.num_steps)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        cols = torch.arange(i * self.num_steps, min((i + 1) * self.num_steps, self.row_len),
                            device=self.sequence.device)
        pos = self._row_starts[:, None] + cols
        valid = pos < self.n_pred
        pos = pos.clamp(max=max(self.n_pred - 1, 0))
        inputs = torch.where(valid, self.sequence[pos].long(), 0)
        targets = torch.where(valid, self.sequence[pos + 1].long(), self.ignore_index)
        return inputs, targets

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def eval_stream_batches(sequence: Tensor, batch_size: int, num_steps: int, ignore_index: int = -100,
                        rows: slice | None = None) -> EvalStream:
    """Cut a held-out stream into `batch_size` continuous rows, so every token after the first is predicted once.

    The stream is padded at the end to fill the last row: padded inputs are 0 and padded targets are
    `ignore_index`, so a token-weighted loss over the batches is exactly the mean over the stream.
    Returns a lazy sequence of (inputs, targets) (int64) with up to `num_steps` columns each; carry the
    state across them.
    """
    return EvalStream(sequence, batch_size, num_steps, ignore_index, rows)
