"""Callbacks that make a run readable and safe: text samples in TensorBoard, a stop on divergence,
checkpoints of every epoch, a clean stop on Ctrl-C or SIGTERM."""

from __future__ import annotations

import inspect
import logging
import math
import os
import random
import signal
import signal as signal_module  # SignalAtStep takes an option named `signal`
import threading
from pathlib import Path
from typing import Annotated

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities.exceptions import SIGTERMException

from rnnlab import compat
from rnnlab.checkpoint_io import wait_for_checkpoints
from rnnlab.dashboard.logger import log_step, writers
from rnnlab.errors import CheckpointWriteError, DivergenceError
from rnnlab.options import (
    DATA_PREFIX,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    SEED,
    STRING,
    TEMPERATURE,
    Rule,
    checked,
    choice,
    integer,
    nullable,
)

log = logging.getLogger(__name__)


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
    each logged as TensorBoard text in a code block (trailing blanks shown as `·` and `↵`).

    `prefix` null: the data's sample prefix (`data.sample_prefix`: "time traveller" on the book's
    corpus, the corpus's own opening on any other), which the module holds. A prefix with tokens
    outside the vocabulary is named in a warning when training starts."""

    @checked()
    def __init__(self, prefix: Annotated[str | None, DATA_PREFIX] = None,
                 num_tokens: Annotated[int, NON_NEGATIVE_INT] = 50, every_n_epochs: Annotated[int, POSITIVE_INT] = 5,
                 temperature: Annotated[float, TEMPERATURE] = 1.0, seed: Annotated[int, SEED] = 0):
        self.prefix, self.num_tokens = prefix, num_tokens
        self.every_n_epochs, self.temperature, self.seed = every_n_epochs, temperature, seed

    def prefix_for(self, pl_module) -> str:
        return self.prefix if self.prefix is not None else pl_module.sample_prefix

    def on_fit_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            pl_module.check_prefix(self.prefix_for(pl_module))  # a warning now, not at the first sample

    def samples(self, pl_module, epoch: int) -> dict[str, str]:
        prefix = self.prefix_for(pl_module)
        out = {"samples/greedy": pl_module.generate(prefix, self.num_tokens, temperature=0.0)}
        if self.temperature > 0:
            generator = torch.Generator().manual_seed(self.seed + epoch)  # the same draws on a rerun
            out["samples/sampled"] = pl_module.generate(prefix, self.num_tokens, temperature=self.temperature,
                                                        generator=generator)
        return out

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        last_epoch = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if (trainer.current_epoch + 1) % self.every_n_epochs and not last_epoch:
            return
        samples = self.samples(pl_module, trainer.current_epoch)
        for name, text in samples.items():
            for writer, tag in writers(trainer, name):
                writer.add_text(tag, code_block(show_trailing_whitespace(text)), log_step(trainer))


class ProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, also showing the last logged values of `logged_keys` (the training loss).

    Lightning turns every value logged with `prog_bar=True` into a Python number after every batch,
    also on the steps that logged nothing new: a host sync per training step. So the training loss
    is logged without `prog_bar`, and this bar reads it from the logged metrics only when a new value
    has arrived (on logging steps, where the logger reads it anyway).
    """

    @checked()
    def __init__(self, refresh_rate: Annotated[int, NON_NEGATIVE_INT] = 1,
                 logged_keys: tuple[str, ...] = ("train/loss", "train/mse"), **kwargs):
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
    """Stop a run that diverged: at a non-finite loss, and (language models) at a validation loss far
    worse than guessing, instead of training on and recording it as a result.

    Non-finite: reading the loss costs a host sync, so it is checked every `every_n_steps` steps (when
    Lightning logs anyway) and on every epoch's metrics, before checkpoints are written; raising skips
    the checkpoint of the diverged epoch, so the last good checkpoint stays the newest one.

    The bound (the language-modelling task; a module with a `vocab_size`): a validation loss above
    log(vocab_size) + `margin` nats for `patience` validations in a row. log(V) is the loss of the
    uniform distribution, what an untrained model scores; `margin` nats above it the model gives the
    true next token, on average, e^margin times less probability than guessing uniformly. The default,
    5 nats (val/ppl above 148 V: 4,150 for the book's 28 characters), stays clear of overfitting,
    which does pass log(V): the book presets overfit their 9,000 training characters for 500 epochs,
    val/loss rising from its best, 2.17-2.36, to at most 5.32 (book_gru; log 28 = 3.33, bound 8.33;
    every book_* preset measured on CPU), while a learning rate that is too large sends it to tens of
    nats from the first epoch on (experiment=book_rnn_scratch optimizer.lr=4: 18-45 nats, val/ppl up
    to 3.6e18), caught at the third validation. `patience` null or 0 turns the bound off. The run then
    stops with DivergenceError (`status: diverged`); the weights worth keeping are the best checkpoint's,
    if it scored below the bound. The forecasting task has no such bound (its non-finite check stays).
    """

    @checked()
    def __init__(self, every_n_steps: Annotated[int, integer(0, allowed="must be an integer >= 0 (0: check epoch "
                                                                   "metrics only)")] = 50,
                 patience: Annotated[int | None, nullable(integer(0, allowed="must be an integer >= 0 (validations "
                                                                  "in a row; 0: no bound)"), "no bound")] = 3,
                 margin: Annotated[float, NON_NEGATIVE] = 5.0):
        self.every_n_steps, self.patience, self.margin = every_n_steps, patience, margin
        self.above = 0  # validations in a row above the bound (kept in checkpoints: a resume counts on)

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
            self._check_bound(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check_metrics(trainer, "train/")

    def _check_metrics(self, trainer, prefix: str) -> None:
        for name, value in trainer.callback_metrics.items():
            if name.startswith(prefix) and not torch.isfinite(value).all():
                self._check(trainer, name, value.sum())

    def bound(self, pl_module) -> float | None:
        """The validation loss (nats) above which a check counts, or None (no bound for this module)."""
        vocab_size = getattr(pl_module, "vocab_size", None)
        if not self.patience or not isinstance(vocab_size, int) or vocab_size < 2:
            return None
        return math.log(vocab_size) + self.margin

    def _check_bound(self, trainer, pl_module) -> None:
        bound, loss = self.bound(pl_module), trainer.callback_metrics.get("val/loss")
        if bound is None or loss is None:
            return
        value = float(loss)  # once per validation, already reduced over processes
        self.above = self.above + 1 if value > bound else 0
        if self.above < self.patience:
            return
        raise DivergenceError(
            f"training diverged: val/loss is {value:.4g} at epoch {trainer.current_epoch}, above log(vocabulary "
            f"{pl_module.vocab_size}) + {self.margin:g} = {bound:.3g} nats (far worse than guessing uniformly) for "
            f"{self.above} validations in a row; lower optimizer.lr or set trainer.gradient_clip_val "
            f"(now {trainer.gradient_clip_val})", good_checkpoint=self._best_below(trainer, bound))

    @staticmethod
    def _best_below(trainer, bound: float) -> str:
        """The best checkpoint if it scored below the bound (its monitor a perplexity or a loss), else ""."""
        ckpt = trainer.checkpoint_callback
        if ckpt is None or not ckpt.best_model_path or ckpt.best_model_score is None:
            return ""
        score, monitor = float(ckpt.best_model_score), str(ckpt.monitor)
        if monitor.endswith("/ppl"):
            loss = math.log(score) if score > 0 else -math.inf
        elif monitor.endswith("/loss"):
            loss = score
        else:
            return ""
        return ckpt.best_model_path if loss <= bound else ""

    def state_dict(self) -> dict:
        return {"above": self.above}

    def load_state_dict(self, state_dict: dict) -> None:
        self.above = int(state_dict.get("above", 0))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
LIGHTNING_SIGNAL_LOG = compat.SIGNAL_LOG  # where Lightning's SIGTERM handler logs "Received SIGTERM: 15"


class _NameTheSignal(logging.Filter):
    """Lightning's SIGTERM handler logs "Received SIGTERM: 15" whatever arrived; while InterruptCheckpoint
    forwards a SIGINT through it, its record names the SIGINT instead."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        received = f"Received SIGTERM: {int(signal.SIGTERM)}"
        if received in message:
            signum = int(getattr(signal, self.name))
            record.msg, record.args = message.replace(received, f"Received {self.name}: {signum}"), ()
        return True


class InterruptCheckpoint(L.Callback):
    """Stop cleanly on Ctrl-C (SIGINT) or SIGTERM: save `interrupted.ckpt`, from which a resume is exact.

    The signal is deferred to the end of the training batch in progress, where weights, optimizer,
    carried state and data position agree (if it is the last batch of its epoch, the epoch finishes
    with its validation and last.ckpt, and the stop follows the next batch; after the last batch of
    the run, `pending` tells rnnlab.run.job to stop before evaluating). The stop itself is
    Lightning's SIGTERM mechanism: its handler (installed by the Trainer at fit start, which also
    passes the signal to DDP workers) is called, and Lightning raises SIGTERMException at that batch
    boundary; its log line names the signal that arrived. Lightning's SLURM requeue handler (SIGUSR1)
    is untouched. A second signal acts at once (like Lightning without this callback; the checkpoint
    is then from inside a step). Only a stop while training runs (between on_train_start and
    on_train_end) saves a checkpoint: one in setup, the learning-rate finder or the evaluation's test
    loop has no training state worth resuming. A checkpoint that cannot be written is kept in
    `save_error` (raising inside Lightning's shutdown would skip its teardown).
    rnnlab.run.job records `status: interrupted`, prints the resume hint and exits with status 1.
    """

    FILENAME = "interrupted.ckpt"

    @checked()
    def __init__(self, dirpath: Annotated[str, STRING]):
        self.dirpath = dirpath
        self.path: str | None = None
        self.signal: str | None = None  # the stop signal's name, once one arrived
        self.save_error: Exception | None = None
        self._pending: int | None = None
        self._training = False
        self._lightning_sigterm = None
        self._trainer = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._pending, self._training = None, True
        self._trainer = trainer if trainer.world_size > 1 else None  # several processes: see _stop_all_ranks
        if threading.current_thread() is not threading.main_thread():
            return
        # Lightning has installed its SIGTERM handler (Trainer._run, after on_fit_start) and restores the
        # previous handlers of every signal at teardown.
        self._lightning_sigterm = signal.getsignal(signal.SIGTERM)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if self._pending is None:
            self._pending = signum
            self.signal = signal.Signals(signum).name
            log.warning("%s received: stopping after this training batch (send it again to stop at once)", self.signal)
            return
        if self._trainer is not None:  # several processes stop together or not at all (a hang otherwise)
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop_at_lightning_boundary()

    def _stop_at_lightning_boundary(self) -> None:
        if callable(self._lightning_sigterm):
            named = _NameTheSignal(self.signal or "SIGTERM")
            lightning_log = logging.getLogger(LIGHTNING_SIGNAL_LOG)
            lightning_log.addFilter(named)
            try:
                self._lightning_sigterm(signal.SIGTERM, None)  # sets trainer.received_sigterm
            finally:
                lightning_log.removeFilter(named)
        else:
            raise SIGTERMException()

    @property
    def pending(self) -> bool:
        """A stop signal arrived and training has not stopped for it (it came after the last batch)."""
        return self._pending is not None and self.path is None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._pending is not None and batch_idx + 1 < trainer.num_training_batches:
            if trainer.world_size > 1:
                _stop_all_ranks(trainer)
            else:
                self._stop_at_lightning_boundary()

    def on_exception(self, trainer, pl_module, exception) -> None:
        if not self._training or not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        self._training = False
        if self.signal is None:
            self.signal = "SIGINT" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        if self._trainer is not None and trainer.is_global_zero and isinstance(exception, SIGTERMException):
            _release_other_ranks(trainer)
        path = f"{self.dirpath}/{self.FILENAME}"
        try:
            trainer.save_checkpoint(path, weights_only=False)  # the full training state
            wait_for_checkpoints(trainer)  # written (or failed) before the run reports where to resume
        except CheckpointWriteError as e:
            self.save_error = e
            return
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        """Training finished: an interrupted.ckpt of an earlier process (this run resumed from it) is
        superseded by last.ckpt, and resuming from it again would retrain a finished run."""
        self._training = False
        if trainer.is_global_zero and not trainer.interrupted:
            Path(self.dirpath, self.FILENAME).unlink(missing_ok=True)


def _stop_all_ranks(trainer) -> None:
    """Several processes (DDP): mark rank 0's Trainer as having received SIGTERM, without Lightning's
    handler, whose own broadcast (from inside the handler, at the end of a different batch on each rank,
    as each learns of Ctrl-C on its own) pairs with the training loop's and hangs every rank (measured:
    `trainer=ddp_cpu trainer.devices=2`, Ctrl-C, both ranks in a gloo broadcast). Rank 0 then raises
    SIGTERMException after this batch and, in on_exception, `_release_other_ranks` lets the others stop
    at the same batch (rnnlab.compat.mark_received_sigterm: the flag is private)."""
    if trainer.is_global_zero:
        compat.mark_received_sigterm(trainer)


def _release_other_ranks(trainer) -> None:
    """Rank 0 stopped alone after a batch: the other ranks, waiting for rank 0's stop flag before their
    next batch, are sent it (rnnlab.compat.release_ranks_waiting_for_sigterm: a private protocol) and
    raise SIGTERMException too; every rank saves interrupted.ckpt together (Trainer.save_checkpoint's barrier)."""
    compat.release_ranks_waiting_for_sigterm(trainer)


SIGNAL_NAME = Rule(lambda v: isinstance(v, str) and v.startswith("SIG") and hasattr(signal_module, v),
                   "give a signal name such as SIGINT or SIGTERM")


class SignalAtStep(L.Callback):
    """Fault injection for drills and tests: send `signal` (SIGINT, SIGTERM, SIGKILL, ...) to this
    process when training is about to take optimizer step `step` (`stage: train`), or when the test
    loop of the evaluation is about to score batch `step` (`stage: test`), e.g.
    `+callbacks.fault={_target_: rnnlab.callbacks.SignalAtStep, step: 120, signal: SIGTERM}`."""

    @checked()
    def __init__(self, step: Annotated[int, NON_NEGATIVE_INT], signal: Annotated[str, SIGNAL_NAME] = "SIGINT",
                 stage: Annotated[str, choice("train", "test")] = "train"):
        self.step, self.signum, self.stage = step, getattr(signal_module, signal), stage

    def _send(self, trainer, at: int) -> None:
        if at == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.stage == "train":
            self._send(trainer, trainer.global_step)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if self.stage == "test":
            self._send(trainer, batch_idx)


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


def _early_stopping_signature() -> inspect.Signature:
    """EarlyStopping's own options: rnnlab.schema checks the config's keys against them even while the
    callback is off (a misspelt `min_delta` is refused, not silently kept)."""
    from lightning.pytorch.callbacks import EarlyStopping

    params = [p for name, p in inspect.signature(EarlyStopping.__init__).parameters.items() if name != "self"]
    return inspect.Signature([p.replace(default=None) if p.name == "patience" else p for p in params])


early_stopping.__signature__ = _early_stopping_signature()
