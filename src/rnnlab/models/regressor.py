"""Autoregression on a real-valued series (d2l 9.1) as a LightningModule: the book's MLP or any recurrent core.

Evaluation follows the book: one-step-ahead predictions, the multi-step rollout from n_train + tau
that feeds the model its own predictions, and k-step-ahead predictions for k in (1, 4, 16, 64),
each scored against the observed series and against the noise-free sine.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rnnlab.errors import ConfigError
from rnnlab.models.cores import output_size
from rnnlab.models.lean import LeanLightningModule
from rnnlab.models.optim import configure_optimizers
from rnnlab.models.state import CarriedState
from rnnlab.models.step_logging import OptimizerStepLogging, is_logging_step


class SequenceRegressor(OptimizerStepLogging, LeanLightningModule):
    def __init__(
        self,
        core: Callable[..., nn.Module],
        tau: int,
        n_train: int,
        T: int,
        context: int | None,
        noise: float,
        optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
        scheduler: Callable | None = None,
        ks: Sequence[int] = (1, 4, 16, 64),
        rollout_steps: int = 0,
        residual: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.uses_features = bool(getattr(getattr(core, "func", core), "uses_features", False))
        self.net = core(input_size=tau if self.uses_features else 1)
        self.head = None if self.uses_features else nn.Linear(output_size(self.net), 1)
        self.tau, self.n_train, self.noise_var, self.ks = tau, n_train, noise ** 2, tuple(ks)
        if not self.ks or not all(isinstance(k, int) and k >= 1 for k in self.ks):
            raise ConfigError(f"module.ks={list(self.ks)} is invalid: give positive integer horizons")
        # Observations a forecast reads: the MLP its tau lags, a recurrent core the last `context`
        # values, or its whole history (None).
        self.window = tau if self.uses_features else context
        # Every horizon is scored on the same targets t >= first_target: after a burn-in of the
        # longest window (64 for a full history) and the longest horizon.
        self.first_target = max(context or 64, tau) + max(self.ks) - 1
        if self.first_target >= T:
            raise ConfigError(f"data.T={T} is too short to score {max(self.ks)}-step predictions (module.ks) after "
                              f"{self.first_target - max(self.ks) + 1} observations (data.eval_context, data.tau)")
        if rollout_steps and self.uses_features:
            raise ConfigError("module.rollout_steps applies to recurrent cores, not model=mlp: set it to 0")
        self.rollout_steps, self.residual = rollout_steps, residual
        self.train_state = CarriedState()
        self.forecasts: dict[str, Tensor] = {}

    def forward(self, x: Tensor, state=None):
        """Recurrent path: values (batch, time) -> one-step predictions (batch, time), final state."""
        out, state = self.net(x.unsqueeze(-1), state)
        pred = self.head(out).squeeze(-1)
        return (x + pred if self.residual else pred), state

    def on_train_epoch_start(self) -> None:
        num_steps = getattr(self.trainer.datamodule, "num_steps", None)
        if self.rollout_steps and num_steps is not None and self.rollout_steps >= num_steps:
            raise ConfigError(f"module.rollout_steps={self.rollout_steps} must be smaller than data.num_steps={num_steps}")
        self.train_state.reset(carry=bool(getattr(self.trainer.datamodule, "continuous", False)))

    def free_running(self, x: Tensor, state):
        """Predictions for the window's last `rollout_steps` steps fed with the model's own predictions.

        Teacher forcing (the book) only ever feeds observed values, so k-step rollouts drift towards
        a persistence forecast; training on the model's own outputs, with gradients through the
        rollout, teaches it to forecast. Also returns the teacher-forced predictions and final state,
        so that sequential sampling still carries the state of the observed stream.
        """
        warm = x.shape[1] - self.rollout_steps
        out_warm, state_warm = self(x[:, :warm], state)
        out_rest, state_end = self(x[:, warm:], state_warm)
        pred, s, free = out_warm[:, -1], state_warm, [out_warm[:, -1]]
        for _ in range(self.rollout_steps - 1):
            out, s = self(pred[:, None], s)
            pred = out[:, -1]
            free.append(pred)
        return torch.cat([out_warm, out_rest], 1), torch.stack(free, 1), state_end

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.uses_features:
            loss = F.mse_loss(self.net(x).squeeze(-1), y)
        elif self.rollout_steps:
            teacher_forced, free, state = self.free_running(x, self.train_state.initial())
            self.train_state.keep(state)
            loss = (F.mse_loss(teacher_forced, y) + F.mse_loss(free, y[:, -self.rollout_steps:])) / 2
        else:
            pred, state = self(x, self.train_state.initial())
            self.train_state.keep(state)
            loss = F.mse_loss(pred, y)
        if is_logging_step(self.trainer):
            self.log("train/mse", loss)  # shown by rnnlab.callbacks.ProgressBar
        return loss

    # forecasting -------------------------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, context: Tensor, steps: int) -> Tensor:
        """From each row of observed `context` (N, C), predict `steps` values, each fed back as input."""
        preds = []
        if self.uses_features:
            window = context[:, -self.tau:]
            for _ in range(steps):
                preds.append(self.net(window).squeeze(-1))
                window = torch.cat([window[:, 1:], preds[-1][:, None]], 1)
        else:
            out, state = self(context)
            preds.append(out[:, -1])
            for _ in range(steps - 1):
                out, state = self(preds[-1][:, None], state)
                preds.append(out[:, -1])
        return torch.stack(preds, 1)

    def k_step(self, series: Tensor, k: int, first_target: int) -> Tensor:
        """Predictions of x_t for t in [first_target, T), each from observations up to t - k."""
        if self.window is None:
            return self._k_step_full_history(series, k, first_target)
        contexts = series.unfold(0, self.window, 1)  # row j holds x_j .. x_{j+W-1}
        first_row = first_target - k - self.window + 1
        return self.rollout(contexts[first_row: len(series) - k - self.window + 1], k)[:, -1]

    @torch.no_grad()
    def _k_step_full_history(self, series: Tensor, k: int, first_target: int) -> Tensor:
        """Recurrent k-step predictions that read the whole observed history: one teacher-forced pass
        keeps the state after every observation, then all rollouts start from those states at once."""
        outs, states, state = [], [], None
        for j in range(len(series) - k):
            out, state = self(series[j: j + 1][None], state)
            outs.append(out[:, -1])
            states.append(state)
        rows = range(first_target - k, len(series) - k)  # last observation x_{t-k}
        pred = torch.cat([outs[j] for j in rows])
        state = _cat_states([states[j] for j in rows])
        for _ in range(k - 1):
            out, state = self(pred[:, None], state)
            pred = out[:, -1]
        return pred

    def multistep(self, series: Tensor, start: int) -> Tensor:
        """The book's multi-step prediction: observed values up to `start`, then only own predictions."""
        observed = series[:start] if self.window is None else series[start - self.window: start]
        return self.rollout(observed[None], len(series) - start)[0]

    def validation_step(self, batch, batch_idx):
        series, _ = batch
        start = max(self.n_train, self.window or 1)
        onestep = self.k_step(series, 1, start)
        self._validation = (series, start, onestep)  # for validation_forecast (figures during training)
        self.log("val/mse", F.mse_loss(onestep, series[start:]), prog_bar=True)

    @torch.no_grad()
    def validation_forecast(self) -> dict:
        """The last validation's forecasts, for rnnlab.dashboard.forecast.ValidationForecastFigures:
        the observed `series`, the first scored index `start`, and `predictions` of x_t for t >= start."""
        series, start, onestep = self._validation
        return {"series": series, "start": start,
                "predictions": {"1-step": onestep, "multi-step": self.multistep(series, start)}}

    def test_step(self, batch, batch_idx):
        series, clean = batch
        first = self.first_target
        self.forecasts = {"series": series, "clean": clean, "first_target": torch.tensor(first)}
        for k in self.ks:
            pred = self.k_step(series, k, first)
            self.forecasts[f"k{k}"] = pred
            mse = F.mse_loss(pred, series[first:])
            self.log(f"test/mse_k{k}", mse)
            self.log(f"test/mse_clean_k{k}", F.mse_loss(pred, clean[first:]))
            if self.noise_var > 0:
                self.log(f"test/noise_ratio_k{k}", mse / self.noise_var)
        self.forecasts["onestep"] = self.k_step(series, 1, self.window or 1)
        start = self.n_train + self.tau
        multi = self.multistep(series, start)
        self.forecasts["multistep"] = multi
        self.log("test/mse_multistep", F.mse_loss(multi, series[start:]))
        self.log("test/mse_clean_multistep", F.mse_loss(multi, clean[start:]))

    def configure_optimizers(self):
        return configure_optimizers(self)


def _cat_states(states: list):
    """Concatenate per-sample recurrent states (h, or (h, c)) along the batch dimension."""
    if isinstance(states[0], tuple):
        return tuple(torch.cat(parts, 1) for parts in zip(*states))
    return torch.cat(states, 1)
