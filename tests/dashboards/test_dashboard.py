"""What TensorBoard shows, read through TensorBoard's own loading code: its event multiplexer and the
HParams plugin's HTTP API served on loopback."""

from __future__ import annotations

import functools
import json
import re
import shutil
import zipfile
import subprocess
import sys
import urllib.request
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.util import tensor_util

from conftest import ROOT, TINY, RunEvents, compose_config
from rnnlab.callbacks import code_block, show_trailing_whitespace
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import EVAL_RUN, event_dir
from rnnlab.dashboard.run_label import label_from_overrides
from rnnlab.models.step_logging import is_logging_step
from rnnlab.run.job import main_task

SIZES = {"scalars": 0, "tensors": 0, "histograms": 0, "images": 0}


def texts(acc, tag: str) -> list[str]:
    return [tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(f"{tag}/text_summary")]


# TensorBoard's own rules for what a person sees first --------------------------------------------
def tb_compare(a: str, b: str) -> int:
    """TensorBoard's tag order (tensorboard/webapp/metrics compareTagNames): numbers by value, `/`
    and digits before other characters, the rest by character code."""
    n = i = 0
    special = lambda c: c == "/" or c.isdigit()  # noqa: E731
    while True:
        if n == len(a):
            return 0 if i == len(b) else -1
        if i == len(b):
            return 1
        if a[n].isdigit() and b[i].isdigit():
            x, y = re.match(r"\d+(\.\d*)?", a[n:]).group(), re.match(r"\d+(\.\d*)?", b[i:]).group()
            if float(x) != float(y):
                return -1 if float(x) < float(y) else 1
            n, i = n + len(x), i + len(y)
            continue
        if special(a[n]) != special(b[i]):
            return -1 if special(a[n]) else 1
        if a[n] != b[i]:
            return -1 if a[n] < b[i] else 1
        n, i = n + 1, i + 1


def time_series_groups(tb: "Serve") -> list[str]:
    """The groups of TensorBoard's Time Series in the order it shows them: every scalar, histogram and
    image tag sorted by TensorBoard's order, grouped by the part before the first `/`."""
    tags = tb.get("/data/plugin/timeseries/tags")
    cards = {t for kind in ("scalars", "histograms") for ts in tags[kind]["runTagInfo"].values() for t in ts}
    cards |= set(tags["images"]["tagRunSampledInfo"])
    groups: list[str] = []
    for tag in sorted(cards, key=functools.cmp_to_key(tb_compare)):
        if tag.split("/", 1)[0] not in groups:
            groups.append(tag.split("/", 1)[0])
    return groups


def test_tensorboard_opens_the_first_two_groups_and_shows_five_hparams_columns():
    """The rules rnnlab.dashboard.logger names its runs and tags for, read from TensorBoard's bundled
    frontend: if TensorBoard changes them, this fails and the layout must be looked at again."""
    import tensorboard

    bundle = zipfile.ZipFile(Path(tensorboard.__file__).parent / "webfiles.zip").read("index.js").decode()
    assert re.search(r'\.split\("/",1\)\[0\]', bundle)  # a card's group: its tag before the first /
    assert re.search(r"for\(let \w+ of \w+\.slice\(0,2\)\)\w+\.set\(\w+\.groupName,!0\)", bundle)  # 2 open
    assert re.search(r"displayed:\w<5", bundle)  # HParams: the first five metric columns are ticked
    assert tb_compare("train/lr", "val/ppl") < 0 < tb_compare("~test/ppl", "val/ppl_best")
    assert tb_compare("test/ppl", "train/lr") < 0  # why the test part is `~test` in TensorBoard
    assert tb_compare("val/mse_k4", "val/mse_k16") < 0 < tb_compare("val/mse_k64", "val/mse_k16")


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


