"""Evaluate a trained checkpoint: `python eval.py ckpt_path=<run>/checkpoints/<file>.ckpt [key=value ...]`."""

import sys

import hydra
from omegaconf import DictConfig

import rnnlab.run.rundir  # noqa: F401  (registers ${unique_suffix:}, used by the run directories)
from rnnlab.cli.common import hydra_cli


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    # Imported here, when a run starts: --help, --cfg and Hydra's tab completion need no torch or Lightning.
    from rnnlab.run.eval_job import main_eval

    return main_eval(cfg)


if __name__ == "__main__":
    sys.exit(hydra_cli(main))
