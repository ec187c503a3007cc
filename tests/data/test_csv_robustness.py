"""CSV files as users have them: any of four separators (sniffed, or data.sep), empty, header-only and
one-row files, dates with gaps, integer years, a bounded --steps, and the memory a large file takes;
read by read_table, by training, and by rnnlab-forecast from a tiny trained checkpoint."""

import json
import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose_config
from rnnlab.cli.forecast import main as forecast_main
from rnnlab.data.series import SeriesDataModule
from rnnlab.data.table import next_times, read_table
from rnnlab.errors import ConfigError
from rnnlab.run.job import main_task
from rnnlab.schema import validate


def gapped_frame(n=120, seed=0) -> pd.DataFrame:
    """Business days with holidays left out (no pandas frequency fits), a wave and a random walk."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-01", periods=n + 12)
    days = days.delete([3, 17, 18, 40, 66, 90, 91, 100, 110, 111, 112, 113])[:n]
    return pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "value": np.sin(np.arange(n) / 4) + rng.normal(0, .1, n),
                         "walk": rng.normal(0, 1, n).cumsum()})


def write(tmp_path, frame: pd.DataFrame, sep=",", name="series.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, sep=sep, index=False)
    return str(path)


# separators ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_the_separator_is_sniffed_from_the_first_lines(sep, tmp_path):
    frame = gapped_frame()
    table = read_table(write(tmp_path, frame, sep), time_column="date")
    assert table.sep == sep and table.columns == ["value", "walk"]
    assert np.allclose(table.values, frame[["value", "walk"]].to_numpy())
    assert table.time[0] == pd.Timestamp("2020-01-01")


def test_one_column_and_quoted_fields_are_sniffed(tmp_path):
    assert read_table(write(tmp_path, gapped_frame()[["walk"]])).columns == ["walk"]  # no separator at all: ','
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('"date";"level, in m"\n' + "".join(f'"2020-01-{d:02d}";{d * 1.5}\n' for d in range(1, 11)))
    table = read_table(str(quoted), time_column="date")
    assert table.sep == ";" and table.columns == ["level, in m"] and table.values[-1, 0] == 15.0


@pytest.mark.parametrize("given, char", [(";", ";"), ("tab", "\t"), ("\\t", "\t"), ("\t", "\t"), ("|", "|")])
def test_data_sep_reads_the_file_with_the_separator_given(given, char, tmp_path):
    table = read_table(write(tmp_path, gapped_frame(), char), time_column="date", sep=given)
    assert table.sep == char and table.columns == ["value", "walk"]


def test_a_wrong_data_sep_is_one_line_naming_the_separator_the_file_has(tmp_path):
    path = write(tmp_path, gapped_frame(), ";")
    with pytest.raises(ConfigError, match=r"^data.sep=',' is invalid: the file's header 'date;value;walk' is one "
                                          r"column with it: the file looks separated by ';'") as info:
        read_table(path, time_column="date", sep=",")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^sep=':' is invalid: allowed values are ',', ';', '\|', tab, or null"):
        read_table(path, sep=":")


def test_data_sep_is_an_option_of_data_series_with_one_rule(tmp_path):
    path = write(tmp_path, gapped_frame(), ";")
    for value, ok in (("';'", True), ("tab", True), ("null", True), ("':'", False), ("2", False)):
        cfg = compose_config(tmp_path / "run", "task=forecast", "data=series", f"data.path={path}", f"data.sep={value}",
                             tiny=False)
        if ok:
            validate(cfg)
        else:
            with pytest.raises(ConfigError, match=r"^data.sep=.* is invalid: allowed values are ',', ';'"):
                validate(cfg)


def test_training_data_reads_a_semicolon_file_with_gaps_and_records_its_separator(tmp_path):
    data = SeriesDataModule(path=write(tmp_path, gapped_frame(), ";"), time_column="date", num_steps=8, batch_size=4)
    assert data.levels.shape == (120, 2) and data.spec().read["sep"] == ";"
    assert isinstance(data.time_axis(), pd.DatetimeIndex) and data.time_axis()[3] == pd.Timestamp("2020-01-07")


# empty, header-only and one-row files -------------------------------------------------------------
SHORT = {
    "0 bytes": ("", r"the file is empty \(0 bytes\)"),
    "blank lines": ("\n \n\n", r"the file is empty \(only blank lines\)"),
    "header only": ("date,value\n", r"the file has a header but no rows"),
    "header and blank lines": ("date;value\n\n\n", r"the file has a header but no rows"),
    "one row": ("date,value\n2020-01-01,1.5\n", r"the file has a header but only one row; a series needs more rows"),
}


@pytest.mark.parametrize("case", list(SHORT))
def test_empty_header_only_and_one_row_files_are_named_in_one_line(case, tmp_path):
    text, message = SHORT[case]
    path = tmp_path / "short.csv"
    path.write_text(text)
    for read in (lambda: read_table(str(path), time_column="date" if "date" in text else None),
                 lambda: read_table(str(path), columns="nowhere"),  # named before the columns are looked up
                 lambda: SeriesDataModule(path=str(path))):
        with pytest.raises(ConfigError, match=rf"^data.path='{re.escape(str(path))}' is invalid: {message}$") as info:
            read()
        assert "\n" not in str(info.value)


# dates with gaps, integer years -------------------------------------------------------------------
def dates(values, name="date") -> pd.DataFrame:
    return pd.DataFrame({name: values})


def test_business_days_with_holidays_continue_on_business_days():
    days = pd.bdate_range("2021-12-20", "2022-01-14").drop([pd.Timestamp("2021-12-24"), pd.Timestamp("2021-12-31")])
    assert pd.infer_freq(days) is None  # what used to crash with "'numpy.ndarray' object has no attribute 'strftime'"
    got = next_times(dates(days.strftime("%Y-%m-%d")), ["date"], None, 3)
    assert got["date"].tolist() == ["2022-01-17", "2022-01-18", "2022-01-19"]


@pytest.mark.parametrize("freq, expected", [
    ("MS", ["2001-02-01", "2001-03-01", "2001-04-01"]),  # month starts, one month missing
    ("ME", ["2001-02-28", "2001-03-31", "2001-04-30"]),  # month ends, one month missing
])
def test_a_monthly_series_with_a_missing_month_continues_by_calendar_months(freq, expected):
    months = pd.date_range("1999-01-01", "2001-01-31", freq=freq).delete(7)
    got = next_times(dates(months.strftime("%Y-%m-%d")), ["date"], None, 3)
    assert got["date"].tolist() == expected


def test_gapped_weeks_and_hours_keep_the_files_step_and_format():
    weeks = pd.date_range("2001-09-01", periods=20, freq="W-SAT").delete(5)
    got = next_times(dates(weeks.strftime("%Y%m%d").astype(int)), ["date"], "%Y%m%d", 2)
    assert got["date"].tolist() == [20020119, 20020126] and got["date"].dtype.kind == "i"
    hours = pd.date_range("2020-03-02 09:00", periods=30, freq="h").delete([4, 5])
    got = next_times(dates(hours.strftime("%Y-%m-%d %H:%M")), ["date"], None, 2)
    assert got["date"].tolist() == ["2020-03-03 15:00", "2020-03-03 16:00"]


def test_integer_years_continue_as_integers():
    got = next_times(dates(np.arange(1700, 2009), "YEAR"), ["YEAR"], None, 2)
    assert got["YEAR"].tolist() == [2009, 2010] and got["YEAR"].dtype.kind == "i"
    assert got.to_csv(index=False).splitlines() == ["YEAR", "2009", "2010"]


# rnnlab-forecast from a tiny trained checkpoint ---------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of a tiny GRU on a semicolon-separated file of business days with holidays."""
    root = tmp_path_factory.mktemp("csv_robustness")
    path = write(root, gapped_frame(200), ";", "train.csv")
    cfg = compose_config(root / "run", "task=forecast", "data=series", f"data.path={path}", "data.time_column=date",
                         "model=gru", "model.hidden_size=8", "data.num_steps=16", "data.batch_size=4",
                         "data.eval_context=16", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0", tiny=False)
    main_task(cfg)
    run = Path(cfg.paths.output_dir)
    return {"run": run, "ckpt": run / "checkpoints" / "last.ckpt", "frame": gapped_frame(200)}


def forecast(trained, tmp_path, capsys, frame, steps, sep=";", ckpt=None):
    """rnnlab-forecast's exit status, its output file's lines and its error lines."""
    out = tmp_path / "next.csv"
    out.unlink(missing_ok=True)
    capsys.readouterr()
    code = forecast_main([str(ckpt or trained["ckpt"]), "--csv", write(tmp_path, frame, sep, "new.csv"),
                          "--steps", str(steps), "--output", str(out)])
    lines = out.read_text().splitlines() if out.exists() else []
    return code, lines, capsys.readouterr().err.strip().splitlines()


def test_training_on_a_gapped_semicolon_file_records_the_separator(trained):
    assert json.loads((trained["run"] / "metrics.json").read_text())["status"] == "ok"
    read = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)["hyper_parameters"]["series"]["read"]
    assert read["sep"] == ";" and read["time_column"] == ["date"]


