"""A callback for bench/end_to_end.py: when `python train.py` reaches fit start and its first training step
(wall-clock time.time(), comparable with the parent's process start), written to `path` as JSON.

    PYTHONPATH=bench python train.py +callbacks.startup_times._target_=startup_times.StartupTimes \
        +callbacks.startup_times.path=/tmp/times.json

Not part of the test suite; the callback costs one clock read per batch until the first step.
`flush_denormal: true` (a lever measured, not a project option): torch.set_flush_denormal(True) when the
callback is built, before the model trains.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch


class StartupTimes(L.Callback):
    def __init__(self, path: str, flush_denormal: bool = False):
        self.path, self.times = Path(path), {}
        if flush_denormal:
            torch.set_flush_denormal(True)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.times["fit_start"] = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if "first_step" not in self.times:
            self.times["first_step"] = time.time()
            self.path.write_text(json.dumps(self.times))
