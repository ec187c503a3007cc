"""What a run writes besides checkpoints and event files: metrics.json.

Paths in metrics.json are relative to the run directory when the file lies inside it (checkpoints,
the learning-rate plot), so a run or multirun that is moved or copied still names its own files, never
the ones it was copied from. A relative path in metrics.json always means relative to the file's own
directory (`recorded_path`); paths outside the run directory are stored absolute. Lines printed for
the user to paste (`resume with ckpt_path=...`) stay absolute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
# Keys whose values are paths (any os.PathLike value is one too): a new key that names a file goes here.
PATH_KEYS = frozenset({"best_checkpoint", "checkpoint", "last_good_checkpoint", "lr_find/plot"})


def portable_path(output_dir: Path, value: str | os.PathLike) -> str:
    """`value` relative to `output_dir` when it lies inside it, else absolute; a relative `value` is taken
    relative to the working directory, as the code that wrote the file opened it."""
    path, root = Path(os.path.abspath(value)), Path(os.path.abspath(output_dir))
    for p, r in ((path, root), (path.resolve(), root.resolve())):  # also through a symlinked directory
        if p.is_relative_to(r):
            return p.relative_to(r).as_posix()
    return str(path)


def portable_paths(output_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """A copy of `metrics` with every path value made portable (`portable_path`)."""
    return {k: portable_path(output_dir, v) if isinstance(v, os.PathLike) or (k in PATH_KEYS and isinstance(v, str)
                                                                             and v) else v
            for k, v in metrics.items()}


def recorded_path(metrics_file: Path, value: str) -> Path:
    """A path that `metrics_file` records, resolved against its directory (an absolute one, as older
    versions wrote, as it is)."""
    return Path(os.path.abspath(Path(metrics_file).parent / value))  # `/` keeps an absolute value as it is


def resolved_paths(metrics_file: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """A copy of `metrics` (as read from `metrics_file`) with its path values absolute: what a reader
    uses, or carries into another metrics.json (write_metrics takes relative values as relative to the
    working directory)."""
    return {k: str(recorded_path(metrics_file, v)) if k in PATH_KEYS and isinstance(v, str) and v else v
            for k, v in metrics.items()}


def write_metrics(output_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write metrics.json atomically (a reader never sees a half-written file), its paths portable."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path, tmp = output_dir / METRICS_FILE, output_dir / f"{METRICS_FILE}.{os.getpid()}.tmp"  # one per process
    tmp.write_text(json.dumps(portable_paths(output_dir, metrics), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def read_metrics(path: Path) -> dict:
    """A job's metrics.json, its paths absolute (`resolved_paths`); a missing one reads as `incomplete`, one
    that is not a JSON object as `unreadable`."""
    if not path.is_file():
        return {"status": "incomplete", "error": "no metrics.json: the job was interrupted or is still running"}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {"status": "unreadable", "error": f"metrics.json cannot be read ({type(e).__name__})"}
    if not isinstance(metrics, dict):
        return {"status": "unreadable", "error": "metrics.json does not hold a JSON object"}
    return resolved_paths(path, metrics)


def trained_metrics(trainer) -> dict[str, Any]:
    """The run's last logged metrics (`group/name` keys), its progress and its best checkpoint."""
    # Imported here: rnnlab.metrics imports torch, which the rest of this module (and rnnlab.run.result,
    # imported by train.py's error path before any run) does without.
    from rnnlab.metrics import finite_or_none

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
        metrics["best_checkpoint"] = ckpt.best_model_path  # written relative to the run directory
    return metrics
