"""Forecast figures during training, on the validation part, so a person watches the forecast improve.

The module provides `validation_forecast() -> dict` after a validation epoch:
  series       1-d tensor: the observed values (time index = position)
  predictions  {name: (times, values)}: 1-d tensors, the forecasts of series[times] (e.g. "1-step")
(rnnlab.models.forecast_model.ForecastModel implements it.) The test part is never drawn here.
"""

from __future__ import annotations

from typing import Annotated

import lightning as L
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rnnlab.dashboard.logger import log_step, writers  # noqa: E402
from rnnlab.data.base import SeriesData
from rnnlab.options import POSITIVE_INT, checked


def validation_figure(forecast: dict, epoch: int, context: int = 50, time=None, name: str = "value") -> plt.Figure:
    """Observed values with each named forecast over the validation range (and `context` values before),
    against the data's `time` axis (dates, as the test figures) and with the series' `name` on y."""
    series = forecast["series"].detach().float().cpu().numpy()
    preds = {name: (t.detach().cpu().numpy(), v.detach().float().cpu().numpy())
             for name, (t, v) in forecast["predictions"].items()}
    first = max(0, min(int(t.min()) for t, _ in preds.values()) - context)
    last = max(int(t.max()) for t, _ in preds.values()) + 1
    time = np.arange(len(series)) if time is None else np.asarray(time)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(time[first:last], series[first:last], lw=0.8, color="0.6", label="data")
    for label, (t, v) in preds.items():
        ax.plot(time[t], v, lw=1.2, label=f"{label} forecasts")
    ax.set(xlabel="time", ylabel=name, title=f"validation forecasts after epoch {epoch}")
    ax.legend(loc="lower left")
    if np.issubdtype(time.dtype, np.datetime64):
        fig.autofmt_xdate()
    fig.tight_layout()
    return fig


class ValidationForecastFigures(L.Callback):
    """Every `every_n_epochs` epochs (and after the last), log `val/forecast` as a TensorBoard image
    (`metrics/forecast` in the validation run, beside the error curves)."""

    @checked()
    def __init__(self, every_n_epochs: Annotated[int, POSITIVE_INT] = 1):
        self.every_n_epochs = every_n_epochs

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not hasattr(pl_module, "validation_forecast"):
            return
        epoch = trainer.current_epoch + 1
        if epoch % self.every_n_epochs and epoch < (trainer.max_epochs or 0):
            return
        outputs = writers(trainer, "val/forecast")
        if not outputs:
            return
        datamodule = trainer.datamodule
        time = datamodule.time_axis() if isinstance(datamodule, SeriesData) else None
        targets = pl_module.spec.targets
        fig = validation_figure(pl_module.validation_forecast(), epoch, time=time,
                                name=str(targets[0]) if targets else "value")
        for writer, tag in outputs:
            writer.add_figure(tag, fig, log_step(trainer), close=False)
        plt.close(fig)
