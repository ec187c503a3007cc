"""Determinism under a seed, and data-parallel training with exact global validation perplexity."""

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest

from conftest import ROOT, TINY, compose_config
from rnnlab.data import TimeMachineDataModule
from rnnlab.generate import load_language_model
from rnnlab.training import main_task

KEYS = ("val/ppl", "train/ppl", "train/loss", "train/grad_norm", "sample")


def metrics_of(tmp_path, name, *overrides):
    main_task(compose_config(tmp_path / name, "trainer.max_epochs=1", *overrides))
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_same_seed_same_metrics_other_seed_differs(tmp_path):
    a, b = metrics_of(tmp_path, "a", "seed=7"), metrics_of(tmp_path, "b", "seed=7")
    c = metrics_of(tmp_path, "c", "seed=8")
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}
    assert a["val/ppl"] != c["val/ppl"] and a["seed"] == 7 and c["seed"] == 8


def test_ddp_on_two_cpu_processes_one_directory_exact_global_val_ppl(tmp_path):
    run = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "train.py", *TINY, "trainer.strategy=ddp", "trainer.devices=2",
                           "trainer.max_epochs=2", f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 2
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("train")) == [
        ".hydra", "checkpoints", "metrics.json", "tensorboard"]
    assert not list(tmp_path.glob("*/*/.hydra"))  # no second Hydra directory from the second process
    # The logged validation perplexity is the exact global one: a single process on the same weights agrees.
    model = load_language_model(run / "checkpoints" / "last.ckpt")
    dm = TimeMachineDataModule(max_tokens=4000, batch_size=8, num_steps=10, val_batch_size=4)
    single = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).validate(model, dm, verbose=False)
    assert single[0]["val/ppl"] == pytest.approx(metrics["val/ppl"], rel=1e-5)
