"""One clear line for every bad value, from every entry point (train.py and each rnnlab-* command):
exit status 2, a single `error: ...` line on stderr, no traceback, and for a run nothing written but
its metrics.json with the error. Then the run directory rules and the config schema itself."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import (
    FAST,
    ROOT,
    TINY,
    RunEvents,
    assert_refused_in_process,
    assert_refused_run,
    compose_config,
    one_error_line,
)
from rnnlab.cli.ensemble import main as ensemble_main
from rnnlab.cli.forecast import main as forecast_main
from rnnlab.cli.generate import main as generate_main
from rnnlab.cli.summary import main as summary_main
from rnnlab.cli.zipf import main as zipf_main
from rnnlab.errors import ConfigError, require_regular_file
from rnnlab.run import rundir
from rnnlab.run.job import main_task

NO_GPU = not torch.cuda.is_available()


# train.py, in process (main_task on the composed config) ------------------------------------------------
TRAIN = [
    # the Trainer's own options
    (["trainer.devices=0"], r"trainer.devices=0 is invalid: must be a positive integer, -1 \(all\), auto"),
    (["trainer.strategy=nope"], r"trainer.strategy='nope' is invalid: allowed values are auto, ddp, "),
    (["trainer.precision=7"], r"trainer.precision=7 is invalid: allowed values are 64, 32, 16, .*bf16-mixed"),
    (["trainer.accelerator=tpu"], r"trainer.accelerator=tpu but no TPU is available on this machine"),
    (["trainer.accelerator=nope"], r"trainer.accelerator='nope' is invalid: allowed values are auto, cpu, gpu"),
    (["trainer.gradient_clip_algorithm=foo"],
     r"trainer.gradient_clip_algorithm='foo' is invalid: allowed values are norm, value"),
    (["trainer.max_steps=-5"], r"trainer.max_steps=-5 is invalid: must be -1 \(no limit\) or a positive integer"),
    (["trainer.max_steps=0"], r"trainer.max_steps=0 is invalid: it trains nothing"),
    (["trainer.max_epochs=0"], r"trainer.max_epochs=0 is invalid: must be a positive integer"),
    (["trainer.max_epochs=2.5"], r"trainer.max_epochs=2.5 is invalid"),
    (["trainer.max_epochs=-1"], r"trainer.max_epochs=-1 is invalid: .*-1 together with a positive trainer.max_steps"),
    (["trainer.gradient_clip_val=-1"],
     r"trainer.gradient_clip_val=-1 is invalid: must be a finite number >= 0, or null"),
    (["trainer.gradient_clip_val=nan"], r"trainer.gradient_clip_val=nan is invalid"),
    (["trainer.check_val_every_n_epoch=0"],
     r"trainer.check_val_every_n_epoch=0 is invalid: must be a positive integer"),
    (["trainer.log_every_n_steps=-1"], r"trainer.log_every_n_steps=-1 is invalid: must be an integer >= 0"),
    (["trainer.enable_progress_bar=1"], r"trainer.enable_progress_bar=1 is invalid: must be true or false"),
    (["trainer.strategy=deepspeed"], r"trainer: To use the `DeepSpeedStrategy`, you must have DeepSpeed installed"),
    (["trainer.limit_train_batches=0"], r"trainer.limit_train_batches=0 is invalid: it trains nothing"),
    # callbacks, the learning-rate finder and samples
    (["callbacks.early_stopping.patience=abc"],
     r"callbacks.early_stopping.patience='abc' is invalid: must be an integer >= 0"),
    (["callbacks.early_stopping.patience=3", "callbacks.early_stopping.mode=max"],
     r"callbacks.early_stopping.mode=max is invalid: callbacks.model_checkpoint keeps the val/ppl with mode=min"),
    (["tune.lr_find=true", "tune.num_training=0"], r"tune.num_training=0 is invalid: must be an integer >= 2"),
    (["tune.lr_find=true", "tune.min_lr=10", "tune.max_lr=1"],
     r"tune.min_lr=10 is invalid: must be smaller than tune.max_lr=1"),
    (["callbacks.text_sample.prefix="], r"callbacks.text_sample.prefix='' is invalid: must be a non-empty string"),
    (["evaluation.sample.prefix="], r"evaluation.sample.prefix='' is invalid: must be a non-empty string .*, or null "
                                    r"\(the data's sample prefix, data.sample_prefix\)"),
    (["data.sample_prefix="], r"data.sample_prefix='' is invalid: must be a non-empty string"),
    (["callbacks.divergence_guard.patience=-1"], r"callbacks.divergence_guard.patience=-1 is invalid: must be an "
                                                 r"integer >= 0 \(validations in a row; 0: no bound\), or null"),
    (["callbacks.divergence_guard.margin=-1"],
     r"callbacks.divergence_guard.margin=-1 is invalid: must be a finite number >= 0"),
    # optimizers
    (["optimizer.lr=-1"], r"optimizer.lr=-1 is invalid: must be a finite number > 0"),
    (["optimizer.lr=abc"], r"optimizer.lr='abc' is invalid: must be a finite number > 0"),
    (["optimizer.lr=inf"], r"optimizer.lr=inf is invalid"),
    (["optimizer.momentum=-0.5"], r"optimizer.momentum=-0.5 is invalid: must be a finite number >= 0"),
    (["optimizer.weight_decay=-1"], r"optimizer.weight_decay=-1 is invalid: must be a finite number >= 0"),
    (["+optimizer.nesterov=true"], r"optimizer.nesterov=true is invalid: it needs optimizer.momentum > 0"),
    (["optimizer=adam", "+optimizer.betas=[0.9,1.0]"],
     r"optimizer.betas=\[0.9, 1.0\] is invalid: must be two numbers in \[0, 1\)"),
    (["optimizer=adamw", "+optimizer.betas=[-0.1,0.9]"], r"optimizer.betas=\[-0.1, 0.9\] is invalid"),
    (["optimizer=adam", "+optimizer.betas=[0.9]"], r"optimizer.betas=\[0.9\] is invalid"),
    (["+optimizer.momentun=0.9"],
     r"optimizer.momentun is not an option of torch.optim.SGD: allowed are params, lr, momentum"),
    # seed
    (["seed=-1"], r"seed=-1 is invalid: must be an integer in \[0, 4294967295\]"),
    (["seed=1.5"], r"seed=1.5 is invalid"),
    (["seed=null"], r"seed=null is invalid"),
    (["seed=4294967296"], r"seed=4294967296 is invalid"),
    (["seed=true"], r"seed=true is invalid"),
    # the module and the core
    (["module.embedding_dim=0"],
     r"module.embedding_dim=0 is invalid: must be a positive integer, or null \(one-hot input\)"),
    (["module.embedding_dim=2.5"], r"module.embedding_dim=2.5 is invalid"),
    (["module.dropout=1.0"], r"module.dropout=1.0 is invalid: must lie in \[0, 1\)"),
    (["module.weight_drop=-0.1"], r"module.weight_drop=-0.1 is invalid"),
    (["model.hidden_size=0"], r"model.hidden_size=0 is invalid: must be a positive integer"),
    (["model.hidden_size=1.5"], r"model.hidden_size=1.5 is invalid"),
    (["model.num_layers=0"], r"model.num_layers=0 is invalid"),
    (["model.dropout=-0.1"], r"model.dropout=-0.1 is invalid: must lie in \[0, 1\)"),
    (["model.compile=yes"],
     r"model.compile='yes' is invalid: must be one of false, true, default, reduce-overhead, max-autotune"),
    (["model.bidirectional=1"], r"model.bidirectional=1 is invalid: must be true or false"),
    (["model.kind=transformer"], r"model.kind='transformer' is invalid: allowed values are rnn, .*lstm_scratch"),
    (["model=rnn", "model.nonlinearity=gelu"], r"model.nonlinearity='gelu' is invalid: allowed values are tanh, relu"),
    (["+model.hiden_size=3"],
     r"model.hiden_size is not an option of rnnlab.models.build_core: allowed are kind, input_size, hidden_size"),
    # callbacks and evaluation
    (["callbacks.text_sample.every_n_epochs=0"],
     r"callbacks.text_sample.every_n_epochs=0 is invalid: must be a positive integer"),
    (["callbacks.text_sample.temperature=-1"],
     r"callbacks.text_sample.temperature=-1 is invalid: must be a finite number >= 0"),
    (["callbacks.text_sample.temperature=nan"], r"callbacks.text_sample.temperature=nan is invalid"),
    (["callbacks.text_sample.num_tokens=-1"],
     r"callbacks.text_sample.num_tokens=-1 is invalid: must be an integer >= 0"),
    (["evaluation.sample.temperature=inf"],
     r"evaluation.sample.temperature=inf is invalid: must be a finite number >= 0"),
    (["evaluation.sample.temperature=nan"], r"evaluation.sample.temperature=nan is invalid"),
    (["evaluation.sample.num_tokens=-3"], r"evaluation.sample.num_tokens=-3 is invalid"),
    (["+callbacks.model_checkpoint.moniter=x"],
     r"callbacks.model_checkpoint.moniter is not an option of lightning.pytorch.callbacks.ModelCheckpoint"),
    (["experiment=best_char_lm", "model.hidden_size=8", "evaluation.dynamic_eval.segment_len=0"],
     r"evaluation.dynamic_eval.segment_len=0 is invalid: must be a positive integer"),
    (["experiment=best_char_lm", "model.hidden_size=8", "evaluation.dynamic_eval.lr=-1"],
     r"evaluation.dynamic_eval.lr=-1 is invalid: must be a number >= 0"),
    (["experiment=best_char_lm", "model.hidden_size=8", "evaluation.dynamic_eval.decay=2"],
     r"evaluation.dynamic_eval.decay=2 is invalid: must lie in \[0, 1\]"),
    # data (options first, then what only the data can tell)
    (["data.sampling=shuffle"], r"data.sampling='shuffle' is invalid: allowed values are random, sequential"),
    (["data.token=bpe"], r"data.token='bpe' is invalid: allowed values are char, word"),
    (["data.batch_size=0"], r"data.batch_size=0 is invalid: must be a positive integer"),
    (["data.batch_size=2.5"], r"data.batch_size=2.5 is invalid"),
    (["data.num_steps=-1"], r"data.num_steps=-1 is invalid"),
    (["data.val_fraction=1.0"], r"data.val_fraction=1.0 is invalid: must lie strictly between 0 and 1"),
    (["data.val_fraction=0"], r"data.val_fraction=0 is invalid"),
    (["data.max_tokens=-5"], r"data.max_tokens=-5 is invalid"),
    (["+data.batchsize=3"], r"data.batchsize is not an option of rnnlab.data.TextDataModule: allowed are .*batch_size"),
    (["data.path=/nonexistent/corpus.txt"],
     r"data.path='/nonexistent/corpus.txt' does not exist: give a UTF-8 text file"),
    (["data.path=/dev/zero"], r"data.path='/dev/zero' is a device, not a regular file"),
    (["data.path={fifo}"], r"data.path='.*fifo' is a FIFO, not a regular file"),
    (["data.path={tmp}"], r"data.path='.*' is a directory"),
    (["data.path={binary}"], r"data.path='.*data.bin' looks binary"),
    (["data.path={empty}"], r"data.path='.*empty.txt' is invalid: the corpus is empty"),
    (["data.num_steps=1000"], r"data.batch_size=8 x data.num_steps=1000 is too large"),
    (["data.batch_size=5000"], r"data.batch_size=5000 x data.num_steps=10 is too large"),
    (["data.min_freq=100000"], r"data.min_freq=100000 leaves only <unk>"),
    (["data.max_tokens=50"], r"is too large for a sequence of"),
    (["ckpt_path=/nonexistent.ckpt"], r"ckpt_path='/nonexistent.ckpt' is not a file"),
    (["ckpt_path=5"], r"ckpt_path=5 is invalid: must be a checkpoint path or last, or null \(train from scratch\)"),
    # a data set of the other task
    (["data=sine"], r"^error: data=sine is a forecasting data set: add task=forecast \(python train.py task=forecast "
                    r"data=sine \.\.\.\)$"),
    (["data=co2"], r"^error: data=co2 is a forecasting data set: add task=forecast"),
    (["data=macro"], r"^error: data=macro is a forecasting data set: add task=forecast"),
    (["data=series"], r"^error: data=series is a forecasting data set: add task=forecast"),
    (["task=forecast", "data=timemachine"], r"^error: data=timemachine is a text data set \(language modelling\): use "
                                            r"task=lm \(python train.py task=lm data=timemachine \.\.\.\)$"),
    # the forecasting task
    (["task=forecast", "module.rollout_steps=-1"], r"module.rollout_steps=-1 is invalid: must be an integer >= 0"),
    (["task=forecast", "module.rollout_steps=40"],
     r"module.rollout_steps=40 is invalid: must be smaller than data.num_steps=32"),
    (["task=forecast", "data=series"], r"data.path=null is invalid: give a CSV file or data.bundled"),
    (["task=forecast", "data.ks=[1,0]"],
     r"(data|module).ks=\[1, 0\] is invalid: give a non-empty list of positive integer horizons"),
    (["task=forecast", "data.tau=700"], r"data.tau=700 is invalid: must be smaller than the training part"),
    (["task=forecast", "data.noise=-0.1"], r"data.noise=-0.1 is invalid"),
    (["task=forecast", "data.mirror=yes"], r"data.mirror='yes' is invalid: must be true or false"),
] + ([(["trainer.accelerator=gpu"], r"trainer.accelerator=gpu but no CUDA GPU is visible on this machine"),
      (["trainer.accelerator=gpu", "trainer.devices=4"], r"trainer.accelerator=gpu but no CUDA GPU is visible")]
     if NO_GPU else [])


@pytest.fixture
def paths(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    binary, empty = tmp_path / "data.bin", tmp_path / "empty.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    empty.write_text("")
    return {"fifo": fifo, "tmp": tmp_path, "binary": binary, "empty": empty}


@pytest.mark.parametrize("overrides, message", TRAIN, ids=[" ".join(o) for o, _ in TRAIN])
def test_train_bad_value_is_one_line_and_writes_no_result(make_cfg, capsys, paths, overrides, message):
    tiny = not any(o.startswith(("task=forecast", "data=")) for o in overrides)
    assert_refused_in_process(make_cfg(*(o.format(**paths) for o in overrides), tiny=tiny), capsys, message)


def test_log_every_n_steps_zero_means_no_per_step_logging(make_cfg):
    """Lightning's meaning of 0: no per-step values logged (and no division by zero anywhere)."""
    cfg = make_cfg("trainer.log_every_n_steps=0", "trainer.max_epochs=1", "data.max_tokens=2000")
    main_task(cfg)
    run = Path(cfg.paths.output_dir)
    assert json.loads((run / "metrics.json").read_text())["status"] == "ok"
    tags = RunEvents(run).tags()
    assert "val/ppl" in tags and "train/ppl" in tags and "train/loss" not in tags and "train/grad_norm" not in tags


