"""What TensorBoard shows, read through TensorBoard's own loading code: its event multiplexer and the
HParams plugin's HTTP API served on loopback."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.util import tensor_util

from conftest import ROOT, TINY, RunEvents, compose_config
from rnnlab.callbacks import code_block, show_trailing_whitespace
from rnnlab.dashboard.hparams import flat_settings, tensorboard_settings
from rnnlab.dashboard.logger import TRAIN_RUN, VAL_RUN, event_dir
from rnnlab.dashboard.run_label import COLOR_GROUP, LINK, label_from_overrides
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
    # HParams: the settings that differ first, then the first five ticked (the backend sorts by name)
    assert re.search(r"\.sort\(\((\w),(\w)\)=>\1\.info\.differs===\2\.info\.differs\?0:\1\.info\.differs\?-1:1\);"
                     r"let \w=Math\.min\(5,\w\.length\)", bundle)
    # parallel coordinates draw a row only where every ticked column has a value (hence metrics/best)
    assert re.search(r'if\(\w===void 0\|\|\w==="NaN"\)return!1', bundle)
    # the URL keys of the documented link: smoothing and the colour groups
    assert '"smoothing"' in bundle and '"runColorGroup"' in bundle
    assert tb_compare("metrics/ppl", "train/lr") < 0 < tb_compare("weights/x", "train/lr")
    assert tb_compare("~test/ppl", "weights/x") > 0 and tb_compare("metrics/forecast", "train/lr") < 0
    assert tb_compare("test/ppl", "train/lr") < 0  # why the test part is `~test` in TensorBoard
    assert tb_compare("val/mse_k4", "val/mse_k16") < 0 < tb_compare("val/mse_k64", "val/mse_k16")


def color_group(run: str) -> list[str] | None:
    """The colour group TensorBoard gives `run` under the documented link (`runColorGroup=regex:...`):
    the groups of JavaScript's `run.match(new RegExp(COLOR_GROUP))`, Python's re.search for this
    pattern (no flags, no lookbehind); None: no match, drawn grey."""
    match = re.search(COLOR_GROUP, run)
    return list(match.groups()) if match else None


def test_the_documented_link_colours_each_job_one_way():
    """docs/dashboard.md's link is rnnlab.dashboard.run_label.LINK; TensorBoard's colour groups are the
    regex's captured groups (read from its bundled frontend): a job's train, val and eval runs share
    one, whatever folder TensorBoard is opened on; two `defaults` runs differ by their directory."""
    import tensorboard

    bundle = zipfile.ZipFile(Path(tensorboard.__file__).parent / "webfiles.zip").read("index.js").decode()
    assert re.search(r"case \w+\.REGEX:if\(!\w\.regexString\)break;try\{(\w)=new RegExp\(\w\.regexString\)\}"
                     r"catch\{break\}for\(let (\w) of \w\)\{let (\w)=\2\.name\.match\(\1\);", bundle)
    assert re.search(r"\w\.length>1\?JSON\.stringify\(\w\.slice\(1\)\):\"pseudo_group\"", bundle)
    assert LINK in (ROOT / "docs" / "dashboard.md").read_text()
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(LINK).query)  # as the browser's URLSearchParams
    assert query == {"smoothing": ["0"], "runColorGroup": [f"regex:{COLOR_GROUP}"]}
    for job, group in [("defaults", "defaults"), ("0/model=gru lr=2", "0/model=gru lr=2"),
                       ("multiruns/S/0/model=gru", "0/model=gru"), ("runs/2026-12-03_09-40-00_a1b2c3/defaults",
                                                                     "2026-12-03_09-40-00_a1b2c3/defaults"),
                       ("eval/E/2026-12-03_09-40-00_a1b2c3/defaults", "2026-12-03_09-40-00_a1b2c3/defaults")]:
        assert [color_group(f"{job}/{split}") for split in ("train", "val", "eval")] == [[group]] * 3, job
    assert color_group("runs/T/defaults/weights") is None


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
    shown = tensorboard_settings(flat_settings(compose_config(Path("/tmp/unused"), "data.max_tokens=null"),
                                               keep_null=True))
    assert list(shown)[:6] == ["task/name", "model/kind", "model/hidden_size", "model/num_layers", "optimizer",
                               "optimizer/lr"]
    assert shown["~data/max_tokens"] == "null" and shown["~data/batch_size"] == 8 and "data/batch_size" not in shown


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
    """Train and validation under one tag in two runs (one card, two lines), step diagnostics in the
    train run, the test part as ~test in the validation run, no `epoch`; a pickled copy (sent to a
    spawned process) opens its own writers."""
    import pickle

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rnnlab.dashboard.logger import RunLogger

    logger = RunLogger(str(tmp_path), name="job")
    logger.log_metrics({"train/loss": 1.0, "train/lr": 0.5, "val/loss": 2.0, "val/ppl": 3.0, "test/ppl": 4.0,
                        "epoch": 0}, step=5)
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._experiment is None and copy._eval_writer is None
    logger.close()
    tags = {}
    for run in (TRAIN_RUN, VAL_RUN):
        acc = EventAccumulator(str(tmp_path / "job" / run))
        acc.Reload()
        tags[run] = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    assert tags == {"train": {"metrics/loss": [(5, 1.0)], "train/lr": [(5, 0.5)]},
                    "val": {"metrics/loss": [(5, 2.0)], "metrics/ppl": [(5, 3.0)], "~test/ppl": [(5, 4.0)]}}


def test_code_block_keeps_whitespace():
    assert code_block("a  b\n c") == "```\na  b\n c\n```"
    assert code_block("x```y").startswith("````\n")
    assert show_trailing_whitespace("time traveller   \n") == "time traveller···↵"
    assert show_trailing_whitespace("a b") == "a b"


def session_rows(tb: "Serve") -> dict:
    groups = tb.post("/data/plugin/hparams/session_groups",
                     {"experimentName": "", "startIndex": 0, "sliceSize": 50, "colParams": [],
                      "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]})
    return {g["name"]: g for g in groups["sessionGroups"]}


def test_the_session_is_rewritten_so_a_resume_keeps_one_row_and_its_last_status(tmp_path):
    """An interrupted run is a failure (not unknown), its resume a success; one row, the first start time."""
    from rnnlab.dashboard.session import Session

    run = tmp_path / "job" / VAL_RUN
    first = Session(run, {"model/kind": "gru"})
    first.write("running")
    first.write("interrupted")
    assert session_rows(Serve(tmp_path))["job/val"]["sessions"][0]["status"] == "STATUS_FAILURE"
    resumed = Session(run, {"model/kind": "gru", "~trainer/max_epochs": 5})
    assert resumed.start_time == first.start_time
    resumed.write("running")
    assert session_rows(Serve(tmp_path))["job/val"]["sessions"][0]["status"] == "STATUS_RUNNING"
    resumed.write("success")
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    rows = session_rows(Serve(tmp_path))
    assert list(rows) == ["job/val"] and rows["job/val"]["sessions"][0]["status"] == "STATUS_SUCCESS"
    assert rows["job/val"]["hparams"]["~trainer/max_epochs"] == 5


# A two-job sweep, as TensorBoard reads it ---------------------------------------------------------
@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("dash") / "sweep"
    proc = subprocess.run([sys.executable, "train.py", "-m", "model=rnn,gru", *TINY, "trainer.max_epochs=2",
                           "callbacks.histograms.every_n_epochs=1", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_sweep_jobs_share_cards_with_train_and_validation_runs(sweep):
    mux = EventMultiplexer(size_guidance=SIZES)
    mux.AddRunsFromDirectory(str(sweep))
    mux.Reload()
    assert sorted(mux.Runs()) == ["0/model=rnn/train", "0/model=rnn/val", "1/model=gru/train", "1/model=gru/val"]
    for job in ("0", "1"):
        assert len(list((sweep / job).glob(f"*/{TRAIN_RUN}/events.out.tfevents.*"))) == 1
        assert len(list((sweep / job).glob(f"*/{VAL_RUN}/events.out.tfevents.*"))) == 2  # scalars and the session
        assert json.loads((sweep / job / "metrics.json").read_text())["status"] == "ok"
    for job in ("0/model=rnn", "1/model=gru"):
        train, val = mux.GetAccumulator(f"{job}/train"), mux.GetAccumulator(f"{job}/val")
        assert {"metrics/loss", "metrics/ppl", "train/lr", "train/grad_norm", "train/grad_norm_clipped",
                "train/clipped_share", "train/tokens_per_s"} == set(train.Tags()["scalars"])
        assert {"metrics/loss", "metrics/ppl", "metrics/bpc", "metrics/best"} == set(val.Tags()["scalars"])
        # TINY: 2 epochs of 44 batches and log_every_n_steps=5, lowered to 44 // 10 = 4: 11 points an epoch
        steps = [e.step for e in train.Scalars("metrics/loss")]
        assert steps == list(range(3, 88, 4)) and len(steps) == 22
        for acc, tag in ((val, "metrics/ppl"), (val, "metrics/best"), (val, "metrics/loss"), (train, "metrics/ppl")):
            assert [e.step for e in acc.Scalars(tag)] == [43, 87], tag  # each epoch's last step, never step 0
        best = [e.value for e in val.Scalars("metrics/best")]
        assert best == [min(e.value for e in val.Scalars("metrics/ppl")[: i + 1]) for i in range(2)]
        assert set(train.Tags()["histograms"]) >= {"weights/head.weight", "weights/head.weight.grad"}
        greedy, sampled = texts(train, "samples/greedy"), texts(train, "samples/sampled")
        assert len(greedy) == len(sampled) == 2
        assert greedy[0].startswith("```\ntime traveller") and greedy[0].endswith("\n```")
        assert greedy[0] != sampled[0]


def test_hparams_ticks_what_differs_and_the_headline_then_validation(sweep):
    tb = Serve(sweep)
    assert time_series_groups(tb)[:2] == ["metrics", "train"]  # the two groups Time Series opens
    experiment = tb.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    names = [h["name"] for h in experiment["hparamInfos"]]
    infos = {h["name"]: h for h in experiment["hparamInfos"]}
    assert [h["name"] for h in experiment["hparamInfos"] if h.get("differs")] == ["model/kind"]
    # TensorBoard ticks the first five: the one that differs, then the headline settings
    assert names[:5] == ["model/kind", "model/hidden_size", "model/num_layers", "optimizer", "optimizer/lr"]
    assert sorted(infos["model/kind"]["domainDiscrete"]) == ["gru", "rnn"]
    assert infos["~model/bidirectional"]["type"] == "DATA_TYPE_BOOL"
    assert not [n for n in infos if n.startswith(("~module/core", "~module/optimizer", "~trainer/default_root_dir"))]
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert metrics == ["metrics/best", "metrics/bpc", "metrics/loss", "metrics/ppl"]  # validation, all ticked
    rows = session_rows(tb)
    assert set(rows) == {"0/model=rnn/val", "1/model=gru/val"}
    assert rows["1/model=gru/val"]["hparams"]["model/kind"] == "gru"
    assert rows["0/model=rnn/val"]["sessions"][0]["status"] == "STATUS_SUCCESS"


def test_an_evaluation_lands_on_the_evaluated_runs_cards_at_its_step(sweep, tmp_path):
    """eval.py (TensorBoard by default): `<label>/eval` in its own directory, the same tags, at the
    checkpoint's step, the checkpoint named, the samples and the HParams session; the training run's
    directory is untouched."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF
    from rnnlab.run.eval_job import main_eval

    before = sorted(p for p in (sweep / "0").rglob("*"))
    ckpt = sweep / "0" / "checkpoints" / "last.ckpt"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=[f"paths.output_dir={tmp_path / 'eval'}", "trainer.accelerator=cpu",
                                         "trainer.enable_progress_bar=false", f"ckpt_path={ckpt}", "num_tokens=8"])
    main_eval(cfg)
    assert sorted(p for p in (sweep / "0").rglob("*")) == before
    events = RunEvents(tmp_path / "eval")
    assert events.dir == tmp_path / "eval" / "0" / "model=rnn" and not (events.dir / TRAIN_RUN).exists()
    assert [e.step for e in events.eval.acc.Scalars("metrics/ppl")] == [87]  # the evaluated validation's step
    assert texts(events.eval.acc, "eval/checkpoint")[0] == f"`{ckpt}` (step 87)"
    assert texts(events.eval.acc, "samples/greedy")[0].startswith("```\ntime traveller")
    row = session_rows(Serve(tmp_path / "eval"))["0/model=rnn/eval"]
    assert row["hparams"]["eval/checkpoint"] == str(ckpt) and row["hparams"]["model/kind"] == "rnn"
    assert row["sessions"][0]["status"] == "STATUS_SUCCESS"

    # `tensorboard --logdir outputs`: the documented link's colour groups, as TensorBoard forms them
    outputs = tmp_path / "outputs"
    shutil.copytree(sweep, outputs / "multiruns" / "2026-12-03_09-00-00_abcdef")
    shutil.copytree(tmp_path / "eval", outputs / "eval" / "2026-12-03_10-00-00_012345")
    runs = Serve(outputs).get("/data/runs")
    assert "eval/2026-12-03_10-00-00_012345/0/model=rnn/eval" in runs and len(runs) == 5
    groups = {run: color_group(run) for run in runs}
    assert {run for run, g in groups.items() if g == ["0/model=rnn"]} == {
        "multiruns/2026-12-03_09-00-00_abcdef/0/model=rnn/train",
        "multiruns/2026-12-03_09-00-00_abcdef/0/model=rnn/val",
        "eval/2026-12-03_10-00-00_012345/0/model=rnn/eval"}
    assert len(set(map(tuple, groups.values()))) == 2  # one colour per job, the evaluation on its job's


