"""Reading a time series from a CSV file: numeric columns, an optional time axis, the missing-value policy.

Shared by the training data module (rnnlab.data.series) and the forecast command (rnnlab.forecast),
so a checkpoint reads a new CSV file exactly as its training file was read. Every problem a user
can fix raises ConfigError in one line naming the option, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab.errors import ConfigError, require, require_choice

MISSING = ("error", "interpolate")
BUNDLED_DIR = Path(__file__).resolve().parent


@dataclass
class SeriesTable:
    """Values (time, column) in file order, the column names, the time axis (None without a time column)
    and the time columns as read (to date the rows after the last)."""

    values: np.ndarray
    columns: list[str]
    targets: list[str]
    time: pd.Index | None
    time_frame: pd.DataFrame | None


def as_list(value) -> list[str] | None:
    """An option given as one name or a list of names, as a list (None stays None)."""
    if value is None:
        return None
    return [str(value)] if isinstance(value, (str, int)) else [str(v) for v in value]


def read_table(path, columns=None, target=None, time_column=None, time_format=None,
               missing: str = "error") -> SeriesTable:
    """Read and check one CSV file; see the module docstring."""
    require_choice("data.missing", missing, MISSING)
    require(path is not None and Path(path).is_file(), "data.path",
            ("" if path is None else "no such file: ") + "give a CSV file (or data.bundled=co2|macro)", path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ConfigError(f"data.path={str(path)!r} is invalid: not a readable CSV file ({type(e).__name__})") from None
    frame.columns = [str(c) for c in frame.columns]
    available = list(frame.columns)
    time_cols = as_list(time_column) or []
    _require_known("data.time_column", time_cols, available)
    numeric = [c for c in available if c not in time_cols and pd.api.types.is_numeric_dtype(frame[c])]
    if not as_list(columns):  # every numeric column; one that mixes numbers and text is a damaged file
        for c in available:
            if c not in time_cols and c not in numeric and pd.to_numeric(frame[c], errors="coerce").notna().any():
                raise ConfigError(f"data.path={str(path)!r} is invalid: {_first_text_cell(frame, c)} though other "
                                  "rows hold numbers; fix the file, or choose the columns with data.columns")
    columns = as_list(columns) or numeric
    _require_known("data.columns", columns, available)
    not_numeric = [c for c in columns if c not in numeric]
    if not columns:  # no numeric column at all: say which cell spoils the first candidate
        candidates = [c for c in available if c not in time_cols]
        where = _first_text_cell(frame, candidates[0]) if candidates else ""
        raise ConfigError(f"data.path={str(path)!r} is invalid: no numeric column to model"
                          f"{'; ' + where if where else ' (the file has no rows or only time columns)'}; "
                          "fix the file, or name the columns with data.columns")
    if not_numeric:
        shown = not_numeric if len(not_numeric) > 1 else not_numeric[0]
        raise ConfigError(f"data.columns={shown!r} is invalid: {_first_text_cell(frame, not_numeric[0])}; numeric ones "
                          f"in {Path(path).name}: {', '.join(numeric) or 'none'}")
    targets = as_list(target) or columns
    _require_known("data.target", targets, columns)
    time = parse_time(frame, time_cols, time_format) if time_cols else None
    values = frame[columns].to_numpy(dtype=np.float64)
    values = fill_missing(values, columns, missing)
    return SeriesTable(values, list(columns), list(targets), time, frame[time_cols] if time_cols else None)


def _first_text_cell(frame: pd.DataFrame, column: str) -> str:
    """`column 'value' is not numeric (row 51 holds 'abc')`: the first cell that is not a number."""
    values = frame[column]
    bad = values.notna() & pd.to_numeric(values, errors="coerce").isna()
    if not bad.any():
        return f"column {column!r} is not numeric"
    row = int(np.flatnonzero(bad.to_numpy())[0])
    return f"column {column!r} is not numeric (row {row + 1} holds {values.iloc[row]!r})"


def _require_known(option: str, names: list[str], available: list[str]) -> None:
    unknown = [n for n in names if n not in available]
    require(not unknown, option, f"unknown column(s) {', '.join(unknown)}; available: {', '.join(available)}",
            names[0] if len(names) == 1 else names)


def fill_missing(values: np.ndarray, columns: list[str], missing: str) -> np.ndarray:
    """`error`: name the first non-finite value; `interpolate`: linear in the row index (ends: nearest value).

    Rows are never dropped: seasons and k-step horizons count rows, so the spacing must stay even.
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if missing == "error":
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"data.missing='error' is invalid for this file: row {row + 1} of column {columns[col]!r} "
                          f"is {values[row, col]} (missing or infinite); fix the file, or train with data.missing=interpolate")
    empty = [c for c, b in zip(columns, bad.all(0)) if b]
    require(not empty, "data.columns", "every value of a column is missing", empty)
    frame = pd.DataFrame(np.where(bad, np.nan, values))
    return frame.interpolate(limit_direction="both").to_numpy()


