"""The noisy sine series of d2l 9.1 as a LightningDataModule, for autoregressive models.

x_t = sin(0.01 t) + N(0, noise^2), t = 1..T, drawn from `seed`. The first `n_train` points train;
validation and test read the whole series (the module predicts from its own context windows).
An MLP (a module whose `uses_features` is true) trains on the book's feature-label pairs
[x_{t-tau}, ..., x_{t-1}] -> x_t; recurrent cores train on windows of `num_steps` cut by the same
random/sequential samplers as text, targets shifted by one.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnlab.data.sampling import SAMPLINGS, make_sampler, window_loader
from rnnlab.errors import require, require_choice, require_positive_int


def sine_series(T: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy series, noise-free sine), both of length T, for t = 1..T."""
    time = torch.arange(1, T + 1, dtype=torch.float32)
    clean = torch.sin(0.01 * time)
    g = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(T, generator=g), clean


def feature_label_pairs(series: torch.Tensor, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's pairs: row i is [x_i, ..., x_{i+tau-1}], label x_{i+tau}, for every i."""
    return series.unfold(0, tau, 1)[:-1], series[tau:]


class SineDataModule(L.LightningDataModule):
    def __init__(self, T: int = 1000, noise: float = 0.2, n_train: int = 600, tau: int = 4,
                 batch_size: int = 16, num_steps: int = 32, sampling: str = "random", eval_context: int | None = 64,
                 mirror: bool = False, seed: int = 0):
        super().__init__()
        require_positive_int("data.T", T)
        require(isinstance(noise, (int, float)) and noise >= 0, "data.noise", "must be >= 0", noise)
        require_positive_int("data.n_train", n_train)
        require(n_train <= T, "data.n_train", f"must be at most data.T={T}", n_train)
        require_positive_int("data.tau", tau)
        require(tau < n_train, "data.tau", f"must be smaller than the training part, data.n_train={n_train}", tau)
        require_positive_int("data.num_steps", num_steps)
        require(num_steps < n_train, "data.num_steps",
                f"must be smaller than the training part, data.n_train={n_train}", num_steps)
        require_positive_int("data.batch_size", batch_size)
        require_choice("data.sampling", sampling, SAMPLINGS)
        if eval_context is not None:
            require_positive_int("data.eval_context", eval_context)
        require(isinstance(mirror, bool), "data.mirror", "must be true or false", mirror)
        self.save_hyperparameters(logger=False)
        self.mirror = mirror
        self.T, self.noise, self.n_train, self.tau = T, float(noise), n_train, tau
        self.batch_size, self.num_steps, self.sampling, self.seed = batch_size, num_steps, sampling, seed
        # Evaluation context of a recurrent core: the last eval_context observations, or (null) the whole
        # history; the MLP always reads the last tau. The module scores all models on one time range.
        self.context = None if eval_context is None else max(eval_context, tau)
        self.series, self.clean = sine_series(T, self.noise, seed)
        make_sampler(sampling, n_train, batch_size, num_steps, seed=seed)  # fail early if windows cannot be cut

    @property
    def continuous(self) -> bool:
        return self.sampling == "sequential"

    def setup(self, stage: str | None = None) -> None:
        pass

    def describe(self) -> str:
        return (f"sine T={self.T} noise={self.noise} n_train={self.n_train} tau={self.tau}, "
                f"{self.sampling} windows {self.batch_size} x {self.num_steps}")

    def module_kwargs(self) -> dict:
        return {"tau": self.tau, "n_train": self.n_train, "T": self.T, "context": self.context, "noise": self.noise}

    def _uses_features(self) -> bool:
        module = self.trainer.lightning_module if self.trainer is not None else None
        return bool(getattr(module, "uses_features", False))

    def train_dataloader(self) -> DataLoader:
        if self._uses_features():
            features, labels = feature_label_pairs(self.series, self.tau)
            data = TensorDataset(features[: self.n_train], labels[: self.n_train])
            return DataLoader(data, batch_size=self.batch_size, shuffle=True,
                              generator=torch.Generator().manual_seed(self.seed))
        return window_loader(self.series[: self.n_train], self.sampling, self.batch_size, self.num_steps,
                             seed=self.seed, trainer=self.trainer)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """With `mirror`, every training batch also holds its negation, on the device: the series is
        symmetric in sign (-sin(u) = sin(u + pi), zero-mean noise), so the mirror shows the model the
        half-period that 600 points from a cold start leave unseen (the rise through zero, the peak
        after warm-up). Sequential streams stay continuous: row i + batch_size mirrors row i."""
        if self.mirror and self.trainer is not None and self.trainer.training:
            return tuple(torch.cat([part, -part]) for part in batch)
        return batch

    def _whole_series(self) -> DataLoader:
        return DataLoader([(self.series, self.clean)], batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return self._whole_series()

    def test_dataloader(self) -> DataLoader:
        return self._whole_series()
