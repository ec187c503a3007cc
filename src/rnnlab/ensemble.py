"""An ensemble of language models trained apart (a multirun over seeds), scored on the held-out stream.

The ensemble's probability of a token is the mean of its members' probabilities. Each member reads
the held-out stream in order, as dynamic evaluation does, without (`ppl_stream`) or with online
adaptation (`ppl_dynamic`); every probability is computed before any member has seen that token,
so the perplexity stays an honest held-out figure.

    python train.py -m experiment=best_char_lm_ensemble trainer.accelerator=gpu
ends with `EnsembleReport`, a Hydra callback, writing <sweep dir>/ensemble.json;
`rnnlab-ensemble <sweep dir>` scores a finished multirun again (other options, or after a failure).

Members are the checkpoints inside the sweep's own job directories, wherever the sweep has been moved
or copied; a missing, truncated or unreadable one refuses the ensemble in one line naming the job and
the file, or (`rnnlab-ensemble --skip-damaged`) is left out and named in ensemble.json's `left_out`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Sequence

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from rnnlab.checkpoints import load_language_model, read_checkpoint
from rnnlab.dynamic_eval import DECAY, LR, SEGMENT_LEN, dynamic_log_probs, perplexity
from rnnlab.errors import ConfigError, require
from rnnlab.options import check_values
from rnnlab.run.build import build
from rnnlab.run.outputs import portable_path, read_metrics
from rnnlab.schema import check_node

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


@dataclass(frozen=True)
class Member:
    """A job of the multirun that ended well, and its best checkpoint inside the job's directory."""
    job: str
    checkpoint: Path


def _recorded_output_dir(job_dir: Path) -> Path | None:
    """Where Hydra ran the job (.hydra/hydra.yaml): older metrics.json files name checkpoints absolutely there."""
    try:
        value = OmegaConf.select(OmegaConf.load(job_dir / ".hydra" / "hydra.yaml"), "hydra.runtime.output_dir")
    except Exception:  # no hydra.yaml, or not YAML: nothing to rebase on
        return None
    return Path(value) if isinstance(value, str) and value else None


def job_checkpoint(job_dir: Path, value: str) -> Path | None:
    """The checkpoint `value` (metrics.json's best_checkpoint, as read_metrics resolves it) names inside
    `job_dir`, or None when it names a file outside it. A value written relative is inside; an absolute one
    (written before paths were relative) is taken from where the job ran to where its directory is now (a
    moved or copied sweep scores its own files, never those it was copied from)."""
    job_dir = Path(os.path.abspath(job_dir))
    path = Path(os.path.normpath(value))
    if not path.is_relative_to(job_dir):
        ran_in = _recorded_output_dir(job_dir)
        if ran_in is not None and path.is_relative_to(ran_in):
            path = job_dir / path.relative_to(ran_in)
    return path if path.is_relative_to(job_dir) else None


def checkpoint_damage(path: Path) -> str | None:
    """Why the member checkpoint `path` cannot be scored (missing, truncated, unreadable), or None."""
    if not path.is_file():
        return f"best_checkpoint={str(path)!r} is missing"
    try:
        read_checkpoint(path, option="best_checkpoint", mmap=True)  # the structure only: a truncated file fails here
    except ConfigError as e:
        return str(e)
    return None


def member_checkpoints(sweep_dir: Path, skip_damaged: bool = False) -> tuple[list[Member], dict[str, str]]:
    """The best checkpoint of every job of a multirun that ended well, in job order, and the jobs left out
    (`skip_damaged`) for a missing, truncated or unreadable checkpoint, with the reason. Without
    `skip_damaged` a damaged member is a ConfigError naming every damaged job and file. A job whose
    metrics.json cannot be read is left out, with a warning."""
    found, damaged = [], {}
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        job_dir = metrics_file.parent
        metrics = read_metrics(metrics_file)
        if metrics.get("status") == "unreadable":
            log.warning("ensemble: job %s left out: %s", job_dir.name, metrics["error"])
        elif metrics.get("status") != "ok":
            log.warning("ensemble: job %s left out: status %s", job_dir.name, metrics.get("status"))
        value = metrics.get("best_checkpoint")
        if metrics.get("status") != "ok" or not value:
            continue
        path = job_checkpoint(job_dir, str(value))
        problem = (f"best_checkpoint={value!r} lies outside the job's directory {str(job_dir)!r}" if path is None
                   else checkpoint_damage(path))
        if problem is None:
            found.append(Member(job_dir.name, path))
        else:
            damaged[job_dir.name] = problem
    for job_dir in sorted({p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml")} - {
            m.parent for m in sweep_dir.glob("*/metrics.json")}):  # a job killed before it recorded anything
        log.warning("ensemble: job %s left out: no metrics.json (killed, or still running)", job_dir.name)
    if damaged and not skip_damaged:
        raise ConfigError(damage_message(sweep_dir, damaged))
    return found, damaged


