"""A series from a CSV file: reading, the split, scaling on the training part, windows, missing values, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.data.series import SeriesDataModule, to_levels, to_model_space
from rnnlab.data.table import next_times, read_table
from rnnlab.errors import ConfigError


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
                            num_steps=8, batch_size=2)
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
                            num_steps=10, batch_size=3, sampling="sequential")
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
    "missing file": (dict(path="nowhere.csv"), r"data.path='nowhere.csv' is invalid: no such file"),
    "no numeric column": (dict(frame=pd.DataFrame({"d": ["a", "b"] * 30})),
                          r"data.path=.* is invalid: no numeric column to model; column 'd' is not numeric \(row 1 "
                          r"holds 'a'\); fix the file, or name the columns with data.columns"),
    "a text cell": (dict(frame=ramp_frame(60).astype({"a": object}).assign(a=lambda f: f["a"].where(f.index != 50, "abc"))),
                    r"data.path=.* is invalid: column 'a' is not numeric \(row 51 holds 'abc'\) though other rows "
                    r"hold numbers; fix the file, or choose the columns with data.columns"),
    "a text column chosen": (dict(frame=ramp_frame(60).assign(a="x"), columns="a"),
                             r"data.columns='a' is invalid: column 'a' is not numeric \(row 1 holds 'x'\); numeric "
                             r"ones in .*: b"),
    "unknown column": (dict(columns=["a", "price"]),
                       r"data.columns=\['a', 'price'\] is invalid: unknown column\(s\) price; available: date, a, b"),
    "unknown target": (dict(target="c"), r"data.target='c' is invalid: unknown column\(s\) c; available: a, b"),
    "unknown time column": (dict(time_column="when"), r"data.time_column='when' is invalid: unknown"),
    "too few rows": (dict(frame=ramp_frame(30), num_steps=24), r"data.path=.* 30 rows split into 21/3/6"),
    "time not increasing": (dict(frame=ramp_frame(60).iloc[[0, 2, 1] + list(range(3, 60))]),
                            r"data.time_column='date' is invalid: row 3 is not increasing"),
    "duplicate time": (dict(frame=ramp_frame(60).iloc[[0, 1, 1] + list(range(3, 60))]),
                       r"data.time_column='date' is invalid: row 3 is a duplicate"),
    "non-finite value": (dict(frame=ramp_frame(60).assign(a=lambda f: f["a"].where(f.index != 10, np.inf))),
                         r"data.missing='error' is invalid for this file: row 11 of column 'a' is inf"),
    "constant column": (dict(frame=ramp_frame(60).assign(b=3.0)), r"data.columns=\['b'\] is invalid: a column is constant"),
    "season too long": (dict(season=42), r"data.season=42 is invalid: must be shorter than the training part \(42 rows\)"),
    "bad time format": (dict(time_format="%Y-%m"), r"data.time_format='%Y-%m' is invalid for column 'date'"),
    "bad missing policy": (dict(missing="drop"), r"data.missing='drop' is invalid: allowed values are error, interpolate"),
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
    with pytest.raises(ConfigError, match=message) as info:
        SeriesDataModule(**options)
    assert "\n" not in str(info.value)
