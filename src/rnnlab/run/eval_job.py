"""The task behind `eval.py` / `rnnlab-eval`: score a trained checkpoint on its data's held-out stream
and test split, with the data options of the run that trained it, and write the scores to metrics.json
in the evaluation's own run directory. A user's mistake is one line and exit status 2 and writes
nothing (the run directory guard, rnnlab.run.rundir, then removes the directory Hydra made). The end
of either goes through rnnlab.run.result.finish, as a training run's does."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from rnnlab.callbacks import code_block, show_trailing_whitespace
from rnnlab.checkpoints import read_checkpoint
from rnnlab.dashboard.hparams import flat_settings
from rnnlab.dashboard.logger import RunLogger, checkpoint_step
from rnnlab.dashboard.run_label import evaluated_label
from rnnlab.errors import ConfigError, error_line
from rnnlab.metrics import finite_or_none
from rnnlab.run.build import build, build_group, build_trainer
from rnnlab.run.quiet import lightning_logs_to_the_run_log, silence_advertisements
from rnnlab.run.result import RunResult, finish
from rnnlab.schema import validate_eval

log = logging.getLogger(__name__)
silence_advertisements()


def training_config(ckpt_path: Path, run_config: str | None) -> DictConfig:
    """The composed config of the run that wrote the checkpoint (<run>/checkpoints/x.ckpt -> <run>/.hydra)."""
    path = Path(run_config) if run_config else ckpt_path.resolve().parent.parent / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"run_config={str(path)!r} is not a file: the checkpoint's run directory has no "
                          ".hydra/config.yaml; give run_config=<training run>/.hydra/config.yaml")
    try:
        run_cfg = OmegaConf.load(path)
    except Exception as e:  # not YAML, not text
        raise ConfigError(f"run_config={str(path)!r} cannot be read as YAML ({type(e).__name__}): give "
                          "<training run>/.hydra/config.yaml") from None
    if not isinstance(run_cfg, DictConfig) or not isinstance(run_cfg.get("data"), DictConfig):
        raise ConfigError(f"run_config={str(path)!r} is not a training run's config (it has no data section): "
                          "give <training run>/.hydra/config.yaml")
    return run_cfg


def _scores(results: list[dict[str, float]]) -> dict[str, Any]:
    return {k: finite_or_none(v) for r in results for k, v in r.items()}


def with_bits_per_char(metrics: dict[str, Any], token: str) -> dict[str, Any]:
    """For character models, `<split>/bpc` = loss in nats / ln 2 (bits per character)."""
    if token == "char":
        for split in ("val", "test"):
            if metrics.get(f"{split}/loss") is not None:
                metrics[f"{split}/bpc"] = metrics[f"{split}/loss"] / math.log(2)
    return metrics


def data_option(data_cfg: DictConfig) -> str:
    """How the evaluated data was named: `data.path=...`, else `data.bundled=...`, else the data set."""
    for key in ("path", "bundled"):
        if data_cfg.get(key) is not None:
            return f"data.{key}={str(data_cfg[key])!r}"
    return f"data._target_={data_cfg.get('_target_')}"


def check_columns(module: Any, datamodule: Any, data_cfg: DictConfig) -> None:
    """A forecaster reads and predicts the columns it was trained on, in that order (its spec): data with
    other columns is refused in one line naming the missing and extra ones, before anything is scored."""
    from rnnlab.data.base import SeriesData
    from rnnlab.models.forecast_model import ForecastModel

    if not isinstance(module, ForecastModel) or not isinstance(datamodule, SeriesData):
        return
    trained = module.spec.columns
    have, want = list(datamodule.spec().columns), list(trained)
    if have == want:
        return
    missing, extra = [c for c in want if c not in have], [c for c in have if c not in want]
    differ = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in (("missing", missing), ("extra", extra)) if cols)
    fix = "give a file with those columns" if missing else f"choose them with +data.columns=[{','.join(want)}]"
    raise ConfigError(f"{data_option(data_cfg)} is invalid: the checkpoint was trained on the columns "
                      f"{', '.join(want)}, this data has {', '.join(have)} ({differ or 'in another order'}): {fix}")


def objective(run_cfg: DictConfig) -> str | None:
    """The metric the training run optimised (its `optimized_metric`, else `task.monitor`): the value an
    evaluation returns to a sweeper."""
    for key in ("optimized_metric", "task.monitor"):
        value = OmegaConf.select(run_cfg, key, default=None, throw_on_resolution_failure=False)
        if isinstance(value, str):
            return value
    return None


def evaluate_checkpoint(cfg: DictConfig) -> RunResult:
    """Score the checkpoint: its metrics as a result, valued by what its training run optimised."""
    try:
        ckpt_path = Path(cfg.ckpt_path)
    except MissingMandatoryValue:
        raise ConfigError("ckpt_path is required: python eval.py ckpt_path=<run>/checkpoints/last.ckpt") from None
    read_checkpoint(ckpt_path)  # a missing or unreadable file: one line
    run_cfg = training_config(ckpt_path, cfg.get("run_config"))
    data_cfg = OmegaConf.merge(run_cfg.data, cfg.get("data") or {})
    OmegaConf.set_struct(run_cfg, False)
    run_cfg.data = data_cfg  # resolved within the training config (data.seed: ${seed})
    data_cfg = run_cfg.data
    task = str(OmegaConf.select(run_cfg, "task.name", default="lm"))
    validate_eval(cfg, run_cfg)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module_cls = get_class(run_cfg.module._target_)
    module = module_cls.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    trained = module.spec.columns if task == "forecast" else None
    try:
        datamodule = build(data_cfg, "data")
    except ConfigError as e:  # e.g. an extra column of the file is constant: say which columns to choose
        if trained is None or data_cfg.get("columns") is not None:
            raise
        raise ConfigError(f"{e}; the checkpoint was trained on the columns {', '.join(trained)}: "
                          f"evaluate them with +data.columns=[{','.join(trained)}]") from None
    datamodule.setup("fit")
    if task == "lm" and list(module.vocab.idx_to_token) != datamodule.module_kwargs()["vocab"]:
        raise ConfigError(f"ckpt_path={str(ckpt_path)!r} was trained on another vocabulary than this data's: "
                          "evaluate with the training run's data options")
    check_columns(module, datamodule, data_cfg)
    loggers = list(build_group(evaluation_loggers(cfg.get("logger"), ckpt_path), "logger").values())
    trainer = build_trainer(cfg.trainer, logger=loggers, callbacks=[])
    for logger in loggers:
        if isinstance(logger, RunLogger):  # before Lightning logs the module's own hyperparameters
            logger.log_hyperparams(flat_settings(run_cfg, keep_null=True))

    start = time.perf_counter()
    metrics: dict[str, Any] = {"status": "ok", "task": task, "checkpoint": str(ckpt_path)}
    metrics.update(_scores(trainer.validate(module, datamodule=datamodule, verbose=False)))
    if datamodule.has_test_split:
        metrics.update(_scores(trainer.test(module, datamodule=datamodule, verbose=False)))
    logged = set(metrics)  # the validate and test loops have logged these already
    if task == "lm":
        with_bits_per_char(metrics, module.token)
        # The training run's prefix: its text samples' own, else its data's (kept in the checkpoint).
        prefix = cfg.prefix or OmegaConf.select(run_cfg, "callbacks.text_sample.prefix", default=None) \
            or module.sample_prefix
        module.to(trainer.strategy.root_device)
        metrics["sample/greedy"] = module.generate(prefix, cfg.num_tokens, temperature=0.0)
        metrics["sample/sampled"] = module.generate(prefix, cfg.num_tokens, temperature=cfg.temperature,
                                                    generator=torch.Generator().manual_seed(cfg.seed))
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in metrics.items() if "/" in k and isinstance(v, float) and k not in logged})
        if isinstance(logger, RunLogger):
            log_evaluation(logger, metrics)
        else:
            logger.finalize("success")
    return RunResult("ok", metrics, value=metrics.get(objective(run_cfg)))


def evaluation_loggers(logger_cfg: DictConfig | None, ckpt_path: Path) -> DictConfig | None:
    """The logger group, with eval.py's TensorBoard run attached to the evaluated run: named by its
    directory's name and label, `<dir name>/<label>/eval` in this evaluation's own directory (never the
    training run's; rnnlab.dashboard.run_label.evaluated_label), scores at the checkpoint's step
    (rnnlab.dashboard.logger.RunLogger)."""
    if not logger_cfg:
        return logger_cfg
    logger_cfg = OmegaConf.create(OmegaConf.to_container(logger_cfg, resolve=True))
    for node in logger_cfg.values():
        if isinstance(node, DictConfig) and node.get("_target_") == f"{RunLogger.__module__}.RunLogger":
            node.name = evaluated_label(ckpt_path)
            node.checkpoint = str(ckpt_path)
            step = checkpoint_step(ckpt_path)  # Lightning logs an epoch's scores at its last batch, step - 1
            node.step = max(step - 1, 0) if step is not None else None
    return logger_cfg


def log_evaluation(logger: RunLogger, metrics: dict[str, Any]) -> None:
    """The checkpoint's name and the samples as text in the eval run, then its one close (the HParams
    session, the training run's settings and `eval/checkpoint`, was written before scoring)."""
    if rank_zero_only.rank == 0:
        step = logger.fixed_step or 0
        logger.eval_writer.add_text("eval/checkpoint", f"`{logger.checkpoint}` (step {step})", step)
        for key in ("sample/greedy", "sample/sampled"):
            if key in metrics:
                logger.eval_writer.add_text(key.replace("sample/", "samples/"),
                                            code_block(show_trailing_whitespace(metrics[key])), step)
    logger.close("success")


def score_notes(metrics: dict[str, Any], output_dir: Path) -> list[str]:
    """The evaluation's summary in the log: the scores, the samples, the run directory."""
    scores = {k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))}
    notes = [f"scores: {json.dumps(scores)}"]
    notes += [f"{key}: {metrics[key]}" for key in ("sample/greedy", "sample/sampled") if key in metrics]
    return [*notes, f"run directory: {output_dir}"]


def run_evaluation(cfg: DictConfig) -> RunResult:
    """The evaluation, ended whichever way it ends: its scores, or a user's mistake, which records nothing
    (an evaluation that scored nothing has no result to keep, unlike a training run)."""
    try:
        result = evaluate_checkpoint(cfg)
    except ConfigError as e:
        return RunResult("config_error", {"status": "config_error", "error": str(e)}, write=False, line=error_line(e))
    result.notes = score_notes(result.metrics, Path(cfg.paths.output_dir))
    return result


def main_eval(cfg: DictConfig) -> float | None:
    """Hydra task of eval.py: metrics.json with the scores; a user's mistake is one line, exit status 2,
    and writes nothing (rnnlab.run.result.finish)."""
    lightning_logs_to_the_run_log()
    if cfg.get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg))
    return finish(run_evaluation(cfg), Path(cfg.paths.output_dir), log)
