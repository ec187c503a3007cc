"""Figures of the forecasting runs, as the book draws them: saved as PNG and logged to TensorBoard.

Three figures, one panel per scored column, in original units, dates on the x axis when the data
has a time column: `history` (the whole series, the validation and test parts shaded),
`onestep_multistep` (data, one-step predictions and the free multi-step rollout) and `k_step`
(the k-step-ahead forecasts over the test part, from rolling origins, with their prediction intervals).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import lightning as L
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rnnlab.dashboard.logger import writers  # noqa: E402
from rnnlab.options import STRING, checked  # noqa: E402


def _panels(spec, title: str):
    n = len(spec.targets)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 + 1.6 * n), squeeze=False, sharex=True)
    axes[0, 0].set_title(title, fontsize=10)
    for ax, name in zip(axes[:, 0], spec.targets):
        ax.set_ylabel(name)
    axes[-1, 0].set_xlabel("time")
    return fig, axes[:, 0]


def forecast_figures(f: dict, time) -> dict[str, plt.Figure]:
    """The three figures from the forecasts a forecast module keeps after testing (`ForecastModel.forecasts`)."""
    spec, levels = f["spec"], f["levels"].numpy()
    time = np.asarray(time)
    cols = [spec.columns.index(t) for t in spec.targets]
    test_from = spec.test[0]

    fig1, axes = _panels(spec, "history")
    for ax, c in zip(axes, cols):
        ax.plot(time, levels[:, c], lw=0.8, color="0.3")
        if spec.val[0] > 0:  # a chronological split: shade validation and test
            ax.axvspan(time[spec.val[0]], time[spec.val[2] - 1], color="tab:orange", alpha=0.12, label="validation")
            ax.axvspan(time[spec.test[0]], time[-1], color="tab:green", alpha=0.12, label="test")
    axes[0].legend(loc="upper left", fontsize=8) if spec.val[0] > 0 else None

    fig2, axes = _panels(spec, "one-step and multi-step predictions")
    t1, p1 = (x.numpy() for x in f["onestep"])
    tm, pm = (x.numpy() for x in f["multistep"])
    for ax, c in zip(axes, cols):
        ax.plot(time[test_from:], levels[test_from:, c], lw=0.8, color="0.6", label="data")
        ax.plot(time[t1], p1[:, c], lw=1.1, label="1-step preds")
        ax.plot(time[tm], pm[:, c], lw=1.1, label="multistep preds")
        ax.axvline(time[spec.multistep_from], color="k", ls=":", lw=0.8)
    axes[0].legend(loc="lower left", fontsize=8)

    widths = f.get("widths")
    title = "k-step-ahead forecasts over the test part (rolling origins)"
    if widths is not None:
        title += f", {f['interval']:.0%} prediction intervals"
    fig3, axes = _panels(spec, title)
    for ax, c in zip(axes, cols):
        ax.plot(time[test_from:], levels[test_from:, c], lw=0.8, color="0.6", label="data")
        for k, (t, pred) in sorted(f["k_step"].items()):
            x, y = time[t.numpy()], pred[:, c].numpy()
            line, = ax.plot(x, y, lw=1.0, label=f"{k}-step preds")
            if widths is not None:
                w = float(widths[k - 1, c])
                ax.fill_between(x, y - w, y + w, color=line.get_color(), alpha=0.12, lw=0)
    axes[0].legend(loc="lower left", fontsize=8)
    for fig in (fig1, fig2, fig3):
        fig.autofmt_xdate() if np.issubdtype(time.dtype, np.datetime64) else None
        fig.tight_layout()
    return {"history": fig1, "onestep_multistep": fig2, "k_step": fig3}


class ForecastFigures(L.Callback):
    """After testing, draw the module's forecasts into `<output_dir>/figures/*.png` and TensorBoard images
    (`~test/<name>` in the eval run)."""

    @checked()
    def __init__(self, output_dir: Annotated[str, STRING]):
        self.dir = Path(output_dir) / "figures"

    def on_test_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not getattr(pl_module, "forecasts", None):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, fig in forecast_figures(pl_module.forecasts, trainer.datamodule.time_axis()).items():
            fig.savefig(self.dir / f"{name}.png", dpi=120)
            for writer, tag in writers(trainer, f"test/{name}"):
                writer.add_figure(tag, fig, trainer.global_step, close=False)
            plt.close(fig)
