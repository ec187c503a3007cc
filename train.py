"""Train a recurrent model: `python train.py [group=option ...] [key=value ...]`, `-m` for sweeps."""

import sys

import hydra
from omegaconf import DictConfig

import rnnlab.run.rundir  # noqa: F401  (registers ${unique_suffix:}, used by the run directories)
from rnnlab.cli.common import hydra_cli


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here, when a run starts: --help, --cfg and Hydra's tab completion need no torch or Lightning.
    from rnnlab.run.job import main_task

    return main_task(cfg)


def cli() -> int:
    """The command line, with the error path of every rnnlab command (rnnlab.cli.common.hydra_cli)."""
    return hydra_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
