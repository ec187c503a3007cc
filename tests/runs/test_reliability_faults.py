"""Faults in every phase of a run (issue 26): a stop signal (Ctrl-C, SIGTERM) in any phase ends the run
interrupted, in one line, with metrics.json saying where to resume; a full disk during a checkpoint save;
a finished checkpoint resumed into another directory; the learning-rate finder's steps; an error line
after a progress bar.

The signals are sent by the run itself (rnnlab.callbacks.SignalAtStep, or a function of the run wrapped
to send one first), so no test waits on the wall clock. The in-process tests send real signals to the
test process: the run's handlers take them, as they take a Ctrl-C. The real-command tests (train.py in
a subprocess) run with -m slow.
"""

import contextlib
import errno
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import ROOT, TINY, compose_config
from rnnlab.errors import CheckpointWriteError
from rnnlab.run.job import main_task

TORCH_SAVE = torch.save
RUN = ["trainer.max_epochs=1", "data.max_tokens=2000"]  # 22 training batches an epoch
LIMIT = 900  # seconds: only against a hung run on a loaded machine


def fault(signal_name: str, step: int = 0, stage: str = "train") -> str:
    return ("+callbacks.fault={_target_: rnnlab.callbacks.SignalAtStep, "
            f"step: {step}, signal: {signal_name}, stage: {stage}}}")


def metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def checkpoints(run) -> list[str]:
    """Every file under checkpoints/ (temporaries too) and any learning-rate finder checkpoint left behind."""
    found = sorted(p.name for p in (run / "checkpoints").iterdir()) if (run / "checkpoints").is_dir() else []
    return found + sorted(p.name for p in run.glob(".lr_find_*"))


def stopped(run, capsys, *overrides) -> str:
    """Run in-process, expecting the stop: exit status 1 and one line on stderr, returned."""
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(run, *RUN, *overrides))
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def send_first(monkeypatch, owner, name: str, signal_name: str = "SIGINT", when=lambda *a, **k: True) -> None:
    """Wrap `owner.name` so that the run sends itself `signal_name` on entering it."""
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if when(*args, **kwargs):
            os.kill(os.getpid(), getattr(signal, signal_name))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


# One interrupt path: every phase --------------------------------------------------------------------
def inject(monkeypatch, phase: str) -> None:
    import lightning.pytorch.tuner.lr_finder as lr_finder

    import rnnlab.run.job as job
    from rnnlab.callbacks import TextSampleLogger
    from rnnlab.data import TextDataModule

    if phase == "config check":
        send_first(monkeypatch, job, "validate")
    elif phase == "data build":
        send_first(monkeypatch, TextDataModule, "setup")
    elif phase == "training":  # inside Lightning's fit, before the first batch: no batch boundary to wait for
        send_first(monkeypatch, TextSampleLogger, "on_fit_start")
    elif phase == "LR finder":  # inside Lightning's fit of the range test, at its fifth step
        send_first(monkeypatch, lr_finder._LRCallback, "on_train_batch_start",
                   when=lambda self, trainer, *a: trainer.global_step == 4)
    elif phase == "final writes":
        send_first(monkeypatch, job, "finish_logging", when=lambda parts, status="success": status == "success")


@pytest.mark.parametrize("phase, overrides", [
    ("config check", []),
    ("data build", []),
    ("LR finder", ["tune.lr_find=true", "tune.apply=true", "tune.num_training=20"]),
    ("training", []),
    ("evaluation", [fault("SIGINT", step=21)]),  # at the last training batch: nothing to stop at, so before evaluating
    ("final writes", []),
])
def test_a_stop_in_each_phase_ends_the_run_in_one_line(tmp_path, capsys, monkeypatch, phase, overrides):
    run = tmp_path / "run"
    inject(monkeypatch, phase)
    line = stopped(run, capsys, *overrides)
    record = metrics(run)
    assert (record["status"], record["phase"], record["signal"]) == ("interrupted", phase, "SIGINT")
    if phase in ("evaluation", "final writes"):  # training is complete: last.ckpt, whose resume evaluates
        assert line == (f"interrupted by SIGINT during {phase} (training is complete: epoch 1, step 22); "
                        f"resume with hydra.run.dir={run} ckpt_path=last to evaluate")
        assert record["checkpoint"].endswith("last.ckpt") and record["epochs"] == 1 and "val/ppl" in record
        assert checkpoints(run) == ["best-epoch000.ckpt", "last.ckpt"]
    else:  # nothing was trained, nothing is left to resume (no stray interrupted.ckpt, no finder checkpoint)
        where = " at epoch 0, step 0" if phase == "training" else ""
        assert line == f"interrupted by SIGINT during {phase}{where}: nothing was trained"
        assert record["checkpoint"] is None and checkpoints(run) == []


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted run with a test part: what an interrupted evaluation's resume must end with."""
    run = tmp_path_factory.mktemp("finished") / "run"
    main_task(compose_config(run, *RUN, "data.test_fraction=0.1"))
    return run


