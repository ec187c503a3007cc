"""How often per-step values are logged: Trainer.log_every_n_steps, lowered for short runs."""

from __future__ import annotations

import math
import warnings
from typing import Annotated

import lightning as L

from rnnlab.options import POSITIVE_INT, checked

# Lightning warns when an epoch has fewer batches than log_every_n_steps, before on_train_start,
# where LoggingCadence lowers the interval to fit the epoch.
warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")


class LoggingCadence(L.Callback):
    """Lower `trainer.log_every_n_steps` so that every epoch (and every run) has about `min_points`
    per-step points: a 144-step run with log_every_n_steps=50 would show 2 points, a short sweep's
    jobs none. Long epochs keep the configured interval, which bounds the per-step logging cost;
    log_every_n_steps=0 (no per-step logging) stays 0."""

    @checked()
    def __init__(self, min_points: Annotated[int, POSITIVE_INT] = 10):
        self.min_points = min_points

    def on_train_start(self, trainer, pl_module) -> None:
        every = trainer.log_every_n_steps
        per_epoch = trainer.num_training_batches
        if not every or not per_epoch or math.isinf(per_epoch):
            return
        steps = int(per_epoch)
        if trainer.max_steps and trainer.max_steps > 0:
            steps = min(steps, trainer.max_steps)
        trainer.log_every_n_steps = max(1, min(every, steps // self.min_points))
