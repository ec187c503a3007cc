"""End to end through the real Hydra config: files written, perplexity falls, errors are one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY, RunEvents
from rnnlab.dashboard.logger import event_dir
from rnnlab.run.job import main_task


def scalars(run_dir: Path) -> RunEvents:
    return RunEvents(run_dir)


def test_tiny_run_lowers_val_ppl_and_writes_every_file(make_cfg):
    cfg = make_cfg("trainer.max_epochs=3", "data.max_tokens=6000", "optimizer=adam", "optimizer.lr=0.01")
    result = main_task(cfg)
    run = Path(cfg.paths.output_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["val/ppl"] == result
    for key in ("val/ppl", "train/ppl", "epochs", "tokens_per_s", "sample", "train/grad_norm"):
        assert metrics[key] is not None, key
    assert metrics["epochs"] == 3 and metrics["sample"].startswith("time traveller")
    assert len(metrics["sample"]) == len("time traveller") + 12
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-epoch*.ckpt"))) == 1
    assert (event_dir(run) / "hparams.yaml").is_file()

    events = scalars(run)
    assert {"train/loss", "train/ppl", "train/grad_norm", "train/tokens_per_s"} <= set(events.train.Tags()["scalars"])
    assert {"val/ppl", "val/best", "val/bpc"} <= set(events.eval.Tags()["scalars"])
    val = [e.value for e in events.scalars("val/ppl")]
    assert len(val) == 3 and val[-1] < val[0]
    assert any(t.startswith("samples/greedy") for t in events.tags("tensors"))


def run_cli(*args, cwd=ROOT, timeout=300):
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "train.py", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.slow  # tests/runs/test_experiments.py's joblib multirun checks the same per job (about 12 s saved)
def test_multirun_writes_one_directory_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "model=rnn,gru", *TINY, "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    kinds = []
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["status"] == "ok"
        assert (job / ".hydra" / "config.yaml").is_file() and (job / "checkpoints" / "last.ckpt").is_file()
        kinds.append((job / ".hydra" / "overrides.yaml").read_text())
    assert "model=rnn" in kinds[0] and "model=gru" in kinds[1]


def test_documented_overrides_reach_the_objects(make_cfg):
    from hydra.utils import instantiate

    cfg = make_cfg("model=gru_scratch", "model.hidden_size=12", "model.num_layers=2", "model.bidirectional=true",
                   "data.num_steps=7", "data.batch_size=3", "data.sampling=random", "data.token=word",
                   "data.max_tokens=2000", "trainer.accelerator=cpu", "trainer.max_epochs=4",
                   "trainer.gradient_clip_val=0.5", "seed=11", "optimizer=adamw", "module.embedding_dim=8")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert (dm.num_steps, dm.batch_size, dm.sampling, dm.token, dm.seed) == (7, 3, "random", "word", 11)
    assert len(dm.train_tokens) + len(dm.val_tokens) == 2000
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 7)
    module = instantiate(cfg.module, **dm.module_kwargs())
    core = module.core
    assert (type(core).__name__, core.hidden_size, core.num_layers, core.bidirectional) == ("ScratchGRU", 12, 2, True)
    assert module.embedding.embedding_dim == 8 and module.head.in_features == 24
    assert isinstance(module.configure_optimizers(), __import__("torch").optim.AdamW)
    trainer = instantiate(cfg.trainer)
    assert (trainer.max_epochs, trainer.gradient_clip_val, type(trainer.accelerator).__name__) == (
        4, 0.5, "CPUAccelerator")