def test_run_logger_routes_each_metric_to_its_run(tmp_path):
    """train/* to `<label>`, val/* and test/* (as ~test/*) to `<label>/eval`, no `epoch`; a pickled copy
    (sent to a spawned process) opens its own writers."""
    import pickle

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rnnlab.dashboard.logger import RunLogger

    logger = RunLogger(str(tmp_path), name="job")
    logger.log_metrics({"train/loss": 1.0, "val/ppl": 3.0, "test/ppl": 4.0, "epoch": 0}, step=5)
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._experiment is None and copy._eval_writer is None
    logger.close()
    tags = {}
    for run in ("job", f"job/{EVAL_RUN}"):
        acc = EventAccumulator(str(tmp_path / run))
        acc.Reload()
        tags[run] = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert tags == {"job": {"train/loss": [(5, 1.0)]}, f"job/{EVAL_RUN}": {"val/ppl": [(5, 3.0)], "~test/ppl": [(5, 4.0)]}}


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
    assert sorted(mux.Runs()) == ["0/model=rnn", "0/model=rnn/eval", "1/model=gru", "1/model=gru/eval"]
    for job in ("0", "1"):
        assert len(list((sweep / job).glob("*/events.out.tfevents.*"))) == 1
        assert len(list((sweep / job).glob(f"*/{EVAL_RUN}/events.out.tfevents.*"))) == 1
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "ok"
    for run in ("0/model=rnn", "1/model=gru"):
        acc = mux.GetAccumulator(run)
        assert {"train/loss", "train/lr", "train/grad_norm", "train/grad_norm_clipped", "train/clipped_share",
                "train/ppl", "train/tokens_per_s"} == set(acc.Tags()["scalars"])
        assert {"val/ppl", "val/loss", "val/bpc", "val/ppl_best"} == set(mux.GetAccumulator(f"{run}/eval").Tags()["scalars"])
        # TINY: 2 epochs of 44 batches and log_every_n_steps=5, lowered to 44 // 10 = 4: 11 points an epoch
        steps = [e.step for e in acc.Scalars("train/loss")]
        assert steps == list(range(3, 88, 4)) and len(steps) == 22
        evals = mux.GetAccumulator(f"{run}/eval")
        for tag in ("val/ppl", "val/ppl_best", "val/bpc", "train/ppl"):
            holder = acc if tag.startswith("train/") else evals
            assert [e.step for e in holder.Scalars(tag)] == [43, 87], tag  # each epoch's last step, never step 0
        best = [e.value for e in evals.Scalars("val/ppl_best")]
        assert best == [min(e.value for e in evals.Scalars("val/ppl")[: i + 1]) for i in range(2)]
        assert set(acc.Tags()["histograms"]) >= {"weights/head.weight", "weights/head.weight.grad"}
        greedy, sampled = texts(acc, "samples/greedy"), texts(acc, "samples/sampled")
        assert len(greedy) == len(sampled) == 2
        assert greedy[0].startswith("```\ntime traveller") and greedy[0].endswith("\n```")
        assert greedy[0] != sampled[0]


def test_hparams_columns_are_the_union_and_the_swept_one_differs(sweep):
    tb = Serve(sweep)
    experiment = tb.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    assert time_series_groups(tb)[:2] == ["train", "val"]  # the two groups Time Series opens
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    differs = [h["name"] for h in experiment["hparamInfos"] if h.get("differs")]
    assert differs == ["model/kind"]  # the one setting that differs, listed first
    assert experiment["hparamInfos"][0]["name"] == "model/kind"
    assert sorted(infos["model/kind"]["domainDiscrete"]) == ["gru", "rnn"]
    assert infos["model/bidirectional"]["type"] == "DATA_TYPE_BOOL"
    assert not [n for n in infos if n.startswith(("module/core", "module/optimizer", "trainer/default_root_dir"))]
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    # the metric columns are the eval run's scalars: the five ticked ones are validation, none is a step diagnostic
    assert metrics == ["val/bpc", "val/loss", "val/ppl", "val/ppl_best"]
    groups = tb.post("/data/plugin/hparams/session_groups",
                     {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                      "colParams": [{"hparam": "model/kind"}], "startIndex": 0, "sliceSize": 10})
    rows = {g["name"]: g for g in groups["sessionGroups"]}
    assert set(rows) == {"0/model=rnn/eval", "1/model=gru/eval"}
    assert rows["1/model=gru/eval"]["hparams"]["model/kind"] == "gru"
    assert rows["0/model=rnn/eval"]["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert rows["0/model=rnn/eval"]["metricValues"][0]["name"]["tag"] == "val/bpc"


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
    assert rows["lm/model=rnn/eval"]["data/token"] == "char" and rows["sine/defaults/eval"]["data/tau"] == 4
    tags = tb.get("/data/plugin/scalars/tags")
    assert "train/loss" in tags["lm/model=rnn"] and "train/loss" not in tags["sine/defaults"]
    assert {"train/mse", "train/grad_norm", "train/lr"} <= set(tags["sine/defaults"])
    assert {"val/mse", "val/mase", "val/mase_best", "~test/mse_k1", "~test/mase_k1"} <= set(tags["sine/defaults/eval"])
    assert time_series_groups(tb) == ["train", "val", "weights", "~test"]  # train and val open, the test part last
    events = RunEvents(tmp_path / "sine")
    assert [e.step for e in events.images("val/forecast")] == [0, 1]  # one validation figure per epoch, during training
    assert {"~test/history", "~test/onestep_multistep", "~test/k_step"} <= events.tags("images")
    assert json.loads((tmp_path / "sine" / "metrics.json").read_text())["test/mse_k1"] == \
        events.scalars("~test/mse_k1")[0].value  # metrics.json keeps `test/`


def test_a_resumed_run_shows_every_step_once(tmp_path):
    """Kill after epoch 3, resume in the same directory from the epoch-2 checkpoint: TensorBoard drops
    what the first process logged after that checkpoint (purge_step) instead of showing it twice."""
    out = tmp_path / "run"
    main_task(compose_config(out, "trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"))
    first = RunEvents(out)
    main_task(compose_config(out, "trainer.max_epochs=3", f"ckpt_path={out}/checkpoints/best-epoch001.ckpt"))
    events = RunEvents(out)
    for run in (event_dir(out), event_dir(out) / EVAL_RUN):
        assert len(list(run.glob("events.out.tfevents.*"))) == 2  # one per process
    for tag in ("val/ppl", "train/loss", "train/grad_norm", "val/ppl_best"):
        steps = [e.step for e in events.scalars(tag)]
        assert steps == sorted(set(steps)) == [e.step for e in first.scalars(tag)], tag
    assert [e.step for e in events.scalars("val/ppl")] == [43, 87, 131]