def damage_message(sweep_dir: Path, damaged: dict[str, str], others: bool = True) -> str:
    """One line naming every damaged job and its file, and what to do."""
    jobs = ", ".join(f"job {job}: {problem}" for job, problem in damaged.items())
    return (f"sweep_dir={str(sweep_dir)!r} has damaged members ({jobs}): retrain "
            + ("those jobs, or score the others with --skip-damaged" if others else "them"))


def write_report(sweep_dir: Path, data_cfg: DictConfig, device: str, segment_len: int = 50, lr: float = 1e-3,
                 decay: float = 0.0, skip_damaged: bool = False) -> dict:
    """Score the ensemble of a multirun's best checkpoints on the held-out stream of `data_cfg` (the
    data config the members were trained on) and write it to <sweep_dir>/ensemble.json (its paths
    relative to the sweep directory). A damaged member checkpoint refuses the ensemble, or with
    `skip_damaged` is left out and recorded under `left_out`."""
    members, left_out = member_checkpoints(sweep_dir, skip_damaged)
    if not members:
        raise ConfigError(damage_message(sweep_dir, left_out, others=False) if left_out else
                          f"sweep_dir={str(sweep_dir)!r} holds no job that ended with a best checkpoint")
    check_node(data_cfg, "data")
    datamodule = build(data_cfg, "data")
    datamodule.setup("fit")
    scored = []

    def models():
        for member in members:
            try:  # the structure was checked; damage inside the tensors shows only when they are read
                model = load_language_model(member.checkpoint, map_location=device)
            except ConfigError as e:
                problem = str(e)
                if not skip_damaged:
                    raise ConfigError(damage_message(sweep_dir, {member.job: problem})) from None
                left_out[member.job] = problem
                continue
            if list(model.vocab.idx_to_token) != list(datamodule.vocab.idx_to_token):
                raise ConfigError(f"job {member.job}: {member.checkpoint} was trained on another vocabulary than "
                                  "the data config given")
            scored.append(member)
            yield model

    result = score_ensemble(models(), datamodule.val_tokens, segment_len, lr, decay)
    result["checkpoints"] = [portable_path(sweep_dir, m.checkpoint) for m in scored]
    if left_out:
        result["left_out"] = dict(left_out)
    tmp = sweep_dir / f"ensemble.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(sweep_dir / "ensemble.json")  # whole or not at all
    return result


def summary_line(result: dict) -> str:
    left_out = "".join(f"; job {job} left out: {why}" for job, why in result.get("left_out", {}).items())
    return f"ensemble of {result['members']}: " + json.dumps(
        {k: v for k, v in result.items() if k.startswith(("ensemble/", "member/"))}) + left_out


class EnsembleReport(Callback):
    """Hydra callback: at the end of a multirun, the ensemble of its jobs' best checkpoints on the
    held-out stream of the multirun's data config; written to <sweep dir>/ensemble.json and logged."""

    def __init__(self, segment_len: Annotated[int, SEGMENT_LEN] = 50, lr: Annotated[float, LR] = 1e-3,
                 decay: Annotated[float, DECAY] = 0.0):
        # Hydra builds its callbacks itself: the options are named by their place in its config here.
        check_values(EnsembleReport, dict(segment_len=segment_len, lr=lr, decay=decay),
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


def rescore(sweep_dir: Path, device: str, segment_len: int = 50, lr: float = 1e-3, decay: float = 0.0,
            skip_damaged: bool = False) -> dict:
    """Score a finished multirun again, with the data config its first job recorded."""
    configs = sorted(sweep_dir.glob("*/.hydra/config.yaml"), key=lambda p: (len(str(p)), str(p)))
    if not configs:
        raise ConfigError(f"sweep_dir={str(sweep_dir)!r} is not a multirun directory (no <job>/.hydra/config.yaml)")
    try:
        data_cfg = OmegaConf.load(configs[0]).data  # the members share it; the vocabulary is checked per member
    except Exception as e:
        raise ConfigError(f"{configs[0]} cannot be read as a job's config ({type(e).__name__})") from None
    return write_report(sweep_dir, data_cfg, device, segment_len, lr, decay, skip_damaged)
