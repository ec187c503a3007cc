"""A series from a CSV file: reading, the split, scaling on the training part, windows, missing values, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.data.series import SeriesDataModule, to_levels, to_model_space
from rnnlab.data.table import next_times, read_table
from rnnlab.errors import ConfigError
from rnnlab.options import config_path


def write_csv(tmp_path, frame: pd.DataFrame, name="series.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def ramp_frame(n=100, seed=0):
    """Two noisy columns and a daily date column; row i of `a` is about i."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y%m%d").astype(int)
    return pd.DataFrame({"date": dates, "a": np.arange(n) + rng.normal(0, 0.5, n), "b": rng.normal(5, 2, n)})


def test_split_is_chronological_70_10_20():
    data = SeriesDataModule(bundled="co2", time_column="date", time_format="%Y%m%d", missing="interpolate")
    spec = data.spec()
    assert (spec.train_end, spec.val, spec.test) == (1598, [1598, 1598, 1826], [1826, 1826, 2284])
    assert data.time_axis()[0] == pd.Timestamp("1958-03-29") and len(data.time_axis()) == 2284


def test_scaling_is_fitted_on_the_training_part_only(tmp_path):
    frame = ramp_frame(200)
    frame.loc[160:, "b"] += 100.0  # the test part is shifted far away
    data = SeriesDataModule(path=write_csv(tmp_path, frame), time_column="date", time_format="%Y%m%d",
                            num_steps=8, batch_size=2, difference=False)
    train = frame[["a", "b"]].to_numpy()[:140]
    assert np.allclose(data.spec().mean, train.mean(0)) and np.allclose(data.spec().std, train.std(0, ddof=1))
    z = data.model_series
    assert z[:140].mean(0).abs().max() < 1e-4 and z[160:, 1].mean() > 40  # the shift stays visible in the test part
    assert torch.equal(data.train_series, z[:140])


def test_difference_round_trip():
    levels = torch.tensor([[1.0, 10.0], [3.0, 9.0], [6.0, 9.5], [10.0, 8.0]])
    mean, std = torch.tensor([2.0, -0.5]), torch.tensor([0.5, 2.0])
    z = to_model_space(levels, mean, std, difference=True)
    assert torch.allclose(z[:, 0], (torch.tensor([2.0, 3.0, 4.0]) - 2.0) / 0.5)
    # the increments after origin 0, added up from its observation, give the series back
    assert torch.allclose(to_levels(z[None], levels[:1], mean, std, difference=True)[0], levels[1:])


def test_windows_are_multivariate_with_targets_shifted_by_one(tmp_path):
    data = SeriesDataModule(path=write_csv(tmp_path, ramp_frame(200)), time_column="date", time_format="%Y%m%d",
                            num_steps=10, batch_size=3, sampling="sequential", difference=False)
    batches = list(data.train_dataloader())
    assert len(batches) >= 2
    for x, y in batches:
        assert x.shape == y.shape == (3, 10, 2) and torch.equal(y[:, :-1], x[:, 1:])
        for row in range(3):  # each window is a slice of the training part, in both columns
            start = int(torch.nonzero((data.train_series == x[row, 0]).all(1))[0])
            assert torch.equal(x[row], data.train_series[start: start + 10])
            assert torch.equal(y[row], data.train_series[start + 1: start + 11])


def test_missing_values_error_names_the_first_row_and_column(tmp_path):
    frame = ramp_frame(50)
    frame.loc[[7, 20], "b"] = np.nan
    with pytest.raises(ConfigError, match=r"data.missing='error' is invalid for this file: row 8 of column 'b'"):
        read_table(write_csv(tmp_path, frame), missing="error", time_column="date")


def test_missing_values_interpolate_linearly_without_dropping_rows(tmp_path):
    frame = pd.DataFrame({"x": [np.nan, 2.0, np.nan, np.nan, 8.0, np.inf, 10.0, np.nan]})
    table = read_table(write_csv(tmp_path, frame), missing="interpolate")
    assert table.values[:, 0].tolist() == [2.0, 2.0, 4.0, 6.0, 8.0, 9.0, 10.0, 10.0]


