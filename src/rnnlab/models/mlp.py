"""The book's autoregressive MLP (d2l 9.1): tau lagged values -> one hidden ReLU layer -> next value."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor, nn

from rnnlab.models.forecaster import Forecaster
from rnnlab.options import POSITIVE_INT, checked


class AutoregressiveMLP(Forecaster):
    """Linear(tau * C, hidden), ReLU, Linear(hidden, C), Xavier-uniform weights as the book initialises them.

    As a Forecaster its state is the last tau - 1 observations (zeros for a fresh window), so a
    window of any length gives one prediction per step and a rollout continues it like a recurrent
    core's; the first tau - 1 predictions of a fresh window read zeros (`warmup`, not trained on).
    """

    @checked()
    def __init__(self, input_size: int, tau: Annotated[int, POSITIVE_INT] = 4,
                 hidden_size: Annotated[int, POSITIVE_INT] = 10):
        super().__init__()
        self.lags, self.warmup, self.columns = tau, tau - 1, input_size
        self.net = nn.Sequential(nn.Linear(tau * input_size, hidden_size), nn.ReLU(),
                                 nn.Linear(hidden_size, input_size))
        for m in self.net:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if state is None:
            state = x.new_zeros(x.shape[0], self.lags - 1, x.shape[2])
        history = torch.cat([state, x], 1)
        lagged = history.unfold(1, self.lags, 1)  # (batch, time, C, tau): row t holds x_{t-tau+1} .. x_t
        features = lagged.transpose(2, 3).flatten(2)  # oldest lag first, columns within each lag
        return self.net(features), history[:, history.shape[1] - self.lags + 1:]

    @staticmethod
    def cat_states(states: list) -> Tensor:
        return torch.cat(states, 0)