def test_forecast_continues_gapped_business_days(trained, tmp_path, capsys):
    code, lines, err = forecast(trained, tmp_path, capsys, trained["frame"], 4)
    assert code == 0 and not err
    last = trained["frame"]["date"].iloc[-1]
    expected = pd.bdate_range(last, periods=5)[1:].strftime("%Y-%m-%d").tolist()
    assert lines[0] == "date,value,value_lower,value_upper,walk,walk_lower,walk_upper"
    assert [line.split(",")[0] for line in lines[1:]] == expected


def test_forecast_continues_a_monthly_series_with_a_missing_month(trained, tmp_path, capsys):
    frame = trained["frame"].iloc[:40].assign(date=pd.date_range("2000-01-01", periods=41, freq="MS").delete(20)
                                              .strftime("%Y-%m-%d"))
    code, lines, _ = forecast(trained, tmp_path, capsys, frame, 2)
    assert code == 0 and [line.split(",")[0] for line in lines[1:]] == ["2003-06-01", "2003-07-01"]


def test_forecast_continues_integer_years_as_integers(trained, tmp_path, capsys):
    frame = trained["frame"].iloc[:40].assign(date=np.arange(1969, 2009))
    code, lines, _ = forecast(trained, tmp_path, capsys, frame, 2)
    assert code == 0 and [line.split(",")[0] for line in lines[1:]] == ["2009", "2010"]


