"""Figures of the sine experiments, as the book draws them: saved as PNG and logged to TensorBoard."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402


def forecast_figures(f: dict, n_train: int, tau: int) -> dict[str, plt.Figure]:
    """Two figures: data vs one-step vs multi-step predictions, and the k-step-ahead curves."""
    series = f["series"].cpu().numpy()
    T = len(series)
    time = list(range(1, T + 1))
    first = int(f["first_target"])
    one = f["onestep"].cpu().numpy()
    multi = f["multistep"].cpu().numpy()

    fig1, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(time, series, lw=0.8, color="0.6", label="data")
    ax.plot(time[T - len(one):], one, lw=1.2, label="1-step preds")
    ax.plot(time[T - len(multi):], multi, lw=1.2, label="multistep preds")
    ax.axvline(n_train + tau, color="k", ls=":", lw=0.8)
    ax.set(xlabel="time", ylabel="x", xlim=(1, T))
    ax.legend(loc="lower left")
    fig1.tight_layout()

    fig2, ax = plt.subplots(figsize=(8, 3.5))
    for key in sorted((k for k in f if k.startswith("k")), key=lambda k: int(k[1:])):
        ax.plot(time[first:], f[key].cpu().numpy(), lw=1.0, label=f"{key[1:]}-step preds")
    ax.set(xlabel="time", ylabel="x", xlim=(1, T))
    ax.legend(loc="lower left")
    fig2.tight_layout()
    return {"onestep_multistep": fig1, "k_step": fig2}


class ForecastFigures(L.Callback):
    """After testing, draw the module's forecasts into `<output_dir>/figures/*.png` and TensorBoard images."""

    def __init__(self, output_dir: str):
        self.dir = Path(output_dir) / "figures"

    def on_test_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not getattr(pl_module, "forecasts", None):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, fig in forecast_figures(pl_module.forecasts, pl_module.n_train, pl_module.tau).items():
            fig.savefig(self.dir / f"{name}.png", dpi=120)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_figure(f"figures/{name}", fig, trainer.global_step)
            plt.close(fig)
