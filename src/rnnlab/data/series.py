"""Forecasting data: one real-valued series of C columns, split in time, as LightningDataModules.

`ForecastData` is the documented base every series source implements (the CSV file below, the
book's sine in rnnlab.data.sine). It holds the observed values `levels` (T, C) in original units
and declares, through `spec()`, everything the forecast module (ForecastModel) needs as plain data
(saved in checkpoints):

- the columns and the scored targets; the model-space transform: optional first differences
  (`difference`), then a z-score per column fitted on the training part only (`mean`, `std`);
- the parts: rows [0, train_end) train; validation and test are scored with rolling origins,
  each as [origin_from, score_from, end): every target time t in [score_from, end) whose origin
  t - k (the last observation a k-step forecast reads) is >= origin_from;
- the scale of MASE (in-sample MAE of the one-step naive forecast on the training part, per
  target), the season of the seasonal naive baseline, and how to read the file again.

Training batches are windows of the model-space training part, (batch, num_steps, C) with
targets shifted by one, cut by the same samplers as text (rnnlab.data.sampling); `overlapping`
adds the book's feature-label pairs (every window start, shuffled). Validation and test batches
are the whole observed series; the forecast module forecasts from it and scores in original units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Mapping

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from rnnlab.data.base import SeriesData
from rnnlab.data.sampling import SERIES_SAMPLINGS, make_sampler, window_loader
from rnnlab.data.table import BUNDLED_DIR, MISSING, SEPARATOR, as_list, read_table
from rnnlab.errors import ConfigError, require
from rnnlab.options import (
    BOOL,
    FILE_OR_NULL,
    HORIZONS,
    NAMES,
    OPEN_FRACTION,
    POSITIVE_INT,
    SEED,
    STRING,
    Name,
    checked,
    choice,
    either,
    nullable,
)

BUNDLED = {"co2": "co2.csv", "macro": "macrodata.csv", "sunspots": "sunspots.csv", "elnino": "elnino.csv"}
DEFAULT_KS = (1, 4, 16)   # horizons scored when data.ks is null: those the test part fits
MIN_STEPS = 4             # the shortest window a derived num_steps takes
MAX_STEPS = 64            # the longest window a derived num_steps takes


@dataclass
class SeriesSpec:
    """What a forecast module needs to know about its data, as plain values (stored in the checkpoint)."""

    name: str
    columns: list[str]
    targets: list[str]
    mean: list[float]
    std: list[float]
    difference: bool
    naive_scale: list[float]          # per target: mean |y_t - y_{t-1}| on the training part
    train_end: int
    val: list[int]                    # [origin_from, score_from, end)
    test: list[int]
    multistep_from: int               # a free rollout from here to the end (figures; the sine's metric)
    season: int | None = None
    noise: float | None = None        # the sine's noise level: its book metrics are reported
    read: dict = field(default_factory=dict)  # how rnnlab.data.table.read_table reads such a file


def to_model_space(levels: Tensor, mean: Tensor, std: Tensor, difference: bool) -> Tensor:
    """Values (T, C) in original units -> what the model reads and predicts: (T - d, C), z-scored."""
    if difference:
        levels = levels[1:] - levels[:-1]
    return (levels - mean) / std


def to_levels(pred: Tensor, last: Tensor, mean: Tensor, std: Tensor, difference: bool) -> Tensor:
    """Model-space predictions (N, K, C) of the K steps after origins whose observed values are `last`
    (N, C) -> original units: undo the z-score, then add the differences up from the last observation."""
    pred = pred * std + mean
    return last[:, None] + pred.cumsum(1) if difference else pred




def path_or_bundled(values: Mapping[str, Any], name: Name) -> None:
    if values["path"] in (None, "") and values["bundled"] is None:
        raise ConfigError(f"{name('path')}=null is invalid: give a CSV file or {name('bundled')}")


def training_part(values: Mapping[str, Any], name: Name) -> None:
    if values["val_fraction"] + values["test_fraction"] >= 1:
        raise ConfigError(f"{name('test_fraction')}={values['test_fraction']} is invalid: with {name('val_fraction')}="
                          f"{values['val_fraction']} it leaves no training part")


class ForecastData(SeriesData):
    """Base of every series source: subclasses set `levels` (T, C) and call `_finish` with the parts."""

    levels: Tensor
    name: str

    def __init__(self, batch_size: int | None, num_steps: int | None, sampling: str, seed: int):
        super().__init__()
        self.batch_size, self.num_steps, self.sampling, self.seed = batch_size, num_steps, sampling, seed

    def _finish(self, columns: list[str], targets: list[str], train_end: int, val: list[int], test: list[int],
                multistep_from: int, difference: bool, scale: bool, season: int | None = None,
                noise: float | None = None, read: dict | None = None) -> None:
        """Fit the transform on the training part, check it, and fix the spec."""
        train = self.levels[:train_end].double()
        diffs = train[1:] - train[:-1]
        fitted = diffs if difference else train
        mean = fitted.mean(0) if scale else torch.zeros(len(columns), dtype=torch.float64)
        std = fitted.std(0) if scale else torch.ones(len(columns), dtype=torch.float64)
        constant = [c for c, s in zip(columns, std.tolist()) if not s > 0]
        require(not constant, "data.columns", "a column is constant on the training part (zero variance"
                f"{' of its differences, data.difference=true' if difference else ''}): leave it out", constant)
        index = [columns.index(t) for t in targets]
        naive = diffs.abs().mean(0)[index]
        zero = [t for t, s in zip(targets, naive.tolist()) if not s > 0]
        require(not zero, "data.target", "a target never changes on the training part (MASE undefined)", zero)
        self.spec_ = SeriesSpec(self.name, columns, targets, mean.tolist(), std.tolist(), difference, naive.tolist(),
                                train_end, val, test, multistep_from, season, noise, read or {})
        self.model_series = to_model_space(self.levels, mean.float(), std.float(), difference)
        self.train_series = self.model_series[: train_end - int(difference)]
        self._sampler()  # fail early if windows cannot be cut

    def spec(self) -> SeriesSpec:
        return self.spec_

    def module_kwargs(self) -> dict:
        """The one hook the training code calls: the spec, as plain data, for the forecast module's `series`."""
        return {"series": asdict(self.spec_)}

    def time_axis(self):
        """x values of the figures: dates or numbers of the time column, else the row number."""
        return np.arange(1, len(self.levels) + 1)

    def _sampler(self) -> Sampler:
        """The training part's window sampler (window_loader builds it again with the Trainer)."""
        return make_sampler(self.sampling, len(self.train_series), self.batch_size, self.num_steps, seed=self.seed,
                            unit="training rows")

    def train_dataloader(self) -> DataLoader:
        return window_loader(self.train_series, self.sampling, self.batch_size, self.num_steps,
                             seed=self.seed, trainer=self.trainer, unit="training rows")

    def _whole_series(self) -> DataLoader:
        return DataLoader([self.eval_batch()], batch_size=None)

    def eval_batch(self) -> dict:
        """What validation and test read: the observed series in original units."""
        return {"levels": self.levels}

    def val_dataloader(self) -> DataLoader:
        return self._whole_series()

    def test_dataloader(self) -> DataLoader:
        return self._whole_series()


