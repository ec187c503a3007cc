"""Checks of a resume checkpoint (`ckpt_path`) before training starts, each failing in one line.

- `ckpt_path=last` names this run directory's last.ckpt, which must exist;
- the file must be a readable checkpoint of the current format (rnnlab.checkpoints); a truncated or
  corrupt last.ckpt is reported with the best checkpoint as the alternative;
- it must hold this model's weights (parameter names and shapes) and, for a language model, the
  same vocabulary in the same order as the data (the weights mean nothing for other indices);
- a checkpoint at trainer.max_epochs or max_steps has nothing to train: in its own finished run
  (metrics.json `status: ok`) `FinishedRun` says so, nothing changes and train.py exits 0; in a run
  interrupted after its training (during evaluation or the final writes) the resume runs the
  evaluation, with the training's metrics that run recorded; anywhere else (another directory) it is
  refused in one line, so no run records a result of training that did not happen.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L

from rnnlab.callbacks import InterruptCheckpoint
from rnnlab.checkpoints import check_format, read_checkpoint
from rnnlab.errors import ConfigError
from rnnlab.run.interrupts import AFTER_TRAINING
from rnnlab.run.outputs import METRICS_FILE, resolved_paths

log = logging.getLogger(__name__)

# What an interruption's record holds besides the training's metrics.
_INTERRUPTION_KEYS = ("status", "phase", "signal", "checkpoint", "error")


class FinishedRun(Exception):
    """The checkpoint to resume is the end of a finished run: nothing to train, nothing to change."""

    def __init__(self, message: str, metrics: dict):
        super().__init__(message)
        self.metrics = metrics


@dataclass
class ResumePoint:
    """Where Trainer.fit starts: `path` (None: from scratch); `trained`, when not empty, the metrics of a
    training that completed before its run was interrupted (fit then restores the state, trains nothing,
    and the evaluation follows)."""

    path: str | None = None
    trained: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir(trainer: L.Trainer, output_dir: Path) -> Path:
    callback = trainer.checkpoint_callback
    return Path(callback.dirpath) if callback is not None and callback.dirpath else output_dir / "checkpoints"


def best_alternative(directory: Path, broken: Path) -> Path | None:
    """The newest other readable checkpoint in `directory` (the best one, with save_top_k: 1), if any."""
    for p in sorted(directory.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True):
        if p.name in (broken.name, "interrupted.ckpt"):
            continue
        try:
            read_checkpoint(p, mmap=True)
        except ConfigError:
            continue
        return p
    return None


def resolve_checkpoint(ckpt_path: str | None, directory: Path) -> Path | None:
    """The file `ckpt_path` names (`last`: this run's newest of last.ckpt and interrupted.ckpt), which must exist."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        path, interrupted = directory / "last.ckpt", directory / InterruptCheckpoint.FILENAME
        if interrupted.is_file() and (not path.is_file() or interrupted.stat().st_mtime_ns > path.stat().st_mtime_ns):
            # Saved at a stop after the last finished epoch: resuming from last.ckpt would lose the batches
            # between them (and the resumed run removes interrupted.ckpt when it finishes).
            log.info("ckpt_path=last: resuming from %s, saved when the run was stopped (newer than last.ckpt)",
                     interrupted)
            return interrupted
        if not path.is_file():
            raise ConfigError(f"ckpt_path=last but {path} does not exist: this run directory has no checkpoint to "
                              "resume; give a checkpoint's path, or leave ckpt_path out to train from scratch")
        return path
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={ckpt_path!r} is not a file: give a checkpoint path, last, or null")
    return path


def vocabulary_difference(saved: list, wanted: list) -> str | None:
    """How two vocabularies (index -> token lists) differ, in words, or None when they are equal."""
    if saved == wanted:
        return None
    only_saved, only_wanted = sorted(set(saved) - set(wanted)), sorted(set(wanted) - set(saved))
    if only_saved or only_wanted:
        parts = []
        if only_saved:
            parts.append(f"{len(only_saved)} tokens only in the checkpoint (e.g. {only_saved[0]!r})")
        if only_wanted:
            parts.append(f"{len(only_wanted)} only in the data (e.g. {only_wanted[0]!r})")
        return " and ".join(parts)
    i = next(i for i, (a, b) in enumerate(zip(saved, wanted)) if a != b)
    return f"the same {len(saved)} tokens in another order (index {i} is {saved[i]!r} there, {wanted[i]!r} here)"


def check_checkpoint(ckpt_path: str | None, module: L.LightningModule, trainer: L.Trainer,
                     output_dir: Path) -> ResumePoint:
    """Validate the resume checkpoint; returns where Trainer.fit starts."""
    directory = checkpoint_dir(trainer, output_dir)
    path = resolve_checkpoint(ckpt_path, directory)
    if path is None:
        return ResumePoint()
    option = f"ckpt_path={ckpt_path}" if ckpt_path == "last" else "ckpt_path"
    try:
        # mmap: only the tensors' metadata is read here; Lightning loads the weights once, in fit.
        ckpt = read_checkpoint(path, option="ckpt_path", mmap=True)
    except ConfigError as e:
        if ckpt_path != "last" or "format 1" in str(e):
            raise
        best = best_alternative(directory, path)
        alternative = (f"resume from the best checkpoint instead: ckpt_path={best}" if best else
                       f"no other checkpoint in {directory}: leave ckpt_path out to train from scratch")
        raise ConfigError(f"{option}: {path} is truncated or corrupt; {alternative}") from None
    check_format(ckpt, path, "ckpt_path")
    saved = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
    wanted = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if saved != wanted:
        diff = sorted(set(saved) ^ set(wanted)) or sorted(k for k in wanted if saved[k] != wanted[k])
        raise ConfigError(f"ckpt_path={str(path)!r} holds another model's weights (differs in {diff[0]}, ...): "
                          "resume with the model, data and options it was trained with")
    saved_vocab, wanted_vocab = ckpt.get("hyper_parameters", {}).get("vocab"), module.hparams.get("vocab")
    if saved_vocab is not None and wanted_vocab is not None:
        difference = vocabulary_difference(list(saved_vocab), list(wanted_vocab))
        if difference:
            raise ConfigError(f"ckpt_path={str(path)!r} was trained on another vocabulary than the data's: "
                              f"{difference}; resume with the data (data.path, data.token, data.min_freq, "
                              "data.max_tokens) it was trained on")
    option = f"ckpt_path={ckpt_path}" if ckpt_path == "last" else f"ckpt_path={str(path)!r}"
    return ResumePoint(str(path), check_not_finished(ckpt, option, trainer, output_dir))


def reached_limit(ckpt: dict, trainer: L.Trainer) -> tuple[str, int, int] | None:
    """(the Trainer's limit option, its value, the checkpoint's count) when the checkpoint has reached
    trainer.max_epochs or max_steps (fit would train nothing), else None."""
    epochs = ckpt.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {}).get("processed")
    epochs = ckpt.get("epoch", -1) + 1 if epochs is None else epochs
    step, max_epochs, max_steps = ckpt.get("global_step", 0), trainer.max_epochs, trainer.max_steps
    if max_epochs is not None and max_epochs >= 0 and epochs >= max_epochs:
        return "max_epochs", max_epochs, epochs
    if max_steps is not None and max_steps > 0 and step >= max_steps:
        return "max_steps", max_steps, step
    return None


