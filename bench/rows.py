"""The one JSON schema of every bench script's `--out` file, so that a script can read any of them:
a list of rows, one per measured configuration,

    {"bench": "bench" | "end_to_end" | "gpu_check",   # the script that measured it
     "core": "lstm", "hidden": 256, "device": "cpu", "batch": 32, "num_steps": 35,
     "steps": 1370,                                   # training steps of the project's loop in the row
     "compile": "false",                              # model.compile of the project's loop
     "loops": {"project": {"tokens_per_s": 9.1e4, "peak_memory_mb": 431.0, ...},
               "book": {...}, "raw": {...}}}

`loops` holds each contender's tokens/s and peak memory (null where it was not measured separately,
e.g. the CPU's resident set of loops sharing one process); a loop may add fields (wall_s, steps).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def loop(tokens_per_s: float | None, peak_memory_mb: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"tokens_per_s": tokens_per_s, "peak_memory_mb": peak_memory_mb, **extra}


def row(bench: str, core: str, hidden: int, device: str, batch: int, num_steps: int, steps: int | None,
        loops: dict[str, dict[str, Any]], compile: str = "false", **extra: Any) -> dict[str, Any]:
    return {"bench": bench, "core": core, "hidden": hidden, "device": device, "batch": batch,
            "num_steps": num_steps, "steps": steps, "compile": str(compile).lower(), "loops": loops, **extra}


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    Path(path).write_text(json.dumps(rows, indent=2) + "\n")


def read_rows(path: Path) -> list[dict[str, Any]]:
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not all("core" in r and "loops" in r for r in rows):
        raise ValueError(f"{path}: not a list of bench rows (see bench/rows.py)")
    return rows
