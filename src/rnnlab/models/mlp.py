"""The book's autoregressive MLP (d2l 9.1): tau lagged values -> one hidden ReLU layer -> next value."""

from __future__ import annotations

from torch import nn


class AutoregressiveMLP(nn.Sequential):
    """Linear(tau, hidden), ReLU, Linear(hidden, 1), Xavier-uniform weights as the book initialises them."""

    uses_features = True  # trains on feature-label pairs, not on windows of a sequence

    def __init__(self, input_size: int, hidden_size: int = 10):
        super().__init__(nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))
        for m in self:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
