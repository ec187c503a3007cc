"""Rows of issue 26 that join two mechanisms: a logger's missing package named by its extra, a `~` value
Hydra cannot parse, Ctrl-C before a run starts, a directory stopped before training is free again, a
series path with `~`, and a resumed record's paths kept right."""

from __future__ import annotations

import json
import sys

import pytest
from omegaconf import OmegaConf

from rnnlab.cli import common
from rnnlab.data.table import read_table
from rnnlab.errors import ConfigError
from rnnlab.run import rundir
from rnnlab.run.build import build
from rnnlab.run.outputs import write_metrics
from rnnlab.run.resume import read_run_metrics


@pytest.mark.parametrize("target, extra", [("lightning.pytorch.loggers.MLFlowLogger", "mlflow"),
                                           ("lightning.pytorch.loggers.WandbLogger", "wandb")])
def test_a_logger_whose_package_is_missing_names_its_extra(target, extra):
    pytest.importorskip("lightning")
    try:
        __import__(extra)
        pytest.skip(f"{extra} is installed here")
    except ImportError:
        pass
    with pytest.raises(ConfigError, match=rf'logger.{extra} needs {extra}, which is not installed: '
                                          rf'pip install "rnnlab\[{extra}\]"'):
        build(OmegaConf.create({"_target_": target}), f"logger.{extra}")


def test_an_unquoted_tilde_value_gets_the_quoting_hint(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["train.py", "data.path=~/corpus.txt", "seed=1"])
    hint = common._override_hint("LexerNoViableAltException: data.path=~/corpus.txt")
    assert hint == "; quote a value that starts with ~: data.path='~/...' (~ alone deletes a key)"
    monkeypatch.setattr(sys, "argv", ["train.py", "~logger"])  # a deletion is not a value
    assert common._override_hint("LexerNoViableAltException: ~logger") == ""


def test_ctrl_c_before_the_run_starts_is_one_line_and_exit_status_1(capsys):
    def start():
        raise KeyboardInterrupt

    assert common.run(start) == 1
    assert capsys.readouterr().err == "interrupted by SIGINT during start-up\n"


def test_a_run_stopped_before_training_leaves_its_directory_free(tmp_path):
    write_metrics(tmp_path, {"status": "interrupted", "phase": "data", "signal": "SIGINT", "checkpoint": None})
    assert rundir.previous_run(tmp_path) is None
    assert "results of another run" in rundir.previous_run(tmp_path, fresh_only=True)  # never for an eval
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    write_metrics(tmp_path, {"status": "interrupted", "phase": "training", "checkpoint": str(tmp_path / "x.ckpt")})
    assert "status interrupted" in rundir.previous_run(tmp_path)


def test_a_series_path_with_a_tilde_is_read_from_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "s.csv").write_text("t,y\n" + "".join(f"{i},{i * i % 7}\n" for i in range(30)))
    table = read_table("~/s.csv")
    assert table.values.shape[0] == 30 and table.values[3, -1] == 2


def test_a_resumed_record_reads_its_paths_against_its_own_directory(tmp_path):
    run = tmp_path / "run"
    write_metrics(run, {"status": "interrupted", "checkpoint": str(run / "checkpoints" / "last.ckpt"),
                        "lr_find/plot": str(run / "lr_find.png")})
    assert json.loads((run / "metrics.json").read_text())["lr_find/plot"] == "lr_find.png"
    moved = tmp_path / "moved"
    run.rename(moved)
    record = read_run_metrics(moved)
    assert record["checkpoint"] == str(moved / "checkpoints" / "last.ckpt")
    assert record["lr_find/plot"] == str(moved / "lr_find.png")


# Found by trying the round's rows as a user ------------------------------------------------------------------
def test_a_run_directory_inside_another_run_is_refused_before_anything_is_made(tmp_path):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    for inside in (run / "checkpoints", run / ".hydra", run / "checkpoints" / "new"):
        with pytest.raises(ConfigError, match=rf"lies inside the run directory '{run}': give a directory of its own"):
            rundir.claim(inside, "hydra.run.dir", resume=False)
    assert not (run / "checkpoints" / "new").exists() and not (run / "checkpoints" / ".lock").exists()
    assert rundir.claim(tmp_path / "beside", "hydra.run.dir", resume=False) >= 0  # a sibling is fine


def test_a_full_disk_while_claiming_is_one_line_naming_the_directory(tmp_path, monkeypatch):
    import errno
    import os

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir.os, "write", full)
    with pytest.raises(ConfigError, match=r"hydra.run.dir='.*/r' cannot be written \(No space left on device\)"):
        rundir.claim(tmp_path / "r", "hydra.run.dir", resume=False)
    assert not (tmp_path / "r" / ".lock").exists()


def test_a_misspelt_early_stopping_option_is_refused_while_it_is_off(tmp_path):
    from conftest import compose_config
    from rnnlab.schema import validate

    cfg = compose_config(tmp_path, "+callbacks.early_stopping.patiense=5")
    with pytest.raises(ConfigError, match=r"callbacks.early_stopping.patiense is not an option .*: allowed are "
                                          r"monitor, min_delta, patience"):
        validate(cfg)


def test_a_single_plugin_node_reaches_the_trainer(tmp_path):
    from lightning.fabric.plugins.environments import LightningEnvironment

    from conftest import compose_config
    from rnnlab.checkpoint_io import AsyncAtomicCheckpointIO
    from rnnlab.run.build import build_run

    cfg = compose_config(tmp_path,
                         "+trainer.plugins={_target_: lightning.fabric.plugins.environments.LightningEnvironment}")
    trainer = build_run(cfg).trainer
    assert isinstance(trainer._accelerator_connector.cluster_environment, LightningEnvironment)
    assert isinstance(trainer.strategy.checkpoint_io, AsyncAtomicCheckpointIO)


def test_a_runs_final_line_is_kept_in_its_log_file_too(tmp_path, capsys):
    import logging

    from rnnlab.run.result import report

    handler = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        report("interrupted by SIGINT during data build: nothing was trained")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert capsys.readouterr().err == "interrupted by SIGINT during data build: nothing was trained\n"
    assert (tmp_path / "train.log").read_text() == "interrupted by SIGINT during data build: nothing was trained\n"


def test_an_ensemble_names_the_jobs_it_leaves_out(tmp_path, caplog):
    import logging

    from rnnlab.ensemble import member_checkpoints

    for job, record in (("0", None), ("1", {"status": "diverged", "error": "nan"})):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "config.yaml").write_text("seed: 1\n")
        if record:
            write_metrics(tmp_path / job, record)
    with caplog.at_level(logging.WARNING, logger="rnnlab.ensemble"):
        assert member_checkpoints(tmp_path) == ([], {})
    assert [r.getMessage() for r in caplog.records] == [
        "ensemble: job 1 left out: status diverged",
        "ensemble: job 0 left out: no metrics.json (killed, or still running)"]
