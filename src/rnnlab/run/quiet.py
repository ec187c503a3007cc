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
