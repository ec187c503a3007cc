"""Token-weighted negative log-likelihood kept on the device, so training never waits for the host."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class TokenNLL:
    """Running sum of per-token NLL and token count; perplexity = exp(sum / count), read once per epoch.

    Exact over everything seen since `reset()`, unlike a mean of per-batch perplexities. The sums
    live on the device of the first update (float64, float32 on Apple's MPS, which has no float64),
    so accumulating never waits for the host. `mean()` sums over processes when given the
    strategy's `reduce`.
    """

    def __init__(self):
        self.total: Tensor | None = None
        self.count: Tensor | int = 0  # a host integer while only integer counts arrive: no kernel per update

    def reset(self) -> None:
        self.total, self.count = None, 0

    def _sum(self, like: Tensor) -> Tensor:
        if self.total is None:
            dtype = torch.float32 if like.device.type == "mps" else torch.float64
            self.total = torch.zeros((), dtype=dtype, device=like.device)
        return self.total

    def update(self, nll_sum: Tensor, count: Tensor | int) -> None:
        """Add a summed NLL over `count` tokens."""
        self._sum(nll_sum).add_(nll_sum.detach())
        self.count = self.count + count

    def update_mean(self, mean_nll: Tensor, count: int) -> None:
        """Add a mean NLL over `count` tokens (a training loss): one fused multiply-add on the device."""
        self._sum(mean_nll).add_(mean_nll.detach(), alpha=count)
        self.count = self.count + count

    def mean(self, reduce=None) -> Tensor:
        if self.total is None:
            return torch.tensor(float("nan"))
        total = self.total
        count = torch.as_tensor(self.count, device=total.device).to(total.dtype)
        if reduce is not None:
            total, count = reduce(total.clone(), reduce_op="sum"), reduce(count.clone(), reduce_op="sum")
        return (total / count.clamp_min(1)).float()

    def perplexity(self, reduce=None) -> Tensor:
        return torch.exp(self.mean(reduce))

    # checkpointing: the running sums of an epoch in progress, so a mid-epoch resume reports the same epoch metric
    def state_dict(self) -> dict:
        return {"nll_total": self.total, "nll_count": self.count}

    def load_state_dict(self, state_dict: dict) -> None:
        self.total, self.count = state_dict["nll_total"], state_dict["nll_count"]

    def to(self, device) -> None:
        if self.total is not None:
            self.total = self.total.to(device)
        if isinstance(self.count, Tensor):
            self.count = self.count.to(device)


def finite_or_none(value: float | None) -> float | None:
    """A metric fit for metrics.json: a finite float, or None (never NaN written as a score)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
