"""Charts beside Lightning's per-tag cards: a Custom Scalars layout (train and validation curves on
one chart) and the running best of the monitored metric (`val/best`, TensorBoard `metrics/best`)."""

from __future__ import annotations

from typing import Annotated

import lightning as L

from rnnlab.dashboard.logger import BEST, log_step, writers
from rnnlab.options import CHARTS, STRING, checked, choice


class ScalarsLayout(L.Callback):
    """Write TensorBoard's Custom Scalars layout once per run: `charts` maps a chart title to the tags
    drawn together (regular expressions, as TensorBoard reads them), in the category `category`."""

    @checked()
    def __init__(self, charts: Annotated[dict[str, list[str]], CHARTS],
                 category: Annotated[str, STRING] = "train vs val"):
        self.charts = {str(title): [str(t) for t in tags] for title, tags in charts.items()}
        self.category = category

    def on_fit_start(self, trainer, pl_module) -> None:
        layout = {self.category: {title: ["Multiline", tags] for title, tags in self.charts.items()}}
        for writer, _ in writers(trainer, "custom_scalars"):
            writer.add_custom_scalars(layout)


class BestMetricLogger(L.Callback):
    """After every validation, log `val/best` (TensorBoard: `metrics/best` in the validation run): the
    best value of the monitored metric so far (kept across a resume), the value of the checkpoint
    metrics.json reports as `best/<monitor>`.

    One name whatever the monitor (val/ppl, val/mase, val/mse): HParams then has this column in
    every run of a folder, and parallel coordinates draw a run only where every ticked column is set."""

    @checked()
    def __init__(self, monitor: Annotated[str, STRING], mode: Annotated[str, choice("min", "max")] = "min"):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = value
        for writer, tag in writers(trainer, BEST):
            writer.add_scalar(tag, self.best, log_step(trainer))

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")
