"""What a run writes besides checkpoints and event files: metrics.json."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rnnlab.metrics import finite_or_none

METRICS_FILE = "metrics.json"


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json atomically: a reader never sees a half-written file."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = output_dir / METRICS_FILE, output_dir / f"{METRICS_FILE}.{os.getpid()}.tmp"  # one per process
    tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_metrics(path: Path) -> dict:
    """A job's metrics.json; a missing one reads as `incomplete`, one that is not a JSON object as `unreadable`."""
    if not path.is_file():
        return {"status": "incomplete", "error": "no metrics.json: the job was interrupted or is still running"}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {"status": "unreadable", "error": f"metrics.json cannot be read ({type(e).__name__})"}
    if not isinstance(metrics, dict):
        return {"status": "unreadable", "error": "metrics.json does not hold a JSON object"}
    return metrics


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
