"""Issue 26, the config rows: a key nothing declares is refused wherever it comes from; the config's
trainer.plugins reach the Trainer beside the atomic checkpoint writer; and one clear line each for a core
too large for the memory, trainer.devices=-1 on a CPU, a data.path with ~, held-out fractions that leave
too little training data, and dropout on a one-layer core."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.precision import MixedPrecision

from conftest import CONF, ROOT, TINY, assert_refused_in_process, assert_refused_run, compose_config, one_error_line
from rnnlab.checkpoint_io import AsyncAtomicCheckpointIO
from rnnlab.errors import ConfigError
from rnnlab.run.build import build_run
from rnnlab.schema import check_declared_keys, validate

ON_CPU = not torch.cuda.is_available() and not torch.backends.mps.is_available()
PRECISION_PLUGIN = "{_target_:lightning.pytorch.plugins.precision.MixedPrecision,precision:bf16-mixed,device:cpu}"


# Each row in process: main_task on the composed config (the real error path, without a process start) -------
ROWS = [
    # 1. keys nothing declares, at the top level, in a plain node, in a map of named objects
    (["+foo=1"], r"^error: foo is not an option: the config's top level has seed, ckpt_path, print_config, "
                 r"optimized_metric, debug_run, tune, paths, model, .*evaluation$"),
    (["+tune.lr_finder=true"], r"^error: tune.lr_finder is not an option: tune has lr_find, apply, min_lr, max_lr, "
                               r"num_training, mode \(did you mean tune.lr_find\?\)$"),
    pytest.param(["+paths.logdir=x"], r"^error: paths.logdir is not an option: paths has log_dir, output_dir, "
                 r"cache_dir \(did you mean paths.log_dir\?\)$", marks=pytest.mark.slow),
    (["+task.monitr=val/loss"], r"^error: task.monitr is not an option: task has name, monitor, "
                                r"summary \(did you mean task.monitor\?\)$"),
    (["+callbacks.foo=1"], r"^error: callbacks.foo=1 is invalid: callbacks holds named objects: give callbacks.foo a "
                           r"node with a _target_, or null$"),
    pytest.param(["+evaluation.extra=x"], r"^error: evaluation.extra='x' is invalid: evaluation holds named objects",
                 marks=pytest.mark.slow),
    # 2. plugins the Trainer cannot take, or that clash with trainer.precision
    (["+trainer.plugins=[bf16-mixed]"], r"^error: trainer.plugins=\['bf16-mixed'\] is invalid: must be a list of nodes "
                                        r"with a _target_ .*a precision by name is trainer.precision"),
    (["+trainer.plugins=[{_target_:nope.Nope}]"], r"^error: trainer.plugins\[0\]._target_='nope.Nope' is invalid: it "
                                                  r"names nothing that can be imported$"),
    (["trainer.precision=bf16-mixed", f"+trainer.plugins=[{PRECISION_PLUGIN}]"],
     r"^error: trainer.precision=bf16-mixed and trainer.plugins \(lightning.pytorch.plugins.precision.MixedPrecision\) "
     r"both set the precision: give one of them"),
    # 3. one clear line each
    (["model.hidden_size=1000000"], r"^error: model.hidden_size=1000000 is too large: the lstm core alone has 4e\+12 "
                                    r"parameters, 29.1 TiB with their gradients \(4-byte values\), more than "),
    pytest.param(["model=gru_scratch", "model.hidden_size=20000", "model.num_layers=3", "model.bidirectional=true"],
                 r"^error: model.hidden_size=20000 with model.num_layers=3 and model.bidirectional=true is too large: "
                 r"the gru_scratch core alone has 1.68e\+10 parameters", marks=pytest.mark.slow),
    (["data.path='~/rnnlab-no-such-corpus.txt'"],
     r"^error: data.path='~/rnnlab-no-such-corpus.txt' \(/.+/rnnlab-no-such-corpus.txt\) does not exist: give a UTF-8 "
     r"text file$"),
    (["data.val_fraction=0.999"], r"^error: data.val_fraction=0.999 is invalid: with data.test_fraction=0 it must lie "
                                  r"in \(0, 0.5\] \(the held-out parts may be at most half of the corpus"),
    (["data.test_fraction=0.45"], r"^error: data.test_fraction=0.45 is invalid: with data.val_fraction=0.1 it must lie "
                                  r"in \[0, 0.4\]"),
    (["model.dropout=0.5"], r"^error: model.dropout=0.5 has no effect with model.num_layers=1: dropout acts between "
                            r"stacked layers; set model.num_layers >= 2 or model.dropout=0$"),
    pytest.param(["model=rnn_scratch", "model.dropout=0.2"], r"^error: model.dropout=0.2 has no effect with "
                 r"model.num_layers=1", marks=pytest.mark.slow),  # the scratch cores drop between layers too
] + ([(["trainer.devices=-1"], r"^error: trainer.devices=-1 is invalid on the CPU: give a number of processes \(1, "
                                r"or more with trainer.strategy=ddp\); -1 \(all\) and device lists select GPUs"),
      pytest.param(["trainer.accelerator=cpu", "trainer.devices=[0,1]"], r"^error: trainer.devices=\[0, 1\] is invalid "
                   r"on the CPU", marks=pytest.mark.slow)]
     if ON_CPU else [])


def _ids(rows):
    return [" ".join((r.values if hasattr(r, "values") else r)[0]) for r in rows]


@pytest.mark.parametrize("overrides, message", ROWS, ids=_ids(ROWS))
def test_bad_config_is_one_line_and_leaves_only_the_error(make_cfg, capsys, overrides, message):
    assert_refused_in_process(make_cfg(*overrides), capsys, message)


@pytest.mark.parametrize("overrides", [
    ["+callbacks.lr_monitor={_target_:lightning.pytorch.callbacks.LearningRateMonitor}"],  # a new named object
    ["callbacks.early_stopping=null", "logger=many"],
    ["model.num_layers=2", "model.dropout=0.5"],
    ["data.val_fraction=0.3", "data.test_fraction=0.2"],
    ["trainer.devices=1", "trainer.accelerator=cpu"],
])
def test_what_is_declared_is_accepted(make_cfg, overrides):
    validate(make_cfg(*overrides))


def test_the_memory_bound_is_the_devices(make_cfg, monkeypatch):
    """A core that fits in the machine's memory is refused on a (fake) 1 GiB GPU: the bound is where it trains."""
    cfg = make_cfg("model.hidden_size=12000", "trainer.accelerator=gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: type("P", (), {"total_memory": 2**30}))
    with pytest.raises(ConfigError, match=r"model.hidden_size=12000 is too large: .* more than each GPU's memory "
                                          r"\(1.0 GiB\)"):
        validate(cfg)


# Shipped presets still validate --------------------------------------------------------------------------
def options(*groups: str) -> list[str]:
    return [f"{g}={p.stem}" for g in groups for p in sorted((CONF / g).glob("*.yaml")) if not p.stem.startswith("_")]


FORECAST_ONLY = {"data=co2", "data=elnino", "data=macro", "data=series", "data=sine", "data=sunspots", "model=mlp",
                 "module=forecast", "callbacks=forecast", "evaluation=forecast"}
AVAILABLE = {"trainer=gpu": torch.cuda.is_available(), "trainer=ddp": torch.cuda.is_available(),
             "trainer=mps": torch.backends.mps.is_available()}
# The _global_ presets set keys across the whole config: in the default suite; the rest with -m slow.
GLOBAL_PRESETS = options("experiment", "debug", "hparams_search", "launcher") + ["logger=mlflow", "task=forecast"]
OTHER_OPTIONS = [o for o in options("callbacks", "data", "evaluation", "logger", "model", "module", "optimizer",
                                    "paths", "progress_bar", "task", "trainer") if o not in GLOBAL_PRESETS]


@pytest.fixture(scope="module")
def compose_train():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda *overrides: compose("train", overrides=["paths.output_dir=/nonexistent/run", *overrides])
    GlobalHydra.instance().clear()


def check_option_validates(compose_train, option):
    extra = ["task=forecast"] if option in FORECAST_ONLY else []
    extra += ["data.bundled=co2"] if option == "data=series" else []
    cfg = compose_train(option, *extra)
    if not AVAILABLE.get(option, True):
        with pytest.raises(ConfigError, match="is available on this machine|no CUDA GPU is visible"):
            validate(cfg)
    else:
        validate(cfg)


@pytest.mark.parametrize("option", GLOBAL_PRESETS)
def test_every_global_preset_validates(compose_train, option):
    check_option_validates(compose_train, option)


@pytest.mark.slow  # 40 more compositions (~9 s); the _global_ presets above are the ones that set keys across groups
@pytest.mark.parametrize("option", OTHER_OPTIONS)
def test_every_group_option_validates(compose_train, option):
    check_option_validates(compose_train, option)


def test_a_users_experiment_file_with_an_undeclared_key_is_refused(tmp_path):
    """Not only `+key` on the command line: a key from a YAML file the user wrote (an experiment in a
    config directory of their own) is refused the same way."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\ntune:\n  lr_finder: true\n")
    cfg = compose_config(tmp_path / "run", f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine")
    with pytest.raises(ConfigError, match=r"^tune.lr_finder is not an option: tune has lr_find, .*\(did you mean "
                                          r"tune.lr_find\?\)$"):
        validate(cfg)


def test_eval_config_keys():
    """eval.py's config: its own keys are checked; `data` takes any key (+data.x: changes to the training
    run's data options, checked against the data module when evaluating)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        good = compose("eval", overrides=["ckpt_path=x.ckpt", "+data.val_batch_size=64", "logger=csv"])
        bad = compose("eval", overrides=["ckpt_path=x.ckpt", "+num_token=5"])
    check_declared_keys(good, "eval")
    with pytest.raises(ConfigError, match=r"^num_token is not an option: .* \(did you mean num_tokens\?\)$"):
        check_declared_keys(bad, "eval")


# 2. trainer.plugins: the config's plugins and the atomic checkpoint writer -------------------------------
def test_config_plugins_reach_the_trainer_with_the_atomic_writer(make_cfg):
    parts = build_run(make_cfg(f"+trainer.plugins=[{PRECISION_PLUGIN}]"))
    assert isinstance(parts.trainer.precision_plugin, MixedPrecision)
    assert parts.trainer.precision_plugin.precision == "bf16-mixed"
    assert type(parts.trainer.strategy.checkpoint_io) is AsyncAtomicCheckpointIO  # the atomic writer, in a thread


def test_a_checkpoint_io_plugin_of_the_config_replaces_the_atomic_writer_with_a_warning(make_cfg, caplog):
    with caplog.at_level(logging.WARNING, logger="rnnlab.run.build"):
        parts = build_run(make_cfg("+trainer.plugins=[{_target_:lightning.pytorch.plugins.io.TorchCheckpointIO}]"))
    assert type(parts.trainer.strategy.checkpoint_io) is TorchCheckpointIO
    assert [r.getMessage() for r in caplog.records] == [
        "trainer.plugins: checkpoints are written by TorchCheckpointIO, not by rnnlab's atomic writer (a kill while "
        "saving may leave a partial file)"]


# Through the real command --------------------------------------------------------------------------------
def train(*args: str, home: Path | None = None):
    env = dict(os.environ, HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="1", **({"HOME": str(home)} if home else {}))
    return subprocess.run([sys.executable, "train.py", *TINY, "trainer.max_epochs=1", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.slow  # the in-process table refuses the same keys; this is the real command
def test_process_command_line_key_nothing_declares(tmp_path):
    """`+tune.lr_finder=true` (a typo of tune.lr_find) trained normally; the line names the key as given."""
    run = tmp_path / "run"
    proc = train("+tune.lr_finder=true", f"hydra.run.dir={run}")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert line == ("error: +tune.lr_finder is not an option: tune has lr_find, apply, min_lr, max_lr, num_training, "
                    "mode (did you mean tune.lr_find?)")
    assert_refused_run(run, line)


@pytest.mark.slow  # one process run per row; the in-process table above checks every row in the default suite
@pytest.mark.parametrize("overrides, line", [
    (["+foo=1"], "error: +foo is not an option: the config's top level has seed, ckpt_path, print_config, "
                 "optimized_metric, debug_run, tune, paths, model, optimizer, trainer, logger, task, callbacks, "
                 "module, data, evaluation"),
    (["model.hidden_size=1000000"], "error: model.hidden_size=1000000 is too large: the lstm core alone has 4e+12 "
                                    "parameters, 29.1 TiB with their gradients (4-byte values), more than "),
    (["data.path='~/no-such-corpus.txt'"], "error: data.path='~/no-such-corpus.txt' ({home}/no-such-corpus.txt) does "
                                           "not exist: give a UTF-8 text file"),
    (["data.val_fraction=0.999"], "error: data.val_fraction=0.999 is invalid: with data.test_fraction=0 it must lie in "
                                  "(0, 0.5] (the held-out parts may be at most half of the corpus; the training part "
                                  "is the rest)"),
    (["model.dropout=0.5"], "error: model.dropout=0.5 has no effect with model.num_layers=1: dropout acts between "
                            "stacked layers; set model.num_layers >= 2 or model.dropout=0"),
] + ([(["trainer.devices=-1"], "error: trainer.devices=-1 is invalid on the CPU: give a number of processes (1, or "
                               "more with trainer.strategy=ddp); -1 (all) and device lists select GPUs "
                               "(trainer.accelerator=gpu)")] if ON_CPU else []))
def test_process_each_row_is_one_line(tmp_path, overrides, line):
    run = tmp_path / "run"
    proc = train(*overrides, f"hydra.run.dir={run}", home=tmp_path)
    assert proc.returncode == 2
    got = one_error_line(proc.stderr)
    assert got.startswith(line.format(home=tmp_path)), got
    assert_refused_run(run, got)


@pytest.mark.slow  # a process run
def test_process_users_config_directory_experiment_with_an_undeclared_key(tmp_path):
    """The search path of the real run (hydra.searchpath) is read for declarations: the user's own
    _global_ experiment declares no key of `tune`."""
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text("# @package _global_\ntune:\n  lr_finder: true\n")
    run = tmp_path / "run"
    proc = train(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=mine", f"hydra.run.dir={run}")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert line == ("error: tune.lr_finder is not an option: tune has lr_find, apply, min_lr, max_lr, num_training, "
                    "mode (did you mean tune.lr_find?)")
    assert_refused_run(run, line)


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("plain") / "run"
    assert train(f"hydra.run.dir={run}").returncode == 0
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow  # process runs that train
def test_process_precision_plugin_is_used(tmp_path, plain_run):
    """+trainer.plugins=[...] was dropped: bf16 autocast now changes the scores of the same seed, and the
    checkpoints are still written (atomically: no temporary file left)."""
    run = tmp_path / "run"
    proc = train(f"+trainer.plugins=[{PRECISION_PLUGIN}]", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["val/ppl"] != plain_run["val/ppl"]
    assert (run / "checkpoints" / "last.ckpt").is_file() and not list((run / "checkpoints").glob(".*.tmp-*"))


@pytest.mark.slow  # a process run that trains
def test_process_own_checkpoint_io_is_kept_with_a_warning_in_the_log(tmp_path):
    run = tmp_path / "run"
    proc = train("+trainer.plugins=[{_target_:lightning.pytorch.plugins.io.TorchCheckpointIO}]", f"hydra.run.dir={run}")
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr[-3000:]
    assert "checkpoints are written by TorchCheckpointIO, not by rnnlab's atomic writer" in proc.stdout
    assert (run / "checkpoints" / "last.ckpt").is_file()
