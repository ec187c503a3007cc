"""An ensemble of language models trained apart (a multirun over seeds), scored on the held-out stream.

The ensemble's probability of a token is the mean of its members' probabilities. Each member reads
the held-out stream in order, as dynamic evaluation does, without (`ppl_stream`) or with online
adaptation (`ppl_dynamic`); every probability is computed before any member has seen that token,
so the perplexity stays an honest held-out figure.

    python train.py -m experiment=best_char_lm_ensemble trainer.accelerator=gpu
ends with `EnsembleReport`, a Hydra callback, writing <sweep dir>/ensemble.json;
`rnnlab-ensemble <sweep dir>` scores a finished multirun again (other options, or after a failure).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Sequence

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from rnnlab.dynamic_eval import dynamic_log_probs, perplexity
from rnnlab.errors import ConfigError, require
from rnnlab.checkpoints import load_language_model
from rnnlab.run.build import build
from rnnlab.schema import check_node, check_options
from rnnlab.run.outputs import read_metrics

log = logging.getLogger(__name__)


def mixture_log_probs(member_log_probs: Sequence[Tensor]) -> Tensor:
    """log of the mean of the members' probabilities, token by token."""
    stacked = torch.stack(list(member_log_probs))
    return torch.logsumexp(stacked, 0) - math.log(stacked.shape[0])


def score_ensemble(models, tokens: Tensor, segment_len: int = 50, lr: float = 0.0, decay: float = 0.0) -> dict:
    """Perplexities of each member and of their mixture on the stream `tokens`: `ppl_stream` with the
    weights as they are and, with lr > 0, `ppl_dynamic` under dynamic evaluation. `models` may be a
    lazy iterable (one member in memory at a time)."""
    static, dynamic = [], []
    for model in models:
        static.append(dynamic_log_probs(model, tokens, segment_len, lr=0.0))
        if lr > 0:
            dynamic.append(dynamic_log_probs(model, tokens, segment_len, lr, decay))
    require(len(static) > 0, "ensemble", "needs at least one member", 0)
    result = {"members": len(static), "member/ppl_stream": [perplexity(lp) for lp in static],
              "ensemble/ppl_stream": perplexity(mixture_log_probs(static))}
    if dynamic:
        result["member/ppl_dynamic"] = [perplexity(lp) for lp in dynamic]
        result["ensemble/ppl_dynamic"] = perplexity(mixture_log_probs(dynamic))
    return result


def member_checkpoints(sweep_dir: Path) -> list[Path]:
    """The best checkpoint of every job of a multirun that ended well, in job order (a job whose
    metrics.json cannot be read is left out, with a warning)."""
    found = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        metrics = read_metrics(metrics_file)
        if metrics.get("status") == "unreadable":
            log.warning("ensemble: job %s left out: %s", metrics_file.parent.name, metrics["error"])
        if metrics.get("status") == "ok" and metrics.get("best_checkpoint"):
            found.append(Path(metrics["best_checkpoint"]))
    return found


def write_report(sweep_dir: Path, data_cfg: DictConfig, device: str, segment_len: int = 50, lr: float = 1e-3,
                 decay: float = 0.0) -> dict:
    """Score the ensemble of a multirun's best checkpoints on the held-out stream of `data_cfg` (the
    data config the members were trained on) and write it to <sweep_dir>/ensemble.json."""
    checkpoints = member_checkpoints(sweep_dir)
    if not checkpoints:
        raise ConfigError(f"sweep_dir={str(sweep_dir)!r} holds no job that ended with a best checkpoint")
    check_node(data_cfg, "data")
    datamodule = build(data_cfg, "data")
    datamodule.setup("fit")

    def members():
        for path in checkpoints:
            model = load_language_model(path, map_location=device)
            if list(model.vocab.idx_to_token) != list(datamodule.vocab.idx_to_token):
                raise ConfigError(f"{path} was trained on another vocabulary than the data config given")
            yield model

    result = score_ensemble(members(), datamodule.val_tokens, segment_len, lr, decay)
    result["checkpoints"] = [str(p) for p in checkpoints]
    (sweep_dir / "ensemble.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def summary_line(result: dict) -> str:
    return f"ensemble of {result['members']}: " + json.dumps(
        {k: v for k, v in result.items() if k.startswith(("ensemble/", "member/"))})


class EnsembleReport(Callback):
    """Hydra callback: at the end of a multirun, the ensemble of its jobs' best checkpoints on the
    held-out stream of the multirun's data config; written to <sweep dir>/ensemble.json and logged."""

    def __init__(self, segment_len: int = 50, lr: float = 1e-3, decay: float = 0.0):
        check_options("rnnlab.ensemble.EnsembleReport", dict(segment_len=segment_len, lr=lr, decay=decay),
                      name="hydra.callbacks.ensemble.{}".format)
        self.segment_len, self.lr, self.decay = segment_len, lr, decay

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        log.warning("the ensemble is scored at the end of a multirun: run with -m to train all its members; "
                    "this single run trains one")

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        gpu = torch.cuda.is_available() and config.trainer.accelerator in ("gpu", "cuda", "auto")
        try:
            result = write_report(sweep_dir, config.data, "cuda" if gpu else "cpu", self.segment_len, self.lr,
                                  self.decay)
        except ConfigError as e:
            log.error("ensemble: %s", e)
            return
        log.info(summary_line(result))
        log.info("written: %s", sweep_dir / "ensemble.json")


def rescore(sweep_dir: Path, device: str, segment_len: int = 50, lr: float = 1e-3, decay: float = 0.0) -> dict:
    """Score a finished multirun again, with the data config its first job recorded."""
    configs = sorted(sweep_dir.glob("*/.hydra/config.yaml"), key=lambda p: (len(str(p)), str(p)))
    if not configs:
        raise ConfigError(f"sweep_dir={str(sweep_dir)!r} is not a multirun directory (no <job>/.hydra/config.yaml)")
    try:
        data_cfg = OmegaConf.load(configs[0]).data  # the members share it; the vocabulary is checked per member
    except Exception as e:
        raise ConfigError(f"{configs[0]} cannot be read as a job's config ({type(e).__name__})") from None
    return write_report(sweep_dir, data_cfg, device, segment_len, lr, decay)