def test_bundled_co2_interpolates_its_59_missing_weeks():
    raw = pd.read_csv(SeriesDataModule(bundled="co2", time_column="date", missing="interpolate",
                                       time_format="%Y%m%d").path)
    assert raw["co2"].isna().sum() == 59
    data = SeriesDataModule(bundled="co2", time_column="date", missing="interpolate", time_format="%Y%m%d")
    assert len(data.levels) == 2284 and torch.isfinite(data.levels).all()


def test_columns_default_to_every_numeric_non_time_column(tmp_path):
    frame = ramp_frame(50).assign(label="x")
    table = read_table(write_csv(tmp_path, frame), time_column="date", time_format="%Y%m%d")
    assert table.columns == table.targets == ["a", "b"]
    assert read_table(write_csv(tmp_path, frame), columns=["b", "a"], target="a").targets == ["a"]


def test_year_and_quarter_make_one_time_axis_and_continue():
    frame = pd.DataFrame({"year": [2008, 2008, 2008, 2009, 2009], "quarter": [2, 3, 4, 1, 2]})
    from rnnlab.data.table import parse_time

    assert parse_time(frame, ["year", "quarter"], None).tolist() == [2008.25, 2008.5, 2008.75, 2009.0, 2009.25]
    full = pd.DataFrame({"year": [2007] * 4 + [2008] * 3, "quarter": [1, 2, 3, 4, 1, 2, 3]})
    assert next_times(full, ["year", "quarter"], None, 3).values.tolist() == [[2008, 4], [2009, 1], [2009, 2]]


def test_dates_continue_with_the_files_step_and_format():
    frame = pd.DataFrame({"date": [20011215, 20011222, 20011229]})
    assert next_times(frame, ["date"], "%Y%m%d", 2)["date"].tolist() == [20020105, 20020112]