def test_tasks_share_the_headline_columns_and_the_best_metric(sweep, tmp_path):
    """A sine run beside the sweep: every ticked setting and `metrics/best` have a value in every row."""
    cfg = compose_config(tmp_path / "sine", "task=forecast", "model=gru", tiny=False)
    main_task(cfg)
    folder = tmp_path / "both"
    shutil.copytree(sweep / "0", folder / "lm")
    shutil.copytree(tmp_path / "sine", folder / "sine")
    tb = Serve(folder)
    experiment = tb.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    ticked = [h["name"] for h in experiment["hparamInfos"]][:5]
    rows = session_rows(tb)
    assert set(rows) == {"lm/model=rnn/val", "sine/defaults/val"}
    for row in rows.values():
        assert set(ticked) <= set(row["hparams"])
        assert "metrics/best" in {m["name"]["tag"] for m in row["metricValues"]}
    assert rows["lm/model=rnn/val"]["hparams"]["~data/token"] == "char"
    assert rows["sine/defaults/val"]["hparams"]["~data/tau"] == 4
    assert "model/kind" in ticked and "task/name" in ticked  # they differ: lm and forecast
    tags = tb.get("/data/plugin/scalars/tags")
    assert {"metrics/mse", "train/grad_norm", "train/lr"} <= set(tags["sine/defaults/train"])
    assert ({"metrics/mse", "metrics/mase", "metrics/best", "~test/mse_k1", "~test/mase_k1"}
            <= set(tags["sine/defaults/val"]))
    assert time_series_groups(tb) == ["metrics", "train", "weights", "~test"]  # the test part last
    events = RunEvents(tmp_path / "sine")
    assert [e.step for e in events.images("val/forecast")] == [0, 1]  # one validation figure per epoch
    assert {"~test/history", "~test/onestep_multistep", "~test/k_step"} <= events.tags("images")
    assert json.loads((tmp_path / "sine" / "metrics.json").read_text())["test/mse_k1"] == \
        events.scalars("~test/mse_k1")[0].value  # metrics.json keeps `test/`


