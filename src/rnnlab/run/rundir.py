"""Run directories: distinct by default, and claimed before Hydra writes into them.

Hydra creates the run (or sweep) directory and writes `.hydra/` before the task runs, so these
checks run in a Hydra callback (`RunDirectoryGuard`, listed in conf/hydra/default.yaml) at the start
of the run, for train.py and eval.py alike: a directory that cannot be created, one that a live run
holds (`<dir>/.lock`, an advisory lock the run keeps until it ends), or one that holds another run's
results or checkpoints is refused in one line, exit status 2, before anything is written into it.
A directory belongs to the command that made it (`.hydra/hydra.yaml`: its config, train or eval).
A resume of a training run (`ckpt_path=last`, or a checkpoint inside the directory) may use its
directory, and so may a job a cluster scheduler requeues into its own directory
(SLURM_RESTART_COUNT > 0). An evaluation (`fresh_only`) never shares one: another run's saved
config (.hydra) refuses it too, and (`discard_unused`) a directory it created and left holding only
Hydra's own files (a failed evaluation) is removed when it ends.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from rnnlab.compat import RANK_VARIABLES
from rnnlab.errors import ConfigError, error_line
from rnnlab.run.result import end_before_run

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


def _here_and_jobs(directory: Path, name: str) -> list[Path]:
    """`directory/name` and, for a multirun's directory, `directory/<job>/name`."""
    return [directory / name, *sorted(directory.glob(f"*/{name}"))]


def _recorded_checkpoint(metrics: Path) -> str | None:
    """The checkpoint an interrupted run's metrics.json names to resume from (None: stopped before training,
    so the directory holds nothing to keep)."""
    try:
        return json.loads(metrics.read_text()).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None


def previous_run(directory: Path, fresh_only: bool = False) -> str | None:
    """What another run left in `directory` (results or checkpoints), described; None if nothing.
    `fresh_only` (an evaluation): a metrics.json of any status and a saved config (.hydra) count too."""
    for metrics in _here_and_jobs(directory, "metrics.json"):
        try:
            status = json.loads(metrics.read_text()).get("status")
        except (OSError, ValueError, AttributeError):
            if fresh_only and metrics.exists():
                return f"holds the results of another run ({metrics.relative_to(directory)})"
            continue
        stopped_before_training = status == "interrupted" and not _recorded_checkpoint(metrics)
        if (status in RESULT_STATUSES and not stopped_before_training) or (fresh_only and metrics.is_file()):
            return f"holds the results of another run ({metrics.relative_to(directory)}: status {status})"
    for checkpoints in _here_and_jobs(directory, "checkpoints"):
        if checkpoints.is_dir() and any(checkpoints.glob("*.ckpt")):
            return f"holds the checkpoints of another run ({checkpoints.relative_to(directory)})"
    if fresh_only:
        for saved in [*_here_and_jobs(directory, ".hydra"), directory / "multirun.yaml"]:
            if saved.exists():
                return f"holds another run's config ({saved.relative_to(directory)})"
    return None


def owner(directory: Path) -> str | None:
    """The config (train, eval) of the run whose `.hydra/hydra.yaml` is in `directory`; None if none."""
    try:
        name = OmegaConf.select(OmegaConf.load(directory / ".hydra" / "hydra.yaml"), "hydra.job.config_name")
    except Exception:  # no such file, or not Hydra's YAML: nobody's
        return None
    return None if name is None else str(name)


def first_missing(directory: Path) -> Path | None:
    """The outermost of `directory` and its parents that does not exist yet: what creating it makes."""
    missing = None
    for path in [directory, *directory.parents]:
        if path.exists():
            break
        missing = path
    return missing


def enclosing_run(directory: Path) -> Path | None:
    """The run directory (one with `.hydra/` or metrics.json) that `directory` lies inside, if any: a run's
    own files (checkpoints/, .hydra/, its TensorBoard runs) are never another run's directory."""
    for parent in directory.resolve().parents:
        if (parent / ".hydra").is_dir() or (parent / "metrics.json").is_file():
            return parent
    return None