class SeriesDataModule(ForecastData):
    """A CSV file (or a bundled series, `bundled: co2 | macro`), split chronologically into train,
    validation and test parts; see the module docstring and conf/data/series.yaml."""

    @checked(path_or_bundled, training_part)
    def __init__(self, path: Annotated[str | None, FILE_OR_NULL] = None,
                 bundled: Annotated[str | None, nullable(choice(*BUNDLED), "data.path")] = None,
                 columns: Annotated[str | list[str] | None, nullable(NAMES, "every numeric column")] = None,
                 target: Annotated[str | list[str] | None, nullable(NAMES, "every column chosen")] = None,
                 time_column: Annotated[str | list[str] | None, nullable(NAMES, "none: rows are numbered")] = None,
                 time_format: Annotated[str | None, nullable(STRING, "parsed as is")] = None,
                 missing: Annotated[str, MISSING] = "error",
                 difference: Annotated[bool | str, either(BOOL, choice("auto"), allowed="must be true, false or auto "
                                                          "(from the training part)")] = "auto",
                 season: Annotated[int | None, nullable(POSITIVE_INT, "no seasonal baseline")] = None,
                 val_fraction: Annotated[float, OPEN_FRACTION] = 0.1,
                 test_fraction: Annotated[float, OPEN_FRACTION] = 0.2,
                 batch_size: Annotated[int | None, nullable(POSITIVE_INT, "derived from the series' length")] = None,
                 num_steps: Annotated[int | None, nullable(POSITIVE_INT, "derived from the series' length")] = None,
                 sampling: Annotated[str, choice(*SERIES_SAMPLINGS)] = "overlapping",
                 tau: Annotated[int, POSITIVE_INT] = 4,
                 eval_context: Annotated[int | None, nullable(POSITIVE_INT, "the whole history")] = 64,
                 ks: Annotated[list[int] | None, nullable(HORIZONS, "1, 4, 16: those the test part fits")] = None,
                 seed: Annotated[int, SEED] = 0,
                 sep: Annotated[str | None, SEPARATOR] = None):
        super().__init__(batch_size, num_steps, sampling, seed)
        if path is None and bundled is not None:
            path = str(BUNDLED_DIR / BUNDLED[bundled])
        table = read_table(path, columns, target, time_column, time_format, missing, sep)
        self.path, self.name, self.time = path, bundled or str(path), table.time
        self.levels = torch.tensor(table.values, dtype=torch.float32)
        n = len(table.values)
        train_end, val_end = split_rows(n, val_fraction, test_fraction)
        self.derived: list[str] = []  # the options derived from the series, for the log line
        if difference == "auto":
            difference = is_trending(table.values[:train_end])
            self.derived.append(f"difference={str(difference).lower()}")
        d = int(difference)
        fewest = minimum_rows(val_fraction, test_fraction, d, num_steps)
        require(n >= fewest, "data.path", f"has {n} rows; a series needs at least {fewest} rows here (a training "
                f"part of {(num_steps or MIN_STEPS) + 1 + d} rows for one window of data.num_steps="
                f"{num_steps or MIN_STEPS}{' plus one (differenced)' if d else ''}, "
                "validation and test parts of 2 rows, "
                f"with data.val_fraction={val_fraction} and data.test_fraction={test_fraction})", path)
        rows = train_end - d  # model-space training rows (at least num_steps + 1, as checked above)
        self.num_steps = num_steps or self._derive("num_steps", min(max(rows // 4, MIN_STEPS), MAX_STEPS, rows - 1))
        if batch_size is None:
            self.batch_size = self._derive("batch_size", derived_batch_size(sampling, rows, self.num_steps))
        test_rows = n - val_end
        if ks is None:
            ks = self._derive("ks", [k for k in DEFAULT_KS if k < test_rows] or [1])
        self.ks = list(ks)
        if eval_context is not None and eval_context > rows:
            eval_context = self._derive("eval_context", rows)  # the first validation origin reads a full window
        self.eval_context = eval_context
        if season is not None:
            require(season < train_end, "data.season", f"must be shorter than the training part ({train_end} rows)",
                    season)
        read = {"columns": table.columns, "time_column": as_list(time_column), "time_format": time_format,
                "missing": missing, "sep": table.sep}
        self._finish(table.columns, table.targets, train_end, [train_end, train_end, val_end], [val_end, val_end, n],
                     val_end, bool(difference), scale=True, season=season, read=read)

    def _derive(self, option: str, value):
        self.derived.append(f"{option}={value}")
        return value

    def module_kwargs(self) -> dict:
        """The spec and the data options the forecast module reads, as derived here (the config may say null)."""
        return {**super().module_kwargs(), "num_steps": self.num_steps, "eval_context": self.eval_context,
                "ks": self.ks, "sampling": self.sampling}

    def time_axis(self):
        return np.arange(1, len(self.levels) + 1) if self.time is None else self.time

    def describe(self) -> str:
        s = self.spec_
        return (f"{self.name}: {len(self.levels)} rows x {len(s.columns)} columns ({', '.join(s.columns)}), "
                f"train/val/test {s.train_end}/{s.val[2] - s.train_end}/{s.test[2] - s.val[2]}, targets "
                f"{', '.join(s.targets)}{', differenced' if s.difference else ''}, {self.sampling} windows "
                f"{self.batch_size} x {self.num_steps}"
                f"{'; derived from its length: ' + ', '.join(self.derived) if self.derived else ''}")


def split_rows(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """The ends of the training and validation parts of n rows (the test part is the rest)."""
    train_end = int(round(n * (1 - val_fraction - test_fraction), 9))
    return train_end, train_end + int(n * val_fraction)


def minimum_rows(val_fraction: float, test_fraction: float, difference: int, num_steps: int | None) -> int:
    """The fewest rows that split into a training part with one window (plus its target and, when
    differenced, one row more) and validation and test parts of 2 rows each: the true minimum."""
    need = (num_steps or MIN_STEPS) + 1 + difference
    n = 3
    while True:
        train_end, val_end = split_rows(n, val_fraction, test_fraction)
        if train_end >= need and val_end - train_end >= 2 and n - val_end >= 2:
            return n
        n += 1


DICKEY_FULLER_5 = -2.86  # the 5 % critical value of the Dickey-Fuller t statistic, with a constant


def is_trending(train: np.ndarray) -> bool:
    """data.difference=auto: model changes when some column looks like a trend or a random walk, i.e. the
    Dickey-Fuller test (y_t - y_{t-1} = a + b y_{t-1} + e) does not reject a unit root at 5 % on the training
    part. Levels of such series leave the training range; their changes do not."""
    for y in np.asarray(train, dtype=np.float64).T:
        x, dy = y[:-1], np.diff(y)
        design = np.stack([np.ones_like(x), x], 1)
        coef, *_ = np.linalg.lstsq(design, dy, rcond=None)
        resid = dy - design @ coef
        var = resid @ resid / max(len(dy) - 2, 1) * np.linalg.pinv(design.T @ design)[1, 1]
        if var <= 0 or coef[1] / np.sqrt(var) > DICKEY_FULLER_5:
            return True
    return False


def derived_batch_size(sampling: str, rows: int, num_steps: int) -> int:
    """data.batch_size=null: about 16 batches an epoch for short series, at most 32 windows a batch."""
    if sampling == "overlapping":
        return max(1, min(32, (rows - num_steps) // 16))
    if sampling == "sequential":  # batch_size parallel streams, each at least one window long
        return max(1, min(32, (rows - num_steps - 1) // num_steps))
    return max(1, min(32, (rows - num_steps) // num_steps))  # random: one batch of every window
