"""A run's HParams session, in an event file of its own that each write replaces.

TensorBoard keeps the first summary metadata it reads for a tag, and the hparams plugin reads the
session's settings and status from that metadata: a second session start or end written into a run
is ignored. So a resumed or extended run, whose first process ended "interrupted", would keep that
status and its first settings. Here the session (start and end) is one small event file
(`*.session`) in the run's directory, written anew at the start (status running) and at the end
(success, failure, interrupted); the file it replaces is removed. The run's scalars stay in their
own event file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from torch.utils.tensorboard.writer import FileWriter

from rnnlab.dashboard import hparams as hp

SUFFIX = ".session"


class Session:
    """The HParams session of the run in `run_dir`: its `settings` and, on each write, its status."""

    def __init__(self, run_dir: str | Path, settings: dict[str, Any]):
        self.dir, self.settings = Path(run_dir), dict(settings)
        self.start_time = first_start_time(self.dir) or time.time()

    def write(self, status: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        old = sorted(self.dir.glob(f"events.out.tfevents.*{SUFFIX}"))
        writer = FileWriter(str(self.dir), filename_suffix=SUFFIX)
        writer.add_summary(hp.session_start(self.settings, self.start_time), 0)
        writer.add_summary(hp.session_end(status), 0)  # "running" too: without an end, TensorBoard says unknown
        writer.close()
        for stale in old:  # the new file has its own name (time, host, pid, a counter)
            stale.unlink(missing_ok=True)


def first_start_time(run_dir: Path) -> float | None:
    """The start time of the session a run directory already holds (a resume keeps the run's start)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    for path in sorted(run_dir.glob(f"events.out.tfevents.*{SUFFIX}")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    info = metadata.parse_session_start_info_plugin_data(value.metadata.plugin_data.content)
                    return info.start_time_secs or None
    return None