def test_forecast_steps_are_at_most_the_rows_of_the_file(trained, tmp_path, capsys):
    frame = trained["frame"].iloc[:40]
    code, lines, _ = forecast(trained, tmp_path, capsys, frame, 40)
    assert code == 0 and len(lines) == 41
    code, lines, err = forecast(trained, tmp_path, capsys, frame, 1_000_000_000)
    assert code == 2 and not lines and err == [
        "error: --steps=1000000000 is invalid: must be at most the number of rows of --csv (40): a forecast no longer "
        "than the history it starts from"]


def test_forecast_names_a_header_only_file_and_a_wrong_separator(trained, tmp_path, capsys):
    code, _, err = forecast(trained, tmp_path, capsys, trained["frame"].iloc[:0], 2)
    assert code == 2 and len(err) == 1 and re.fullmatch(r"error: data.path='.*new.csv' is invalid: the file has a "
                                                        r"header but no rows", err[0])
    code, _, err = forecast(trained, tmp_path, capsys, trained["frame"], 2, sep=",")
    assert code == 2 and len(err) == 1 and err[0].startswith("error: data.sep=';' is invalid: the file's header "
                                                             "'date,value,walk' is one column with it")


def test_a_checkpoint_without_a_recorded_separator_sniffs_it(trained, tmp_path, capsys):
    """Checkpoints written before data.sep: their `read` has no `sep`, and the new file's is sniffed."""
    ckpt = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    del ckpt["hyper_parameters"]["series"]["read"]["sep"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    for sep in (",", "\t"):
        code, lines, err = forecast(trained, tmp_path, capsys, trained["frame"], 2, sep=sep, ckpt=old)
        assert code == 0 and not err and len(lines) == 3


# memory -------------------------------------------------------------------------------------------
def test_a_large_file_is_read_within_three_times_its_numeric_size(tmp_path):
    """300,000 rows of a date and two numbers: the whole table as one pandas frame held every date as a
    Python string (about 9x the numbers at peak); read in chunks, the numbers and the parsed dates stay."""
    n = 300_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"date": pd.date_range("1990-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
                          "price": rng.normal(0, 1, n).cumsum(), "volume": rng.normal(0, 1, n)})
    path = write(tmp_path, frame)
    del frame
    tracemalloc.start()
    try:
        table = read_table(path, time_column="date")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.values.shape == (n, 2) and len(table.time) == n
    assert peak < 3 * table.values.nbytes, (peak, table.values.nbytes)
    assert sys.getsizeof(table.time_frame) < 1_000_000  # the tail of the time column, not all of it
