"""Presets, sweeps, run comparison, resuming, generation and corpus statistics."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, ROOT, TINY, RunEvents, compose_config
from rnnlab.cli.generate import main as generate_main
from rnnlab.cli.summary import main as summary_main
from rnnlab.cli.zipf import main as zipf_main
from rnnlab.run.job import main_task
from rnnlab.summary import summarize

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("_"))
BOOK = {
    "book_rnn_scratch": ("rnn_scratch", 512, 1, False, 1.0, "sequential"),
    "book_rnn_scratch_random": ("rnn_scratch", 512, 1, False, 1.0, "random"),
    "book_rnn_concise": ("rnn", 256, 1, False, 1.0, "sequential"),
    "book_gru_scratch": ("gru_scratch", 256, 1, False, 1.0, "sequential"),
    "book_gru": ("gru", 256, 1, False, 1.0, "sequential"),
    "book_lstm_scratch": ("lstm_scratch", 256, 1, False, 1.0, "sequential"),
    "book_lstm": ("lstm", 256, 1, False, 1.0, "sequential"),
    "book_deep_lstm": ("lstm", 256, 2, False, 2.0, "sequential"),
    "book_bilstm": ("lstm", 256, 2, True, 1.0, "sequential"),
    "book_no_clip": ("rnn_scratch", 512, 1, False, 1.0, "sequential"),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_builds(preset, tmp_path):
    cfg = compose_config(tmp_path, f"experiment={preset}", tiny=False, fast=False)
    assert cfg.model.kind if "kind" in cfg.model else cfg.model._target_.endswith("AutoregressiveMLP")
    if preset in BOOK:
        kind, hidden, layers, bi, lr, sampling = BOOK[preset]
        assert (cfg.model.kind, cfg.model.hidden_size, cfg.model.num_layers, cfg.model.bidirectional) == (
            kind, hidden, layers, bi)
        assert (cfg.optimizer.lr, cfg.data.sampling, cfg.data.batch_size, cfg.data.num_steps) == (lr, sampling, 32, 35)
        assert (cfg.data.max_tokens, cfg.trainer.max_epochs) == (10000, 500)
        assert cfg.trainer.gradient_clip_val == (None if preset == "book_no_clip" else 1.0)
    from hydra.utils import instantiate

    dm = instantiate(cfg.data)
    dm.setup("fit")
    module = instantiate(cfg.module, **dm.module_kwargs())
    assert sum(p.numel() for p in module.parameters()) > 0


@pytest.mark.parametrize("extra", ["hparams_search=lm_optuna", "launcher=joblib"]
                         + (["launcher=slurm", "launcher=submitit_local"]
                            if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") else []))
def test_search_and_launcher_presets_compose(extra, tmp_path):
    from hydra import compose, initialize_config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[extra], return_hydra_config=True)
    if extra.startswith("hparams_search"):
        assert cfg.hydra.sweeper.storage is None and cfg.hydra.sweeper.direction == "minimize"
        assert cfg.optimized_metric == "val/ppl" and "model.hidden_size" in cfg.hydra.sweeper.params
    else:
        assert "launcher" in cfg.hydra.launcher._target_.lower()


def test_book_no_clip_diverges_with_a_clear_message(tmp_path, capsys):
    cfg = compose_config(tmp_path, "experiment=book_no_clip", "trainer.max_epochs=3", "trainer.log_every_n_steps=1",
                         "callbacks.progress_bar=null", "trainer.enable_progress_bar=false", "print_config=false",
                         "trainer.accelerator=cpu", tiny=False, fast=False)
    with pytest.raises(SystemExit) as exit_info:
        main_task(cfg)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "training diverged" in err[0] and "trainer.gradient_clip_val" in err[0]
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and "val/ppl" not in metrics


def run_cli(*args, timeout=400):
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory):
    """A real two-job multirun through the joblib launcher, with one job that fails on purpose."""
    sweep = tmp_path_factory.mktemp("sweep")
    proc = run_cli("-m", *TINY, "launcher=joblib", "model=rnn,gru", "model.hidden_size=16,0",
                   "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    return sweep, proc


def test_joblib_multirun_keeps_good_jobs_when_one_fails(joblib_sweep):
    sweep, proc = joblib_sweep
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 4
    status = {}
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        metrics = json.loads((job / "metrics.json").read_text())
        status["hidden_size=0" in overrides, "model=rnn" in overrides] = metrics["status"]
        if metrics["status"] == "ok":
            assert (job / "checkpoints" / "last.ckpt").is_file() and metrics["val/ppl"] > 1
        else:
            assert "model.hidden_size=0" in metrics["error"]
    assert status == {(False, True): "ok", (False, False): "ok", (True, True): "config_error",
                      (True, False): "config_error"}
    assert proc.returncode != 0 and "model.hidden_size=0" in proc.stderr  # the sweep reports the failure


def test_summary_table_and_plot_from_a_real_multirun(joblib_sweep, capsys):
    sweep, _ = joblib_sweep
    assert summary_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| job | model | model.hidden_size | val/ppl |")
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| job")]
    assert len(rows) == 4
    assert "| ok |" in rows[0] and "| ok |" in rows[1] and "config_error" in rows[2] and "config_error" in rows[3]
    result = summarize(sweep)
    ppl = [float(r[3]) for r in result["rows"][:2]]
    assert ppl == sorted(ppl)
    assert (sweep / "summary.csv").read_text().splitlines()[0].startswith("job,model,model.hidden_size,val/ppl")
    assert (sweep / "summary.png").stat().st_size > 5000


def test_hparams_are_logged_for_tensorboards_hparams_view(joblib_sweep):
    sweep, _ = joblib_sweep
    ok_job = next(j for j in sorted(sweep.iterdir()) if j.is_dir() and (j / "checkpoints").exists())
    events = RunEvents(ok_job)
    assert "_hparams_/session_start_info" in events.eval.summary_metadata  # the session is the eval run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = compose_config(out, "model=gru_scratch", "trainer.max_epochs=1")
    main_task(cfg)
    return out


def test_resume_from_checkpoint_continues_counting(trained_run, tmp_path):
    cfg = compose_config(tmp_path / "resumed", "model=gru_scratch", "trainer.max_epochs=2",
                         f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}")
    main_task(cfg)
    first = json.loads((trained_run / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert (first["epochs"], resumed["epochs"]) == (1, 2)
    assert resumed["global_step"] == 2 * first["global_step"]


def test_generate_from_a_saved_checkpoint(trained_run, capsys):
    ckpt = str(trained_run / "checkpoints" / "last.ckpt")
    assert generate_main([ckpt, "--prefix", "time traveller", "--num-tokens", "15"]) == 0
    greedy = capsys.readouterr().out.rstrip("\n")
    assert greedy.startswith("time traveller") and len(greedy) == len("time traveller") + 15
    assert generate_main([ckpt, "--prefix", "the", "--num-tokens", "20", "--temperature", "1.0", "--seed", "3"]) == 0
    assert generate_main([ckpt, "--prefix", "the", "--num-tokens", "20", "--temperature", "1.0", "--seed", "3"]) == 0
    a, b = capsys.readouterr().out.strip().splitlines()
    assert a == b and a.startswith("the")


def test_generate_word_level(tmp_path, capsys):
    out = tmp_path / "w"
    main_task(compose_config(out, "data.token=word", "data.max_tokens=3000", "model=lstm", "trainer.max_epochs=1",
                             "callbacks.text_sample.prefix=the time"))
    assert generate_main([str(out / "checkpoints" / "last.ckpt"), "--prefix", "the time", "--num-tokens", "5"]) == 0
    assert len(capsys.readouterr().out.split()) == 7


def test_zipf_command_on_a_small_text(tmp_path, capsys):
    text = tmp_path / "small.txt"
    text.write_text("the cat sat on the mat. The cat ate; the dog sat.\n" * 5)
    assert zipf_main([f"data.path={text}", "data.token=word", "data.batch_size=2", "data.num_steps=2",
                      "--out", str(tmp_path / "z")]) == 0
    out = capsys.readouterr().out
    assert "top 1-grams (7 distinct): 'the': 20, 'cat': 10, 'sat': 10" in out
    assert "top 2-grams" in out and "'the cat': 10" in out
    assert (tmp_path / "z" / "zipf.png").stat().st_size > 5000
    assert list((tmp_path / "z" / "tensorboard").glob("events.out.tfevents.*"))
