"""Lightning and Hydra as their users know them: every Trainer argument under `trainer.`, the trainer,
debug, logger and progress_bar groups, early stopping, the LR finder, and eval.py on a checkpoint."""

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from omegaconf import OmegaConf

from conftest import CONF, RunEvents, compose_config
from rnnlab.callbacks import DivergenceGuard, InterruptCheckpoint, RNGStateCheckpoint
from rnnlab.dashboard.logger import event_dir
from rnnlab.run.build import build_run
from rnnlab.run.eval_job import main_eval
from rnnlab.run.job import main_task

TRAINER_ARGS = {
    "precision": "bf16-mixed", "accumulate_grad_batches": 2, "limit_train_batches": 0.5, "limit_val_batches": 3,
    "limit_test_batches": 2, "fast_dev_run": True, "overfit_batches": 1, "profiler": "simple",
    "detect_anomaly": True, "val_check_interval": 0.5, "num_nodes": 1, "benchmark": True, "max_time": "00:00:10:00",
    "min_epochs": 1, "enable_checkpointing": False, "inference_mode": False, "sync_batchnorm": True,
}


def train_as_hydra_does(cfg) -> Path:
    """main_task, with the composed config saved where Hydra saves it (eval.py reads the data options there)."""
    run = Path(cfg.paths.output_dir)
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    main_task(cfg)
    return run


def metrics_of(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_every_common_trainer_argument_is_set_without_plus(tmp_path):
    cfg = compose_config(tmp_path, *(f"trainer.{k}={v}" for k, v in TRAINER_ARGS.items()))
    assert {k: cfg.trainer[k] for k in TRAINER_ARGS} == TRAINER_ARGS


@pytest.mark.parametrize("preset,expected", [
    ("cpu", ("cpu", 1, "auto")), ("gpu", ("gpu", 1, "auto")), ("mps", ("mps", 1, "auto")),
    ("ddp", ("gpu", -1, "ddp")), ("ddp_cpu", ("cpu", 2, "ddp"))])
def test_trainer_presets(preset, expected, tmp_path):
    cfg = compose_config(tmp_path, f"trainer={preset}", tiny=False, fast=False)
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.strategy) == expected
    assert cfg.trainer.max_epochs == 50 and cfg.trainer.use_distributed_sampler is False


