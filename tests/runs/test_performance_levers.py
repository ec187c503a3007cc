"""Issue 29's levers keep what a run promises: checkpoints written by a thread (rnnlab.checkpoint_io.
AsyncAtomicCheckpointIO) are whole, copied when they were asked for, written in order, read only once written,
and waited for before a run goes on to its evaluation or reports an interruption; a failed write still ends the
run in one line. The writer thread is held back (torch.save waits on an Event), so nothing here waits on the
wall clock; exact resumes are tests/runs/test_resume.py's, which run with the same writer.
"""

from __future__ import annotations

import errno
import json
import threading
import time

import pytest
import torch

from conftest import compose_config
from rnnlab.checkpoint_io import AsyncAtomicCheckpointIO, AtomicCheckpointIO
from rnnlab.errors import CheckpointWriteError
from rnnlab.run.build import build_run
from rnnlab.run.job import main_task

TORCH_SAVE = torch.save
LIMIT = 60  # seconds: only against a writer thread that never finishes


@pytest.fixture
def held(monkeypatch):
    """torch.save in the writer thread waits until `held.set()`; `held.started` is set when a save waits."""
    release, started = threading.Event(), threading.Event()

    def save(obj, f, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            started.set()
            assert release.wait(LIMIT)
        return TORCH_SAVE(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    release.started = started
    return release


def load(path):
    return torch.load(path, weights_only=True)


def test_a_checkpoint_is_copied_when_asked_for_and_written_whole_by_the_thread(tmp_path, held):
    io, target, w = AsyncAtomicCheckpointIO(), tmp_path / "last.ckpt", torch.ones(3)
    io.save_checkpoint({"state_dict": {"w": w}}, target)  # returns while the thread waits
    w.zero_()  # training goes on changing the weights
    assert held.started.wait(LIMIT) and not target.exists()
    held.set()
    io.wait()
    assert torch.equal(load(target)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_the_former_best_is_removed_only_after_the_new_one_is_written(tmp_path, held):
    io, old, new = AsyncAtomicCheckpointIO(), tmp_path / "best-epoch000.ckpt", tmp_path / "best-epoch001.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(1)}, old)
    io.save_checkpoint({"w": torch.zeros(1)}, new)
    io.remove_checkpoint(old)  # as ModelCheckpoint does right after the save of a new best
    assert held.started.wait(LIMIT) and old.exists()  # a kill now still finds a best checkpoint
    held.set()
    io.wait()
    assert [p.name for p in tmp_path.iterdir()] == ["best-epoch001.ckpt"]
    io.remove_checkpoint(new)  # nothing pending: at once
    assert list(tmp_path.iterdir()) == []


def test_reading_a_checkpoint_waits_for_the_writes(tmp_path, held):
    io, target = AsyncAtomicCheckpointIO(), tmp_path / ".lr_find.ckpt"
    io.save_checkpoint({"w": torch.full((2,), 7.0)}, target)
    threading.Timer(0.05, held.set).start()
    assert torch.equal(io.load_checkpoint(target)["w"], torch.full((2,), 7.0))


def test_a_failed_write_is_raised_once_at_the_next_save_or_wait(tmp_path, monkeypatch):
    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    io, target = AsyncAtomicCheckpointIO(), tmp_path / "last.ckpt"
    monkeypatch.setattr(torch, "save", full_disk)
    io.save_checkpoint({"w": torch.ones(1)}, target)
    with pytest.raises(CheckpointWriteError, match=r"last\.ckpt could not be written \(no space left on the device\)"):
        io.wait()
    io.wait()  # raised once
    io.save_checkpoint({"w": torch.ones(1)}, target)
    deadline = time.monotonic() + LIMIT
    while io.queue.done < 2 and time.monotonic() < deadline:  # the thread has failed
        time.sleep(0.01)
    with pytest.raises(CheckpointWriteError):  # the next save raises it before writing anything
        io.save_checkpoint({"w": torch.ones(1)}, target)
    monkeypatch.undo()
    io.save_checkpoint({"w": torch.ones(1)}, target)
    io.teardown()
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_run_writes_through_the_thread_and_waits_for_it_before_it_ends(tmp_path, held):
    parts = build_run(compose_config(tmp_path / "built"))
    assert isinstance(parts.trainer.strategy.checkpoint_io, AsyncAtomicCheckpointIO)
    run = tmp_path / "run"
    threading.Timer(0.05, held.set).start()  # the epochs' writes queue behind the first one until then
    main_task(compose_config(run))
    record = json.loads((run / "metrics.json").read_text())
    assert (record["status"], record["epochs"]) == ("ok", 2)
    last = load(run / "checkpoints" / "last.ckpt")
    assert (last["epoch"], last["global_step"]) == (1, record["global_step"])  # the final epoch's, whole
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(files) == 2 and files[0].startswith("best-epoch") and files[1] == "last.ckpt", files


def test_an_interrupted_run_reports_its_checkpoint_only_once_written(tmp_path, held, capsys):
    run = tmp_path / "run"
    threading.Timer(0.05, held.set).start()
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(run, "trainer.max_epochs=1",
                                 "+callbacks.fault={_target_: rnnlab.callbacks.SignalAtStep, step: 5}"))
    assert info.value.code == 1
    record = json.loads((run / "metrics.json").read_text())
    assert record["status"] == "interrupted" and record["checkpoint"].endswith("interrupted.ckpt")
    assert load(run / "checkpoints" / "interrupted.ckpt")["global_step"] == record["global_step"] > 0
    assert not list((run / "checkpoints").glob(".*.tmp-*"))


def test_sync_writes_stay_one_option_away(make_cfg):
    """`+trainer.plugins=[{_target_: rnnlab.checkpoint_io.AtomicCheckpointIO}]`: every write done before
    training goes on, without the warning a foreign writer gets."""
    parts = build_run(make_cfg("+trainer.plugins=[{_target_: rnnlab.checkpoint_io.AtomicCheckpointIO}]"))
    assert type(parts.trainer.strategy.checkpoint_io) is AtomicCheckpointIO
