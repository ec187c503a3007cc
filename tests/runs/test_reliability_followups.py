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
