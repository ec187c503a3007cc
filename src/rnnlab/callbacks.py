"""Callbacks that make a run readable and safe: text samples in TensorBoard, a stop on divergence."""

from __future__ import annotations

import math
import random

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from rnnlab.dashboard.logger import log_step
from rnnlab.errors import DivergenceError


def code_block(text: str) -> str:
    """Markdown for TensorBoard's Text dashboard that shows `text` as written: a fenced code block
    keeps spaces and line breaks (plain Markdown collapses them)."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def show_trailing_whitespace(text: str) -> str:
    """Trailing spaces as `·` and trailing line breaks as `↵`: a model that generates only blanks shows
    them (in a code block they are kept, but invisible at the end of a line)."""
    body = text.rstrip(" \n")
    tail = text[len(body):]
    return body + tail.replace(" ", "·").replace("\n", "↵")


class TextSampleLogger(L.Callback):
    """Every `every_n_epochs` (after validation, and after the last epoch), continue `prefix` greedily
    (`samples/greedy`) and, with `temperature` > 0, by sampling at that temperature (`samples/sampled`),
    each logged as TensorBoard text in a code block (trailing blanks shown as `·` and `↵`)."""

    def __init__(self, prefix: str = "time traveller", num_tokens: int = 50, every_n_epochs: int = 5,
                 temperature: float = 1.0, seed: int = 0):
        self.prefix, self.num_tokens = prefix, num_tokens
        self.every_n_epochs, self.temperature, self.seed = every_n_epochs, temperature, seed
        self.last_sample: str | None = None  # the greedy continuation

    def samples(self, pl_module, epoch: int) -> dict[str, str]:
        out = {"samples/greedy": pl_module.generate(self.prefix, self.num_tokens, temperature=0.0)}
        if self.temperature > 0:
            generator = torch.Generator().manual_seed(self.seed + epoch)  # the same draws on a rerun
            out["samples/sampled"] = pl_module.generate(self.prefix, self.num_tokens, temperature=self.temperature,
                                                        generator=generator)
        return out

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        samples = self.samples(pl_module, trainer.current_epoch)
        self.last_sample = samples["samples/greedy"]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for tag, text in samples.items():
                    logger.experiment.add_text(tag, code_block(show_trailing_whitespace(text)), log_step(trainer))


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, also showing the last logged values of `logged_keys` (the training loss).

    Lightning turns every value logged with `prog_bar=True` into a Python number after every batch,
    also on the steps that logged nothing new: a host sync per training step. So the training loss
    is logged without `prog_bar`, and this bar reads it from the logged metrics only when a new value
    has arrived (on logging steps, where the logger reads it anyway).
    """

    def __init__(self, refresh_rate: int = 1, logged_keys: tuple[str, ...] = ("train/loss", "train/mse"), **kwargs):
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.logged_keys = tuple(logged_keys)
        self._last: dict[str, tuple[object, float]] = {}

    def get_metrics(self, trainer, pl_module) -> dict:
        items = super().get_metrics(trainer, pl_module)
        logged = trainer.logged_metrics
        for key in self.logged_keys:
            value = logged.get(key)
            if value is None:
                continue
            if key not in self._last or self._last[key][0] is not value:
                self._last[key] = (value, float(value))
            items[key] = self._last[key][1]
        return items


class DivergenceGuard(L.Callback):
    """Stop at a non-finite training loss instead of training on NaNs.

    Reading the loss costs a host sync, so it is checked every `every_n_steps` steps (when Lightning
    logs anyway) and on every epoch's metrics, before checkpoints are written; raising skips the
    checkpoint of the diverged epoch, so the last good checkpoint stays the newest one.
    """

    def __init__(self, every_n_steps: int = 50):
        self.every_n_steps = every_n_steps

    def _check(self, trainer, name: str, value) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise DivergenceError(
                f"training diverged: {name} is {value} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
                f"set trainer.gradient_clip_val (now {trainer.gradient_clip_val}) or lower optimizer.lr"
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # every_n_steps=0 (with trainer.log_every_n_steps=0): the epoch metrics only.
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0 and outputs is not None:
            self._check(trainer, "train/loss", outputs["loss"])

    def on_validation_end(self, trainer, pl_module) -> None:
        # Runs before ModelCheckpoint (Lightning calls checkpoint callbacks last): NaN weights are never saved.
        if not trainer.sanity_checking:
            self._check_metrics(trainer, "val/")

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check_metrics(trainer, "train/")

    def _check_metrics(self, trainer, prefix: str) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix) and not torch.isfinite(value).all():
                self._check(trainer, name, value.sum())


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C (SIGINT), save `interrupted.ckpt` beside the other checkpoints before Lightning shuts down.

    Lightning then finalizes the loggers (TensorBoard files flushed) and exits; resume with
    `ckpt_path=<run>/checkpoints/interrupted.ckpt` (or `last.ckpt`, from the last finished epoch).
    """

    def __init__(self, dirpath: str):
        self.dirpath = dirpath
        self.path: str | None = None

    def on_exception(self, trainer, pl_module, exception) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.path = f"{self.dirpath}/interrupted.ckpt"
            trainer.save_checkpoint(self.path)


class RNGStateCheckpoint(L.Callback):
    """Store the random number generators' states in every checkpoint and restore them on resume,
    so that a resumed run draws the same dropout masks as an uninterrupted one."""

    def state_dict(self) -> dict:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def early_stopping(patience: int | None = None, **kwargs) -> L.Callback | None:
    """Lightning's EarlyStopping on the monitored metric, or None (no callback) while `patience` is null,
    so the config can list it switched off: `callbacks.early_stopping.patience=5` turns it on."""
    from lightning.pytorch.callbacks import EarlyStopping

    if patience is None:
        return None
    return EarlyStopping(patience=patience, **kwargs)
