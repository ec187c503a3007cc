"""Reading a time series from a CSV file: the separator, numeric columns, an optional time axis, the
missing-value policy.

Shared by the training data module (rnnlab.data.series) and the forecast command (rnnlab.forecast),
so a checkpoint reads a new CSV file exactly as its training file was read. Every problem a user
can fix raises ConfigError in one line naming the option, the value and what is allowed.

The separator is sniffed from the first lines (or given); pandas' C parser then reads the file in
chunks of rows, keeping whole only the numeric columns in use and the parsed time axis: text cells
(dates, labels) are never all held as Python strings at once, so a file of a million rows stays
within a few times the size of its numbers in memory.
"""

from __future__ import annotations

import csv
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pandas.api.types import is_integer_dtype, is_numeric_dtype
from pandas.tseries.api import guess_datetime_format

from rnnlab.errors import ConfigError, require
from rnnlab.options import Rule, checked, choice

BUNDLED_DIR = Path(__file__).resolve().parent
SEPARATORS = {",": ",", ";": ";", "|": "|", "\t": "\t", "\\t": "\t", "tab": "\t"}  # data.sep's spellings
SEP_ALLOWED = "allowed values are ',', ';', '|', tab, or null (sniffed from the file's first lines)"
# The rules of the options every reader of a series file takes (data.missing, data.sep; read_table's own).
MISSING = choice("error", "interpolate")
SEPARATOR = Rule(lambda v: v is None or (isinstance(v, str) and v in SEPARATORS), SEP_ALLOWED)
SNIFF_BYTES, SNIFF_LINES = 65536, 50  # the sample the separator is sniffed from
CHUNK_ROWS = 16384  # rows parsed at a time (more: faster by little, a larger peak of memory)
TAIL_ROWS = 1000  # rows of the time columns kept to date the rows after the last
MONTH_DAYS = 365.2425 / 12


@dataclass
class SeriesTable:
    """Values (time, column) in file order, the column names, the time axis (None without a time column),
    the last TAIL_ROWS rows of the time columns as read (to date the rows after the last) and the separator."""

    values: np.ndarray
    columns: list[str]
    targets: list[str]
    time: pd.Index | None
    time_frame: pd.DataFrame | None
    sep: str = ","


def as_list(value) -> list[str] | None:
    """An option given as one name or a list of names, as a list (None stays None)."""
    if value is None:
        return None
    return [str(value)] if isinstance(value, (str, int)) else [str(v) for v in value]


@checked()
def read_table(path, columns=None, target=None, time_column=None, time_format=None,
               missing: Annotated[str, MISSING] = "error", sep: Annotated[str | None, SEPARATOR] = None) -> SeriesTable:
    """Read and check one CSV file; see the module docstring."""
    path = None if path is None else str(Path(path).expanduser())  # `~/x` as the text corpus reads it
    require(path is not None and Path(path).is_file(), "data.path",
            ("" if path is None else "no such file: ") + "give a CSV file (or data.bundled=co2|macro)", path)
    if Path(path).stat().st_size == 0:
        raise ConfigError(f"data.path={str(path)!r} is invalid: the file is empty (0 bytes)")
    char = SEPARATORS[sep] if sep is not None else sniff_sep(path)
    time_cols, chosen = as_list(time_column) or [], as_list(columns) or None
    scan = _scan(path, char, sep, time_cols, chosen, time_format)
    numeric = [c for c, col in scan.columns.items() if col.numeric]
    if chosen is None:  # every numeric column; one that mixes numbers and text is a damaged file
        for col in scan.columns.values():
            if not col.numeric and col.has_number:
                raise ConfigError(f"data.path={str(path)!r} is invalid: {col.not_numeric()} though other "
                                  "rows hold numbers; fix the file, or choose the columns with data.columns")
    columns = chosen or numeric
    if not columns:  # no numeric column at all: say which cell spoils the first candidate
        where = next(iter(scan.columns.values())).not_numeric() if scan.columns else ""
        raise ConfigError(f"data.path={str(path)!r} is invalid: no numeric column to model"
                          f"{'; ' + where if where else ' (the file has only time columns)'}; "
                          "fix the file, or name the columns with data.columns")
    not_numeric = [c for c in columns if c not in numeric]
    if not_numeric:
        shown = not_numeric if len(not_numeric) > 1 else not_numeric[0]
        raise ConfigError(f"data.columns={shown!r} is invalid: {scan.columns[not_numeric[0]].not_numeric()}; "
                          f"numeric ones in {Path(path).name}: {', '.join(numeric) or 'none'}")
    targets = as_list(target) or columns
    _require_known("data.target", targets, columns)
    time = scan.time.finish() if time_cols else None
    values = fill_missing(scan.values(columns), columns, missing)
    return SeriesTable(values, list(columns), list(targets), time, scan.tail, char)