def read_run_metrics(output_dir: Path) -> dict:
    """The run directory's metrics.json ({} when there is none, or it is not a JSON object), its paths
    absolute: what it carries into the next metrics.json stays right wherever that is written."""
    try:
        metrics = json.loads((output_dir / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return resolved_paths(output_dir / METRICS_FILE, metrics) if isinstance(metrics, dict) else {}


def check_not_finished(ckpt: dict, option: str, trainer: L.Trainer, output_dir: Path) -> dict[str, Any]:
    """A checkpoint at the Trainer's limit: FinishedRun in its own finished run (left as it is); the
    training's metrics when its run was interrupted after training (the evaluation is what remains);
    refused anywhere else. Returns {} for a checkpoint with training left to do."""
    reached = reached_limit(ckpt, trainer)
    if reached is None:
        return {}
    limit, value, count = reached
    metrics = read_run_metrics(output_dir)
    if metrics.get("status") == "ok":
        unit = "epoch" if limit == "max_epochs" else "step"
        raise FinishedRun(f"{output_dir} is a finished run ({unit} {count} of trainer.{limit}={value}, {METRICS_FILE} "
                          f"status ok): nothing to resume, nothing changed; raise trainer.{limit} to train it further",
                          metrics)
    if metrics.get("status") == "interrupted" and metrics.get("phase") in AFTER_TRAINING:
        return {k: v for k, v in metrics.items() if k not in _INTERRUPTION_KEYS}
    unit = "epoch" if limit == "max_epochs" else "step"
    raise ConfigError(f"{option} is invalid: the checkpoint is at the end of its training ({unit} {count}, "
                      f"trainer.{limit}={value}): nothing to train; give trainer.{limit} > {count} to train further")
