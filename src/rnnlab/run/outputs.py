"""What a run writes besides checkpoints and event files: metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnlab.metrics import finite_or_none

METRICS_FILE = "metrics.json"


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json atomically: a reader never sees a half-written file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = output_dir / METRICS_FILE, output_dir / (METRICS_FILE + ".tmp")
    tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def trained_metrics(trainer) -> dict[str, Any]:
    """The run's last logged metrics (`group/name` keys), its progress and its best checkpoint."""
    metrics: dict[str, Any] = {}
    for name, value in trainer.callback_metrics.items():
        if "/" in name and value.numel() == 1:
            metrics[name] = finite_or_none(value)
    metrics["epochs"] = trainer.current_epoch
    metrics["global_step"] = trainer.global_step
    if "train/tokens_per_s" in metrics:
        metrics["tokens_per_s"] = metrics["train/tokens_per_s"]
    ckpt = trainer.checkpoint_callback
    if ckpt is not None and ckpt.best_model_path:
        metrics["best/" + str(ckpt.monitor)] = finite_or_none(ckpt.best_model_score)
        metrics["best_checkpoint"] = ckpt.best_model_path
    return metrics
