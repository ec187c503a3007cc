"""Forecasting data: one real-valued series of C columns, split in time, as LightningDataModules.

`ForecastData` is the documented base every series source implements (the CSV file below, the
book's sine in rnnlab.data.sine). It holds the observed values `levels` (T, C) in original units
and declares, through `spec()`, everything the regressor needs as plain data (saved in checkpoints):

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
are the whole observed series; the regressor forecasts from it and scores in original units.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler

from rnnlab.data.sampling import SAMPLINGS, WindowDataset, make_sampler, window_loader
from rnnlab.data.table import BUNDLED_DIR, as_list, read_table
from rnnlab.errors import require, require_choice, require_positive_int

SERIES_SAMPLINGS = SAMPLINGS + ("overlapping",)
BUNDLED = {"co2": "co2.csv", "macro": "macrodata.csv"}


@dataclass
class SeriesSpec:
    """What a regressor needs to know about its data, as plain values (stored in the checkpoint)."""

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


class OverlappingSampler(Sampler[Tensor]):
    """The book's feature-label pairs: every window start once per epoch, shuffled, in batches (the
    last may be smaller), from a generator seeded once, so every epoch differs and runs repeat."""

    def __init__(self, length: int, batch_size: int, num_steps: int, seed: int = 0):
        self.starts, self.batch_size = length - num_steps, batch_size
        require(self.starts >= 1, "data.num_steps", f"must be smaller than the training part of {length} values",
                num_steps)
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return iter(torch.randperm(self.starts, generator=self.generator).split(self.batch_size))

    def __len__(self) -> int:
        return -(-self.starts // self.batch_size)


class ForecastData(L.LightningDataModule):
    """Base of every series source: subclasses set `levels` (T, C) and call `_finish` with the parts."""

    levels: Tensor
    name: str

    def __init__(self, batch_size: int, num_steps: int, sampling: str, seed: int):
        super().__init__()
        require_positive_int("data.batch_size", batch_size)
        require_positive_int("data.num_steps", num_steps)
        require_choice("data.sampling", sampling, SERIES_SAMPLINGS)
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
        """The one hook the training code calls: the spec, as plain data, for the regressor's `series`."""
        return {"series": asdict(self.spec_)}

    def time_axis(self):
        """x values of the figures: dates or numbers of the time column, else the row number."""
        return np.arange(1, len(self.levels) + 1)

    def setup(self, stage: str | None = None) -> None:
        pass

    def _sampler(self) -> Sampler:
        """The training part's window sampler (the text samplers get the Trainer in window_loader)."""
        if self.sampling == "overlapping":
            return OverlappingSampler(len(self.train_series), self.batch_size, self.num_steps, self.seed)
        return make_sampler(self.sampling, len(self.train_series), self.batch_size, self.num_steps, seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        if self.sampling == "overlapping":
            windows = WindowDataset(self.train_series, self.num_steps)
            return DataLoader(windows, sampler=self._sampler(), batch_size=None)
        return window_loader(self.train_series, self.sampling, self.batch_size, self.num_steps,
                             seed=self.seed, trainer=self.trainer)

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

    def __init__(self, path: str | None = None, bundled: str | None = None, columns=None, target=None,
                 time_column=None, time_format: str | None = None, missing: str = "error",
                 difference: bool = False, season: int | None = None, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, batch_size: int = 16, num_steps: int = 32, sampling: str = "random",
                 tau: int = 4, eval_context: int | None = 64, ks=(1, 4, 16), seed: int = 0):
        super().__init__(batch_size, num_steps, sampling, seed)
        if path is None and bundled is not None:
            require_choice("data.bundled", bundled, tuple(BUNDLED))
            path = str(BUNDLED_DIR / BUNDLED[bundled])
        require(isinstance(difference, bool), "data.difference", "must be true or false", difference)
        for option, value in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
            require(isinstance(value, (int, float)) and 0 < value < 1, option, "must lie in (0, 1)", value)
        require(val_fraction + test_fraction < 1, "data.test_fraction",
                f"with data.val_fraction={val_fraction} must leave a training part (sum below 1)", test_fraction)
        require_positive_int("data.tau", tau)
        if eval_context is not None:
            require_positive_int("data.eval_context", eval_context)
        table = read_table(path, columns, target, time_column, time_format, missing)
        self.path, self.name, self.time = path, bundled or str(path), table.time
        self.levels = torch.tensor(table.values, dtype=torch.float32)
        n = len(table.values)
        train_end = int(round(n * (1 - val_fraction - test_fraction), 9))
        val_end = train_end + int(n * val_fraction)
        d = int(difference)
        need = num_steps + 1 + d
        require(train_end >= need and val_end - train_end >= 2 and n - val_end >= 2, "data.path",
                f"{n} rows split into {train_end}/{val_end - train_end}/{n - val_end} train/val/test rows; the "
                f"training part needs data.num_steps + 1{' + 1 (difference)' if d else ''} = {need} rows and "
                "validation and test parts at least 2: give a longer series or lower data.num_steps", path)
        if season is not None:
            require_positive_int("data.season", season)
            require(season < train_end, "data.season", f"must be shorter than the training part ({train_end} rows)",
                    season)
        read = {"columns": table.columns, "time_column": as_list(time_column), "time_format": time_format,
                "missing": missing}
        self._finish(table.columns, table.targets, train_end, [train_end, train_end, val_end], [val_end, val_end, n],
                     val_end, difference, scale=True, season=season, read=read)

    def time_axis(self):
        return np.arange(1, len(self.levels) + 1) if self.time is None else self.time

    def describe(self) -> str:
        s = self.spec_
        return (f"{self.name}: {len(self.levels)} rows x {len(s.columns)} columns ({', '.join(s.columns)}), "
                f"train/val/test {s.train_end}/{s.val[2] - s.train_end}/{s.test[2] - s.val[2]}, targets "
                f"{', '.join(s.targets)}{', differenced' if s.difference else ''}, {self.sampling} windows "
                f"{self.batch_size} x {self.num_steps}")
