"""Forecasting a real-valued series (d2l 9.1) as one LightningModule, for every core and the book's MLP.

The model (a `Forecaster`: rnnlab.models.forecaster) predicts the next value of every input column
in model space (differenced if asked, z-scored on the training part); a k-step forecast feeds it
its own predictions. What the data is arrives as plain data, `series` (rnnlab.data.series.SeriesSpec,
stored in the checkpoint); the data options the module depends on (`sampling`, `num_steps`,
`eval_context`, `ks`) are interpolated from `data` in conf/module/forecast.yaml.

Evaluation, in original units, with rolling origins: every target t of a part whose origin t - k
lies in the part is forecast from the observations up to t - k, reading the last `eval_context`
of them (the MLP its tau lags; null: the whole history). For every k in `ks`: MAE, RMSE and MASE
of the model and, by the same code, of persistence (y_t = y_{t-k}), seasonal naive
(y_t = y_{t - m ceil(k/m)}, with a season m) and, on the test part, a least-squares autoregression
(rnnlab.baselines). The sine also keeps the book's MSE metrics.

Prediction intervals are split-conformal: after every validation the absolute errors of the
h-step forecasts over the validation part give, per horizon h and column, the width that covers
`interval` of them (the finite-sample rank ceil((n + 1) * interval)); each checkpoint holds, as plain
data, the widths of its own weights. The test part reports their coverage.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from rnnlab.baselines import Autoregression, persistence, seasonal_naive
from rnnlab.data.sampling import SERIES_SAMPLINGS
from rnnlab.data.series import SeriesSpec, to_levels, to_model_space
from rnnlab.errors import ConfigError, require
from rnnlab.models.base import RnnlabModule
from rnnlab.models.forecaster import as_forecaster
from rnnlab.models.optim import configure_optimizers
from rnnlab.models.spec import core_from_spec, plain_spec
from rnnlab.models.state import CarriedState
from rnnlab.models.step_logging import OptimizerStepLogging, is_logging_step
from rnnlab.options import (
    BOOL,
    HORIZONS,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE_INT,
    Name,
    checked,
    choice,
    is_int,
    nullable,
)


def scores(pred: Tensor, target: Tensor, scale: Tensor) -> dict[str, Tensor]:
    """Per column (last dimension): MAE, RMSE and MASE (MAE over the in-sample naive MAE `scale`)."""
    err = pred - target
    mae = err.abs().mean(0)
    return {"mae": mae, "rmse": err.pow(2).mean(0).sqrt(), "mase": mae / scale}


ORIGIN_CHUNK = 1024  # origins forecast at once: memory stays bounded on series of a million rows


def conformal_width(errors: Tensor, level: float) -> Tensor:
    """Per column, the absolute error that covers `level` of future errors (split conformal): the
    ceil((n + 1) * level)-th smallest of n, or the largest when n is too small for that rank."""
    n = len(errors)
    rank = min(n, max(1, math.ceil((n + 1) * level)))
    return errors.abs().sort(0).values[rank - 1]


def by_horizon(origins: Tensor, pred: Tensor, part: Sequence[int], ks: Sequence[int]) -> dict:
    """Per k: (target times t, forecasts (n, C)) of the targets t = origin + k the part scores, from
    forecasts `pred` (origins, steps, C) of the steps after each origin."""
    _, score_from, end = part
    out = {}
    for k in ks:
        keep = (origins + k < end) & (origins + k >= score_from)
        out[k] = (origins[keep] + k, pred[keep, k - 1])
    return out


def auto_rollout(ks: Sequence[int], num_steps: int) -> int:
    """Steps a recurrent core trains on its own predictions when `rollout_steps` is null: the longest
    horizon, at most half the window (the first half reads observations)."""
    return min(max(ks), num_steps // 2)


def rollout_in_window(values: Mapping[str, Any], name: Name) -> None:
    """The last R inputs of a training window are the model's own predictions: R < the window."""
    rollout, num_steps = values["rollout_steps"], values["num_steps"]
    if rollout and is_int(num_steps) and rollout >= num_steps:
        raise ConfigError(f"{name('rollout_steps')}={rollout} is invalid: must be smaller than data.num_steps="
                          f"{num_steps}")