def test_validation_figures_have_the_data_s_dates_and_the_series_name():
    import numpy as np
    import torch

    from rnnlab.dashboard.forecast import validation_figure

    time = np.arange("2000-01", "2010-01", dtype="datetime64[M]")
    forecast = {"series": torch.arange(120.0), "predictions": {"1-step": (torch.arange(100, 120), torch.arange(20.0))}}
    fig = validation_figure(forecast, 3, time=time, name="co2")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "co2" and ax.lines[0].get_xdata()[0] == time[50]


def test_a_resumed_run_shows_every_step_once(tmp_path):
    """Kill after epoch 3, resume in the same directory from the epoch-2 checkpoint: TensorBoard drops
    what the first process logged after that checkpoint (purge_step) instead of showing it twice; one
    HParams row."""
    out = tmp_path / "run"
    main_task(compose_config(out, "trainer.max_epochs=3", "callbacks.model_checkpoint.save_top_k=-1"))
    first = RunEvents(out)
    main_task(compose_config(out, "trainer.max_epochs=3", f"ckpt_path={out}/checkpoints/best-epoch001.ckpt"))
    events = RunEvents(out)
    for run in (event_dir(out) / TRAIN_RUN, event_dir(out) / VAL_RUN):
        assert len([p for p in run.glob("events.out.tfevents.*") if not p.name.endswith(".session")]) == 2
    assert len(list((event_dir(out) / VAL_RUN).glob("*.session"))) == 1
    for tag in ("val/ppl", "train/loss", "train/grad_norm", "val/best"):
        steps = [e.step for e in events.scalars(tag)]
        assert steps == sorted(set(steps)) == [e.step for e in first.scalars(tag)], tag
    assert [e.step for e in events.scalars("val/ppl")] == [43, 87, 131]
    assert list(session_rows(Serve(tmp_path))) == ["run/defaults/val"]


@pytest.mark.slow
def test_an_extended_run_keeps_its_label(tmp_path):
    """The README's resume command with a new max_epochs: the same TensorBoard runs, not a second pair."""
    run = tmp_path / "run"
    for extra in ([], ["ckpt_path=last", "trainer.max_epochs=2"]):
        proc = subprocess.run([sys.executable, "train.py", *TINY, "trainer.max_epochs=1", *extra,
                               f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert len([p for p in run.iterdir() if (p / VAL_RUN).is_dir()]) == 1
    assert [e.step for e in RunEvents(run).scalars("val/ppl")] == [43, 87]