@pytest.mark.slow
def test_trainer_ddp_cpu_trains_in_two_processes(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT, TINY

    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "train.py", *TINY, "trainer=ddp_cpu", "trainer.max_epochs=1",
                           f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["val/ppl"] > 1
    assert "litlogger" not in proc.stdout + proc.stderr  # Lightning's advertisement is silenced


def test_overfit_batches_trains_on_the_same_batch_every_epoch(make_cfg):
    cfg = make_cfg("trainer.overfit_batches=1", "trainer.max_epochs=3")
    main_task(cfg)
    metrics = metrics_of(cfg)
    assert metrics["status"] == "debug" and metrics["global_step"] == 3 and metrics["epochs"] == 3


def test_overfit_loader_yields_the_first_epochs_batches_in_order():
    import lightning as L
    from torch.utils.data import SequentialSampler

    from rnnlab.data.sampling import make_sampler, window_loader

    trainer = L.Trainer(accelerator="cpu", overfit_batches=2, logger=False)
    sequence = torch.arange(500)
    loader = window_loader(sequence, "sequential", 4, 10, seed=3, trainer=trainer)
    assert isinstance(loader.sampler, SequentialSampler)  # what Lightning keeps under overfit_batches
    first, again = list(loader), list(loader)
    starts = make_sampler("sequential", 500, 4, 10, seed=3).starts(0)
    assert len(first) == len(starts)
    for (x, y), (x2, _), s in zip(first, again, starts):
        assert torch.equal(x, x2) and torch.equal(x[:, 0], s) and torch.equal(y, x + 1)


def test_limit_train_batches_as_count_and_too_small_fraction(make_cfg, capsys):
    cfg = make_cfg("trainer.limit_train_batches=3", "trainer.max_epochs=1")
    main_task(cfg)
    assert metrics_of(cfg)["global_step"] == 3 and metrics_of(cfg)["status"] == "ok"
    cfg = make_cfg("trainer.limit_train_batches=0.01", "trainer.max_epochs=1")
    with pytest.raises(SystemExit) as exit_info:
        main_task(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: trainer.limit_train_batches=0.01 is invalid: 0.01 of ")
    assert metrics_of(cfg)["status"] == "config_error"


def test_fast_dev_run_is_recorded_as_debug_and_leaves_no_checkpoint(make_cfg):
    cfg = make_cfg("trainer.fast_dev_run=true")
    main_task(cfg)
    metrics = metrics_of(cfg)
    assert metrics["status"] == "debug" and metrics["global_step"] == 1
    assert not list(Path(cfg.paths.output_dir).glob("checkpoints/*.ckpt"))


@pytest.mark.parametrize("preset", ["default", "limit", "profiler", "overfit"])
def test_debug_presets(preset, make_cfg):
    cfg = make_cfg(f"debug={preset}", "trainer.max_epochs=2" if preset == "overfit" else "seed=1")
    assert cfg.debug_run is True and cfg.callbacks.model_checkpoint is None
    main_task(cfg)
    run, metrics = Path(cfg.paths.output_dir), metrics_of(cfg)
    assert metrics["status"] == "debug" and not list(run.glob("checkpoints/*.ckpt"))
    steps = {"default": None, "limit": 2 * 5, "profiler": None, "overfit": 2 * 3}[preset]  # TINY: 2 epochs
    if steps:
        assert metrics["global_step"] == steps
    if preset == "profiler":
        report = (run / "fit-profiler.txt").read_text()
        assert "run_training_epoch" in report and "Total" in report


def test_debug_fdr_and_default_compose():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["debug=fdr"], return_hydra_config=True)
    assert cfg.trainer.fast_dev_run is True and cfg.trainer.detect_anomaly is True
    assert cfg.trainer.enable_checkpointing is False and cfg.hydra.run.dir.startswith("outputs/debug/runs/")


@pytest.fixture(scope="module")
def many_loggers_run(tmp_path_factory):
    cfg = compose_config(tmp_path_factory.mktemp("many") / "run", "logger=many", "trainer.max_epochs=2")
    main_task(cfg)
    return Path(cfg.paths.output_dir)


def test_logger_many_writes_tensorboard_and_csv(many_loggers_run):
    run = many_loggers_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert list(event_dir(run).glob("*/events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "csv" / "metrics.csv").open()))
    val = [float(r["val/ppl"]) for r in rows if r.get("val/ppl")]
    assert len(val) == 2 and val[-1] == pytest.approx(metrics["val/ppl"], rel=1e-6)
    assert "model/hidden_size: 24" in (run / "csv" / "hparams.yaml").read_text()


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_optional_loggers_offline_or_one_line(name, make_cfg, capsys):
    cfg = make_cfg(f"logger={name}", "trainer.max_epochs=1")
    if importlib.util.find_spec(name) is None:
        with pytest.raises(SystemExit) as exit_info:
            main_task(cfg)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_info.value.code == 2 and len(err) == 1
        assert err[0] == f'error: logger.{name} needs {name}, which is not installed: pip install "rnnlab[{name}]"'
    else:
        main_task(cfg)
        run = Path(cfg.paths.output_dir)
        assert metrics_of(cfg)["status"] == "ok"
        assert list(run.glob("mlruns/*/*/metrics/val/ppl") if name == "mlflow" else run.glob("wandb/offline-run-*"))


def test_callbacks_early_stopping_rich_bar_and_minimal(make_cfg):
    types = lambda cfg: {type(cb) for cb in build_run(cfg).trainer.callbacks}  # noqa: E731
    assert EarlyStopping not in types(make_cfg())
    stopper = [cb for cb in build_run(make_cfg("callbacks.early_stopping.patience=5")).trainer.callbacks
               if isinstance(cb, EarlyStopping)]
    assert len(stopper) == 1 and (stopper[0].patience, stopper[0].monitor, stopper[0].mode) == (5, "val/ppl", "min")
    assert RichProgressBar in types(make_cfg("progress_bar=rich", "trainer.enable_progress_bar=true"))
    minimal = types(make_cfg("callbacks=minimal", tiny=False))
    assert minimal == {ModelCheckpoint, DivergenceGuard, InterruptCheckpoint, RNGStateCheckpoint}


def test_early_stopping_stops_training(make_cfg):
    cfg = make_cfg("callbacks.early_stopping.patience=1", "callbacks.early_stopping.min_delta=100",
                   "trainer.max_epochs=5")
    main_task(cfg)
    assert metrics_of(cfg)["epochs"] == 2  # the second validation did not improve by 100: stop


def test_lr_finder_suggests_plots_and_trains_with_it(make_cfg, capsys):
    cfg = make_cfg("tune.lr_find=true", "tune.num_training=15")
    assert main_task(cfg) is None
    run, metrics = Path(cfg.paths.output_dir), metrics_of(cfg)
    assert metrics["status"] == "tuned" and metrics["lr_find/configured"] == 1.0
    assert 1e-5 <= metrics["lr_find/suggestion"] <= 10 and (run / "lr_find.png").stat().st_size > 5000
    assert f"lr finder: suggested lr {metrics['lr_find/suggestion']:.4g}" in capsys.readouterr().out
    assert not list(run.glob("checkpoints/*.ckpt")) and not list(run.glob(".lr_find*"))

    cfg = make_cfg("tune.lr_find=true", "tune.num_training=15", "tune.apply=true", "trainer.max_epochs=1")
    main_task(cfg)
    metrics = metrics_of(cfg)
    assert metrics["status"] == "ok" and metrics["val/ppl"] > 1
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(metrics["lr_find/suggestion"])


# eval.py ---------------------------------------------------------------------------------------
def compose_eval(out: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("eval", overrides=[f"paths.output_dir={out}", "trainer.accelerator=cpu",
                                          "trainer.enable_progress_bar=false", *overrides])


@pytest.fixture(scope="module")
def lm_with_test_split(tmp_path_factory):
    cfg = compose_config(tmp_path_factory.mktemp("lm") / "run", "data.test_fraction=0.1", "trainer.max_epochs=1")
    return train_as_hydra_does(cfg)


def test_test_fraction_splits_train_val_test(lm_with_test_split):
    metrics = json.loads((lm_with_test_split / "metrics.json").read_text())
    assert metrics["test/ppl"] > 1 and metrics["test/loss"] == pytest.approx(math.log(metrics["test/ppl"]), rel=1e-5)
    events = RunEvents(lm_with_test_split)  # TensorBoard: the eval run, as ~test (sorted after train and val)
    assert events.eval.Scalars("~test/ppl")[0].value == pytest.approx(metrics["test/ppl"])
    assert not [t for t in events.tags() if t.startswith("test/")]
    from rnnlab.data import TextDataModule

    book = TextDataModule(max_tokens=4000)
    book.setup()
    split = TextDataModule(max_tokens=4000, test_fraction=0.1)
    split.setup()
    assert (len(book.train_tokens), len(book.val_tokens), book.test_tokens) == (3600, 400, None)
    assert (len(split.train_tokens), len(split.val_tokens), len(split.test_tokens)) == (3200, 400, 400)
    assert torch.equal(torch.cat([split.train_tokens, split.val_tokens, split.test_tokens]),
                       torch.cat([book.train_tokens, book.val_tokens]))


def test_eval_scores_a_language_model_checkpoint(lm_with_test_split, tmp_path):
    trained = json.loads((lm_with_test_split / "metrics.json").read_text())
    cfg = compose_eval(tmp_path / "eval", f"ckpt_path={lm_with_test_split / 'checkpoints' / 'last.ckpt'}",
                       "num_tokens=12", "logger=tensorboard")
    assert main_eval(cfg) == pytest.approx(trained["val/ppl"], rel=1e-5)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    events = RunEvents(tmp_path / "eval")  # each score once, in the eval run
    for tag in ("val/ppl", "val/bpc", "~test/ppl", "~test/bpc"):
        assert len(events.eval.Scalars(tag)) == 1, tag
    assert events.eval.Scalars("~test/ppl")[0].value == pytest.approx(metrics["test/ppl"])
    assert metrics["status"] == "ok" and metrics["task"] == "lm"
    for split in ("val", "test"):
        assert metrics[f"{split}/ppl"] == pytest.approx(trained[f"{split}/ppl"], rel=1e-5)
        assert metrics[f"{split}/bpc"] == pytest.approx(math.log2(metrics[f"{split}/ppl"]), rel=1e-5)
    for kind in ("greedy", "sampled"):
        assert metrics[f"sample/{kind}"].startswith("time traveller")
        assert len(metrics[f"sample/{kind}"]) == len("time traveller") + 12
    assert metrics["sample/greedy"] == trained["sample"][:len("time traveller") + 12]


def test_eval_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main_eval(compose_eval(tmp_path / "e", f"ckpt_path={tmp_path / 'missing.ckpt'}"))
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "is not a file" in err[0]
    with pytest.raises(SystemExit):
        main_eval(compose_eval(tmp_path / "e2"))
    assert "ckpt_path is required" in capsys.readouterr().err


@pytest.mark.parametrize("override, line", [
    ("+data.val_batch_size=0", "data.val_batch_size=0 is invalid: must be a positive integer"),
    ("num_tokens=abc", "num_tokens='abc' is invalid: must be an integer >= 0"),
    ("temperature=-2", "temperature=-2 is invalid: must be a finite number >= 0 (0: greedy)"),
    ("prefix=''", "prefix='' is invalid: must be a non-empty string"),
    ("run_config=README.md", "run_config='README.md' cannot be read as YAML (ScannerError)"),
    ("run_config=conf/train.yaml",
     "run_config='conf/train.yaml' is not a training run's config (it has no data section)"),
])
def test_eval_options_are_checked_before_scoring(lm_with_test_split, tmp_path, capsys, monkeypatch, override, line):
    monkeypatch.chdir(CONF.parent)
    cfg = compose_eval(tmp_path / "e", f"ckpt_path={lm_with_test_split / 'checkpoints' / 'last.ckpt'}", override)
    with pytest.raises(SystemExit) as exit_info:
        main_eval(cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {line}"), err
    assert not (tmp_path / "e").exists()  # a refused evaluation writes nothing


def test_eval_scores_a_forecaster_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg("task=forecast", "model=gru", "data.T=400", "data.n_train=200", "data.eval_context=16",
                   "data.batch_size=4", "trainer.max_epochs=1", tiny=False)
    run = train_as_hydra_does(cfg)
    trained = metrics_of(cfg)
    ecfg = compose_eval(tmp_path / "eval", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    assert main_eval(ecfg) == pytest.approx(trained["val/mase"], rel=1e-4)  # what the training run optimised
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["task"] == "forecast" and "sample/greedy" not in metrics
    for k in (1, 4, 16, 64):
        assert metrics[f"test/mse_k{k}"] > 0


# Sample prefixes: the data's own, carried by the checkpoint -------------------------------------------
ZH = "时间旅行者正在向我们讲解一个深奥的问题。他的灰色眼睛闪闪发光，平时苍白的脸也红润起来。\n"
ZH_OPENING = "时间旅行者正在向我们"  # its first 10 characters (no spaces to end a word at)
PREFIX_LOGGER = "rnnlab.models.language_model"


@pytest.fixture(scope="module")
def zh_corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("zh") / "zh.txt"
    path.write_text(ZH * 40, encoding="utf-8")
    return path


def prefix_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == PREFIX_LOGGER]


def test_samples_continue_the_corpus_own_opening_in_training_generate_and_eval(zh_corpus, tmp_path, caplog, capsys):
    """On a corpus other than the book, text samples, the final sample, rnnlab-generate and eval.py
    without a prefix all continue the corpus's opening (not the book's "time traveller", all <unk> here)."""
    from rnnlab.cli.generate import main as generate_main

    cfg = compose_config(tmp_path / "run", f"data.path={zh_corpus}", "data.preprocess=none", "trainer.max_epochs=1")
    with caplog.at_level("WARNING", logger=PREFIX_LOGGER):
        run = train_as_hydra_does(cfg)
    assert prefix_warnings(caplog) == []
    assert metrics_of(cfg)["sample"].startswith(ZH_OPENING)
    greedy = RunEvents(run).tensors("samples/greedy/text_summary")[0].tensor_proto.string_val[0].decode()
    assert ZH_OPENING in greedy and "<unk>" not in greedy
    ckpt = run / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["sample_prefix"] == ZH_OPENING

    capsys.readouterr()
    assert generate_main([str(ckpt), "--num-tokens", "4"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(ZH_OPENING) and len(out) == len(ZH_OPENING) + 4
    assert main_eval(compose_eval(tmp_path / "eval", f"ckpt_path={ckpt}", "num_tokens=4")) > 1
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["sample/greedy"] == out and evaluated["sample/sampled"].startswith(ZH_OPENING)
    assert prefix_warnings(caplog) == []

    with caplog.at_level("WARNING", logger=PREFIX_LOGGER):  # an explicit prefix wins, named if unknown
        assert generate_main([str(ckpt), "--prefix", "time 时间", "--num-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith("time 时间")
    assert prefix_warnings(caplog) == ["sample prefix 'time 时间' has characters outside the vocabulary, read as "
                                       "<unk>: 't', 'i', 'm', 'e', ' '; give a prefix in the corpus's own text"]


def test_a_given_prefix_wins_and_an_unknown_one_is_named_when_training_starts(zh_corpus, tmp_path, caplog):
    cfg = compose_config(tmp_path / "run", f"data.path={zh_corpus}", "data.preprocess=none", "trainer.max_epochs=1",
                         "callbacks.text_sample.prefix=time traveller", "evaluation.sample.prefix='灰色'")
    with caplog.at_level("WARNING", logger=PREFIX_LOGGER):
        main_task(cfg)
    assert prefix_warnings(caplog) == [  # once, at the start of training, not at every sample
        "sample prefix 'time traveller' has characters outside the vocabulary, read as <unk>: 't', 'i', 'm', 'e', "
        "' ', 'r', 'a', 'v', 'l'; give a prefix in the corpus's own text"]
    assert metrics_of(cfg)["sample"].startswith("灰色")
