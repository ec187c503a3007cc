"""The name a run shows in TensorBoard: what differs, e.g. `model=gru hidden_size=128` in job 3 of a
sweep (TensorBoard lists it as `3/model=gru hidden_size=128` under the sweep directory).

Registered as the OmegaConf resolver `${run_label:}` (conf/logger/tensorboard.yaml). In a sweep the
label holds the swept settings only (the sweeper's `params`, e.g. Optuna's sampled values, and the
command line's sweep overrides such as `model=rnn,gru`, read from the sweep's multirun.yaml); in a
single run, its command-line overrides; `defaults` when there are none. A resumed or extended run keeps
the label its directory has; eval.py takes the evaluated run's, after its directory's name.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

# Overrides that say where or how a run executes, not what it trains.
PLUMBING = ("paths.", "hydra.", "print_config", "ckpt_path", "trainer.accelerator", "trainer.devices",
            "trainer.strategy", "trainer.enable_progress_bar", "trainer.enable_model_summary",
            "trainer.log_every_n_steps", "trainer.num_sanity_val_steps", "callbacks", "evaluation", "logger",
            "data.val_batch_size", "launcher", "hparams_search")
MAX_VALUE, MAX_LABEL = 24, 96


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def short_item(override: str) -> str:
    """`model.hidden_size=128` -> `hidden_size=128`; a path value by its file name; path-safe characters."""
    key, _, value = override.partition("=")
    key = _key(key)
    short = key if "." not in key else key.rsplit(".", 1)[1]
    if "/" in value or "\\" in value:
        value = re.split(r"[/\\]", value.rstrip("/\\"))[-1]
    value = re.sub(r"[^\w.,+-]", "_", value)[:MAX_VALUE]
    return f"{short}={value}"


def label_from_overrides(overrides: list[str], swept: set[str] | None = None) -> str:
    """The label from a job's overrides, keeping only `swept` keys when they are known."""
    items = [o for o in overrides if "=" in o and not _key(o).startswith(PLUMBING)
             and (swept is None or _key(o) in swept)]
    label = " ".join(short_item(o) for o in items)[:MAX_LABEL].strip()
    return label or "defaults"


def swept_keys(hydra_cfg) -> set[str] | None:
    """Keys a multirun varies: the sweeper's `params` and the sweep overrides of the command line."""
    keys = set((OmegaConf.select(hydra_cfg, "sweeper.params") or {}).keys())
    multirun = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    if multirun.is_file():  # written by Hydra's basic sweeper before it launches the jobs
        from hydra.core.override_parser.overrides_parser import OverridesParser

        task = OmegaConf.load(multirun).hydra.overrides.task
        parsed = OverridesParser.create().parse_overrides([str(o) for o in task])
        keys |= {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
    return keys or None


def evaluated_label(ckpt_path: str | Path) -> str:
    """eval.py's label: the evaluated run's directory name and label (`<dir>/checkpoints/x.ckpt` ->
    `<dir name>/<label>`, `defaults` for a run without TensorBoard runs).

    Why the directory's name: TensorBoard names a run by its path under the logdir, so in
    `tensorboard --logdir outputs` the evaluated run is `runs/<time>/<label>/val` and the evaluation
    `eval/<time>/<dir name>/<label>/eval`; the colour link's regex (COLOR_GROUP) takes the two parts
    before the last, one colour for both. The label alone would give every `defaults` run one colour."""
    from rnnlab.dashboard.logger import existing_label

    run_dir = Path(ckpt_path).resolve().parent.parent
    return f"{run_dir.name}/{existing_label(run_dir) or 'defaults'}"


# TensorBoard's `runColorGroup` for one colour per job (docs/dashboard.md's link): the run's directory
# name (optional) and label before the last part (`train`, `val`, eval.py's `eval`); the match is
# TensorBoard's JavaScript `name.match(new RegExp(...))`, the first match from the left. No `+`: in a
# URL's query it reads as a space.
COLOR_GROUP = r"((?:[^/]*/)?[^/]*)/(?:train|val|eval)$"
LINK = f"http://localhost:6006/?smoothing=0&runColorGroup=regex:{COLOR_GROUP}#timeseries"


def run_label() -> str:
    """The label of this Hydra job: a run directory that already holds TensorBoard runs keeps their
    label (a resumed or extended run stays one run, whatever its new overrides); eval.py takes the
    evaluated run's label."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from rnnlab.dashboard.logger import existing_label

    if not HydraConfig.initialized():
        return "defaults"
    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    if hc.job.config_name == "eval":
        ckpt = next((o.split("=", 1)[1] for o in overrides if _key(o) == "ckpt_path"), None)
        return evaluated_label(ckpt) if ckpt else "defaults"
    existing = existing_label(hc.runtime.output_dir) if hc.runtime.output_dir else None
    if existing:
        return existing
    swept = swept_keys(hc) if hc.mode == RunMode.MULTIRUN else None
    return label_from_overrides(overrides, swept)


if not OmegaConf.has_resolver("run_label"):
    OmegaConf.register_new_resolver("run_label", run_label)
