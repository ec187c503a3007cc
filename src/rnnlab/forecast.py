"""Forecasting after training: the next N rows of a CSV file from a trained regressor's checkpoint.

The checkpoint carries what reading the file needs (columns, time columns and format, the
missing-value policy) and the transform fitted on the training part (mean, std, differences),
so the new file is read and scaled exactly as the training file was, never re-fitted.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from rnnlab.data.table import next_times, read_table
from rnnlab.errors import ConfigError, require, require_positive_int
from rnnlab.models.regressor import SequenceRegressor


def load_regressor(ckpt: str | Path) -> SequenceRegressor:
    """A trained regressor on the CPU, in evaluation mode (trusted checkpoints: they store the model factory)."""
    require(Path(ckpt).is_file(), "ckpt", "no such file: give a checkpoint of task=forecast", str(ckpt))
    try:
        module = SequenceRegressor.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    except Exception as e:  # not a checkpoint of this module
        raise ConfigError(f"ckpt={str(ckpt)!r} is invalid: not a task=forecast checkpoint "
                          f"({type(e).__name__})") from None
    return module.eval()


def forecast_csv(module: SequenceRegressor, csv: str | Path, steps: int) -> pd.DataFrame:
    """The `steps` rows after the last row of `csv`, every input column in original units, dated when
    the file has a time column."""
    require_positive_int("--steps", steps)
    require(Path(csv).is_file(), "--csv", "no such file: give the CSV file of the series so far", str(csv))
    read = module.spec.read
    table = read_table(csv, read.get("columns"), None, read.get("time_column"), read.get("time_format"),
                       read.get("missing", "error"))
    need = module.min_origin() + 1
    require(len(table.values) >= need, "--csv", f"needs at least {need} rows (the model reads that many)", str(csv))
    levels = torch.tensor(table.values, dtype=torch.float32)
    pred = module.forecast_levels(levels, torch.tensor([len(levels) - 1]), steps)[0]
    frame = pd.DataFrame(pred.numpy(), columns=module.spec.columns)
    if table.time_frame is None:
        return frame
    dates = next_times(table.time_frame, read["time_column"], read.get("time_format"), steps)
    return pd.concat([dates, frame], axis=1)
