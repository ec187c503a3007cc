"""The one contract between the forecast module (ForecastModel) and a model: next-value predictions that can be
continued.

A `Forecaster` maps a window of observations (batch, time, C) and a state to predictions of the
next value after each observation (batch, time, C) and a new state; calling it again on its own
predictions with that state continues the series (a k-step rollout). A recurrent core's state is
its hidden state; the book's lag MLP's state is its last `lags - 1` inputs. So training,
free-running training, rolling-origin evaluation and the forecast command are written once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rnnlab.models.cores import output_size


class Forecaster(nn.Module):
    """Base of every model the forecast module trains; subclasses implement `forward` and `cat_states`."""

    lags: int | None = None  # observations one prediction reads; None: the whole history (a recurrent state)
    warmup: int = 0          # leading predictions of a fresh window that lack full inputs (not trained on)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        raise NotImplementedError

    @staticmethod
    def cat_states(states: list) -> Any:
        """Join the states of several single-row calls into one batch."""
        raise NotImplementedError


class RecurrentForecaster(Forecaster):
    """Any recurrent core (rnnlab.models.build_core) with a linear head to the C columns."""

    def __init__(self, core: nn.Module, columns: int):
        super().__init__()
        self.core = core
        self.head = nn.Linear(output_size(core), columns)

    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        out, state = self.core(x, state)
        return self.head(out), state

    @staticmethod
    def cat_states(states: list) -> Any:
        """States are laid out (layers * directions, batch, hidden), or pairs (h, c) for LSTMs."""
        if isinstance(states[0], tuple):
            return tuple(torch.cat(parts, 1) for parts in zip(*states))
        return torch.cat(states, 1)


def as_forecaster(model: nn.Module, columns: int) -> Forecaster:
    """A Forecaster as it is (the MLP), or a recurrent core given its head."""
    return model if isinstance(model, Forecaster) else RecurrentForecaster(model, columns)