class ForecastModel(OptimizerStepLogging, RnnlabModule):
    @checked(rollout_in_window)
    def __init__(
        self,
        core: Mapping[str, Any],
        series: dict,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        ks: Annotated[Sequence[int] | None, nullable(HORIZONS, "derived from the data")] = (1, 4, 16, 64),
        sampling: Annotated[str, choice(*SERIES_SAMPLINGS)] = "random",
        num_steps: Annotated[int | None, nullable(POSITIVE_INT, "derived from the data")] = 32,
        eval_context: Annotated[int | None, nullable(POSITIVE_INT, "the whole history")] = 64,
        rollout_steps: Annotated[int | None, nullable(NON_NEGATIVE_INT, "the longest horizon, at most half the "
                                                                          "window; 0 for the MLP")] = None,
        residual: Annotated[bool, BOOL] = False,
        interval: Annotated[float, OPEN_FRACTION] = 0.9,
    ):
        super().__init__()
        for option, value in (("ks", ks), ("num_steps", num_steps)):  # null in a config: the data derives it
            if value is None:
                raise ConfigError(f"{option}=null is invalid here: the data derives it; pass the data's "
                                  "module_kwargs() (ForecastModel(core=..., **data.module_kwargs()))")
        # Plain-data specs (rnnlab.models.spec), so the checkpoint's hyperparameters are data.
        core, scheduler = plain_spec(core, "module.core"), plain_spec(scheduler, "module.scheduler")
        optimizer = plain_spec(optimizer if optimizer is not None else {"_target_": "torch.optim.Adam"},
                               "module.optimizer")
        self.save_hyperparameters(logger=False)
        self.spec = SeriesSpec(**series)
        columns = len(self.spec.columns)
        self.core = as_forecaster(core_from_spec(core, input_size=columns), columns)
        self.ks = tuple(ks)
        origin_from, score_from, end = self.spec.test
        require(max(score_from, origin_from + max(self.ks)) < end, "module.ks",
                f"the longest horizon must fit the test part ({end - origin_from} rows)", list(self.ks))
        val_from, _, val_end = self.spec.val
        require(self.scorable(self.spec.val, self.ks), "module.ks", "give at least one horizon shorter than the "
                f"validation part ({val_end - val_from} rows), which checkpoints and early stopping score (val/mase)",
                list(self.ks))
        if rollout_steps is None:  # auto: trained for its horizons (the MLP as the book: teacher forcing)
            rollout_steps = 0 if self.core.lags else auto_rollout(self.ks, num_steps)
        self.interval = interval
        self.rollout_steps, self.residual = rollout_steps, residual
        # Observations a forecast reads: the MLP its lags, a recurrent core the last eval_context, or all (None).
        self.window = self.core.lags or eval_context
        self.diff = int(self.spec.difference)
        self.register_buffer("mean", torch.tensor(self.spec.mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(self.spec.std, dtype=torch.float32), persistent=False)
        self.register_buffer("naive_scale", torch.tensor(self.spec.naive_scale, dtype=torch.float32), persistent=False)
        # Interval half-widths per horizon 1..max(ks) and column, in original units (NaN: not calibrated).
        # Not a buffer: weight averaging (EMAWeightAveraging) swaps buffers with its averaged copy's, which
        # were never calibrated; the checkpoint keeps them as plain data (on_save_checkpoint).
        self.interval_width = torch.full((max(self.ks), columns), float("nan"))
        self.target_index = [self.spec.columns.index(t) for t in self.spec.targets]
        self.train_state = CarriedState()
        self.carry = sampling == "sequential"
        self.forecasts: dict = {}

    def forward(self, x: Tensor, state=None):
        """Model-space values (batch, time, C) -> next-value predictions (batch, time, C), state."""
        pred, state = self.core(x, state)
        return (x + pred if self.residual else pred), state

    # training ---------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.train_state.reset(carry=self.carry)

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
        pred, s, free = out_warm[:, -1:], state_warm, [out_warm[:, -1:]]
        for _ in range(self.rollout_steps - 1):
            pred, s = self(pred, s)
            free.append(pred)
        return torch.cat([out_warm, out_rest], 1), torch.cat(free, 1), state_end

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss, state = self.window_loss(x, y, self.train_state.initial())
        self.train_state.keep(state)
        if is_logging_step(self.trainer):
            self.log("train/mse", loss)  # shown by rnnlab.callbacks.ProgressBar
        return loss

    def window_loss(self, x: Tensor, y: Tensor, state=None):
        """MSE of a training window (its warm-up excluded) and the state after it; with `rollout_steps`
        R, the mean of the teacher-forced MSE and the MSE of the R free-running predictions, whose
        i-th predicts y[warm - 1 + i] (the first is the last teacher-forced prediction)."""
        w = self.core.warmup
        if not self.rollout_steps:
            pred, state = self(x, state)
            return F.mse_loss(pred[:, w:], y[:, w:]), state
        teacher_forced, free, state = self.free_running(x, state)
        warm = x.shape[1] - self.rollout_steps
        return (F.mse_loss(teacher_forced[:, w:], y[:, w:]) + F.mse_loss(free, y[:, warm - 1: -1])) / 2, state

    # forecasting ------------------------------------------------------------------------------
    @torch.no_grad()
    def continue_rollout(self, first: Tensor, state, steps: int) -> Tensor:
        """From first predictions (N, C) and the state after them, `steps` predictions (N, steps, C),
        each one fed back as the next input."""
        pred, preds = first[:, None], [first[:, None]]
        for _ in range(steps - 1):
            pred, state = self(pred, state)
            preds.append(pred)
        return torch.cat(preds, 1)

    @torch.no_grad()
    def start_at(self, z: Tensor, origins: Tensor):
        """One-step predictions after each origin (time index) and the states to continue from, reading
        the last `window` model-space values up to the origin (or, with no window, all of them)."""
        rows = origins - self.diff  # model-space index of each origin's observation
        if self.window is not None:
            contexts = z.unfold(0, self.window, 1).transpose(1, 2)  # row j: z_j .. z_{j+W-1}
            out, state = self(contexts[rows - self.window + 1])
            return out[:, -1], state
        outs, states, state = [], [], None  # the whole history: one pass, keeping every state
        for j in range(int(rows.max()) + 1):
            out, state = self(z[j: j + 1][None], state)
            outs.append(out[:, -1])
            states.append(state)
        picked = rows.tolist()
        return torch.cat([outs[j] for j in picked]), self.core.cat_states([states[j] for j in picked])

    @torch.no_grad()
    def forecast_levels(self, levels: Tensor, origins: Tensor, steps: int) -> Tensor:
        """Forecasts in original units (N, steps, C) of the `steps` values after each origin."""
        z = to_model_space(levels, self.mean, self.std, bool(self.diff))
        chunks = origins.split(ORIGIN_CHUNK) if self.window is not None else (origins,)
        preds = []
        for chunk in chunks:
            first, state = self.start_at(z, chunk)
            preds.append(self.continue_rollout(first, state, steps))
        return to_levels(torch.cat(preds), levels[origins], self.mean, self.std, bool(self.diff))

    def min_origin(self) -> int:
        """The first origin with a full evaluation window behind it."""
        return (self.window or 1) - 1 + self.diff

    def rolling(self, levels: Tensor, part: Sequence[int], ks: Sequence[int]) -> dict[int, tuple[Tensor, Tensor]]:
        """Per k: (target times t, forecasts (n, C) from origins t - k) over a part [origin_from, score_from, end)."""
        origin_from, score_from, end = part
        top = max(ks)
        origins = torch.arange(max(origin_from, score_from - top, self.min_origin()), end - 1, device=levels.device)
        return by_horizon(origins, self.forecast_levels(levels, origins, top), part, ks)

    def autoregression(self, levels: Tensor, part: Sequence[int], ks: Sequence[int]):
        """The classical model's rolling forecasts {k: (t, forecasts (n, C))} over a part, fitted on
        the training part, and its order."""
        z = to_model_space(levels.double().cpu(), self.mean.double().cpu(), self.std.double().cpu(), bool(self.diff))
        ar = Autoregression.fit(z, self.spec.train_end - self.diff)
        origin_from, score_from, end = part
        first = max(origin_from, score_from - max(ks), ar.order - 1 + self.diff)
        origins = torch.arange(first, end - 1)
        pred = to_levels(ar.forecast(z, origins - self.diff, max(ks)), levels.double().cpu()[origins],
                         self.mean.double().cpu(), self.std.double().cpu(), bool(self.diff))
        out = by_horizon(origins.to(levels.device), pred.to(levels), part, ks)
        return out, ar.order

    def part_scores(self, levels: Tensor, part: Sequence[int], ks: Sequence[int], forecasts=None,
                    classical=None) -> dict[str, Tensor]:
        """Model and baseline scores per k, named as in metrics.json below `test/` or `val/`; `classical`:
        the autoregression's forecasts (`autoregression()`), scored as `ar_*`."""
        forecasts = forecasts or self.rolling(levels, part, ks)
        y = levels[:, self.target_index]
        out = {}
        for k, (t, pred) in forecasts.items():
            methods = {"": (t, pred[:, self.target_index]), "naive_": (t, persistence(y, t, k))}
            if self.spec.season:
                methods["snaive_"] = (t, seasonal_naive(y, t, k, self.spec.season))
            if classical is not None:
                methods["ar_"] = (classical[k][0], classical[k][1][:, self.target_index])
            for prefix, (tm, p) in methods.items():
                for metric, value in scores(p, y[tm], self.naive_scale).items():
                    if len(self.spec.targets) == 1:
                        out[f"{prefix}{metric}_k{k}"] = value[0]
                        continue
                    for name, v in zip(self.spec.targets, value):
                        out[f"{name}/{prefix}{metric}_k{k}"] = v
                    if metric == "mase":
                        out[f"{prefix}mase_k{k}"] = value.mean()
        return out

    def scorable(self, part: Sequence[int], ks: Sequence[int]) -> list[int]:
        """The horizons a part can score: some origin in the part with its target in the part."""
        origin_from, score_from, end = part
        return [k for k in ks if max(score_from, origin_from + k) < end]

    def validation_step(self, batch, batch_idx):
        levels = batch["levels"]
        # One rolling pass gives every horizon up to the longest: 1-step MSE, MASE over ks, interval widths.
        horizons = self.scorable(self.spec.val, range(1, max(self.ks) + 1))
        forecasts = self.rolling(levels, self.spec.val, horizons)
        self._validation = (levels, forecasts)  # for validation_forecast (figures during training)
        t, pred = forecasts[1]
        self.log("val/mse", ((pred - levels[t]) / self.std).pow(2).mean(), prog_bar=True)
        ks = [k for k in self.ks if k in forecasts]
        if ks:
            results = self.part_scores(levels, self.spec.val, ks, {k: forecasts[k] for k in ks})
            self.log("val/mase", torch.stack([results[f"mase_k{k}"] for k in ks]).mean())
        widths = torch.full_like(self.interval_width, float("nan"))
        for h, (th, ph) in forecasts.items():
            widths[h - 1] = conformal_width(ph - levels[th], self.interval).cpu()
        self.interval_width = widths

    def interval_widths(self, steps: int) -> Tensor | None:
        """Half-widths (steps, C) of the prediction intervals of horizons 1..steps, in original units;
        beyond the longest calibrated horizon H they grow as sqrt(h / H) (errors adding up like a
        random walk's). None before any validation (no calibration yet)."""
        widths = self.interval_width
        calibrated = torch.isfinite(widths).all(1).nonzero().flatten()
        if len(calibrated) == 0:
            return None
        last = int(calibrated.max()) + 1
        h = torch.arange(1, steps + 1, device=widths.device, dtype=widths.dtype)
        grown = widths[last - 1] * (h / last).sqrt()[:, None]
        head = widths[: min(steps, last)]
        out = torch.cat([head, grown[len(head):]]) if steps > len(head) else head
        return torch.where(torch.isfinite(out), out, grown)

    @torch.no_grad()
    def validation_forecast(self) -> dict:
        """The last validation's forecasts of the target, for rnnlab.dashboard.forecast: the observed
        `series`, and `predictions` {name: (target times, values)}: 1-step and the longest horizon the
        validation part can score."""
        levels, forecasts = self._validation
        col = self.target_index[0]  # the first target column
        t, pred = forecasts[1]
        out = {"1-step": (t, pred[:, col])}
        ks = [k for k in self.ks if k > 1 and k in forecasts]
        if ks:
            tk, pk = forecasts[max(ks)]
            out[f"{max(ks)}-step"] = (tk, pk[:, col])
        return {"series": levels[:, col], "predictions": out}

    def test_step(self, batch, batch_idx):
        levels = batch["levels"]
        forecasts = self.rolling(levels, self.spec.test, self.ks)
        classical, order = self.autoregression(levels, self.spec.test, self.ks)
        for name, value in self.part_scores(levels, self.spec.test, self.ks, forecasts, classical).items():
            self.log(f"test/{name}", value)
        self.log("test/ar_order", float(order))
        widths = self.interval_widths(max(self.ks))
        if widths is not None:
            for name, value in self.coverage(levels, forecasts, widths.to(levels.device)).items():
                self.log(f"test/{name}", value)
        start = self.spec.multistep_from
        origin = torch.tensor([start - 1], device=levels.device)
        multistep = self.forecast_levels(levels, origin, len(levels) - start)[0]
        if self.spec.noise is not None:
            self._log_book_metrics(batch, forecasts, multistep)
        onestep_part = [self.spec.test[0], self.spec.test[0], self.spec.test[2]]
        self.forecasts = {"levels": levels.cpu(), "k_step": {k: (t.cpu(), p.cpu()) for k, (t, p) in forecasts.items()},
                          "onestep": tuple(x.cpu() for x in self.rolling(levels, onestep_part, (1,))[1]),
                          "multistep": (torch.arange(start, len(levels)), multistep.cpu()), "spec": self.spec,
                          "widths": None if widths is None else widths.cpu(), "interval": self.interval}

    def coverage(self, levels: Tensor, forecasts: dict, widths: Tensor) -> dict[str, Tensor]:
        """Per k: the share of targets inside forecast +- width (`coverage_k{k}`, to hold `interval`) and the
        mean width (`width_k{k}`, original units); per column too when there are several targets."""
        out = {}
        several = len(self.target_index) > 1
        for k, (t, pred) in forecasts.items():
            w = widths[k - 1, self.target_index]
            inside = ((pred[:, self.target_index] - levels[t][:, self.target_index]).abs() <= w).float().mean(0)
            out[f"coverage_k{k}"] = inside.mean()
            if several:
                for name, c, wc in zip(self.spec.targets, inside, w):
                    out[f"{name}/coverage_k{k}"], out[f"{name}/width_k{k}"] = c, wc
            else:
                out[f"width_k{k}"] = w[0]
        return out

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)  # the checkpoint format number a resume checks
        checkpoint["interval_width"] = self.interval_width.tolist()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints from before the intervals hold no widths: they load uncalibrated (NaN)."""
        super().on_load_checkpoint(checkpoint)
        if "interval_width" in checkpoint:
            self.interval_width = torch.tensor(checkpoint["interval_width"], dtype=torch.float32)

    def _log_book_metrics(self, batch, forecasts, multistep) -> None:
        """The sine's metrics as the book reports them: MSE against the data and the noise-free sine."""
        levels, clean = batch["levels"], batch["clean"]
        for k, (t, pred) in forecasts.items():
            mse = F.mse_loss(pred, levels[t])
            self.log(f"test/mse_k{k}", mse)
            self.log(f"test/mse_clean_k{k}", F.mse_loss(pred, clean[t]))
            if self.spec.noise > 0:
                self.log(f"test/noise_ratio_k{k}", mse / self.spec.noise ** 2)
        start = self.spec.multistep_from
        self.log("test/mse_multistep", F.mse_loss(multistep, levels[start:]))
        self.log("test/mse_clean_multistep", F.mse_loss(multistep, clean[start:]))

    def configure_optimizers(self):
        return configure_optimizers(self)
