"""Optuna searches (hparams_search=...): rerunning a search into a stored study continues it with new trials.

The sweeper builds its sampler from `hydra.sweeper.sampler.seed` alone, so a rerun with the same
seed draws the same start-up trials again. The seed a search runs with is the configured one plus the
number of trials the stored study already holds: a rerun draws new trials, and the same command on
the same study state still draws the same ones.
"""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

log = logging.getLogger(__name__)


def stored_trials(storage: str, study_name: str) -> int:
    """How many trials the study `study_name` in `storage` holds (0: no such study yet)."""
    import optuna

    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:  # optuna's answer for a study that the storage does not hold
        return 0


class ContinueStoredStudy(Callback):
    """Hydra callback (conf/hydra/default.yaml): before the Optuna sweeper is made, its sampler's seed
    is moved on by the trials its stored study already holds."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweeper = OmegaConf.select(config, "hydra.sweeper")
        if sweeper is None or "optuna" not in str(sweeper.get("_target_", "")):
            return
        sampler = sweeper.get("sampler")
        seed = sampler.get("seed") if sampler is not None else None
        if not sweeper.get("storage") or not sweeper.get("study_name") or seed is None:
            return  # a study in memory starts afresh; no seed: the sampler draws anew anyway
        try:
            stored = stored_trials(str(sweeper.storage), str(sweeper.study_name))
        except ImportError:  # the sweeper's own error names the extra to install (rnnlab.cli.common)
            return
        if stored:
            with read_write(sampler):
                sampler.seed = int(seed) + stored
            log.info("study %s holds %d trials: continued with sampler seed %d (hydra.sweeper.sampler.seed=%d + %d)",
                     sweeper.study_name, stored, sampler.seed, seed, stored)