def test_sigterm_during_evaluation_records_the_training_and_a_resume_evaluates(tmp_path, capsys, finished):
    """SIGTERM goes through Lightning's handler in the test loop: the run stops at once, training complete.
    `ckpt_path=last` then runs the evaluation (trains nothing) and ends with the uninterrupted run's metrics;
    a second `ckpt_path=last` finds the finished run."""
    run, whole = tmp_path / "run", metrics(finished)
    line = stopped(run, capsys, "data.test_fraction=0.1", fault("SIGTERM", stage="test"))
    assert line == (f"interrupted by SIGTERM during evaluation (training is complete: epoch 1, step 19); "
                    f"resume with hydra.run.dir={run} ckpt_path=last to evaluate")
    record = metrics(run)
    assert (record["status"], record["phase"], record["signal"]) == ("interrupted", "evaluation", "SIGTERM")
    assert record["checkpoint"].endswith("last.ckpt") and "test/ppl" not in record
    assert record["val/ppl"] == pytest.approx(whole["val/ppl"])
    assert checkpoints(run) == ["best-epoch000.ckpt", "last.ckpt"]  # no interrupted.ckpt from the test loop

    main_task(compose_config(run, *RUN, "data.test_fraction=0.1", "ckpt_path=last"))
    resumed = metrics(run)
    assert resumed["status"] == "ok" and (resumed["epochs"], resumed["global_step"]) == (whole["epochs"], 19)
    for key in ("val/ppl", "train/ppl", "test/ppl", "best/val/ppl"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-5), key
    assert resumed["sample"] == whole["sample"]
    capsys.readouterr()
    main_task(compose_config(run, *RUN, "data.test_fraction=0.1", "ckpt_path=last"))
    assert "is a finished run" in capsys.readouterr().out and metrics(run) == resumed


def test_sigint_in_training_names_the_signal_in_the_log_and_saves_the_resume_point(tmp_path, capsys, caplog):
    """Row 2: InterruptCheckpoint stops through Lightning's SIGTERM handler, whose log line named SIGTERM."""
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        line = stopped(run, capsys, fault("SIGINT", step=5))
    ckpt = run / "checkpoints" / "interrupted.ckpt"
    assert line == f"interrupted by SIGINT during training at epoch 0, step 6; resume with ckpt_path={ckpt}"
    assert "Received SIGINT: 2" in caplog.text and "Received SIGTERM" not in caplog.text
    record = metrics(run)
    assert (record["status"], record["phase"], record["global_step"]) == ("interrupted", "training", 6)
    assert checkpoints(run) == ["interrupted.ckpt"]


# A full disk during a checkpoint save ------------------------------------------------------------------
class FillsUp(io.RawIOBase):
    """A file whose disk fills at `limit` bytes: one write fails with `error`, as a full disk (or a file-size
    limit) fails it; the following ones go through, so torch's zip writer sees a hole where data should be
    and raises its own RuntimeError ("unexpected pos") from the OSError."""

    def __init__(self, f, limit: int, error: int = errno.ENOSPC):
        self.f, self.limit, self.error, self.failed = f, limit, error, False

    def writable(self):
        return True

    def write(self, b):
        if not self.failed and self.f.tell() + len(b) > self.limit:
            self.failed = True
            raise OSError(self.error, os.strerror(self.error))
        return self.f.write(b)


def torch_save_filling_up(limit: int, error: int = errno.ENOSPC):
    return lambda obj, f: TORCH_SAVE(obj, FillsUp(f, limit, error))


