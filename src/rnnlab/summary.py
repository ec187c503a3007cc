"""Turn a multirun directory into a comparison: a table of every job's overrides and final metrics
(CSV, and Markdown on the terminal), sorted by the metric, and a plot of the metric against each
swept value.

    rnnlab-summary outputs/multiruns/2026-11-23_10-00-00 [--metric val/ppl]
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402

from rnnlab.errors import ConfigError  # noqa: E402
from rnnlab.run.outputs import read_metrics  # noqa: E402

METRIC_COLUMNS = ("val/ppl", "best/val/ppl", "train/ppl", "val/mse", "test/mse_k1", "test/mse_k64",
                  "epochs", "tokens_per_s", "seconds")
# Forecasting runs: the headline MASE of the model and its baselines, side by side for every horizon.
FORECAST_COLUMN = re.compile(r"test/(naive_|snaive_)?mase_k(\d+)")


def read_jobs(sweep_dir: Path) -> list[dict]:
    """One row per job directory: job name, its command-line overrides, metrics.json (or a note it is missing)."""
    rows = []
    for job in sorted(sweep_dir.iterdir(), key=lambda p: (len(p.name), p.name)):
        overrides_file = job / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        overrides = dict(o.split("=", 1) for o in yaml.safe_load(overrides_file.read_text()) or [] if "=" in o)
        metrics = read_metrics(job / "metrics.json")
        rows.append({"job": job.name, "overrides": overrides, "metrics": metrics})
    return rows


def swept_keys(rows: list[dict]) -> list[str]:
    """Override keys whose value differs between jobs."""
    keys = sorted({k for r in rows for k in r["overrides"]})
    return [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]


def _sort_key(metric: str):
    def key(row):
        v = row["metrics"].get(metric)
        ok = row["metrics"].get("status") == "ok" and isinstance(v, (int, float)) and math.isfinite(v)
        return (not ok, v if ok else 0.0, row["job"])
    return key


def table(rows: list[dict], metric: str) -> tuple[list[str], list[list]]:
    swept = swept_keys(rows)
    metrics = [metric] + [c for c in METRIC_COLUMNS if c != metric and any(c in r["metrics"] for r in rows)]
    forecast = {c for r in rows for c in r["metrics"] if FORECAST_COLUMN.fullmatch(c)} - set(metrics)
    metrics += sorted(forecast, key=_forecast_order)
    header = ["job", *swept, *metrics, "status", "error"]
    body = []
    for r in sorted(rows, key=_sort_key(metric)):
        m = r["metrics"]
        body.append([r["job"], *(r["overrides"].get(k, "") for k in swept),
                     *(_fmt(m.get(c)) for c in metrics), m.get("status", ""), m.get("error", "")])
    return header, body


def _forecast_order(column: str):
    """By horizon, then model, persistence, seasonal naive."""
    match = FORECAST_COLUMN.fullmatch(column)
    return int(match[2]), match[1] or ""


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else v


def markdown(header: list[str], body: list[list]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def plot(rows: list[dict], metric: str, path: Path) -> Path | None:
    """The metric against each swept value, one panel per swept key; failed jobs are left out."""
    swept = swept_keys(rows)
    ok = [r for r in rows if r["metrics"].get("status") == "ok" and r["metrics"].get(metric) is not None]
    if not swept or not ok:
        return None
    fig, axes = plt.subplots(1, len(swept), figsize=(4 * len(swept), 3.2), squeeze=False)
    for ax, key in zip(axes[0], swept):
        values = sorted({r["overrides"].get(key, "") for r in ok}, key=_natural)
        xs = [values.index(r["overrides"].get(key, "")) for r in ok]
        ax.scatter(xs, [r["metrics"][metric] for r in ok])
        ax.set_xticks(range(len(values)), values)
        ax.set(xlabel=key, ylabel=metric)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _natural(v: str):
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def summarize(sweep_dir: Path, metric: str | None = None) -> dict:
    """Write <sweep_dir>/summary.csv (and summary.png) and return the table."""
    if not sweep_dir.is_dir():
        raise ConfigError(f"sweep_dir={str(sweep_dir)!r} is not a directory")
    rows = read_jobs(sweep_dir)
    if not rows:
        raise ConfigError(f"sweep_dir={str(sweep_dir)!r} holds no Hydra job directories "
                          "(none has .hydra/overrides.yaml)")
    if metric is None:
        metric = next((m for m in ("val/ppl", "val/mse") if any(m in r["metrics"] for r in rows)), "val/ppl")
    elif not any(metric in r["metrics"] for r in rows):
        known = sorted({k for r in rows for k, v in r["metrics"].items() if isinstance(v, (int, float))
                        and not isinstance(v, bool)})
        raise ConfigError(f"--metric={metric!r} is invalid: no job recorded it; recorded are " + ", ".join(known))
    header, body = table(rows, metric)
    csv_path = sweep_dir / "summary.csv"
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *body])
    return {"metric": metric, "header": header, "rows": body, "csv": csv_path,
            "markdown": markdown(header, body), "plot": plot(rows, metric, sweep_dir / "summary.png")}