# train.py as a process: what Hydra does before the task ----------------------------------------------------
def train(*args, timeout=240):
    return subprocess.run([sys.executable, "train.py", *TINY, "trainer.max_epochs=1", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ, HYDRA_FULL_ERROR="0"))


def test_process_bad_trainer_option_one_line_no_event_file(tmp_path):
    run = tmp_path / "run"
    proc = train("trainer.devices=0", f"hydra.run.dir={run}")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert line.startswith("error: trainer.devices=0 is invalid")
    assert_refused_run(run, line)
    assert (run / ".hydra" / "config.yaml").is_file() and not (run / rundir.LOCK_FILE).exists()


@pytest.mark.parametrize("override, line", [
    # slow: one process run per error path stays in the default suite
    pytest.param("trainer.precison=7", "error: Could not override 'trainer.precison'. To append to your config use "
                 "+trainer.precison=7", marks=pytest.mark.slow),
    ("model=transformer", "error: In 'train': Could not find 'model/transformer'; Available options in 'model': gru; "
                          "gru_scratch; lstm; lstm_scratch; mlp; rnn; rnn_scratch"),
    pytest.param("logger=null", "error: Config group override must be a string or a list. Got NoneType; logger=null: "
                 "logger is a config group, give one of its options (~logger leaves the group out)",
                 marks=pytest.mark.slow),  # Hydra's ValueError
])
def test_process_hydra_composition_error_is_one_line(tmp_path, override, line):
    proc = train(override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, line", [
    pytest.param("model=mlp", "error: model.tau cannot be resolved (Interpolation key 'data.tau' not found): the "
                 "chosen config groups do not go together (task=lm, model=mlp, data=timemachine)",
                 marks=pytest.mark.slow),
    # slow: each real-command test costs a process start (~7 s on 2 cores); the in-process table checks the
    # same lines in the default suite, and test_process_bad_trainer_option_one_line_no_event_file the command.
    pytest.param("~optimizer", "error: module.optimizer cannot be resolved (Interpolation key 'optimizer' not "
                 "found): the chosen config groups do not go together (task=lm, model=lstm, data=timemachine)",
                 marks=pytest.mark.slow),
])
def test_process_groups_that_do_not_go_together_are_one_line(tmp_path, override, line):
    run = tmp_path / "run"
    proc = train(override, f"hydra.run.dir={run}")
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == line
    assert_refused_run(run, line)


