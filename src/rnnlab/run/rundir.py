"""Run directories: distinct by default, and claimed before Hydra writes into them.

Hydra creates the run (or sweep) directory and writes `.hydra/` before the task runs, so these
checks run in a Hydra callback (`RunDirectoryGuard`, listed in conf/hydra/default.yaml) at the start
of the run: a directory that cannot be created, one that a live run holds (`<dir>/.lock`, an
advisory lock the run keeps until it ends), or one that holds another run's results or checkpoints
is refused in one line, exit status 2, before anything is written into it. A resume of that run
(`ckpt_path=last`, or a checkpoint inside the directory) may use it, and so may a job a cluster
scheduler requeues into its own directory (SLURM_RESTART_COUNT > 0).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import USER_ERROR_EXIT, ConfigError, error_line

LOCK_FILE = ".lock"
# What a finished or interrupted run leaves in metrics.json; config_error trained nothing, so its
# directory may be used again (rerunning a fixed command into the same directory).
RESULT_STATUSES = ("ok", "diverged", "interrupted")


def register_resolvers() -> None:
    """`${unique_suffix:}`: six random hex digits, the same for every use within one run (cached), so
    that runs started in the same second (`${now:...}` has one-second resolution) get distinct directories."""
    if not OmegaConf.has_resolver("unique_suffix"):
        OmegaConf.register_new_resolver("unique_suffix", lambda: secrets.token_hex(3), use_cache=True)


register_resolvers()


def is_resume(directory: Path, ckpt_path: Any) -> bool:
    """A resume of the run in `directory`: `ckpt_path=last`, a checkpoint inside it, or a requeued SLURM job."""
    if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
        return True
    if ckpt_path == "last":
        return True
    if isinstance(ckpt_path, str) and ckpt_path:
        return Path(ckpt_path).expanduser().resolve().is_relative_to(directory.resolve())
    return False


def previous_run(directory: Path) -> str | None:
    """What another run left in `directory` (results or checkpoints), described; None if nothing."""
    for metrics in [directory / "metrics.json", *sorted(directory.glob("*/metrics.json"))]:
        try:
            status = json.loads(metrics.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            continue
        if status in RESULT_STATUSES:
            return f"holds the results of another run ({metrics.relative_to(directory)}: status {status})"
    for checkpoints in [directory / "checkpoints", *sorted(directory.glob("*/checkpoints"))]:
        if checkpoints.is_dir() and any(checkpoints.glob("*.ckpt")):
            return f"holds the checkpoints of another run ({checkpoints.relative_to(directory)})"
    return None


def claim(directory: Path, option: str, resume: bool) -> int:
    """Create `directory` if needed and lock it for this run; returns the lock's file descriptor.
    A ConfigError names the option when the directory cannot be used."""
    shown = f"{option}={str(directory)!r}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"{shown} cannot be written ({e.strerror}): give a writable directory") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"{shown} is in use by a live run (pid {pid}): give another directory") from None
    found = None if resume else previous_run(directory)
    if found:
        release(directory, fd)  # the lock file this attempt may have created; the lock is ours here
        raise ConfigError(f"{shown} {found}: give another directory, or resume it with ckpt_path=last")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def release(directory: Path, fd: int | None) -> None:
    """Remove the lock file and release the lock (the process's exit releases it too)."""
    if fd is None:
        return
    try:
        (directory / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(fd)


def _rank_zero() -> bool:
    """Processes a data-parallel launcher starts for ranks > 0 share rank 0's directory."""
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


class RunDirectoryGuard(Callback):
    """Hydra callback: claim the run (or sweep) directory before Hydra writes into it."""

    def __init__(self) -> None:
        self._claimed: tuple[Path, int] | None = None

    def _claim(self, config: DictConfig, key: str) -> None:
        if not _rank_zero():
            return
        directory = Path(str(OmegaConf.select(config, key)))
        try:
            fd = claim(directory, key, is_resume(directory, config.get("ckpt_path")))
        except ConfigError as e:
            print(error_line(e), file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
        self._claimed = (directory, fd)
        atexit.register(self._release)  # also when the task ends the process (sys.exit after an error line)

    def _release(self) -> None:
        if self._claimed is not None:
            release(*self._claimed)
            self._claimed = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
