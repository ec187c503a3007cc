"""Train a recurrent model: `python train.py [group=option ...] [key=value ...]`, `-m` for sweeps."""

import os
import sys

import hydra
from omegaconf import DictConfig

import rnnlab.run.rundir  # noqa: F401  (registers ${unique_suffix:}, used by the run directories)
from rnnlab.cli.common import run
from rnnlab.run.job import main_task


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return main_task(cfg)


def cli() -> int:
    """The command line, with the error path of every rnnlab command: Hydra's own errors (a bad
    override, an unknown group option) end with one line and exit status 2 as well. With
    HYDRA_FULL_ERROR=1 set by the user, Hydra's full traces instead."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return 0
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them; run() prints one line
    return run(lambda: main() and 0)


if __name__ == "__main__":
    sys.exit(cli())
