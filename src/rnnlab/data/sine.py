"""The noisy sine series of d2l 9.1, one more series source (rnnlab.data.series.ForecastData).

x_t = sin(0.01 t) + N(0, noise^2), t = 1..T, drawn from `seed`, unscaled as in the book. The first
`n_train` points train; validation and test read the whole series, as the book does: validation
scores one-step predictions of every x_t after the training part, test scores every k-step
prediction of x_t for t >= first_target (after a burn-in of the longest evaluation window and the
longest horizon), and the book's multi-step rollout starts at n_train + tau.
"""

from __future__ import annotations

from typing import Annotated, Any, Mapping

import torch

from rnnlab.data.sampling import SERIES_SAMPLINGS
from rnnlab.data.series import ForecastData
from rnnlab.errors import ConfigError
from rnnlab.options import BOOL, HORIZONS, NON_NEGATIVE, POSITIVE_INT, SEED, Name, checked, choice, nullable


def sine_series(T: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy series, noise-free sine), both of length T, for t = 1..T."""
    time = torch.arange(1, T + 1, dtype=torch.float32)
    clean = torch.sin(0.01 * time)
    g = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(T, generator=g), clean


def feature_label_pairs(series: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's pairs: row i is [x_i, ..., x_{i+tau-1}], label x_{i+tau}, for every i."""
    return series.unfold(0, tau, 1)[:-1], series[tau:]


def training_part(values: Mapping[str, Any], name: Name) -> None:
    """The first n_train points train: at most T of them, and more than one window or feature row."""
    T, n_train = values["T"], values["n_train"]
    if n_train > T:
        raise ConfigError(f"{name('n_train')}={n_train} is invalid: must be at most {name('T')}={T}")
    for option in ("tau", "num_steps"):
        if values[option] >= n_train:
            raise ConfigError(f"{name(option)}={values[option]} is invalid: must be smaller than the training part, "
                              f"{name('n_train')}={n_train}")


def scored_targets(values: Mapping[str, Any], name: Name) -> None:
    """Every horizon is scored on the same targets t >= first_target: after the longest evaluation window
    (64 for a whole history; the MLP reads tau) and the longest horizon; the series must reach past it."""
    T, k = values["T"], max(values["ks"])
    first_target = max(values["eval_context"] or 64, values["tau"]) + k - 1
    if first_target >= T:
        raise ConfigError(f"{name('T')}={T} is invalid: it is too short to score {k}-step predictions "
                          f"({name('ks')}) after {first_target - k + 1} observations ({name('eval_context')}, "
                          f"{name('tau')})")


class SineDataModule(ForecastData):
    @checked(training_part, scored_targets)
    def __init__(self, T: Annotated[int, POSITIVE_INT] = 1000, noise: Annotated[float, NON_NEGATIVE] = 0.2,
                 n_train: Annotated[int, POSITIVE_INT] = 600, tau: Annotated[int, POSITIVE_INT] = 4,
                 batch_size: Annotated[int, POSITIVE_INT] = 16, num_steps: Annotated[int, POSITIVE_INT] = 32,
                 sampling: Annotated[str, choice(*SERIES_SAMPLINGS)] = "random",
                 eval_context: Annotated[int | None, nullable(POSITIVE_INT, "the whole history")] = 64,
                 ks: Annotated[list[int], HORIZONS] = (1, 4, 16, 64), mirror: Annotated[bool, BOOL] = False,
                 seed: Annotated[int, SEED] = 0):
        super().__init__(batch_size, num_steps, sampling, seed)
        ks = list(ks)
        self.T, self.noise, self.n_train, self.tau, self.mirror = T, float(noise), n_train, tau, mirror
        self.name = "sine"
        series, self.clean = sine_series(T, self.noise, seed)
        self.series = series
        self.levels = series[:, None]
        first_target = max(eval_context or 64, tau) + max(ks) - 1  # see scored_targets
        self._finish(["x"], ["x"], n_train, [0, n_train, T], [0, first_target, T], n_train + tau,
                     difference=False, scale=False, noise=self.noise, read={"columns": ["x"]})

    def describe(self) -> str:
        return (f"sine T={self.T} noise={self.noise} n_train={self.n_train} tau={self.tau}, "
                f"{self.sampling} windows {self.batch_size} x {self.num_steps}")

    def eval_batch(self) -> dict:
        return {"levels": self.levels, "clean": self.clean[:, None]}

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With `mirror`, every training batch also holds its negation, on the device: the series is
        symmetric in sign (-sin(u) = sin(u + pi), zero-mean noise), so the mirror shows the model the
        half-period that 600 points from a cold start leave unseen (the rise through zero, the peak
        after warm-up). Sequential streams stay continuous: row i + batch_size mirrors row i."""
        if self.mirror and self.trainer is not None and self.trainer.training:
            return tuple(torch.cat([part, -part]) for part in batch)
        return batch
