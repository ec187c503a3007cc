"""`rnnlab-eval ckpt_path=<run>/checkpoints/<file>.ckpt [key=value ...]`: eval.py as an installed command
(the same Hydra config, conf/eval.yaml, and the same task)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnlab.cli.common import hydra_cli
from rnnlab.run.eval_job import main_eval

CONF = Path(__file__).resolve().parents[3] / "conf"


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return main_eval(cfg)


def cli() -> int:
    """The installed command, with the error path of every rnnlab command."""
    return hydra_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
