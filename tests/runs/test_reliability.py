"""Determinism under a seed, and data-parallel training with exact global validation perplexity."""

import json
import math
import re
import subprocess
import sys

import lightning as L
import pytest
import torch

from conftest import ROOT, TINY, compose_config
from rnnlab.checkpoints import load_language_model
from rnnlab.dashboard.logger import event_dir
from rnnlab.data import TextDataModule
from rnnlab.run.job import main_task

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
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith("train") and p != event_dir(run)) == [
        ".hydra", "checkpoints", "metrics.json"]
    assert not list(tmp_path.glob("*/*/.hydra"))  # no second Hydra directory from the second process
    # The logged validation perplexity is the exact global one: a single process on the same weights agrees.
    model = load_language_model(run / "checkpoints" / "last.ckpt")
    dm = TextDataModule(max_tokens=4000, batch_size=8, num_steps=10, val_batch_size=4)
    single = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False).validate(model, dm, verbose=False)
    assert single[0]["val/ppl"] == pytest.approx(metrics["val/ppl"], rel=1e-5)


# Bad input: one clear line each -----------------------------------------------------------------
def compose_error(*overrides):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(Exception) as info:
            compose("train", overrides=list(overrides))
    return str(info.value)


@pytest.mark.parametrize("group, allowed", [("model", "gru_scratch"), ("data", "timemachine"),
                                            ("trainer", "default"), ("optimizer", "adamw")])
def test_unknown_group_option_lists_the_allowed_ones(group, allowed):
    message = compose_error(f"{group}=nonsense")
    assert f"Could not find '{group}/nonsense'" in message and allowed in message


def test_mistyped_key_is_named():
    assert "model.hiden_size" in compose_error("model.hiden_size=3")


def test_checkpoint_of_another_model_is_rejected(make_cfg, capsys, tmp_path):
    main_task(compose_config(tmp_path / "gru", "model=gru", "trainer.max_epochs=1"))
    with pytest.raises(SystemExit):
        main_task(make_cfg("model=lstm", f"ckpt_path={tmp_path / 'gru' / 'checkpoints' / 'last.ckpt'}"))
    err = capsys.readouterr().err
    assert "holds another model's weights" in err and "ckpt_path=" in err


