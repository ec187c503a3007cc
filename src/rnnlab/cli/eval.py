"""`rnnlab-eval ckpt_path=<run>/checkpoints/<file>.ckpt [key=value ...]`: eval.py as an installed command
(the same Hydra config, conf/eval.yaml as shipped in the package, and the same task), from any directory."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import rnnlab.run.rundir  # noqa: F401  (registers ${unique_suffix:}, used by the run directories)
from rnnlab.cli.common import hydra_cli
from rnnlab.configs import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    # Imported here, when a run starts: --help and Hydra's tab completion need no torch or Lightning.
    from rnnlab.run.eval_job import main_eval

    return main_eval(cfg)


def cli() -> int:
    """The installed command, with the error path of every rnnlab command."""
    return hydra_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