def sniff_sep(path) -> str:
    """The separator of the file's first lines: csv.Sniffer over a small sample, among , ; tab and |
    (',' when it cannot tell, as for one column). Only the sample is read here, so a large file is read
    once, by pandas' C parser, with the separator found."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        sample = f.read(SNIFF_BYTES)
    lines = [line for line in sample.splitlines() if line.strip()]
    if len(sample) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the sample may end inside a line
    try:
        return csv.Sniffer().sniff("\n".join(lines[:SNIFF_LINES]), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


@contextmanager
def _readable(path):
    """pandas' errors for a file that is not CSV text, as one line naming the file."""
    try:
        yield
    except pd.errors.EmptyDataError:
        raise ConfigError(f"data.path={str(path)!r} is invalid: the file is empty (only blank lines)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        detail = str(e).strip().splitlines()[-1] if isinstance(e, pd.errors.ParserError) and str(e).strip() else ""
        raise ConfigError(f"data.path={str(path)!r} is invalid: not a readable CSV file ({type(e).__name__}"
                          f"{': ' + detail if detail else ''})") from None


def _scan(path, char: str, sep: str | None, time_cols: list[str], chosen: list[str] | None,
          time_format: str | None) -> _Scan:
    """Read the file chunk by chunk; the header's problems (wrong separator, no rows, unknown columns) are
    named before the rest of the file is parsed."""
    with _readable(path), pd.read_csv(path, sep=char, engine="c", chunksize=CHUNK_ROWS) as reader:
        first = next(reader)
        header = [str(c) for c in first.columns]
        if sep is not None:
            _require_split(header, sep, char)
        if len(first) < 2:  # the only chunk
            raise ConfigError(f"data.path={str(path)!r} is invalid: the file has a header but "
                              + ("no rows" if len(first) == 0 else "only one row; a series needs more rows"))
        _require_known("data.time_column", time_cols, header)
        if chosen:
            _require_known("data.columns", chosen, header)
            both = [c for c in chosen if c in time_cols]
            require(not both, "data.columns", f"{', '.join(both)} is data.time_column too: leave it out of the "
                    "inputs", chosen)
        scan = _Scan(header, time_cols, chosen, time_format, _count_lines(path))
        scan.add(first)
        for chunk in reader:
            scan.add(chunk)
    return scan


def _count_lines(path) -> int:
    """At least the number of rows: line ends counted in 1 MiB blocks (every row ends with one, or the file),
    so the arrays are allocated once; pages past the real rows are never touched."""
    count = 1
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n") + block.count(b"\r")
    return count


def _room(array: np.ndarray, used: int, need: int) -> np.ndarray:
    """`array` (rows along its last axis), or a copy twice as long when `need` rows do not fit (a file that
    grew while it was read)."""
    if array.shape[-1] >= need:
        return array
    bigger = np.empty(array.shape[:-1] + (2 * need,), dtype=array.dtype)
    bigger[..., :used] = array[..., :used]
    return bigger


def _require_split(header: list[str], sep: str, char: str) -> None:
    """A separator given (data.sep, or the checkpoint's) that leaves one column whose name holds another
    separator is the wrong one: say so, instead of `unknown column`."""
    other = next((s for s in ",;\t|" if s != char and len(header) == 1 and s in header[0]), None)
    require(other is None, "data.sep", f"the file's header {header[0]!r} is one column with it: the file looks "
            f"separated by {other!r}; give that, or null (sniffed)", sep)


class _Column:
    """One column as the chunks go by: whether every chunk is numeric, whether it holds a number, and its
    first cell that is not one (named in errors; looked for in the columns `used` only)."""

    def __init__(self, name: str, used: bool):
        self.name, self.used = name, used
        self.numeric, self.has_number, self.first_text = True, False, None

    def add(self, cells: pd.Series, row: int) -> None:
        if is_numeric_dtype(cells):
            self.has_number = self.has_number or bool(cells.notna().any())
            return
        self.numeric = False
        if self.used and not (self.has_number and self.first_text):  # else nothing new can be learnt
            self._look(cells, row)

    def _look(self, cells: pd.Series, row: int) -> None:
        numbers = pd.to_numeric(cells, errors="coerce")
        self.has_number = self.has_number or bool(numbers.notna().any())
        if self.first_text is None:
            bad = np.flatnonzero((cells.notna() & numbers.isna()).to_numpy())
            if len(bad):
                self.first_text = f"row {row + bad[0] + 1} holds {cells.iloc[bad[0]]!r}"

    def not_numeric(self) -> str:
        """`column 'value' is not numeric (row 51 holds 'abc')`."""
        return f"column {self.name!r} is not numeric" + (f" ({self.first_text})" if self.first_text else "")


class _Scan:
    """What the chunked read keeps: what it learns of each column, the values of the columns that may be
    used (numeric in the first chunk; one float64 row each, filled in place), the time axis, and the tail
    of the time columns."""

    def __init__(self, header: list[str], time_cols: list[str], chosen: list[str] | None, time_format,
                 capacity: int):
        self.time_cols, self.chosen, self.rows, self.tail = time_cols, chosen, 0, None
        self.columns = {c: _Column(c, chosen is None or c in chosen) for c in header if c not in time_cols}
        self.time = _TimeAxis(time_cols, time_format, capacity)
        self.capacity, self.kept, self.buffer = capacity, None, None

    def add(self, chunk: pd.DataFrame) -> None:
        chunk.columns = [str(c) for c in chunk.columns]
        if self.kept is None:
            self.kept = [c for c in self.chosen or self.columns if is_numeric_dtype(chunk[c])]
            self.buffer = np.empty((len(self.kept), max(self.capacity, len(chunk))))
        for name, col in self.columns.items():
            col.add(chunk[name], self.rows)
        end = self.rows + len(chunk)
        self.buffer = _room(self.buffer, self.rows, end)
        for j, name in enumerate(self.kept):
            if self.columns[name].numeric:
                self.buffer[j, self.rows: end] = chunk[name].to_numpy(dtype=np.float64)
        if self.time_cols:
            self.time.add(chunk)
            self._keep_tail(chunk)
        self.rows = end

    def _keep_tail(self, chunk: pd.DataFrame) -> None:
        """The last TAIL_ROWS rows of the time columns as read (a copy: the chunk itself is let go)."""
        tail = chunk[self.time_cols].iloc[-TAIL_ROWS:]
        if self.tail is not None:
            tail = pd.concat([self.tail, tail]).iloc[-TAIL_ROWS:]
        self.tail = tail.reset_index(drop=True).copy()

    def values(self, columns: list[str]) -> np.ndarray:
        """The columns as one (rows, columns) float64 array: a view of the buffer when it holds just these
        columns in this order (the usual case), else a copy."""
        index = [self.kept.index(c) for c in columns]
        rows = self.buffer[:, :self.rows] if index == list(range(len(self.kept))) else self.buffer[index, :self.rows]
        self.buffer = None
        return rows.T


def _require_known(option: str, names: list[str], available: list[str]) -> None:
    unknown = [n for n in names if n not in available]
    require(not unknown, option, f"unknown column(s) {', '.join(unknown)}; available: {', '.join(available)}",
            names[0] if len(names) == 1 else names)


def fill_missing(values: np.ndarray, columns: list[str], missing: str) -> np.ndarray:
    """`error`: name the first non-finite value; `interpolate`: linear in the row index (ends: nearest value),
    in place, one column at a time.

    Rows are never dropped: seasons and k-step horizons count rows, so the spacing must stay even.
    """
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if missing == "error":
        row, col = np.argwhere(bad)[0]
        raise ConfigError(f"data.missing='error' is invalid for this file: row {row + 1} of column {columns[col]!r} "
                          f"is {values[row, col]} (missing or infinite); fix the file, or train with "
                          "data.missing=interpolate")
    empty = [c for c, b in zip(columns, bad.all(0)) if b]
    require(not empty, "data.columns", "every value of a column is missing", empty)
    rows = np.arange(len(values))
    for j in np.flatnonzero(bad.any(0)):
        hole = bad[:, j]
        values[hole, j] = np.interp(rows[hole], rows[~hole], values[~hole, j])
    return values


class _TimeAxis:
    """The time axis, parsed chunk by chunk into one array: dates (one column, with `time_format` or text),
    numbers, or for several integer columns such as year and quarter a mixed-radix number
    (1959 + (quarter - 1) / 4) over the whole file's range."""

    def __init__(self, time_cols: list[str], time_format: str | None, capacity: int):
        self.cols, self.format, self.capacity = time_cols, time_format, capacity
        self.kind, self.buffer, self.rows, self.tz = None, None, 0, None

    def add(self, chunk: pd.DataFrame) -> None:
        parsed = self._parts(chunk) if len(self.cols) > 1 else self._one(chunk[self.cols[0]])
        end = self.rows + parsed.shape[-1]
        if self.buffer is None:
            self.buffer = np.empty(parsed.shape[:-1] + (max(self.capacity, end),), dtype=parsed.dtype)
        self.buffer = _room(self.buffer, self.rows, end)
        self.buffer[..., self.rows: end] = parsed
        self.rows = end

    def _parts(self, chunk: pd.DataFrame) -> np.ndarray:
        not_int = [c for c in self.cols if not is_integer_dtype(chunk[c])]
        require(not not_int, "data.time_column", "several time columns must all hold integers (e.g. year, quarter)",
                self.cols)
        return chunk[self.cols].to_numpy(dtype=np.int64).T

    def _one(self, col: pd.Series) -> np.ndarray:
        if self.kind is None:
            self._choose(col)
        return self._dates(col) if self.kind == "dates" else self._numbers(col)

    def _choose(self, col: pd.Series) -> None:
        """Dates with `time_format` or text, else numbers; text dates keep the format pandas guesses from the
        first one for every chunk, as one call over the whole column would."""
        first = col.iloc[0]
        self.first = first.item() if isinstance(first, np.generic) else first
        self.kind = "dates" if self.format is not None or not is_numeric_dtype(col) else "numbers"
        valid = col.first_valid_index()
        self.parse_format = self.format or (guess_datetime_format(str(col[valid])) if valid is not None else None)

    def _dates(self, col: pd.Series) -> np.ndarray:
        try:
            dates = pd.to_datetime(col.astype(str) if is_numeric_dtype(col) else col, format=self.parse_format)
        except (ValueError, TypeError):
            raise ConfigError(f"data.time_format={self.format!r} is invalid for column {self.cols[0]!r} "
                              f"(first value {self.first!r}): give a strftime format such as %Y%m%d") from None
        if getattr(dates.dt, "tz", None) is not None:  # kept as UTC, the zone put back at the end
            self.tz, dates = dates.dt.tz, dates.dt.tz_convert(None)
        return dates.to_numpy()

    def _numbers(self, col: pd.Series) -> np.ndarray:
        if not is_numeric_dtype(col):
            text = _Column(self.cols[0], True)
            text.add(col, self.rows)
            raise ConfigError(f"data.time_column={self.cols[0]!r} is invalid: {text.not_numeric()} though its "
                              "first rows are numbers")
        return col.to_numpy(dtype=np.float64)

    def finish(self) -> pd.Index:
        data, self.buffer = self.buffer[..., :self.rows], None
        if len(self.cols) > 1:
            time = pd.Index(composite_time(data.T))
        elif self.kind == "dates":
            time = pd.DatetimeIndex(data, copy=False)
            time = time.tz_localize("UTC").tz_convert(self.tz) if self.tz is not None else time
        else:
            time = pd.Index(data, copy=False)
        _require_increasing(time, self.cols)
        return time


def parse_time(frame: pd.DataFrame, time_cols: list[str], time_format: str | None) -> pd.Index:
    """The time axis of `frame`'s time columns (see _TimeAxis), checked to increase."""
    axis = _TimeAxis(time_cols, time_format, len(frame))
    axis.add(frame)
    return axis.finish()


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
    t = time.asi8 if isinstance(time, pd.DatetimeIndex) else time.to_numpy()
    bad = np.flatnonzero(t[1:] <= t[:-1])  # compared in place: no array of differences
    if len(bad):
        row = bad[0] + 2  # 1-based data row of the second of the pair
        kind = "a duplicate" if t[bad[0] + 1] == t[bad[0]] else "not increasing"
        raise ConfigError(f"data.time_column={time_cols if len(time_cols) > 1 else time_cols[0]!r} is invalid: "
                          f"row {row} is {kind} ({time[bad[0]]} then {time[bad[0] + 1]}); rows must be in time order")


def next_times(frame: pd.DataFrame, time_cols: list[str], time_format: str | None, steps: int) -> pd.DataFrame:
    """The time columns of the `steps` rows after the last one of `frame`, formatted as the file writes them."""
    if len(time_cols) > 1:
        return pd.DataFrame(_next_parts(frame[time_cols].to_numpy(), steps), columns=time_cols)
    raw = frame[time_cols[0]]
    time = parse_time(frame, time_cols, time_format)
    if isinstance(time, pd.DatetimeIndex):
        return pd.DataFrame({time_cols[0]: _write_dates(_next_dates(time, steps), raw, time[-1], time_format)})
    return pd.DataFrame({time_cols[0]: _next_numbers(raw, time, steps)})


def _next_parts(parts: np.ndarray, steps: int) -> np.ndarray:
    """Count up the last column from the last row, carrying into the major ones (each minor column's range
    as the file shows it: quarters 1-4)."""
    lows, radix = parts.min(0), parts.max(0) - parts.min(0) + 1
    count = int(parts[-1, 0])
    for j in range(1, parts.shape[1]):
        count = count * int(radix[j]) + int(parts[-1, j] - lows[j])
    count = count + np.arange(1, steps + 1, dtype=np.int64)
    out = np.empty((steps, parts.shape[1]), dtype=parts.dtype)
    for j in range(parts.shape[1] - 1, 0, -1):
        out[:, j], count = count % radix[j] + lows[j], count // radix[j]
    out[:, 0] = count
    return out


def _next_numbers(raw: pd.Series, time: pd.Index, steps: int) -> np.ndarray:
    """Integers (years) stay integers, with their most common step; other numbers take the median step."""
    if is_integer_dtype(raw):
        return raw.iloc[-1] + _most_common(np.diff(raw.to_numpy())) * np.arange(1, steps + 1, dtype=np.int64)
    return time[-1] + np.median(np.diff(time.to_numpy())) * np.arange(1, steps + 1)


def _most_common(steps: np.ndarray):
    values, counts = np.unique(steps, return_counts=True)
    return values[counts.argmax()]


def _next_dates(time: pd.DatetimeIndex, steps: int) -> pd.DatetimeIndex:
    try:
        return pd.date_range(time[-1], periods=steps + 1, freq=_date_step(time))[1:]
    except (ValueError, OverflowError):  # OutOfBoundsDatetime is a ValueError
        raise ConfigError(f"--steps={steps} is invalid: the dates after {time[-1]} would leave the calendar "
                          "pandas can write; ask for fewer steps") from None


def _date_step(time: pd.DatetimeIndex):
    """pandas' inferred frequency when every step agrees. With gaps (holidays, a missing month), that fails:
    then calendar months or years (every date on one day of the month, or a month end, about k months
    apart), business days (no weekend date, mostly one day apart), else the most common step."""
    if len(time) >= 3:
        try:
            freq = pd.infer_freq(time)
        except (TypeError, ValueError):
            freq = None
        if freq:
            return freq
    step = pd.Timedelta(_most_common(np.diff(time.to_numpy())))
    days = step / pd.Timedelta(days=1)
    months = round(days / MONTH_DAYS)
    if months >= 1 and abs(days - months * MONTH_DAYS) <= 3:
        if time.is_month_end.all():
            return pd.offsets.MonthEnd(months)
        if time.day.nunique() == 1:
            return pd.offsets.MonthBegin(months) if time[0].day == 1 else pd.DateOffset(months=months)
    if step == pd.Timedelta(days=1) and (time.dayofweek < 5).all():
        return pd.offsets.BDay()
    return step


def _write_dates(future: pd.DatetimeIndex, raw: pd.Series, last: pd.Timestamp, time_format: str | None) -> pd.Series:
    """Dates as the file writes them: with `time_format` (integers when the file holds numbers such as
    20020105), else in the format pandas guesses from the file's last date, else ISO."""
    if time_format:
        text = pd.Series(future.strftime(time_format))
        return text.astype(raw.dtype) if is_numeric_dtype(raw) else text
    value = raw.iloc[-1]
    guessed = guess_datetime_format(value) if isinstance(value, str) else None
    if guessed and last.strftime(guessed) == value:
        return pd.Series(future.strftime(guessed))
    midnight = (future == future.normalize()).all() and last == last.normalize()
    return pd.Series(future.strftime("%Y-%m-%d" if midnight else "%Y-%m-%d %H:%M:%S"))