def parse_time(frame: pd.DataFrame, time_cols: list[str], time_format: str | None) -> pd.Index:
    """The time axis: dates (one column, with `time_format` or parsable text), numbers, or for several
    integer columns such as year and quarter a mixed-radix number (1959 + (quarter - 1) / 4)."""
    if len(time_cols) == 1:
        col = frame[time_cols[0]]
        if time_format is not None or not pd.api.types.is_numeric_dtype(col):
            try:
                time = pd.DatetimeIndex(pd.to_datetime(col.astype(str), format=time_format))
            except (ValueError, TypeError):
                raise ConfigError(f"data.time_format={time_format!r} is invalid for column {time_cols[0]!r} "
                                  f"(first value {col.iloc[0]!r}): give a strftime format such as %Y%m%d") from None
        else:
            time = pd.Index(col.to_numpy(dtype=np.float64))
    else:
        parts = frame[time_cols]
        require(all(pd.api.types.is_integer_dtype(parts[c]) for c in time_cols), "data.time_column",
                "several time columns must all hold integers (e.g. year, quarter)", time_cols)
        time = pd.Index(composite_time(parts.to_numpy()))
    _require_increasing(time, time_cols)
    return time


def composite_time(parts: np.ndarray, lows=None, highs=None) -> np.ndarray:
    """Mixed-radix time of integer columns (major first): each minor column adds a fraction of its range."""
    lows = parts.min(0) if lows is None else lows
    highs = parts.max(0) if highs is None else highs
    time = parts[:, 0].astype(np.float64)
    scale = 1.0
    for j in range(1, parts.shape[1]):
        scale /= highs[j] - lows[j] + 1
        time = time + (parts[:, j] - lows[j]) * scale
    return time


def _require_increasing(time: pd.Index, time_cols: list[str]) -> None:
    step = np.diff(time.to_numpy()) if not isinstance(time, pd.DatetimeIndex) else np.diff(time.asi8)
    bad = np.flatnonzero(step <= 0)
    if len(bad):
        row = bad[0] + 2  # 1-based data row of the second of the pair
        kind = "a duplicate" if step[bad[0]] == 0 else "not increasing"
        raise ConfigError(f"data.time_column={time_cols if len(time_cols) > 1 else time_cols[0]!r} is invalid: "
                          f"row {row} is {kind} ({time[bad[0]]} then {time[bad[0] + 1]}); rows must be in time order")


def next_times(frame: pd.DataFrame, time_cols: list[str], time_format: str | None, steps: int) -> pd.DataFrame:
    """The time columns of the `steps` rows after the last one of `frame`, formatted as the file writes them."""
    if len(time_cols) > 1:
        parts = frame[time_cols].to_numpy()
        lows, highs = parts.min(0), parts.max(0)
        rows, row = [], parts[-1].copy()
        for _ in range(steps):  # count up the last column, carrying into the major ones
            row = row.copy()
            j = len(row) - 1
            row[j] += 1
            while j > 0 and row[j] > highs[j]:
                row[j] = lows[j]
                j -= 1
                row[j] += 1
            rows.append(row)
        return pd.DataFrame(rows, columns=time_cols)
    time = parse_time(frame, time_cols, time_format)
    if isinstance(time, pd.DatetimeIndex):
        freq = pd.infer_freq(time) if len(time) >= 3 else None
        future = (pd.date_range(time[-1], periods=steps + 1, freq=freq)[1:] if freq else
                  time[-1] + pd.to_timedelta(np.median(np.diff(time.asi8)), unit="ns") * np.arange(1, steps + 1))
        text = future.strftime(time_format) if time_format else future.strftime("%Y-%m-%d")
        column = pd.Series(text).astype(frame[time_cols[0]].dtype) if time_format else pd.Series(text)
        return pd.DataFrame({time_cols[0]: column})
    step = np.median(np.diff(time.to_numpy()))
    return pd.DataFrame({time_cols[0]: time[-1] + step * np.arange(1, steps + 1)})
