"""The one interrupt path of a run: Ctrl-C (SIGINT) or SIGTERM ends any phase of it cleanly.

The job (rnnlab.run.job) names each phase as it enters it (`Phases.enter`). While the job runs,
`Phases` handles SIGINT and SIGTERM in the main thread. In training a batch boundary is worth
waiting for: rnnlab.callbacks.InterruptCheckpoint takes the signal there and saves interrupted.ckpt.
In every other phase nothing is worth finishing, so the signal stops the run where it is: the handler
raises `Interrupted`. Lightning turns a KeyboardInterrupt inside fit, test or the learning-rate
finder into its own shutdown and SystemExit(1); `Phases.enter` turns that back into `Interrupted`.
rnnlab.run.result.finish records it (metrics.json `status: interrupted`, the phase, the checkpoint
to resume from), prints one line and exits with status 1.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The phases of a run, in order; what a stop in each leaves is decided by rnnlab.run.job.
BEFORE_TRAINING = ("config check", "data build", "checkpoint check", "LR finder")
TRAINING = "training"
AFTER_TRAINING = ("evaluation", "final writes")  # training is complete: last.ckpt is the resume point


class Interrupted(KeyboardInterrupt):
    """A stop signal ended the run in `phase`. `checkpoint`: the resume point when the phase knows it
    (training: interrupted.ckpt); `progress`: what the phase knows of the training's progress."""

    def __init__(self, signal_name: str, phase: str, checkpoint: str | None = None,
                 progress: dict[str, Any] | None = None):
        super().__init__(f"{signal_name} during {phase}")
        self.signal, self.phase, self.checkpoint = signal_name, phase, checkpoint
        self.progress = dict(progress or {})


class Phases:
    """The phase a run is in, and the stop signals' handler while the job runs (a context manager).

    The handler raises `Interrupted` where the program is, except in training when it is called
    through another handler: Lightning's SIGTERM handler (installed for each fit and test) calls
    the one it found, this one, after it has set the Trainer's stop at the next batch boundary, and
    InterruptCheckpoint calls Lightning's to stop there; the training loop then owns the stop.
    Outside the main thread (where Python allows no handler) it only tracks the phase."""

    def __init__(self) -> None:
        self.current = "config check"
        self.signal: str | None = None  # the first stop signal that reached this handler
        self._previous: dict[int, Any] = {}
        self._handler = self._on_signal  # one bound method: compared by identity below

    def __enter__(self) -> Phases:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        self.signal = self.signal or name
        if self.current == TRAINING and signal.getsignal(signum) is not self._handler:
            return  # called by Lightning's handler: the training loop stops at its next batch boundary
        raise Interrupted(name, self.current)

    def ignore_signals(self) -> None:
        """While the interruption is recorded (or the finished run reported): a second Ctrl-C would
        leave a traceback and half the record. __exit__ restores the handlers found at the start."""
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    @contextmanager
    def enter(self, phase: str) -> Iterator[None]:
        """Run a phase; Lightning's exit after a stop signal (SystemExit(1), SIGTERMException) becomes
        `Interrupted` in that phase. Other exits and errors pass unchanged."""
        self.current = phase
        try:
            yield
        except Interrupted:
            raise
        except (KeyboardInterrupt, SystemExit):
            if self.signal is None:
                raise
            raise Interrupted(self.signal, phase) from None

    def stop_if(self, signal_name: str | None) -> None:
        """A stop signal that arrived where nothing acted on it (after the last training batch) stops now."""
        if signal_name:
            self.signal = self.signal or signal_name
            raise Interrupted(signal_name, self.current)
