"""A run's output is its own: advertisements that libraries print at every start are filtered out."""

from __future__ import annotations

import logging


class _DropAdvertisements(logging.Filter):
    """Lightning 2.6 logs "💡 Tip: ... litlogger / litmodels" at every Trainer construction and fit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip:" not in record.getMessage()


_FILTER = _DropAdvertisements()


def silence_advertisements() -> None:
    """Install the filter on the logger Lightning's rank_zero_info writes to (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def lightning_logs_to_the_run_log() -> None:
    """Lightning's own messages ("GPU available: ...", "`Trainer.fit` stopped ...") go where the run's
    log goes (Hydra's: train.log and standard output), not to standard error, which then holds only
    errors: a user's mistake stays one line there. Lightning attaches a stderr handler to its package
    loggers (and to `lightning`) and stops propagation; this undoes both (idempotent)."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) is not None \
                    and getattr(handler.stream, "name", "") == "<stderr>":
                logger.removeHandler(handler)
        logger.propagate = True