BAD = {
    "missing file": (dict(path="nowhere.csv"), r"data.path='nowhere.csv' does not exist"),
    "no numeric column": (dict(frame=pd.DataFrame({"d": ["a", "b"] * 30})),
                          r"data.path=.* is invalid: no numeric column to model; column 'd' is not numeric \(row 1 "
                          r"holds 'a'\); fix the file, or name the columns with data.columns"),
    "a text cell": (dict(frame=ramp_frame(60).astype({"a": object})
                         .assign(a=lambda f: f["a"].where(f.index != 50, "abc"))),
                    r"data.path=.* is invalid: column 'a' is not numeric \(row 51 holds 'abc'\) though other rows "
                    r"hold numbers; fix the file, or choose the columns with data.columns"),
    "a text column chosen": (dict(frame=ramp_frame(60).assign(a="x"), columns="a"),
                             r"data.columns='a' is invalid: column 'a' is not numeric \(row 1 holds 'x'\); numeric "
                             r"ones in .*: b"),
    "unknown column": (dict(columns=["a", "price"]),
                       r"data.columns=\['a', 'price'\] is invalid: unknown column\(s\) price; available: date, a, b"),
    "unknown target": (dict(target="c"), r"data.target='c' is invalid: unknown column\(s\) c; available: a, b"),
    "unknown time column": (dict(time_column="when"), r"data.time_column='when' is invalid: unknown"),
    "too few rows": (dict(frame=ramp_frame(30), num_steps=24, difference=False),
                     r"data.path=.* has 30 rows; a series needs at least 36 rows here \(a training part of 25 rows"),
    "bad difference": (dict(difference="yes"), r"data.difference='yes' is invalid: must be true, false or auto"),
    "time not increasing": (dict(frame=ramp_frame(60).iloc[[0, 2, 1] + list(range(3, 60))]),
                            r"data.time_column='date' is invalid: row 3 is not increasing"),
    "duplicate time": (dict(frame=ramp_frame(60).iloc[[0, 1, 1] + list(range(3, 60))]),
                       r"data.time_column='date' is invalid: row 3 is a duplicate"),
    "non-finite value": (dict(frame=ramp_frame(60).assign(a=lambda f: f["a"].where(f.index != 10, np.inf))),
                         r"data.missing='error' is invalid for this file: row 11 of column 'a' is inf"),
    "constant column": (dict(frame=ramp_frame(60).assign(b=3.0)),
                        r"data.columns=\['b'\] is invalid: a column is constant"),
    "season too long": (dict(season=42),
                        r"data.season=42 is invalid: must be shorter than the training part \(42 rows\)"),
    "bad time format": (dict(time_format="%Y-%m"), r"data.time_format='%Y-%m' is invalid for column 'date'"),
    "bad missing policy": (dict(missing="drop"),
                           r"data.missing='drop' is invalid: allowed values are error, interpolate"),
    "bad fraction": (dict(test_fraction=0.95), r"data.test_fraction=0.95 is invalid"),
    "bad sampling": (dict(sampling="shuffled"), r"data.sampling='shuffled' is invalid: allowed values are random, "
                                               r"sequential, overlapping"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_the_option(case, tmp_path):
    kwargs, message = BAD[case]
    kwargs = dict(kwargs)
    frame = kwargs.pop("frame", ramp_frame(60))
    options = dict(path=write_csv(tmp_path, frame), time_column="date" if "d" not in frame else None,
                   num_steps=8, batch_size=2) | kwargs
    with pytest.raises(ConfigError, match=message) as info, config_path("data"):  # named as train.py names them
        SeriesDataModule(**options)
    assert "\n" not in str(info.value)


def noise_csv(tmp_path, n, seed=0, walk=False):
    """n rows of yearly data: white noise, or a random walk (`walk`), with an integer year column."""
    rng = np.random.default_rng(seed)
    values = rng.normal(0, 1, n).cumsum() if walk else rng.normal(10, 1, n)
    return write_csv(tmp_path, pd.DataFrame({"year": np.arange(1700, 1700 + n), "value": values}))


def test_window_and_batch_derive_from_the_length_of_a_yearly_series(tmp_path):
    """309 yearly rows (sunspots' length): 216 training rows, windows of a quarter of them, about 16
    batches an epoch; explicit values are kept; the log line names what was derived."""
    data = SeriesDataModule(path=noise_csv(tmp_path, 309), time_column="year")
    assert (data.spec().train_end, data.num_steps, data.batch_size) == (216, 54, 10)
    assert len(data.train_dataloader()) == 17 and data.ks == [1, 4, 16] and data.eval_context == 64
    assert "derived from its length: difference=false, num_steps=54, batch_size=10" in data.describe()
    given = SeriesDataModule(path=noise_csv(tmp_path, 309), time_column="year", num_steps=20, batch_size=3,
                             difference=False)
    assert (given.num_steps, given.batch_size, given.derived) == (20, 3, ["ks=[1, 4, 16]"])
    assert given.module_kwargs()["num_steps"] == 20 and given.module_kwargs()["ks"] == [1, 4, 16]


@pytest.mark.parametrize("n, steps, ks, context", [(50, 8, [1, 4], 35), (36, 6, [1, 4], 25), (120, 21, [1, 4, 16], 64)])
def test_short_series_clip_horizons_and_evaluation_context(n, steps, ks, context, tmp_path):
    data = SeriesDataModule(path=noise_csv(tmp_path, n), time_column="year", difference=False)
    assert (data.num_steps, data.ks, data.eval_context) == (steps, ks, context)


def test_the_minimum_row_count_is_the_true_one(tmp_path):
    """minimum_rows is exact: that many rows build, one fewer is refused with the number in rows."""
    from rnnlab.data.series import minimum_rows

    fewest = minimum_rows(0.1, 0.2, 0, None)
    assert fewest == 20
    SeriesDataModule(path=noise_csv(tmp_path, fewest), time_column="year", difference=False)
    with pytest.raises(ConfigError, match=f"has {fewest - 1} rows; a series needs at least {fewest} rows"):
        SeriesDataModule(path=noise_csv(tmp_path, fewest - 1), time_column="year", difference=False)


def test_difference_auto_models_changes_of_a_random_walk_only(tmp_path):
    assert SeriesDataModule(path=noise_csv(tmp_path, 400, walk=True), time_column="year").spec().difference is True
    assert SeriesDataModule(path=noise_csv(tmp_path, 400), time_column="year").spec().difference is False