def test_torch_zip_writer_failure_is_a_checkpoint_write_error(tmp_path, monkeypatch):
    from rnnlab.checkpoint_io import AtomicCheckpointIO

    target, io_ = tmp_path / "last.ckpt", AtomicCheckpointIO()
    ckpt = {"state_dict": {f"w{i}": torch.ones(1000) for i in range(4)}}
    io_.save_checkpoint(ckpt, target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match=r"inline_container\.cc.*unexpected pos") as raw:  # what torch raises
        with open(tmp_path / "raw", "wb") as f:
            TORCH_SAVE(ckpt, FillsUp(f, 6000))
    assert isinstance(raw.value.__context__, OSError)
    for error, reason in [(errno.ENOSPC, "no space left on the device"),
                          (errno.EFBIG, "file too large for a file-size limit")]:
        monkeypatch.setattr(torch, "save", torch_save_filling_up(6000, error))
        with pytest.raises(CheckpointWriteError) as info:
            io_.save_checkpoint(ckpt, target)
        assert str(info.value) == (f"checkpoint {target} could not be written ({reason}): "
                                   "the previous last.ckpt is kept whole")

    def cpp_writer_failure(obj, f):  # torch writing to a path: no OSError at all
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", cpp_writer_failure)
    with pytest.raises(CheckpointWriteError, match=r"\(the write failed: a full disk or a file-size limit\)"):
        io_.save_checkpoint(ckpt, target)
    monkeypatch.setattr(torch, "save", lambda obj, f: (_ for _ in ()).throw(RuntimeError("a bug, not a full disk")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other error stays what it is
        io_.save_checkpoint(ckpt, target)
    monkeypatch.undo()
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "raw"]


@pytest.mark.parametrize("when", ["epoch end", "interrupted.ckpt"])
def test_disk_full_in_a_run_is_one_line_and_checkpoint_error(tmp_path, capsys, monkeypatch, when):
    """The end-of-epoch save (last.ckpt, the best checkpoint), or the save of interrupted.ckpt at a Ctrl-C
    (inside Lightning's shutdown), meets torch's RuntimeError: one line, `status: checkpoint_error`."""
    import rnnlab.checkpoint_io as checkpoint_io

    run = tmp_path / "run"
    real = checkpoint_io.AtomicCheckpointIO.save_checkpoint

    def save(self, checkpoint, path, storage_options=None):
        if when == "epoch end" or str(path).endswith("interrupted.ckpt"):
            with monkeypatch.context() as m:
                m.setattr(torch, "save", torch_save_filling_up(2000))
                return real(self, checkpoint, path, storage_options)
        return real(self, checkpoint, path, storage_options)

    monkeypatch.setattr(checkpoint_io.AtomicCheckpointIO, "save_checkpoint", save)
    line = stopped(run, capsys, *([fault("SIGINT", step=5)] if when == "interrupted.ckpt" else []))
    name = "interrupted" if when == "interrupted.ckpt" else r"(best-epoch000|last)"
    assert re.fullmatch(rf"error: checkpoint {re.escape(str(run / 'checkpoints'))}/{name}\.ckpt could not be written "
                        r"\(no space left on the device\): nothing was written", line), line
    record = metrics(run)
    assert record["status"] == "checkpoint_error" and record["error"] == line.removeprefix("error: ")
    assert checkpoints(run) == []


# A finished checkpoint resumed into another directory ---------------------------------------------------
def test_a_finished_checkpoint_resumed_elsewhere_is_refused_and_records_no_result(finished, tmp_path, capsys):
    other, last = tmp_path / "other", finished / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(other, *RUN, "data.test_fraction=0.1", f"ckpt_path={last}"))
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: ckpt_path={str(last)!r} is invalid: the checkpoint is at the end of its training (epoch 1, "
        "trainer.max_epochs=1): nothing to train; give trainer.max_epochs > 1 to train further"]
    assert metrics(other)["status"] == "config_error"  # no result: the directory may be used again
    assert sorted(p.name for p in other.iterdir()) == ["metrics.json"]  # no checkpoints, no event files
    main_task(compose_config(other, *RUN, "data.test_fraction=0.1", "trainer.max_epochs=2", f"ckpt_path={last}"))
    assert (metrics(other)["status"], metrics(other)["epochs"]) == ("ok", 2)  # more epochs: it trains on


# The learning-rate finder -------------------------------------------------------------------------------
def test_lr_finder_takes_num_training_steps_whatever_max_epochs(tmp_path):
    """22 batches an epoch and max_epochs=1: the range test reads the data twice for its 30 steps (max_epochs
    is lifted for it), and the training that follows keeps max_epochs=1."""
    run = tmp_path / "run"
    main_task(compose_config(run, *RUN, "tune.lr_find=true", "tune.apply=true", "tune.num_training=30",
                             "tune.max_lr=0.5"))
    record = metrics(run)
    assert record["lr_find/steps"] == 30 and record["lr_find/suggestion"] > 0
    assert (record["status"], record["epochs"], record["global_step"]) == ("ok", 1, 22)


