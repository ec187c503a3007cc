"""Errors a user can fix by changing an option; the entry point prints them as one line."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the option and what is allowed."""


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; the run stops instead of recording NaN as a result."""


def require(ok: bool, option: str, allowed: str, value: object) -> None:
    """Raise ConfigError naming `option`, the offending `value` and what is `allowed` unless `ok`."""
    if not ok:
        raise ConfigError(f"{option}={value!r} is invalid: {allowed}")


def require_choice(option: str, value: object, choices) -> None:
    """Raise ConfigError unless `value` is one of `choices`."""
    require(value in choices, option, "allowed values are " + ", ".join(map(str, choices)), value)


def require_positive_int(option: str, value: object) -> None:
    """Raise ConfigError unless `value` is an integer >= 1 (bools are rejected)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    require(ok, option, "must be a positive integer", value)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, ...); the previous checkpoint file is kept whole."""
