"""Atomic checkpoint files on every filesystem, as a Lightning CheckpointIO plugin.

Lightning's TorchCheckpointIO writes through an fsspec transaction, which puts the temporary file
in $TMPDIR and moves it over the target: across filesystems that move is a copy, so a kill during
it leaves a truncated checkpoint (and an orphan in $TMPDIR). Here the temporary file is written
beside the target as `.<name>.tmp-<pid>`, flushed and fsynced, then renamed over the target
(os.replace, atomic within a directory) and the directory fsynced: a reader sees the old file or
the new one, never a part. A temporary file left by a killed process is removed by
`remove_stale_temporaries` at the next start or resume.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO

from rnnlab.errors import CheckpointWriteError

_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")
# torch's zip writer's own messages for a write that failed (see _write_failure).
_TORCH_WRITER_FAILURE = re.compile(r"inline_container\.cc|PytorchStreamWriter failed|file write failed|unexpected pos")


def temporary_path(path: Path) -> Path:
    """Where `path` is written before the rename: beside it, named after it and this process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _is_local(path: str | Path) -> bool:
    return "://" not in str(path) or str(path).startswith("file://")


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process has no save in flight before it starts training
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Remove the temporary checkpoint files in `directory` whose writing process is gone; returns them."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        match = _TEMP.match(p.name)
        if match and not _process_alive(int(match.group("pid"))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _write_failure(error: BaseException) -> str | None:
    """Why a checkpoint write failed, in words, when `error` is a failed write (None: another error).

    torch.save writes through its zip writer: the file's OSError (ENOSPC on a full disk, EFBIG past a
    file-size limit) is raised in `write_record`, and the writer's `__exit__` then raises its own
    RuntimeError ("[enforce fail at inline_container.cc:...] . unexpected pos ...") with the OSError
    as its context, so the OSError is looked for along the chain (measured with torch 2.13). Writing
    to a path instead, the C++ writer reports "PytorchStreamWriter failed writing file ...: file write
    failed" with no OSError at all."""
    seen, e = set(), error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            if e.errno == errno.ENOSPC:
                return "no space left on the device"
            if e.errno == errno.EFBIG:
                return "file too large for a file-size limit"
            return e.strerror or str(e)
        e = e.__cause__ or e.__context__
    if isinstance(error, RuntimeError) and _TORCH_WRITER_FAILURE.search(str(error)):
        return "the write failed: a full disk or a file-size limit"
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO that writes beside the target, fsyncs and renames (local paths; others as Lightning does).

    A failed write (disk full, a file-size limit, ...; `_write_failure`) removes its temporary file,
    keeps the previous checkpoint whole and raises CheckpointWriteError with one line naming the file.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg"
                            f" is not supported for `{type(self).__name__}`.")
        path = Path(str(path).removeprefix("file://"))
        tmp = temporary_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            reason = _write_failure(e) if isinstance(e, Exception) else None
            if reason is not None:
                kept = f"the previous {path.name} is kept whole" if path.exists() else "nothing was written"
                raise CheckpointWriteError(f"checkpoint {path} could not be written ({reason}): {kept}") from None
            raise
        _fsync_directory(path.parent)


class _InOrder(CheckpointIO):
    """What the writer thread of AsyncAtomicCheckpointIO calls: the atomic writer, whose failure is kept for the
    training thread (not raised in the writer thread), and the removals that were waiting for a write."""

    def __init__(self, writer: AtomicCheckpointIO):
        super().__init__()
        self.writer = writer
        self.lock = threading.Lock()
        self.submitted = 0  # writes handed to the thread
        self.done = 0  # writes finished (or failed)
        self.removals: list[tuple[int, Any]] = []  # (writes that must finish first, path)
        self.failure: BaseException | None = None  # the first failed write, until the training thread raises it
        self.failed = False  # a write failed: no removal waiting for one is done (the former best stays)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        try:
            self.writer.save_checkpoint(checkpoint, path, storage_options)
        except BaseException as e:  # the training thread raises it (AsyncAtomicCheckpointIO.raise_failure)
            with self.lock:
                self.failure, self.failed = self.failure or e, True
        finally:
            with self.lock:
                self.done += 1
            self.remove_due()

    def remove_due(self, everything: bool = False) -> None:
        with self.lock:
            due = [path for after, path in self.removals if everything or after <= self.done]
            self.removals = [(after, path) for after, path in self.removals if path not in due]
            if self.failed:
                due = []
        for path in due:
            self.writer.remove_checkpoint(path)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.writer.load_checkpoint(*args, **kwargs)

    def remove_checkpoint(self, path) -> None:
        self.writer.remove_checkpoint(path)

    def __getstate__(self) -> dict[str, Any]:  # a copy sent to another process (ddp_spawn) gets its own lock
        return {**self.__dict__, "lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, lock=threading.Lock())


class AsyncAtomicCheckpointIO(AsyncCheckpointIO):
    """Lightning's AsyncCheckpointIO around AtomicCheckpointIO: a checkpoint is copied on the training thread
    (Lightning clones its tensors) and written, fsynced and renamed by one writer thread, in the order the
    saves were asked for, while training goes on.

    - What a reader sees stays the atomic writer's: the previous file or the new one, never a part.
    - A removal (ModelCheckpoint dropping the former best) waits for the writes asked before it, so a kill
      never finds the former best removed and the new one unwritten; after a failed write none is done.
    - Reading a checkpoint (a resume, the learning-rate finder's restore) first waits for every write.
    - `wait()` blocks until every write has finished and raises the first failure (CheckpointWriteError);
      Lightning calls it at the end of fit, validate and test (teardown), and rnnlab.callbacks.InterruptCheckpoint
      after interrupted.ckpt, so a run never goes on to its evaluation or exits with a write in flight. A write
      that failed in the thread is raised at the next save or at that wait, whichever comes first.
    """

    def __init__(self, checkpoint_io: AtomicCheckpointIO | None = None) -> None:
        self.queue = _InOrder(checkpoint_io or AtomicCheckpointIO())
        super().__init__(self.queue)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        self.raise_failure()
        with self.queue.lock:
            self.queue.submitted += 1
        super().save_checkpoint(checkpoint, path, storage_options)

    def remove_checkpoint(self, path) -> None:
        with self.queue.lock:
            pending = self.queue.done < self.queue.submitted
            if pending:
                self.queue.removals.append((self.queue.submitted, path))
            failed = self.queue.failed
        if not pending and not failed:
            self.queue.remove_checkpoint(path)

    def load_checkpoint(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.wait()
        return super().load_checkpoint(*args, **kwargs)

    def wait(self) -> None:
        """Block until every checkpoint asked for is written (and the removals behind them done); raise the
        first write that failed, once. The next save starts a new writer thread."""
        super().teardown()  # Lightning's: shuts the writer thread down after its queue is empty
        self.queue.remove_due(everything=True)
        self.raise_failure()

    def teardown(self) -> None:
        self.wait()

    def raise_failure(self) -> None:
        with self.queue.lock:
            failure, self.queue.failure = self.queue.failure, None
        if failure is not None:
            raise failure


def wait_for_checkpoints(trainer) -> None:
    """Block until the checkpoints the trainer's writer has queued are written; raise a failed write."""
    io = trainer.strategy.checkpoint_io
    if isinstance(io, AsyncAtomicCheckpointIO):
        io.wait()