# Divergence, interruption, atomic checkpoints -----------------------------------------------------
def test_divergence_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    # SGD with lr 50 trains while every step is clipped to norm 0.01, and blows up once clipping is off.
    common = ["model=rnn_scratch", "model.hidden_size=64", "optimizer.lr=50", "trainer.log_every_n_steps=1"]
    main_task(compose_config(run, *common, "trainer.max_epochs=1", "trainer.gradient_clip_val=0.01"))
    good = torch_load(run / "checkpoints" / "last.ckpt")
    with pytest.raises(SystemExit) as info:
        main_task(compose_config(run, *common, "trainer.max_epochs=4", "trainer.gradient_clip_val=null",
                                 f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"))
    assert info.value.code == 1 and "training diverged" in capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["last_good_checkpoint"].endswith("last.ckpt")
    kept = torch_load(run / "checkpoints" / "last.ckpt")
    assert kept["epoch"] == good["epoch"] == 0
    assert all(v.isfinite().all() for v in kept["state_dict"].values())


def test_a_validation_loss_far_worse_than_guessing_stops_the_run(tmp_path, capsys):
    """A learning rate far too large, with clipping: the loss stays finite, tens of nats, while the uniform
    distribution scores log(28) = 3.33. Three validations in a row above log(V) + 5 stop the run as
    diverged; the checkpoint recorded as good is the best one (below the bound), not last.ckpt."""
    run = tmp_path / "run"
    common = ["model=rnn_scratch", "model.hidden_size=32", "optimizer.lr=20", "data.max_tokens=2000"]
    # Steps clipped to norm 0.01 (x lr 20): a sane first epoch, below the bound.
    main_task(compose_config(run, *common, "trainer.max_epochs=1", "trainer.gradient_clip_val=0.01"))
    first = json.loads((run / "metrics.json").read_text())
    assert first["status"] == "ok" and first["val/loss"] < math.log(28) + 5
    assert torch_load(run / "checkpoints" / "last.ckpt")["callbacks"]["DivergenceGuard"] == {"above": 0}
    with pytest.raises(SystemExit) as info:  # clipping at norm 1: steps of norm 20
        main_task(compose_config(run, *common, "trainer.max_epochs=8", "trainer.gradient_clip_val=1",
                                 "ckpt_path=last"))
    err = capsys.readouterr().err
    assert info.value.code == 1
    assert re.fullmatch(r"error: training diverged: val/loss is [\d.e+]+ at epoch 3, above log\(vocabulary 28\) \+ 5 = "
                        r"8.33 nats \(far worse than guessing uniformly\) for 3 validations in a row; lower "
                        r"optimizer.lr or set trainer.gradient_clip_val \(now 1\)\n", err), err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["last_good_checkpoint"].endswith("best-epoch000.ckpt")
    last = torch_load(run / "checkpoints" / "last.ckpt")  # epochs 1 and 2 were above the bound, 3 is not saved
    assert last["epoch"] == 2 and last["callbacks"]["DivergenceGuard"] == {"above": 2}


def test_the_bound_can_be_turned_off(tmp_path):
    """The same run from scratch, three validations above the bound, with patience 0 (or null): it
    trains to the end. The forecasting task's module has no vocabulary, hence no bound."""
    from rnnlab.callbacks import DivergenceGuard
    from rnnlab.models import LanguageModel

    run = tmp_path / "run"
    main_task(compose_config(run, "model=rnn_scratch", "model.hidden_size=32", "optimizer.lr=20",
                             "data.max_tokens=2000", "trainer.max_epochs=3", "callbacks.divergence_guard.patience=0"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["epochs"] == 3 and metrics["val/loss"] > math.log(28) + 5
    lm = LanguageModel(core={"kind": "gru", "hidden_size": 4}, vocab=["<unk>", "a", "b"])
    assert DivergenceGuard().bound(lm) == pytest.approx(math.log(3) + 5)
    assert DivergenceGuard(patience=None).bound(lm) is None and DivergenceGuard(patience=0).bound(lm) is None
    assert DivergenceGuard().bound(torch.nn.Linear(1, 1)) is None  # a module without a vocabulary


def torch_load(path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def test_checkpoints_are_replaced_atomically(tmp_path):
    """The whole checkpoint goes to a temporary file beside it, which is renamed over the old one
    (rnnlab.checkpoint_io), so a kill during a save leaves the previous file intact (a new inode replaces the old)."""
    run = tmp_path / "run"
    main_task(compose_config(run, "trainer.max_epochs=1"))
    last = run / "checkpoints" / "last.ckpt"
    inode = last.stat().st_ino
    main_task(compose_config(run, "trainer.max_epochs=2", f"ckpt_path={last}"))
    assert last.stat().st_ino != inode and torch_load(last)["epoch"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["best-epoch001.ckpt", "last.ckpt"]


# Kills and signals mid-epoch, and the resumes after them: tests/runs/test_resume.py.


# Multirun with several processes, and load --------------------------------------------------------
@pytest.mark.slow  # a long process test (15-18 s); the default suite keeps a shorter one of its kind
def test_ddp_inside_a_multirun_one_directory_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "train.py", "-m", *TINY, "model=rnn,gru", "trainer.strategy=ddp",
                           "trainer.devices=2", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "ok"


@pytest.mark.slow  # a long process test (15-18 s); the default suite keeps a shorter one of its kind
def test_eight_jobs_on_two_joblib_workers_one_failing(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "train.py", "-m", *TINY, "launcher=joblib", "hydra.launcher.n_jobs=2",
                           "model.hidden_size=8,12,16,0,20,24,28,32", "trainer.max_epochs=1",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "model.hidden_size=0" in proc.stderr  # the failure is reported
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 8
    statuses = {}
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        hidden = [o for o in (job / ".hydra" / "overrides.yaml").read_text().split() if "hidden_size" in o][0]
        statuses[hidden.split("=")[1]] = metrics["status"]
        if metrics["status"] == "ok":
            assert (job / "checkpoints" / "last.ckpt").is_file() and metrics["val/ppl"] > 1
            assert list(event_dir(job).glob("*/events.out.tfevents.*"))
    assert statuses.pop("0") == "config_error"
    assert sorted(statuses, key=int) == ["8", "12", "16", "20", "24", "28", "32"]
    assert set(statuses.values()) == {"ok"}
