"""Stopping and resuming: SIGINT, SIGTERM and SIGKILL in the middle of an epoch, then a resume that
ends exactly where an uninterrupted run ends; resume checks that refuse in one line before training.

The signals are sent by the run itself at a given optimizer step (rnnlab.callbacks.SignalAtStep,
added by an override), so no test waits on the wall clock; the bounds below only stop a hung run.
"""

import json
import logging
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, RunEvents, compose_config
from rnnlab.run.job import main_task

# 44 batches an epoch (3600 training characters in 8 streams of 10-step windows); dropout, so the RNG state matters too.
RUN = TINY + ["trainer.max_epochs=2", "seed=3", "model.num_layers=2", "model.dropout=0.3"]
MID_SECOND_EPOCH = 60
LIMIT = 900  # seconds: only against a hung run on a loaded machine


def fault(signal: str, step: int = MID_SECOND_EPOCH) -> str:
    return f"+callbacks.fault={{_target_: rnnlab.callbacks.SignalAtStep, step: {step}, signal: {signal}}}"


def train(run, *extra):
    return subprocess.run([sys.executable, "train.py", *RUN, f"hydra.run.dir={run}", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=LIMIT)


def metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted")
    proc = train(run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return metrics(run)


def assert_same_end(resumed: dict, whole: dict) -> None:
    assert (resumed["epochs"], resumed["global_step"]) == (whole["epochs"], whole["global_step"]) == (2, 88)
    assert resumed["val/ppl"] == pytest.approx(whole["val/ppl"], abs=1e-4)
    assert resumed["train/ppl"] == pytest.approx(whole["train/ppl"], abs=1e-4)  # the resumed epoch's running NLL


# One signal in the default suite.
@pytest.mark.parametrize("signal", ["SIGINT", pytest.param("SIGTERM", marks=pytest.mark.slow)])
def test_signal_mid_epoch_saves_interrupted_ckpt_and_its_resume_equals_an_uninterrupted_run(tmp_path, uninterrupted,
                                                                                            signal):
    run = tmp_path / "run"
    proc = train(run, fault(signal))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    ckpt = run / "checkpoints" / "interrupted.ckpt"
    # The step in progress when the signal arrived is finished, then training stops.
    assert proc.stderr.strip().splitlines()[-1] == (
        f"interrupted by {signal} during training at epoch 1, step {MID_SECOND_EPOCH + 1}; "
        f"resume with ckpt_path={ckpt}")
    record = metrics(run)
    assert record["status"] == "interrupted" and record["signal"] == signal and run / record["checkpoint"] == ckpt
    saved = load(ckpt)
    assert saved["global_step"] == record["global_step"] == MID_SECOND_EPOCH + 1
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [
        {"epoch": 1, "batches_done": MID_SECOND_EPOCH + 1 - 44}]
    assert saved["rnnlab_epoch_state"]["carry"] and saved["rnnlab_epoch_state"]["state"] is not None
    assert RunEvents(run).scalars("val/ppl")  # the loggers were flushed

    resumed = train(run, f"ckpt_path={ckpt}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(metrics(run), uninterrupted)
    assert not ckpt.exists()  # superseded by last.ckpt once the run finished


def test_sigkill_mid_epoch_then_resume_from_last_equals_an_uninterrupted_run(tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = train(run, fault("SIGKILL"))
    assert proc.returncode == -9 and not (run / "metrics.json").exists()
    assert load(run / "checkpoints" / "last.ckpt")["epoch"] == 0  # the last finished epoch
    resumed = train(run, "ckpt_path=last")  # in place: the run's own last.ckpt
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_end(metrics(run), uninterrupted)


# Resume checks, before anything is written ---------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    main_task(compose_config(run))
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def resume_error(run, capsys, *overrides, code=2) -> str:
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(run, *overrides))
    assert info.value.code == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_ckpt_path_last_without_a_last_ckpt_is_refused(tmp_path, capsys):
    run = tmp_path / "fresh"
    line = resume_error(run, capsys, "ckpt_path=last")
    assert f"ckpt_path=last but {run / 'checkpoints' / 'last.ckpt'} does not exist" in line
    assert not (run / "checkpoints").exists() and not list(run.rglob("events.out.tfevents.*"))
    assert metrics(run)["status"] == "config_error"


def test_ckpt_path_last_after_a_stop_resumes_from_interrupted_ckpt_and_equals_an_uninterrupted_run(tmp_path, caplog):
    """Stopped mid-way through the second epoch: interrupted.ckpt is newer than last.ckpt (the first
    epoch's), and `ckpt_path=last` takes it: nothing trained since last.ckpt is lost, and the run ends
    with the metrics of one never stopped."""
    whole = tmp_path / "whole"
    main_task(compose_config(whole, *RUN))
    run = tmp_path / "stopped"
    with pytest.raises(SystemExit):
        main_task(compose_config(run, *RUN, fault("SIGINT")))
    assert metrics(run)["status"] == "interrupted" and (run / "checkpoints" / "last.ckpt").is_file()
    with caplog.at_level(logging.INFO, logger="rnnlab.run.resume"):
        main_task(compose_config(run, *RUN, "ckpt_path=last"))
    assert f"ckpt_path=last: resuming from {run / 'checkpoints' / 'interrupted.ckpt'}" in caplog.text
    resumed, expected = metrics(run), metrics(whole)
    assert resumed["status"] == "ok" and resumed["global_step"] == expected["global_step"]
    for key in ("val/ppl", "train/ppl"):
        assert resumed[key] == pytest.approx(expected[key], abs=1e-5), key
    assert not (run / "checkpoints" / "interrupted.ckpt").exists()


@pytest.mark.parametrize("change, message", [
    ("order", "the same {n} tokens in another order (index 1 is 'e' there, ' ' here)"),
    ("content", "1 tokens only in the checkpoint (e.g. '§') and 1 only in the data (e.g. 'e')"),
])
def test_checkpoint_with_another_vocabulary_is_refused_naming_the_difference(run_copy, capsys, change, message):
    last = run_copy / "checkpoints" / "last.ckpt"
    ckpt = load(last)
    vocab = ckpt["hyper_parameters"]["vocab"]
    assert vocab[1:3] == [" ", "e"]
    if change == "order":
        vocab[1], vocab[2] = vocab[2], vocab[1]
    else:
        vocab[2] = "§"
    other = run_copy / "other.ckpt"
    torch.save(ckpt, other)
    line = resume_error(run_copy, capsys, f"ckpt_path={other}", "trainer.max_epochs=3")
    assert "was trained on another vocabulary than the data's: " + message.format(n=len(vocab)) in line


def test_truncated_last_ckpt_is_refused_naming_the_best_checkpoint(run_copy, capsys):
    last = run_copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    best = next(p for p in (run_copy / "checkpoints").glob("best-*.ckpt"))
    line = resume_error(run_copy, capsys, "ckpt_path=last", "trainer.max_epochs=3")
    assert line == (f"error: ckpt_path=last: {last} is truncated or corrupt; resume from the best checkpoint "
                    f"instead: ckpt_path={best}")


def test_resuming_a_finished_run_says_so_and_changes_nothing(run_copy, capsys):
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    main_task(compose_config(run_copy, "ckpt_path=last"))  # returns: exit status 0
    out = capsys.readouterr()
    assert out.err == "" and out.out.strip().splitlines()[-1:] == [
        f"{run_copy} is a finished run (epoch 2 of trainer.max_epochs=2, metrics.json status ok): "
        "nothing to resume, nothing changed; raise trainer.max_epochs to train it further"]
    after = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert after == before  # metrics.json, checkpoints and event files untouched
