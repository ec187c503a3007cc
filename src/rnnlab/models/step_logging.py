"""What a LightningModule logs per optimizer step, and on which steps.

Each `self.log` call costs Lightning bookkeeping (a fraction of a millisecond on a CPU), which is
a large share of a small model's training step; values logged on other steps are never written.
"""

from __future__ import annotations

import torch


def is_logging_step(trainer) -> bool:
    """True on the steps the Trainer sends per-step metrics to its loggers (every log_every_n_steps;
    never with log_every_n_steps=0).

    Lightning's own rule (`trainer._logger_connector.should_update_logs`) is private; this is the same
    rule on the public `global_step`, and tests/dashboards/test_dashboard.py fails if Lightning's rule changes.
    """
    every = trainer.log_every_n_steps
    return bool(every) and (trainer.global_step + 1) % every == 0


class OptimizerStepLogging:
    """LightningModule mixin: clip gradients as the Trainer is configured, and on logging steps log
    `train/lr` (the first parameter group's, whatever the optimizer), `train/grad_norm` (before
    clipping), `train/grad_norm_clipped` (after) and `train/clipped_share` (the share of the optimizer
    steps since the last logging step whose gradients were clipped).

    The norm before clipping comes free from clip_grad_norm_; counting clipped steps is one device
    op per step, read only on logging steps (no host sync on the others).
    """

    _clipped_steps: torch.Tensor | None = None
    _steps_since_log: int = 0

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        logging = is_logging_step(self.trainer)
        norm = after = clipped = None
        if gradient_clip_val and gradient_clip_algorithm in (None, "norm"):
            norm = torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)  # the norm before clipping
            after = norm.clamp(max=gradient_clip_val)
            clipped = norm > gradient_clip_val
        elif gradient_clip_val:  # by value
            grads = [p.grad for p in params]
            clipped = torch.stack([g.abs().amax() for g in grads]).amax() > gradient_clip_val
            norm = torch.nn.utils.get_total_norm(grads) if logging else None
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            after = torch.nn.utils.get_total_norm(grads) if logging else None
        elif logging:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if clipped is not None:
            count = clipped.to(torch.float32)
            self._clipped_steps = count if self._clipped_steps is None else self._clipped_steps + count
            self._steps_since_log += 1
        if not logging:
            return
        self.log("train/lr", float(optimizer.param_groups[0]["lr"]))
        if norm is not None:
            self.log("train/grad_norm", norm)
        if after is not None:
            self.log("train/grad_norm_clipped", after)
        if self._clipped_steps is not None:
            self.log("train/clipped_share", self._clipped_steps / max(self._steps_since_log, 1))
            self._clipped_steps, self._steps_since_log = None, 0
