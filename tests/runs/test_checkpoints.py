"""Checkpoint files: last.ckpt after every epoch, atomic writes on any filesystem, a full disk, and
checkpoints as plain data (format 2, loadable with weights_only=True; format 1 converted on request)."""

import errno
import functools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import compose_config
from rnnlab.checkpoint_io import AtomicCheckpointIO, remove_stale_temporaries, temporary_path
from rnnlab.checkpoints import load_language_model
from rnnlab.cli.convert import main as convert_main
from rnnlab.cli.generate import main as generate_main
from rnnlab.errors import CheckpointWriteError, ConfigError
from rnnlab.models import LanguageModel, build_core
from rnnlab.models.spec import core_from_spec, optimizer_from_spec
from rnnlab.run.job import main_task


def load(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Three epochs in which the monitored metric never 'improves' (mode=max on a falling val/ppl): the
    case where Lightning 2.6 alone keeps last.ckpt at the first epoch."""
    run = tmp_path_factory.mktemp("trained") / "run"
    main_task(compose_config(run, "trainer.max_epochs=3", "callbacks.model_checkpoint.mode=max"))
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    return run


def test_last_ckpt_holds_the_final_epoch_when_the_monitored_metric_gets_worse(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    last, best = load(trained_run / "checkpoints" / "last.ckpt"), load(trained_run / metrics["best_checkpoint"])
    assert best["epoch"] == 0  # the only 'best' epoch
    assert last["epoch"] == 2 and last["global_step"] == metrics["global_step"] == 3 * 44
    assert sorted(p.name for p in (trained_run / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


# Atomic writes ----------------------------------------------------------------------------------------
def test_checkpoint_is_written_beside_its_target_fsynced_and_renamed(tmp_path, monkeypatch):
    target = tmp_path / "ckpts" / "last.ckpt"
    written, synced = [], []
    real_save, real_fsync = torch.save, os.fsync
    monkeypatch.setattr(torch, "save", lambda obj, f: (written.append(f.name), real_save(obj, f)))
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, target)
    inode = target.stat().st_ino
    io.save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, target)
    assert written == [str(temporary_path(target))] * 2
    assert temporary_path(target).name == f".last.ckpt.tmp-{os.getpid()}"
    assert len(synced) >= 2  # the file (and its directory)
    assert target.stat().st_ino != inode and torch.equal(load(target)["state_dict"]["w"], torch.zeros(2))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


def test_disk_full_during_a_save_keeps_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)

    def fill_the_disk(obj, f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_the_disk)
    with pytest.raises(CheckpointWriteError) as info:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert str(info.value) == (f"checkpoint {target} could not be written (no space left on the device): "
                               "the previous last.ckpt is kept whole")
    monkeypatch.undo()
    assert torch.equal(load(target)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_disk_full_during_a_run_ends_with_one_line(run_copy, monkeypatch, capsys):
    def fill_the_disk(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    last = run_copy / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", fill_the_disk)
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(run_copy, "trainer.max_epochs=4", "callbacks.model_checkpoint.mode=max",
                                 "ckpt_path=last"))
    monkeypatch.undo()
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    # The first save of the resumed run (a new best here: the copied run's best scores are not reloaded).
    assert len(err) == 1 and re.fullmatch(
        rf"error: checkpoint {re.escape(str(last.parent))}/(best-epoch003|last)\.ckpt could not be written "
        r"\(no space left on the device\): (nothing was written|the previous last\.ckpt is kept whole)", err[0]), err
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]  # no temporary file
    record = json.loads((run_copy / "metrics.json").read_text())
    assert record["status"] == "checkpoint_error" and record["last_good_checkpoint"] == "checkpoints/last.ckpt"


def test_temporary_file_of_a_killed_save_is_removed_at_the_next_start(run_copy):
    ckpts = run_copy / "checkpoints"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = ckpts / f".last.ckpt.tmp-{int(dead.stdout)}"
    live = ckpts / f".last.ckpt.tmp-{os.getppid()}"  # a save in flight in a live process is left alone
    orphan.write_bytes(b"partial")
    live.write_bytes(b"in flight")
    main_task(compose_config(run_copy, "trainer.max_epochs=4", "callbacks.model_checkpoint.mode=max", "ckpt_path=last"))
    assert not orphan.exists() and live.exists()
    assert remove_stale_temporaries(ckpts) == [] and load(ckpts / "last.ckpt")["epoch"] == 3


# Checkpoints as data ------------------------------------------------------------------------------------
def test_checkpoints_are_plain_data_loadable_with_weights_only(trained_run):
    ckpt = load(trained_run / "checkpoints" / "last.ckpt")  # raises on any pickled object
    assert ckpt["rnnlab_format"] == 2
    hp = ckpt["hyper_parameters"]
    assert hp["core"] == {"_target_": "rnnlab.models.build_core", "kind": "lstm", "hidden_size": 24, "num_layers": 1,
                          "bidirectional": False, "dropout": 0.0, "compile": False}
    assert hp["optimizer"] == {"_target_": "torch.optim.SGD", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0}
    assert hp["scheduler"] is None and hp["vocab"][:3] == ["<unk>", " ", "e"]
    model = LanguageModel.load_from_checkpoint(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    assert model.generate("time", 5).startswith("time")


def test_forecast_checkpoints_with_the_mlp_are_plain_data(tmp_path):
    run = tmp_path / "sine"
    main_task(compose_config(run, "task=forecast", "model=mlp", "trainer.max_epochs=1", tiny=False))
    hp = load(run / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert hp["core"] == {"_target_": "rnnlab.models.mlp.AutoregressiveMLP", "tau": 4, "hidden_size": 24}
    assert hp["optimizer"]["_target_"] == "torch.optim.Adam" and hp["series"]["columns"] == ["x"]
    from rnnlab.forecast import load_forecast_model

    assert load_forecast_model(run / "checkpoints" / "last.ckpt").window == 4  # loaded with weights_only=True


@pytest.mark.parametrize("build, spec, message", [
    (core_from_spec, {"_target_": "os.system", "command": "true"}, "model._target_='os.system' is invalid"),
    (optimizer_from_spec, {"_target_": "torch.nn.Linear", "in_features": 1}, "must be a torch.optim.Optimizer class"),
    (optimizer_from_spec, {"_target_": "torch.optim.Nope"}, "optimizer._target_='torch.optim.Nope' cannot be imported"),
])
def test_specs_build_only_objects_of_their_kind(build, spec, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(spec, 3)


@pytest.fixture
def format_one(trained_run, tmp_path):
    """A checkpoint as the previous rnnlab wrote it: the core and optimizer as pickled partials, no format key."""
    ckpt = load(trained_run / "checkpoints" / "last.ckpt")
    hp = ckpt["hyper_parameters"]
    core = dict(hp["core"])
    del core["_target_"]
    hp["core"] = functools.partial(build_core, core.pop("kind"), **core)
    hp["optimizer"] = functools.partial(torch.optim.SGD, lr=1.0, momentum=0.0, weight_decay=0.0)
    del ckpt["rnnlab_format"]
    path = tmp_path / "old.ckpt"
    torch.save(ckpt, path)
    return path


def test_format_one_checkpoint_is_named_in_one_line_and_converts(format_one, tmp_path, capsys):
    assert generate_main([str(format_one)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: checkpoint={str(format_one)!r} is a checkpoint of rnnlab format 1 (it pickles Python "
                   f"objects; this version reads format 2, plain data): convert it with "
                   f"`rnnlab-convert-checkpoint {format_one}` if you trust the file"]
    with pytest.raises(SystemExit):
        main_task(compose_config(tmp_path / "resume", f"ckpt_path={format_one}", "trainer.max_epochs=4"))
    assert "is a checkpoint of rnnlab format 1" in capsys.readouterr().err

    assert convert_main([str(format_one)]) == 0
    assert (tmp_path / "old.ckpt.format1").is_file()
    converted = load(format_one)
    assert converted["rnnlab_format"] == 2 and converted["hyper_parameters"]["core"]["kind"] == "lstm"
    assert load_language_model(format_one).generate("time", 3).startswith("time")
    assert convert_main([str(format_one)]) == 2 and "already is of format 2" in capsys.readouterr().err
