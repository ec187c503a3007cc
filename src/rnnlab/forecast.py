"""Forecasting after training: the next N rows of a CSV file from a trained forecast module's checkpoint.

The checkpoint carries what reading the file needs (columns, time columns and format, the
missing-value policy, the separator; sniffed for checkpoints older than that) and the transform
fitted on the training part (mean, std, differences), so the new file is read and scaled exactly
as the training file was, never re-fitted. At most as many rows are forecast as the file holds: a
forecast no longer than the history it starts from, and a bound on the time and memory it takes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from rnnlab.checkpoints import format_one_error, pickles_objects
from rnnlab.data.table import next_times, read_table
from rnnlab.errors import ConfigError, require
from rnnlab.models.forecast_model import ForecastModel
from rnnlab.options import POSITIVE_INT


def load_forecast_model(ckpt: str | Path) -> ForecastModel:
    """A trained forecast module on the CPU, in evaluation mode (checkpoints are plain data, read with weights_only)."""
    require(Path(ckpt).is_file(), "ckpt", "no such file: give a checkpoint of task=forecast", str(ckpt))
    try:
        module = ForecastModel.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # not a checkpoint of this module
        if pickles_objects(Path(ckpt), e):
            raise format_one_error(Path(ckpt), "ckpt") from None
        raise ConfigError(f"ckpt={str(ckpt)!r} is invalid: not a task=forecast checkpoint "
                          f"({type(e).__name__})") from None
    return module.eval()


def forecast_csv(module: ForecastModel, csv: str | Path, steps: int) -> pd.DataFrame:
    """The `steps` rows after the last row of `csv`, every input column in original units with its
    prediction interval (`<column>_lower`, `<column>_upper`, at the coverage `module.interval` the
    checkpoint was calibrated for on its validation part), dated when the file has a time column."""
    POSITIVE_INT("--steps", steps)
    require(Path(csv).is_file(), "--csv", "no such file: give the CSV file of the series so far", str(csv))
    read = module.spec.read
    table = read_table(csv, read.get("columns"), None, read.get("time_column"), read.get("time_format"),
                       read.get("missing", "error"), read.get("sep"))
    need = module.min_origin() + 1
    require(len(table.values) >= need, "--csv", f"needs at least {need} rows (the model reads that many)", str(csv))
    require(steps <= len(table.values), "--steps", f"must be at most the number of rows of --csv "
            f"({len(table.values)}): a forecast no longer than the history it starts from", steps)
    levels = torch.tensor(table.values, dtype=torch.float32)
    pred = module.forecast_levels(levels, torch.tensor([len(levels) - 1]), steps)[0]
    frame = pd.DataFrame(pred.numpy(), columns=module.spec.columns)
    widths = module.interval_widths(steps)
    if widths is not None:  # <column>_lower, <column>_upper beside each column (the checkpoint's calibration)
        bounds = {}
        for j, name in enumerate(module.spec.columns):
            bounds[name] = frame[name]
            bounds[f"{name}_lower"] = frame[name] - widths[:, j].numpy()
            bounds[f"{name}_upper"] = frame[name] + widths[:, j].numpy()
        frame = pd.DataFrame(bounds)
    if table.time_frame is None:
        return frame
    dates = next_times(table.time_frame, read["time_column"], read.get("time_format"), steps)
    return pd.concat([dates, frame], axis=1)
