"""Every experiment preset run for real with debug=fdr (one batch each, as lightning-hydra-template's
sweep tests do), the multirun presets with two jobs, the stored Optuna search and its resume, the
submitit launcher with local processes, eval.py from the command line, and the declared minimum
dependency versions."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, ROOT, compose_config
from rnnlab.run.job import main_task

PRESETS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith("_"))
QUIET = ["trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "print_config=false"]
# Small enough for two CPU cores; the presets' own model and data options stay otherwise.
TINY_LM = ["data.max_tokens=4000", "data.batch_size=4", "data.num_steps=8", "data.val_batch_size=4",
           "model.hidden_size=8"]


def is_multirun(preset: str) -> bool:
    """A sweep preset: MULTIRUN mode, or sweeper parameters for `-m` (the ensemble's seeds)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}"], return_hydra_config=True)
    return str(cfg.hydra.mode) == "RunMode.MULTIRUN" or bool(cfg.hydra.sweeper.get("params"))


SINGLE = [p for p in PRESETS if not is_multirun(p)]


def test_the_presets_are_split_as_expected():
    assert set(PRESETS) - set(SINGLE) == {"sweep_cells", "best_char_lm_ensemble"}


@pytest.mark.slow
@pytest.mark.parametrize("preset", SINGLE)
def test_every_single_run_preset_runs_one_batch(preset, tmp_path):
    cfg = compose_config(tmp_path / "run", f"experiment={preset}", "debug=fdr", *QUIET, tiny=False, fast=False)
    result = main_task(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "debug" and metrics["global_step"] == 1
    assert result == metrics[cfg.optimized_metric] and result > 0


def train_cli(*args: str, script: str = "train.py", timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def job_metrics(sweep: Path) -> list[dict]:
    return [json.loads((job / "metrics.json").read_text())
            for job in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())]


@pytest.mark.slow
def test_sweep_cells_two_jobs(tmp_path):
    proc = train_cli("experiment=sweep_cells", "debug=fdr", *QUIET, *TINY_LM, "model=rnn,gru", "model.hidden_size=8",
                     "data.num_steps=8", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m["status"] for m in job_metrics(tmp_path)] == ["debug", "debug"]


@pytest.mark.slow
def test_best_char_lm_ensemble_two_members(tmp_path):
    # Not debug=fdr: a debug run writes no checkpoints, and the ensemble is made of the members' best ones.
    proc = train_cli("-m", "experiment=best_char_lm_ensemble", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                     *QUIET, *TINY_LM, "model.num_layers=1", "model.dropout=0", "module.embedding_dim=4", "seed=1,2",
                     "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(m["seed"], m["status"]) for m in job_metrics(tmp_path)] == [(1, "ok"), (2, "ok")]
    report = json.loads((tmp_path / "ensemble.json").read_text())
    assert report["members"] == 2 and report["ensemble/ppl_stream"] > 1


def optuna_cli(sweep: Path, storage: str, n_trials: int, seed: int) -> subprocess.CompletedProcess:
    return train_cli("hparams_search=lm_optuna", "debug=fdr", *QUIET, *TINY_LM, "data.num_steps=8",
                     f"hydra.sweeper.storage={storage}", f"hydra.sweeper.n_trials={n_trials}",
                     f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweep.dir={sweep}")


@pytest.mark.slow
def test_optuna_search_in_sqlite_and_its_resume(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    first = optuna_cli(tmp_path / "first", storage, 2, seed=1)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "setup plugin alembic" not in first.stdout + first.stderr
    study = optuna.load_study(study_name="lm_search", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert [m["status"] for m in job_metrics(tmp_path / "first")] == ["debug", "debug"]

    again = optuna_cli(tmp_path / "again", storage, 1, seed=2)  # the same study, continued
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="lm_search", storage=storage)
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    values = sorted(t.value for t in study.trials)
    results = (tmp_path / "again" / "optimization_results.yaml").read_text()
    best = json.loads(json.dumps(__import__("yaml").safe_load(results)))
    assert best["best_value"] == pytest.approx(values[0])


@pytest.mark.slow
def test_optuna_in_memory_default_two_trials(tmp_path):
    proc = optuna_cli(tmp_path, "null", 2, seed=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(job_metrics(tmp_path)) == 2


@pytest.mark.slow
def test_submitit_local_launcher_two_jobs(tmp_path):
    proc = train_cli("-m", "launcher=submitit_local", "debug=fdr", *QUIET, *TINY_LM, "model=rnn,gru",
                     f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [m["status"] for m in job_metrics(tmp_path)] == ["debug", "debug"]
    assert len(list((tmp_path / ".submitit").glob("*/*_result.pkl"))) == 2  # each job went through submitit


@pytest.mark.slow
def test_eval_py_from_the_command_line(tmp_path):
    run = tmp_path / "train"
    proc = train_cli(*QUIET, *TINY_LM, "trainer.max_epochs=1", "data.test_fraction=0.1", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = train_cli(f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "num_tokens=10",
                     "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'eval'}", script="eval.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((run / "metrics.json").read_text())
    assert metrics["test/ppl"] == pytest.approx(trained["test/ppl"], rel=1e-5) and metrics["val/bpc"] > 0


@pytest.mark.slow
def test_declared_minimum_versions_train_one_epoch(tmp_path):
    """.ci/min_versions.sh: every dependency at its declared lower bound in a fresh venv (torch 2.13.0)."""
    proc = subprocess.run(["bash", ".ci/min_versions.sh", str(tmp_path / "venv")], cwd=ROOT, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "lightning==2.6 " in proc.stdout and "minimum versions: one epoch ok" in proc.stdout
