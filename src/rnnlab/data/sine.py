"""The noisy sine series of d2l 9.1, one more series source (rnnlab.data.series.ForecastData).

x_t = sin(0.01 t) + N(0, noise^2), t = 1..T, drawn from `seed`, unscaled as in the book. The first
`n_train` points train; validation and test read the whole series, as the book does: validation
scores one-step predictions of every x_t after the training part, test scores every k-step
prediction of x_t for t >= first_target (after a burn-in of the longest evaluation window and the
longest horizon), and the book's multi-step rollout starts at n_train + tau.
"""

from __future__ import annotations

import torch

from rnnlab.data.series import ForecastData
from rnnlab.errors import require, require_positive_int


def sine_series(T: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy series, noise-free sine), both of length T, for t = 1..T."""
    time = torch.arange(1, T + 1, dtype=torch.float32)
    clean = torch.sin(0.01 * time)
    g = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(T, generator=g), clean


def feature_label_pairs(series: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's pairs: row i is [x_i, ..., x_{i+tau-1}], label x_{i+tau}, for every i."""
    return series.unfold(0, tau, 1)[:-1], series[tau:]


class SineDataModule(ForecastData):
    def __init__(self, T: int = 1000, noise: float = 0.2, n_train: int = 600, tau: int = 4,
                 batch_size: int = 16, num_steps: int = 32, sampling: str = "random", eval_context: int | None = 64,
                 ks=(1, 4, 16, 64), mirror: bool = False, seed: int = 0):
        super().__init__(batch_size, num_steps, sampling, seed)
        require_positive_int("data.T", T)
        require(isinstance(noise, (int, float)) and noise >= 0, "data.noise", "must be >= 0", noise)
        require_positive_int("data.n_train", n_train)
        require(n_train <= T, "data.n_train", f"must be at most data.T={T}", n_train)
        require_positive_int("data.tau", tau)
        require(tau < n_train, "data.tau", f"must be smaller than the training part, data.n_train={n_train}", tau)
        require(num_steps < n_train, "data.num_steps",
                f"must be smaller than the training part, data.n_train={n_train}", num_steps)
        if eval_context is not None:
            require_positive_int("data.eval_context", eval_context)
        require(isinstance(mirror, bool), "data.mirror", "must be true or false", mirror)
        ks = list(ks)
        require(bool(ks) and all(isinstance(k, int) and k >= 1 for k in ks), "module.ks",
                "give positive integer horizons", ks)
        self.T, self.noise, self.n_train, self.tau, self.mirror = T, float(noise), n_train, tau, mirror
        self.name = "sine"
        series, self.clean = sine_series(T, self.noise, seed)
        self.series = series
        self.levels = series[:, None]
        # Every horizon is scored on the same targets t >= first_target: after the longest evaluation
        # window (64 for a whole history; the MLP reads tau) and the longest horizon.
        first_target = max(eval_context or 64, tau) + max(ks) - 1
        require(first_target < T, "data.T", f"is too short to score {max(ks)}-step predictions (module.ks) after "
                f"{first_target - max(ks) + 1} observations (data.eval_context, data.tau)", T)
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
