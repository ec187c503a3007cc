"""Evaluate a trained checkpoint: `python eval.py ckpt_path=<run>/checkpoints/<file>.ckpt [key=value ...]`."""

import sys

import hydra
from omegaconf import DictConfig

from rnnlab.cli.common import hydra_cli
from rnnlab.run.eval_job import main_eval


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return main_eval(cfg)


if __name__ == "__main__":
    sys.exit(hydra_cli(main))
