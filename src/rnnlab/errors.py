"""Errors a user can fix by changing an option; every entry point prints them as one line."""

from __future__ import annotations

import re
import stat
from pathlib import Path

USER_ERROR_EXIT = 2  # the exit status of a run or command refused for a bad option


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option and what is allowed."""


class DivergenceError(RuntimeError):
    """Training diverged (a non-finite loss, or a validation loss far worse than guessing: rnnlab.callbacks.
    DivergenceGuard); the run stops instead of recording it as a result.

    `good_checkpoint`: the checkpoint whose weights came before the divergence when it is not the
    newest one, last.ckpt ("" when there is none); None: last.ckpt is."""

    def __init__(self, message: str, good_checkpoint: str | None = None):
        super().__init__(message)
        self.good_checkpoint = good_checkpoint


# Lines of Hydra's and OmegaConf's messages that say where, not what.
_NOISE = ("full_key:", "object_type=", "reference_type=", "See https://hydra.cc",
          "Set the environment variable HYDRA_FULL_ERROR")


def error_line(error: BaseException) -> str:
    """The one line every entry point (train.py and the rnnlab-* commands) prints for a user's error;
    a multi-line message (Hydra's, for a bad override) is joined into one."""
    message = str(error).split("Config search path:")[0]  # Hydra's list of where it looked
    parts = [line.strip() for line in message.splitlines() if line.strip() and not line.strip().startswith(_NOISE)]
    text = re.sub(r"([:.]); ", r"\1 ", "; ".join(parts)) or type(error).__name__
    return f"error: {text}"


def require(ok: bool, option: str, allowed: str, value: object) -> None:
    """Raise ConfigError naming `option`, the offending `value` and what is `allowed` unless `ok`."""
    if not ok:
        raise ConfigError(f"{option}={value!r} is invalid: {allowed}")


def require_regular_file(option: str, path: str | Path, wanted: str = "give a UTF-8 text file") -> Path:
    """The path, if it names a regular file; otherwise a ConfigError, decided from `stat` alone (a FIFO
    or a device such as /dev/zero is never opened, so it can neither hang nor fill the memory)."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"{option}={str(p)!r} does not exist: {wanted}") from None
    except OSError as e:
        raise ConfigError(f"{option}={str(p)!r} cannot be read ({e.strerror}): {wanted}") from None
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{option}={str(p)!r} is a directory: {wanted}")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ConfigError(f"{option}={str(p)!r} is {kind}, not a regular file: {wanted}")
    return p


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, ...); the previous checkpoint file is kept whole."""
