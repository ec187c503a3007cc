"""Shared helpers: compose the real Hydra config with small, fast overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Quiet and quick on any data set: a tiny core, two epochs, no progress bar.
FAST = [
    "model.hidden_size=24",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=5",
    "print_config=false",
]
# A language model small enough for a 2-core CI machine: a few thousand characters.
TINY = FAST + [
    "data.max_tokens=4000",
    "data.batch_size=8",
    "data.num_steps=10",
    "data.val_batch_size=4",
    "callbacks.text_sample.every_n_epochs=1",
    "callbacks.text_sample.num_tokens=12",
    "evaluation.sample.num_tokens=12",
]


def compose_config(output_dir: Path, *overrides: str, tiny: bool = True, fast: bool = True):
    """The composed `train` config, as train.py would see it, writing into `output_dir`.

    `tiny`: the small text set-up; otherwise only the FAST trainer settings (for data=sine), or none
    at all with `fast=False`.
    """
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*(TINY if tiny else FAST if fast else []), f"paths.output_dir={output_dir}",
                                           *overrides])


@pytest.fixture
def make_cfg(tmp_path):
    def make(*overrides: str, tiny: bool = True, fast: bool = True):
        return compose_config(tmp_path / "run", *overrides, tiny=tiny, fast=fast)

    return make


class _Run:
    """One TensorBoard run read by TensorBoard's EventAccumulator, its tags as metric names
    (`metrics/ppl` in the validation run is `val/ppl`; rnnlab.dashboard.logger.tensorboard_name)."""

    def __init__(self, path: Path, split: str):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        sizes = {"scalars": 0, "tensors": 0, "histograms": 0, "images": 0}
        self.split, self.acc = split, EventAccumulator(str(path), size_guidance=sizes)
        if path.is_dir():
            self.acc.Reload()
        self.summary_metadata = self.acc.summary_metadata

    def name(self, tag: str) -> str:
        return f"{self.split}/{tag[len('metrics/'):]}" if tag.startswith("metrics/") else tag

    def tag(self, name: str) -> str:
        from rnnlab.dashboard.logger import tensorboard_name

        return name if name.startswith("~") else tensorboard_name(name)[1]

    def Tags(self) -> dict:
        return {kind: [self.name(t) for t in tags] if isinstance(tags, list) else tags
                for kind, tags in self.acc.Tags().items()}

    def Scalars(self, name: str):
        return self.acc.Scalars(self.tag(name))

    def Images(self, name: str):
        return self.acc.Images(self.tag(name))

    def Tensors(self, name: str):
        return self.acc.Tensors(self.tag(name))


class RunEvents:
    """A job's TensorBoard runs, `<label>/train` and `<label>/val` (eval.py: `<evaluated dir name>/<label>/eval`,
    holding the HParams session, validation and `~test`), read by TensorBoard's own loader and looked up
    as one by metric name (`train/loss`, `val/ppl`, `~test/ppl`)."""

    def __init__(self, run_dir: Path):
        from rnnlab.dashboard.logger import EVAL_RUN, EVENT_GLOB, TRAIN_RUN, VAL_RUN, event_dir

        evals = {p.parent.parent for p in Path(run_dir).glob(f"*/*/{EVAL_RUN}/{EVENT_GLOB}")}
        self.dir = evals.pop() if len(evals) == 1 else event_dir(run_dir)
        self.train = _Run(self.dir / TRAIN_RUN, "train")
        self.eval = _Run(self.dir / (VAL_RUN if (self.dir / VAL_RUN).is_dir() else EVAL_RUN), "val")

    def tags(self, kind: str = "scalars") -> set[str]:
        return set(self.train.Tags()[kind]) | set(self.eval.Tags()[kind])

    def _holder(self, kind: str, tag: str):
        return self.eval if tag in self.eval.Tags()[kind] else self.train

    def scalars(self, tag: str):
        return self._holder("scalars", tag).Scalars(tag)

    def images(self, tag: str):
        return self._holder("images", tag).Images(tag)

    def tensors(self, tag: str):
        return self._holder("tensors", tag).Tensors(tag)


# The one-line error path: what every refused run and command must show --------------------------------------
def one_error_line(err: str) -> str:
    """The single line our code printed on stderr (Hydra's and Lightning's own log lines go to stdout)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def assert_refused_run(run: Path, line: str) -> None:
    """A refused run leaves only its metrics.json with the error (and Hydra's .hydra/ and log)."""
    assert json.loads((run / "metrics.json").read_text()) == {"status": "config_error", "error": line[len("error: "):]}
    assert not (run / "checkpoints").exists()
    assert not list(run.rglob("events.out.tfevents*"))


def assert_refused_in_process(cfg, capsys, message: str) -> str:
    """main_task on `cfg` ends with exit status 2 and one line matching `message`; nothing but the record."""
    from rnnlab.run.job import main_task

    with pytest.raises(SystemExit) as info:
        main_task(cfg)
    assert info.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(message, line), line
    assert_refused_run(Path(cfg.paths.output_dir), line)
    return line
