"""Token-weighted negative log-likelihood kept on the device, so training never waits for the host."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class TokenNLL(nn.Module):
    """Running sum of per-token NLL and token count; perplexity = exp(sum / count), read once per epoch.

    Exact over everything seen since `reset()`, unlike a mean of per-batch perplexities. `compute()`
    sums over processes when a reducer (the strategy's `reduce`) is given.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("total", torch.zeros((), dtype=torch.float64), persistent=False)
        self.register_buffer("count", torch.zeros((), dtype=torch.float64), persistent=False)

    def reset(self) -> None:
        self.total.zero_()
        self.count.zero_()

    def update(self, nll_sum: Tensor, count: Tensor | int) -> None:
        self.total += nll_sum.detach().to(self.total.dtype)
        self.count += count

    def mean(self, reduce=None) -> Tensor:
        total, count = self.total, self.count
        if reduce is not None:
            total, count = reduce(total.clone(), reduce_op="sum"), reduce(count.clone(), reduce_op="sum")
        return (total / count.clamp_min(1)).float()

    def perplexity(self, reduce=None) -> Tensor:
        return torch.exp(self.mean(reduce))


def finite_or_none(value: float | None) -> float | None:
    """A metric fit for metrics.json: a finite float, or None (never NaN written as a score)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
