"""The forecasts every model of a series is judged against, scored by the forecast module's own code.

- persistence: y_t = y_{t-k}, the last observation at the origin;
- seasonal naive: y_t = y_{t - m ceil(k/m)}, the same season of the last observed cycle;
- a classical autoregression, fitted by least squares: AR(p) on one column, VAR(p) on several, in the
  forecast module's model space (differenced when the data is, z-scored on the training part), its order
  p chosen by Akaike's criterion on the training part, forecasts iterated from each origin. It is what
  a forecaster would fit first (Box-Jenkins without the MA part), with no dependency beyond torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_ORDER = 64   # the longest AR order tried (a weekly series with a yearly season needs about 52)
RIDGE = 1e-6     # keeps the normal equations solvable when lags are collinear


def persistence(levels: Tensor, targets: Tensor, k: int) -> Tensor:
    """y_t = y_{t-k}: the last observation at the origin."""
    return levels[targets - k]


def seasonal_naive(levels: Tensor, targets: Tensor, k: int, season: int) -> Tensor:
    """y_t = y_{t - m ceil(k/m)}: the same season of the last cycle observed at the origin."""
    return levels[targets - season * math.ceil(k / season)]


def lagged(z: Tensor, p: int, rows: Tensor) -> Tensor:
    """Regressors of rows t: [1, z_{t-1}, ..., z_{t-p}] flattened, shape (len(rows), 1 + p * C)."""
    lags = torch.stack([z[rows - j] for j in range(1, p + 1)], 1).flatten(1)
    return torch.cat([torch.ones(len(rows), 1, dtype=z.dtype), lags], 1)


@dataclass
class Autoregression:
    """z_t = b + A_1 z_{t-1} + ... + A_p z_{t-p} in model space; `weights` (1 + p * C, C)."""

    order: int
    weights: Tensor

    @classmethod
    def fit(cls, z: Tensor, train_rows: int, max_order: int = MAX_ORDER) -> "Autoregression":
        """Least squares on model-space rows [0, train_rows), the order by Akaike's criterion over one
        common sample (rows after the longest order tried), at most `max_order` and at most what leaves
        two training rows per coefficient."""
        z = z.double()
        columns = z.shape[1]
        top = max(1, min(max_order, (train_rows - 1) // (2 * columns + 1), train_rows // 3))
        sample = torch.arange(top, train_rows)
        best = None
        for p in range(1, top + 1):
            x, y = lagged(z, p, sample), z[sample]
            weights = _least_squares(x, y)
            resid = y - x @ weights
            sigma = (resid.T @ resid) / len(sample)  # the residual covariance (C, C)
            aic = len(sample) * float(torch.logdet(sigma)) + 2 * weights.numel()
            if best is None or aic < best[0]:
                best = (aic, p, weights)
        return cls(best[1], best[2])

    def forecast(self, z: Tensor, origin_rows: Tensor, steps: int) -> Tensor:
        """Model-space forecasts (N, steps, C) of the rows after each origin row, each fed back."""
        p = self.order
        # (N, p, C), oldest first
        history = torch.stack([z[(origin_rows - j).clamp(min=0)].double() for j in range(p - 1, -1, -1)], 1)
        out = []
        for _ in range(steps):
            x = torch.cat([torch.ones(len(history), 1, dtype=torch.float64), history.flip(1).flatten(1)], 1)
            nxt = x @ self.weights
            out.append(nxt)
            history = torch.cat([history[:, 1:], nxt[:, None]], 1)
        return torch.stack(out, 1).to(z.dtype)


def _least_squares(x: Tensor, y: Tensor) -> Tensor:
    gram = x.T @ x
    gram += RIDGE * torch.eye(len(gram), dtype=x.dtype) * gram.diagonal().mean()
    return torch.linalg.solve(gram, x.T @ y)
