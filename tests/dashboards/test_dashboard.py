"""What TensorBoard shows, read through TensorBoard's own loading code: its event multiplexer and the
HParams plugin's HTTP API served on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.util import tensor_util

from conftest import ROOT, TINY, compose_config
from rnnlab.callbacks import code_block, show_trailing_whitespace
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import event_dir
from rnnlab.dashboard.run_label import label_from_overrides
from rnnlab.models.step_logging import is_logging_step
from rnnlab.run.job import main_task

SIZES = {"scalars": 0, "tensors": 0, "histograms": 0, "images": 0}


def accumulator(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path), size_guidance=SIZES)
    acc.Reload()
    return acc


def texts(acc: EventAccumulator, tag: str) -> list[str]:
    return [tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(f"{tag}/text_summary")]


class Serve:
    """`tensorboard --logdir` on 127.0.0.1 (a free port), loaded once before serving."""

    def __init__(self, logdir: Path):
        from tensorboard import program

        self.tb = program.TensorBoard()
        self.tb.configure(argv=[None, "--logdir", str(logdir), "--host", "127.0.0.1", "--port", "0",
                                "--load_fast", "false", "--reload_task", "blocking", "--reload_interval", "0"])
        self.url = self.tb.launch().rstrip("/")

    def post(self, route: str, body: dict):
        req = urllib.request.Request(self.url + route, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as r:
            return json.loads(r.read())


# Units ------------------------------------------------------------------------------------------
class LoggingSteps(L.Callback):
    def __init__(self):
        self.ours, self.lightnings = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.ours.append(is_logging_step(trainer))
        self.lightnings.append(trainer._logger_connector.should_update_logs)


@pytest.mark.parametrize("every", [0, 1, 3])
def test_logging_step_rule_is_lightnings(every):
    """is_logging_step restates Lightning's private rule on public attributes: this fails if it changes."""
    rec = LoggingSteps()
    L.Trainer(max_steps=10, log_every_n_steps=every, callbacks=[rec], logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0).fit(BoringModel())
    assert rec.ours == rec.lightnings[: len(rec.ours)] and len(rec.ours) == 10
    assert sum(rec.ours) == (0 if every == 0 else 10 // every)


def test_settings_are_typed_once_and_without_noise():
    settings = flat_settings(compose_config(Path("/tmp/unused"), "module.embedding_dim=8"))
    assert settings["model/bidirectional"] is False and settings["model/hidden_size"] == 24
    assert settings["optimizer"] == "SGD" and settings["optimizer/lr"] == 1.0 and settings["task/name"] == "lm"
    assert settings["module/embedding_dim"] == 8 and settings["seed"] == 42
    assert not [k for k in settings if k.startswith(("module/core", "module/optimizer", "paths", "data/seed"))]
    assert not {"trainer/default_root_dir", "trainer/enable_progress_bar", "data/path"} & set(settings)
    assert None not in settings.values() and "None" not in settings.values()


def test_run_label_names_what_differs():
    assert label_from_overrides(["model=gru", "model.hidden_size=128", "trainer.max_epochs=3"],
                                swept={"model", "model.hidden_size"}) == "model=gru hidden_size=128"
    assert label_from_overrides(["data.path=/home/me/my corpus.txt", "trainer.accelerator=gpu"]) == "path=my_corpus.txt"
    assert label_from_overrides(["print_config=false"]) == "defaults"


def test_sweep_labels_hold_the_swept_keys_only(tmp_path):
    from omegaconf import OmegaConf

    from rnnlab.dashboard.run_label import swept_keys

    optuna = OmegaConf.create({"sweeper": {"params": {"model": "choice(rnn, gru)", "optimizer.lr": "interval(0.5, 4)"}},
                               "sweep": {"dir": str(tmp_path / "none")}})
    assert swept_keys(optuna) == {"model", "optimizer.lr"}
    OmegaConf.save({"hydra": {"overrides": {"task": ["model=rnn,gru", "trainer.max_epochs=3", "+x=range(1,3)"]}}},
                   tmp_path / "multirun.yaml")
    basic = OmegaConf.create({"sweeper": {"params": None}, "sweep": {"dir": str(tmp_path)}})
    assert swept_keys(basic) == {"model", "x"}
    assert label_from_overrides(["model=gru", "trainer.max_epochs=3", "+x=2"], swept_keys(basic)) == "model=gru x=2"


@pytest.mark.parametrize("every, max_steps, interval", [(50, -1, 6), (3, -1, 3), (0, -1, 0), (50, 5, 1)])
def test_logging_cadence_gives_short_runs_points(every, max_steps, interval):
    """BoringModel: 64 batches an epoch; about 10 points an epoch (or run), never more often than asked."""
    from rnnlab.dashboard.cadence import LoggingCadence

    rec = LoggingSteps()
    trainer = L.Trainer(max_epochs=1, max_steps=max_steps, log_every_n_steps=every, logger=False,
                        callbacks=[LoggingCadence(min_points=10), rec], enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(BoringModel())
    assert trainer.log_every_n_steps == interval
    assert sum(rec.ours) == (0 if interval == 0 else len(rec.ours) // interval) and (interval == 0 or sum(rec.ours) > 0)


def test_code_block_keeps_whitespace():
    assert code_block("a  b\n c") == "```\na  b\n c\n```"
    assert code_block("x```y").startswith("````\n")
    assert show_trailing_whitespace("time traveller   \n") == "time traveller···↵"
    assert show_trailing_whitespace("a b") == "a b"


# A two-job sweep, as TensorBoard reads it ---------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("dash") / "sweep"
    proc = subprocess.run([sys.executable, "train.py", "-m", "model=rnn,gru", *TINY, "trainer.max_epochs=2",
                           "callbacks.histograms.every_n_epochs=1", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_sweep_runs_are_named_by_what_differs_with_one_event_file_each(sweep):
    mux = EventMultiplexer(size_guidance=SIZES)
    mux.AddRunsFromDirectory(str(sweep))
    mux.Reload()
    assert sorted(mux.Runs()) == ["0/model=rnn", "1/model=gru"]
    for job in ("0", "1"):
        assert len(list((sweep / job).glob("*/events.out.tfevents.*"))) == 1
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "ok"
    for run in mux.Runs():
        acc = mux.GetAccumulator(run)
        scalars = set(acc.Tags()["scalars"])
        assert {"train/loss", "train/lr", "train/grad_norm", "train/grad_norm_clipped", "train/clipped_share",
                "train/ppl", "train/tokens_per_s", "val/ppl", "val/loss", "val/bpc", "val/ppl_best"} == scalars
        # TINY: 2 epochs of 44 batches and log_every_n_steps=5, lowered to 44 // 10 = 4: 11 points an epoch
        steps = [e.step for e in acc.Scalars("train/loss")]
        assert steps == list(range(3, 88, 4)) and len(steps) == 22
        for tag in ("val/ppl", "val/ppl_best", "val/bpc", "train/ppl"):
            assert [e.step for e in acc.Scalars(tag)] == [43, 87], tag  # each epoch's last step, never step 0
        best = [e.value for e in acc.Scalars("val/ppl_best")]
        assert best == [min(e.value for e in acc.Scalars("val/ppl")[: i + 1]) for i in range(2)]
        assert set(acc.Tags()["histograms"]) >= {"weights/head.weight", "weights/head.weight.grad"}
        greedy, sampled = texts(acc, "samples/greedy"), texts(acc, "samples/sampled")
        assert len(greedy) == len(sampled) == 2
        assert greedy[0].startswith("```\ntime traveller") and greedy[0].endswith("\n```")
        assert greedy[0] != sampled[0]


def test_hparams_columns_are_the_union_and_the_swept_one_differs(sweep):
    tb = Serve(sweep)
    experiment = tb.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    differs = [h["name"] for h in experiment["hparamInfos"] if h.get("differs")]
    assert differs == ["model/kind"]  # the one setting that differs, listed first
    assert experiment["hparamInfos"][0]["name"] == "model/kind"
    assert sorted(infos["model/kind"]["domainDiscrete"]) == ["gru", "rnn"]
    assert infos["model/bidirectional"]["type"] == "DATA_TYPE_BOOL"
    assert not [n for n in infos if n.startswith(("module/core", "module/optimizer", "trainer/default_root_dir"))]
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"val/ppl", "val/ppl_best", "val/bpc", "train/loss"} <= metrics and not [m for m in metrics if m.startswith("final/")]
    groups = tb.post("/data/plugin/hparams/session_groups",
                     {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                      "colParams": [{"hparam": "model/kind"}], "startIndex": 0, "sliceSize": 10})
    rows = {g["name"]: g for g in groups["sessionGroups"]}
    assert set(rows) == {"0/model=rnn", "1/model=gru"}
    assert rows["1/model=gru"]["hparams"]["model/kind"] == "gru"
    assert rows["0/model=rnn"]["sessions"][0]["status"] == "STATUS_SUCCESS"


def test_lm_and_forecast_runs_share_the_columns_not_the_loss_chart(sweep, tmp_path):
    """A sine run beside the sweep: its own columns join, the language model's rows keep theirs."""
    cfg = compose_config(tmp_path / "sine", "task=forecast", "model=gru", tiny=False)
    main_task(cfg)
    folder = tmp_path / "both"
    shutil.copytree(sweep / "0", folder / "lm")
    shutil.copytree(tmp_path / "sine", folder / "sine")
    tb = Serve(folder)
    names = {h["name"] for h in tb.post("/data/plugin/hparams/experiment", {"experimentName": ""})["hparamInfos"]}
    assert {"model/kind", "data/token", "data/tau", "data/noise", "task/name"} <= names
    groups = tb.post("/data/plugin/hparams/session_groups",
                     {"experimentName": "", "allowedStatuses": ["STATUS_SUCCESS"], "startIndex": 0, "sliceSize": 10,
                      "colParams": [{"hparam": "data/token"}, {"hparam": "data/tau"}]})
    rows = {g["name"]: g["hparams"] for g in groups["sessionGroups"]}
    assert rows["lm/model=rnn"]["data/token"] == "char" and rows["sine/defaults"]["data/tau"] == 4
    tags = tb.get("/data/plugin/scalars/tags")
    assert "train/loss" in tags["lm/model=rnn"] and "train/loss" not in tags["sine/defaults"]
    assert {"train/mse", "val/mse", "val/mse_best", "train/grad_norm", "train/lr"} <= set(tags["sine/defaults"])
    images = accumulator(event_dir(tmp_path / "sine")).Images("val/forecast")
    assert [e.step for e in images] == [0, 1]  # one validation figure per epoch, during training


def test_a_resumed_run_shows_every_step_once(tmp_path):
    """Kill after epoch 3, resume in the same directory from the epoch-2 checkpoint: TensorBoard drops
    what the first process logged after that checkpoint (purge_step) instead of showing it twice."""
    out = tmp_path / "run"
    main_task(compose_config(out, "trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"))
    first = accumulator(event_dir(out))
    main_task(compose_config(out, "trainer.max_epochs=3", f"ckpt_path={out}/checkpoints/best-epoch001.ckpt"))
    acc = accumulator(event_dir(out))
    assert len(list(event_dir(out).glob("events.out.tfevents.*"))) == 2  # one per process
    for tag in ("val/ppl", "train/loss", "train/grad_norm", "val/ppl_best"):
        steps = [e.step for e in acc.Scalars(tag)]
        assert steps == sorted(set(steps)) == [e.step for e in first.Scalars(tag)], tag
    assert [e.step for e in acc.Scalars("val/ppl")] == [43, 87, 131]