# A line after a progress bar --------------------------------------------------------------------------
def test_divergence_line_after_a_progress_bar_starts_its_own_line(tmp_path):
    """The bars write to stdout, the error to stderr: on one terminal the line used to follow the
    validation bar's last frame. Both streams into one buffer, as a terminal shows them."""
    overrides = [o for o in TINY if "progress_bar" not in o] + [
        "model=rnn_scratch", "model.hidden_size=32", "optimizer.lr=20", "data.max_tokens=2000", "trainer.max_epochs=3"]
    screen = io.StringIO()
    cfg = compose_config(tmp_path / "run", *overrides, tiny=False, fast=False)
    with contextlib.redirect_stdout(screen), contextlib.redirect_stderr(screen), pytest.raises(SystemExit):
        main_task(cfg)
    text = screen.getvalue()
    before, line, after = text.partition("error: training diverged")
    assert line and "Epoch 2" in before and before[-1] in "\r\n", repr(before[-200:])
    assert after.count("\n") == 1 and after.endswith("\n") and "\r" not in after  # nothing drawn after it
    assert metrics(tmp_path / "run")["status"] == "diverged"


# Real commands -------------------------------------------------------------------------------------------
def train(run, *overrides, env=None, preexec_fn=None):
    return subprocess.run([sys.executable, "train.py", *TINY, *RUN, f"hydra.run.dir={run}", *overrides], cwd=ROOT,
                          capture_output=True, text=True, timeout=LIMIT, env=env, preexec_fn=preexec_fn)


@pytest.mark.slow  # two process runs; the default suite has the same path in-process
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_real_command_stop_in_data_build_and_in_evaluation(tmp_path, signal_name):
    """train.py itself: a signal while the corpus loads (sent by a fault injected through sitecustomize),
    and one in the evaluation's test loop, then the resume that evaluates."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import os, signal
        from rnnlab.data import TextDataModule
        setup = TextDataModule.setup
        def stop_then_setup(self, *args, **kwargs):
            os.kill(os.getpid(), signal.{signal_name})
            return setup(self, *args, **kwargs)
        TextDataModule.setup = stop_then_setup
    """))
    run = tmp_path / "early"
    proc = train(run, env={**os.environ, "PYTHONPATH": str(inject)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [f"interrupted by {signal_name} during data build: nothing was trained"]
    assert metrics(run)["phase"] == "data build" and checkpoints(run) == []

    run = tmp_path / "late"
    proc = train(run, "data.test_fraction=0.1", fault(signal_name, stage="test"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"interrupted by {signal_name} during evaluation")
    assert metrics(run)["phase"] == "evaluation" and checkpoints(run) == ["best-epoch000.ckpt", "last.ckpt"]
    resumed = train(run, "data.test_fraction=0.1", "ckpt_path=last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(run)["status"] == "ok" and metrics(run)["test/ppl"] > 0


@pytest.mark.slow  # one process run; the default suite has the same path in-process
def test_real_command_disk_full_under_a_file_size_limit(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) below the checkpoint's size: the write fails with EFBIG (SIGXFSZ
    ignored, as a full disk fails with ENOSPC); torch raises from its zip writer. One line, no traceback."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (24_000, 24_000))  # the checkpoint: about 41,000 bytes

    run = tmp_path / "run"
    proc = train(run, preexec_fn=limit_file_size)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        rf"error: checkpoint {re.escape(str(run / 'checkpoints'))}/(best-epoch000|last)\.ckpt could not be written "
        r"\((file too large for a file-size limit|the write failed: a full disk or a file-size limit)\): "
        r"nothing was written", lines[0]), lines
    assert metrics(run)["status"] == "checkpoint_error" and checkpoints(run) == []


@pytest.mark.slow
@pytest.mark.parametrize("group", [True, False], ids=["ctrl-c to every process", "sigterm to rank 0"])
def test_ddp_stops_on_a_signal_saves_and_resumes(tmp_path, group):
    """Two CPU processes: Ctrl-C (SIGINT to the process group) or SIGTERM to rank 0 alone stops both at
    one batch, with interrupted.ckpt, one line and `status: interrupted` (it used to hang in a broadcast);
    the resume from it finishes the run."""
    import time

    run = tmp_path / "ddp"
    args = [sys.executable, "train.py", *TINY, "trainer=ddp_cpu", "trainer.devices=2", "data.max_tokens=40000",
            "trainer.max_epochs=30", f"hydra.run.dir={run}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    while not (run / "checkpoints" / "last.ckpt").exists():  # training is under way
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.5)
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=600)  # only against a hang
    metrics = json.loads((run / "metrics.json").read_text())
    name = "SIGINT" if group else "SIGTERM"
    assert proc.returncode == 1 and metrics["status"] == "interrupted" and metrics["signal"] == name
    assert err.strip().splitlines() == [f"interrupted by {name} during training at epoch {metrics['epochs']}, step "
                                        f"{metrics['global_step']}; "
                                        f"resume with ckpt_path={run}/checkpoints/interrupted.ckpt"]
    resume = subprocess.run([*args[:-2], f"trainer.max_epochs={metrics['epochs'] + 1}", f"hydra.run.dir={run}",
                             f"ckpt_path={run}/checkpoints/interrupted.ckpt"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