@pytest.mark.parametrize("overrides, line", [
    pytest.param(["data=sine"], "error: data=sine is a forecasting data set: add task=forecast "
                 "(python train.py task=forecast data=sine ...)", marks=pytest.mark.slow),  # in-process table too
    pytest.param(["task=forecast", "data=timemachine"], "error: data=timemachine is a text data set (language "
                 "modelling): use task=lm (python train.py task=lm data=timemachine ...)",
                 # slow: the in-process table checks it too; one process run stays in the default suite
                 marks=pytest.mark.slow),
])
def test_process_data_set_of_another_task_names_the_task(tmp_path, overrides, line):
    """Before anything is built: not `LanguageModel.__init__() got an unexpected keyword argument 'series'`."""
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", *FAST, *overrides, f"hydra.run.dir={run}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, HYDRA_FULL_ERROR="0"))
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == line
    assert_refused_run(run, line)


@pytest.mark.slow  # 11 s; DDP itself is in the default suite (tests/runs/test_reliability.py)
def test_process_ddp_error_is_reported_once(tmp_path):
    """Every DDP process meets a corpus too short for its batches: the main process writes metrics.json
    and prints the one line, the others exit with the same status quietly."""
    run = tmp_path / "run"
    proc = train("trainer.devices=2", "trainer.accelerator=cpu", "trainer.strategy=ddp", "data.batch_size=64",
                 "data.num_steps=35", f"hydra.run.dir={run}")
    assert proc.returncode == 2
    ours = [line for line in proc.stderr.splitlines() if line.startswith("error:") or "Traceback" in line]
    line = one_error_line("\n".join(ours))  # Lightning's own lines (distributed set-up) aside
    assert "is too large for a sequence of" in line and "per process of 2" in line
    assert json.loads((run / "metrics.json").read_text())["status"] == "config_error"
    assert not list(run.glob("metrics.json.*"))