def claim(directory: Path, option: str, resume: bool, fresh_only: bool = False, config_name: str | None = None) -> int:
    """Create `directory` if needed and lock it for this run; returns the lock's file descriptor.
    A ConfigError names the option when the directory cannot be used. `config_name`: the claiming
    run's config; a directory another config's run made is refused even to a resume."""
    shown = f"{option}={str(directory)!r}"
    inside = enclosing_run(directory)  # before anything is created there
    if inside is not None:
        raise ConfigError(f"{shown} lies inside the run directory {str(inside)!r}: give a directory of its own")
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
    made_by = owner(directory) if config_name else None
    foreign = made_by not in (None, config_name)  # e.g. an evaluation's directory for train.py
    found = previous_run(directory, fresh_only) if fresh_only or not resume else None
    if found or foreign:
        release(directory, fd)  # the lock file this attempt may have created; the lock is ours here
        if not found:
            raise ConfigError(f"{shown} holds a run of {made_by}.py (.hydra/hydra.yaml), not of {config_name}.py: "
                              "give another directory")
        hint = "" if fresh_only or foreign else ", or resume it with ckpt_path=last"
        raise ConfigError(f"{shown} {found}: give another directory{hint}")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as e:  # a full disk, a quota
        release(directory, fd)
        raise ConfigError(f"{shown} cannot be written ({e.strerror}): free space or give another directory") from None
    return fd


def release(directory: Path, fd: int | None) -> None:
    """Remove the lock file and release the lock (the process's exit releases it too)."""
    if fd is None:
        return
    try:
        (directory / LOCK_FILE).unlink(missing_ok=True)
    finally:
        os.close(fd)


def discard_if_unused(directory: Path, created: Path, job_name: str | None) -> bool:
    """Remove `directory`, which this run created, when it holds nothing but Hydra's own files (.hydra,
    the job's log) and the lock, and then the parents it created (up to `created`) left empty."""
    own = {".hydra", LOCK_FILE, f"{job_name}.log"}
    try:
        if not {p.name for p in directory.iterdir()} <= own:
            return False
        shutil.rmtree(directory)
        for parent in directory.parents:
            if not parent.is_relative_to(created):
                break
            parent.rmdir()  # OSError when another run has put something there meanwhile: kept
    except OSError:
        pass
    return not directory.exists()


# With none of the variables Lightning reads a process's rank from set (rnnlab.compat.RANK_VARIABLES)
# and Lightning not imported, this is rank 0 without importing it: a refused run then ends in about
# 1 s instead of 4-5 s (measured on 2 CPU cores: importing Lightning and torch).


def _rank_zero() -> bool:
    """Processes a data-parallel launcher starts for ranks > 0 share rank 0's directory."""
    if "lightning" not in sys.modules and not any(os.environ.get(k) is not None for k in RANK_VARIABLES):
        return True
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


class RunDirectoryGuard(Callback):
    """Hydra callback: claim the run (or sweep) directory before Hydra writes into it.

    `fresh_only`: no resume, and another run's saved config refuses a directory too (eval.py: an
    evaluation never writes into a training run's files). `discard_unused`: remove the run directory
    this run created if it ends holding only Hydra's own files (eval.py writes nothing when it fails)."""

    def __init__(self, fresh_only: bool = False, discard_unused: bool = False) -> None:
        self.fresh_only, self.discard_unused = fresh_only, discard_unused
        self._claimed: tuple[Path, int] | None = None
        self._discard: tuple[Path, str | None] | None = None  # (the outermost directory created, the job's name)

    def _claim(self, config: DictConfig, key: str) -> None:
        if not _rank_zero():
            return
        directory = Path(str(OmegaConf.select(config, key)))
        resume = not self.fresh_only and is_resume(directory, config.get("ckpt_path"))
        created = first_missing(directory)
        try:
            fd = claim(directory, key, resume, self.fresh_only, OmegaConf.select(config, "hydra.job.config_name"))
        except ConfigError as e:
            # Before the run exists (Hydra calls this before the task): no directory of its own to record
            # the refusal in, so the line and the exit status only, as rnnlab.run.result.finish gives them.
            sys.exit(end_before_run("config_error", error_line(e)))
        self._claimed = (directory, fd)
        if self.discard_unused and created is not None and key == "hydra.run.dir":
            self._discard = (created, OmegaConf.select(config, "hydra.job.name"))
        atexit.register(self._release)  # also when the task ends the process (sys.exit after an error line)

    def _release(self) -> None:
        if self._claimed is not None:
            if self._discard is not None:  # under the lock still: nobody else claims it meanwhile
                discard_if_unused(self._claimed[0], *self._discard)
            release(*self._claimed)
            self._claimed = self._discard = None

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._claim(config, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._release()