@pytest.mark.parametrize("command", [["eval.py"], pytest.param(["-m", "rnnlab.cli.eval"], marks=pytest.mark.slow)])
def test_eval_entry_points_share_the_error_path(tmp_path, command):
    """eval.py and rnnlab-eval: a bad override is one line and exit status 2, as for train.py."""
    proc = subprocess.run([sys.executable, *command, f"ckpt_path={tmp_path / 'x.ckpt'}", "logger=nope",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, HYDRA_FULL_ERROR="0"))
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == ("error: In 'eval': Could not find 'logger/nope'; Available options in "
                                           "'logger': csv; many; mlflow; tensorboard; wandb")


def test_a_bug_in_the_task_keeps_its_traceback(monkeypatch):
    """Only Hydra's composing errors become one line: a builtin exception from the task propagates."""
    from rnnlab.cli import common

    def task_bug():
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        common.run(task_bug)


@pytest.mark.slow  # the in-process table refuses a FIFO too (data.path={fifo}); this is the real command
def test_process_fifo_data_path_is_refused_without_reading(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    proc = train(f"data.path={fifo}", f"hydra.run.dir={tmp_path / 'run'}", timeout=120)  # would hang if opened
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (f"error: data.path='{fifo}' is a FIFO, not a regular file: "
                                           "give a UTF-8 text file")


@pytest.mark.parametrize("where", ["file", pytest.param("proc", marks=pytest.mark.slow)])
def test_unwritable_run_directory_is_one_line_naming_it(tmp_path, where):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    run = blocker / "run" if where == "file" else Path(f"/proc/rnnlab_{os.getpid()}/run")
    proc = train(f"hydra.run.dir={run}")
    assert proc.returncode == 2
    line = one_error_line(proc.stderr)
    assert line.startswith(f"error: hydra.run.dir='{run}' cannot be written (") and "give a writable directory" in line


def test_run_directory_with_another_runs_results_is_refused_untouched(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text('{"status": "ok", "val/ppl": 5.0}\n')
    proc = train(f"hydra.run.dir={run}")
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (f"error: hydra.run.dir='{run}' holds the results of another run "
                                           "(metrics.json: status ok): give another directory, "
                                           "or resume it with ckpt_path=last")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]  # no .hydra, no log, no lock left
    assert json.loads((run / "metrics.json").read_text()) == {"status": "ok", "val/ppl": 5.0}


def test_run_directory_of_a_live_run_is_refused(tmp_path):
    run = tmp_path / "run"
    fd = rundir.claim(run, "hydra.run.dir", resume=False)  # what a live run holds: the lock, with its pid
    try:
        proc = train(f"hydra.run.dir={run}", "ckpt_path=last")  # even a resume waits for the live run
    finally:
        rundir.release(run, fd)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (f"error: hydra.run.dir='{run}' is in use by a live run (pid {os.getpid()}): "
                                           "give another directory")
    assert not (run / ".hydra").exists()


def test_claiming_a_directory(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="holds the checkpoints of another run"):
        rundir.claim(run, "hydra.run.dir", resume=False)
    assert not (run / rundir.LOCK_FILE).exists()
    # A resume of the run in that directory may use it: ckpt_path=last, a checkpoint inside it, a requeued job.
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert rundir.is_resume(run, "last") and rundir.is_resume(run, str(run / "checkpoints" / "last.ckpt"))
    assert not rundir.is_resume(run, None) and not rundir.is_resume(run, str(tmp_path / "other" / "last.ckpt"))
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert rundir.is_resume(run, None)
    fd = rundir.claim(run, "hydra.run.dir", resume=True)
    assert (run / rundir.LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ConfigError, match="is in use by a live run"):  # a second claim, from another descriptor
        rundir.claim(run, "hydra.run.dir", resume=True)
    rundir.release(run, fd)
    assert not (run / rundir.LOCK_FILE).exists()
    # A directory whose run was refused for a bad option trained nothing: it may be used again.
    (run / "checkpoints" / "last.ckpt").unlink()
    (run / "metrics.json").write_text('{"status": "config_error", "error": "x"}')
    rundir.release(run, rundir.claim(run, "hydra.run.dir", resume=False))


def test_default_run_directories_are_distinct():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF

    dirs = []
    for _ in range(2):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", return_hydra_config=True)
        first = cfg.hydra.run.dir
        assert cfg.hydra.run.dir == first  # the same for the whole run
        dirs.append(first)
    assert dirs[0] != dirs[1] and re.fullmatch(r"outputs/runs/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{6}", dirs[0])
    assert "rnnlab.run.rundir.RunDirectoryGuard" in OmegaConf.to_yaml(cfg.hydra.callbacks)


# The commands --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained language model, its files, bad checkpoints and multirun-like directories."""
    root = tmp_path_factory.mktemp("cmd")
    cfg = compose_config(root / "run", "trainer.max_epochs=1")
    main_task(cfg)
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    data = ckpt.read_bytes()
    (root / "truncated.ckpt").write_bytes(data[: len(data) // 3])
    (root / "random.ckpt").write_bytes(os.urandom(4096))
    (root / "empty.ckpt").write_bytes(b"")
    torch.save(torch.zeros(3), root / "foreign.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": {"tau": 4}}, root / "regressor.ckpt")
    (root / "file").write_text("a file, not a directory")
    fifo = root / "fifo"
    os.mkfifo(fifo)

    def job(sweep: Path, num: int, metrics: str) -> None:
        (sweep / str(num) / ".hydra").mkdir(parents=True)
        OmegaConf.save(cfg, sweep / str(num) / ".hydra" / "config.yaml")
        (sweep / str(num) / ".hydra" / "overrides.yaml").write_text(f"- model.hidden_size={num}\n")
        (sweep / str(num) / "metrics.json").write_text(metrics)

    good = json.dumps({"status": "ok", "val/ppl": 9.5, "best_checkpoint": "checkpoints/best.ckpt"})
    # A multirun whose second job's metrics.json is corrupt: reported as unreadable, the rest summarised.
    job(root / "sweep", 0, good)
    job(root / "sweep", 1, '{"status": "ok", "val/pp')
    # A multirun whose member checkpoint is truncated.
    job(root / "badsweep", 0, good)
    for sweep, content in (("sweep", data), ("badsweep", data[: len(data) // 3])):
        (root / sweep / "0" / "checkpoints").mkdir()
        (root / sweep / "0" / "checkpoints" / "best.ckpt").write_bytes(content)
    return {"root": root, "ckpt": ckpt, "fifo": fifo}


COMMANDS = [
    (generate_main, ["{root}/missing.ckpt"], r"checkpoint='.*missing.ckpt' is not a file"),
    (generate_main, ["{root}/truncated.ckpt"], r"checkpoint='.*truncated.ckpt' is not a readable checkpoint \(\w+\): "
                                                r"it is truncated, corrupt or not a PyTorch file"),
    (generate_main, ["{root}/random.ckpt"], r"checkpoint='.*random.ckpt' is not a readable checkpoint"),
    (generate_main, ["{root}/empty.ckpt"], r"checkpoint='.*empty.ckpt' is not a readable checkpoint"),
    (generate_main, ["{root}/foreign.ckpt"], r"checkpoint='.*foreign.ckpt' is not a Lightning checkpoint"),
    (generate_main, ["{root}/regressor.ckpt"], r"checkpoint='.*regressor.ckpt' is not a language-model checkpoint"),
    (generate_main, ["{ckpt}", "--device", "nope"], r"--device='nope' is invalid: allowed values are cpu, cuda"),
    (generate_main, ["{ckpt}", "--temperature", "nan"], r"--temperature=nan is invalid: must be a finite number >= 0"),
    (generate_main, ["{ckpt}", "--temperature", "inf"], r"--temperature=inf is invalid"),
    (generate_main, ["{ckpt}", "--temperature", "-1"], r"--temperature=-1.0 is invalid"),
    (generate_main, ["{ckpt}", "--num-tokens", "-1"], r"--num-tokens=-1 is invalid: must be an integer >= 0"),
    (generate_main, ["{ckpt}", "--prefix", ""], r"prefix='' is empty"),
    (ensemble_main, ["{root}"], r"sweep_dir='.*' is not a multirun directory \(no <job>/.hydra/config.yaml\)"),
    (ensemble_main, ["{root}/sweep", "--device", "nope"], r"--device='nope' is invalid: allowed values are cpu, cuda"),
    (ensemble_main, ["{root}/sweep", "--segment-len", "0"], r"--segment-len=0 is invalid: must be a positive integer"),
    (ensemble_main, ["{root}/sweep", "--lr", "-1"], r"--lr=-1.0 is invalid: must be a number >= 0"),
    (ensemble_main, ["{root}/sweep", "--decay", "2"], r"--decay=2.0 is invalid: must lie in \[0, 1\]"),
    (ensemble_main, ["{root}/badsweep", "--device", "cpu"],
     r"job 0: best_checkpoint='.*badsweep/0/checkpoints/best.ckpt' is not a readable checkpoint"),
    (summary_main, ["{root}/missing"], r"sweep_dir='.*missing' is not a directory"),
    (summary_main, ["{root}/run"], r"sweep_dir='.*run' holds no Hydra job directories"),
    (zipf_main, ["--out", "{root}/file/zipf"],
     r"--out='.*file/zipf' cannot be written \(Not a directory\): give a writable directory"),
    (zipf_main, ["data.token=bpe"], r"data.token='bpe' is invalid: allowed values are char, word"),
    (zipf_main, ["data.path={fifo}"], r"data.path='.*fifo' is a FIFO, not a regular file"),
    (zipf_main, ["data.path=/dev/zero"], r"data.path='/dev/zero' is a device, not a regular file"),
    (zipf_main, ["data.path={root}"], r"data.path='.*' is a directory"),
    (zipf_main, ["data.batchsize=3"], r"Could not override 'data.batchsize'"),
    (zipf_main, ["--top", "-3"], r"^error: argument --top: -3 is not a positive integer \(see \S+ --help\)$"),
    (generate_main, ["{ckpt}", "--frobnicate"], r"^error: unrecognized arguments: --frobnicate \(see \S+ --help\)$"),
    (summary_main, ["{root}/sweep", "--metric", "nosuch"], r"--metric='nosuch' is invalid: no job recorded it; "
                                                           r"recorded are val/ppl"),
    (forecast_main, ["{ckpt}", "--csv", "{root}/file", "--steps", "3", "--output", "{root}/none/next.csv"],
     r"--output='.*none/next.csv' is invalid: its directory .*none does not exist"),
] + ([(generate_main, ["{ckpt}", "--device", "cuda"], r"--device=cuda but no CUDA GPU is visible on this machine"),
      (ensemble_main, ["{root}/sweep", "--device", "cuda"], r"--device=cuda but no CUDA GPU is visible")]
     if NO_GPU else [])


@pytest.mark.parametrize("command, args, message", COMMANDS,
                         ids=[f"{c.__module__.split('.')[-1]} {' '.join(a)}" for c, a, _ in COMMANDS])
def test_command_bad_input_is_one_line(trained, capsys, command, args, message):
    try:
        code = command([a.format(**trained) for a in args])
    except SystemExit as e:  # argparse's own errors exit from parse_args
        code = e.code
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(message, line), line


def test_summary_and_ensemble_report_a_corrupt_metrics_file_and_go_on(trained, capsys):
    sweep = trained["root"] / "sweep"
    assert summary_main([str(sweep)]) == 0
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| ") and not r.startswith("| job")]
    assert len(rows) == 2 and rows[0].startswith("| 0 |") and "9.5" in rows[0]
    assert rows[1].startswith("| 1 |") and "| unreadable | metrics.json cannot be read (JSONDecodeError) |" in rows[1]
    assert ensemble_main([str(sweep), "--lr", "0", "--device", "cpu"]) == 0
    assert json.loads((sweep / "ensemble.json").read_text())["members"] == 1


def test_train_and_commands_share_the_error_path(capsys):
    """train.py's single-run path and the commands print through errors.error_line."""
    from rnnlab.cli.common import run
    from rnnlab.errors import error_line

    def bad():
        raise ConfigError("x=1 is invalid: two lines\n    full_key: x\nsecond")

    assert run(bad) == 2
    assert capsys.readouterr().err == "error: x=1 is invalid: two lines; second\n"
    assert error_line(ConfigError("")) == "error: ConfigError"


# The schema itself ---------------------------------------------------------------------------------------
def test_schema_rules():
    from rnnlab.options import BOOL, FRACTION, POSITIVE_INT, SEED, TEMPERATURE, choice, nullable

    for rule, good, bad in [
        (POSITIVE_INT, [1, 7], [0, -1, 1.5, True, "3", None]),
        (FRACTION, [0, 0.5, 0.99], [1, 1.0, -0.1, float("nan"), True, "0.1"]),
        (BOOL, [True, False], [0, 1, "true", None]),
        (TEMPERATURE, [0, 0.7, 2], [-1, float("nan"), float("inf"), "1"]),
        (SEED, [0, 2**32 - 1], [-1, 2**32, 1.5, None, True]),
        (nullable(POSITIVE_INT, "one-hot"), [None, 3], [0, 2.5]),
        (choice("norm", "value"), ["norm", "value"], ["foo", None, True]),
    ]:
        for value in good:
            rule("x", value)
        for value in bad:
            with pytest.raises(ConfigError, match=r"^x=.* is invalid: "):
                rule("x", value)
    with pytest.raises(ConfigError, match=r"^x=null is invalid: must be a positive integer$"):
        POSITIVE_INT("x", None)
    with pytest.raises(ConfigError, match=r"^x=0 is invalid: must be a positive integer, or null \(one-hot\)$"):
        nullable(POSITIVE_INT, "one-hot")("x", 0)


def test_schema_walks_every_target_once_and_names_unknown_keys(tmp_path):
    from rnnlab.evaluation import DynamicEvaluation
    from rnnlab.options import check_values
    from rnnlab.schema import check_node, parameter_names, target_nodes, validate

    cfg = compose_config(tmp_path, "experiment=best_char_lm")
    paths = [p for p, _ in target_nodes(cfg)]
    # module.core is ${model}: checked once, where it is defined, under the name the user types.
    assert "model" in paths and "module" in paths and "module.core" not in paths and "module.scheduler" in paths
    assert {"trainer", "data", "optimizer", "callbacks.ema", "evaluation.dynamic_eval"} <= set(paths)
    validate(cfg)  # every preset's values are valid (test_experiments builds them all)
    with pytest.raises(ConfigError, match=r"^module.scheduler.T_max=0 is invalid"):
        cfg.module.scheduler.T_max = 0
        check_node(cfg.module.scheduler, "module.scheduler")
    assert parameter_names(lambda a, **kwargs: None) is None  # takes anything: no unknown-key check
    with pytest.raises(ConfigError, match=r"^--lr=nan is invalid"):
        check_values(DynamicEvaluation, {"lr": float("nan")}, name="--{}".format)


@pytest.mark.slow  # tests/errors/test_reliability_config.py validates every preset in the default suite
def test_every_preset_passes_the_schema(tmp_path):
    from conftest import CONF
    from rnnlab.schema import validate

    for preset in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("_")):
        validate(compose_config(tmp_path, f"experiment={preset}", tiny=False, fast=False))


def test_require_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    (tmp_path / "a.txt").write_text("x")
    assert require_regular_file("data.path", tmp_path / "a.txt") == tmp_path / "a.txt"
    for path, what in [(fifo, "is a FIFO, not a regular file"), ("/dev/zero", "is a device, not a regular file"),
                       (tmp_path, "is a directory"), (tmp_path / "no.txt", "does not exist")]:
        with pytest.raises(ConfigError, match=f"^data.path='{path}' {what}: give a UTF-8 text file$"):
            require_regular_file("data.path", path)


def test_is_logging_step_follows_lightning_for_zero():
    from types import SimpleNamespace

    from rnnlab.models.step_logging import is_logging_step

    assert [is_logging_step(SimpleNamespace(global_step=s, log_every_n_steps=2)) for s in range(4)] == [
        False, True, False, True]
    assert not any(is_logging_step(SimpleNamespace(global_step=s, log_every_n_steps=0)) for s in range(4))


def test_refused_resume_of_a_finished_run_keeps_its_results(tmp_path, capsys):
    """A bad value on the resume of a finished run is one line; the run's metrics.json stays as it was."""
    run = tmp_path / "run"
    main_task(compose_config(run, "trainer.max_epochs=1"))
    before = (run / "metrics.json").read_text()
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(run, "trainer.max_epochs=2", "ckpt_path=last", "optimizer.lr=-1"))
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: optimizer.lr=-1 is invalid")
    assert (run / "metrics.json").read_text() == before
