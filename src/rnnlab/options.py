"""Each option of rnnlab's own classes is declared once: in the signature that takes it.

    @checked(cross_check)
    def __init__(self, batch_size: Annotated[int, POSITIVE_INT] = 32, ...)

The `Rule` in the annotation is what the value must be. The config schema (rnnlab.schema) reads the rules of
every `_target_` before anything is built and names a bad value by its config path
(`data.batch_size=0 is invalid: must be a positive integer`). `@checked` runs the same rules, and the
cross-field checks given to it, when the class is built from Python (`TextDataModule(batch_size=0)`), naming
the bare option. Nothing here imports torch or Lightning: checking a config stays cheap.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
import typing
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from rnnlab.errors import ConfigError

Name = Callable[[str], str]  # option -> how the error line names it: `data.batch_size`, or `batch_size`
CrossCheck = Callable[[Mapping[str, Any], Name], None]  # all the values (defaults included) -> None or ConfigError


def shown(value: Any) -> str:
    """A value as the user wrote it in YAML: null, true, 'text', 1.5."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


@dataclass(frozen=True)
class Rule:
    """A value test and what is allowed, as the error line states it."""

    test: Callable[[Any], bool]
    allowed: str

    def __call__(self, option: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(f"{option}={shown(value)} is invalid: {self.allowed}")


@dataclass(frozen=True)
class Check:
    """A rule that is a function (option, value) -> None or ConfigError: for what a test and one sentence
    cannot say (a path that must name a regular file)."""

    check: Callable[[str, Any], None]

    def __call__(self, option: str, value: Any) -> None:
        self.check(option, value)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool, not nan or inf, not a string)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(low: int | None = None, high: int | None = None, allowed: str | None = None) -> Rule:
    def test(v):
        return is_int(v) and (low is None or v >= low) and (high is None or v <= high)

    if allowed is None:
        allowed = ("must be a positive integer" if (low, high) == (1, None) else
                   f"must be an integer >= {low}" if high is None else f"must be an integer in [{low}, {high}]")
    return Rule(test, allowed)


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           allowed: str | None = None) -> Rule:
    """A finite number in the interval given (bounds closed unless `*_open`)."""
    def test(v):
        return is_number(v) and (low is None or (v > low if low_open else v >= low)) and (
            high is None or (v < high if high_open else v <= high))

    if allowed is None:
        if high is None:
            allowed = f"must be a finite number {'>' if low_open else '>='} {low:g}" if low is not None else \
                "must be a finite number"
        else:
            allowed = f"must lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Rule(test, allowed)


def choice(*values: Any) -> Rule:
    listed = ", ".join(dict.fromkeys(map(str, values)))  # 16 and "16" once
    return Rule(lambda v: not isinstance(v, bool) and v in values, "allowed values are " + listed)


def nullable(rule: Rule, meaning: str) -> Rule:
    """`rule`, or null with the given meaning."""
    return Rule(lambda v: v is None or rule.test(v), f"{rule.allowed}, or null ({meaning})")


def either(*rules: Rule, allowed: str) -> Rule:
    return Rule(lambda v: any(r.test(v) for r in rules), allowed)


def list_of(rule: Rule, length: int | None = None, allowed: str = "") -> Rule:
    def test(v):
        return isinstance(v, (list, tuple)) and len(v) > 0 and (length is None or len(v) == length) and all(
            rule.test(x) for x in v)

    return Rule(test, allowed)


BOOL = Rule(lambda v: isinstance(v, bool), "must be true or false")
POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
FRACTION = number(0, 1, high_open=True)                      # [0, 1): dropout and friends
OPEN_FRACTION = number(0, 1, low_open=True, high_open=True,  # (0, 1)
                       allowed="must lie strictly between 0 and 1")
NON_NEGATIVE = number(0)
POSITIVE = number(0, low_open=True)
TEMPERATURE = number(0, allowed="must be a finite number >= 0 (0: greedy)")
SEED = integer(0, 2**32 - 1)
STRING = Rule(lambda v: isinstance(v, str), "must be a string")
PREFIX = Rule(lambda v: isinstance(v, str) and v != "", "must be a non-empty string (the text a sample continues)")
DATA_PREFIX = nullable(PREFIX, "the data's sample prefix, data.sample_prefix")
def _regular_file_or_null(option: str, value: Any) -> None:
    """null or "" (the bundled corpus), or a path to a regular file (never a FIFO, device or directory).
    A path with ~ is named as given and as expanded (`'~/x' (/home/me/x) does not exist`)."""
    import os

    from rnnlab.errors import require_regular_file

    if value not in (None, ""):
        if not isinstance(value, str):
            raise ConfigError(f"{option}={value!r} is invalid: must be a path to a text file, or null")
        try:
            require_regular_file(option, value)
        except ConfigError as e:
            expanded = os.path.expanduser(value)
            if expanded == value:
                raise
            raise ConfigError(str(e).replace(f"{option}={expanded!r}", f"{option}={value!r} ({expanded})", 1)) from None


FILE_OR_NULL = Check(_regular_file_or_null)
NAME = Rule(lambda v: isinstance(v, (str, int)) and not isinstance(v, bool), "must be a name")
NAMES = either(NAME, list_of(NAME), allowed="must be a column name or a list of names")
CHARTS = Rule(lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, (list, tuple)) and all(
    isinstance(x, str) for x in t) for k, t in v.items()), "must map chart titles to lists of tag patterns")
HORIZONS = list_of(POSITIVE_INT, allowed="give a non-empty list of positive integer horizons")


# Reading the declarations -------------------------------------------------------------------------------
def _function(obj: Any) -> Callable | None:
    """The callable whose signature declares `obj`'s options: a class's __init__, or the function itself."""
    if inspect.isclass(obj):
        return next((k.__dict__["__init__"] for k in obj.__mro__ if "__init__" in k.__dict__), None)
    return obj if callable(obj) else None


class UnreadableRule(Exception):
    """A declared rule whose annotation cannot be evaluated: a defect of the code, never passed over."""


def _annotation(fn: Callable, annotation: Any) -> Any:
    """An annotation as an object (modules with `from __future__ import annotations` keep strings)."""
    if not isinstance(annotation, str):
        return annotation
    module = sys.modules.get(getattr(inspect.unwrap(fn), "__module__", ""), None)
    try:
        return eval(annotation, vars(module) if module else {})  # noqa: S307 - the module's own annotation
    except Exception:
        if "Annotated[" in annotation:  # a declared rule that cannot be read would be dropped silently
            raise UnreadableRule(f"{fn.__qualname__}: the annotation {annotation!r} cannot be evaluated") from None
        return None


@functools.lru_cache(maxsize=None)
def _declared(fn: Callable) -> tuple[dict[str, Rule | Check], dict[str, Any]]:
    """(the rule of every annotated parameter, every parameter's default)."""
    rules, defaults = {}, {}
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not p.empty:
            defaults[p.name] = p.default
        annotation = _annotation(fn, p.annotation)
        if typing.get_origin(annotation) is typing.Annotated:
            rule = next((m for m in annotation.__metadata__ if isinstance(m, (Rule, Check))), None)
            if rule is not None:
                rules[p.name] = rule
    return rules, defaults


@functools.lru_cache(maxsize=None)
def located(target: str | None) -> Any:
    """The object a config's `_target_` names (None if it cannot be imported)."""
    if not isinstance(target, str):
        return None
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception:
        return None


def rules_of(obj: Any) -> dict[str, Rule | Check]:
    """The rules `obj` (a class or a function) declares in its signature, by option; {} for others."""
    return _declarations(obj)[0]


def _declarations(obj: Any) -> tuple[dict, dict, tuple]:
    """(rules, defaults, cross-field checks) of `obj`; empty for what has no readable signature."""
    fn = _function(obj)
    try:
        rules, defaults = _declared(fn) if fn is not None else ({}, {})
    except (TypeError, ValueError):
        return {}, {}, ()
    return rules, defaults, getattr(fn, "cross_checks", ())


def check_values(obj: Any, values: Mapping[str, Any], name: Name = lambda option: option) -> None:
    """Check `values` against what `obj` declares: each option's rule, then the cross-field checks (which
    see the signature's defaults for the options not given)."""
    rules, defaults, cross_checks = _declarations(obj)
    for option, rule in rules.items():
        if option in values:
            rule(name(option), values[option])
    every = {**defaults, **values}
    for cross in cross_checks:
        cross(every, name)


def plain_value(value: Any) -> Any:
    """Lists and maps of a config (what Hydra passes without `_convert_`) as plain ones, as the schema sees them."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


_CONFIG_PATH: ContextVar[str] = ContextVar("rnnlab_config_path", default="")


@contextmanager
def config_path(path: str):
    """Name the options of the object built inside by their config path (`data.batch_size`): what
    rnnlab.run.build sets around each node it instantiates. Objects that object builds in turn are
    named bare, as from Python."""
    token = _CONFIG_PATH.set(path)
    try:
        yield
    finally:
        _CONFIG_PATH.reset(token)


def checked(*cross_checks: CrossCheck) -> Callable[[Callable], Callable]:
    """Check the arguments of a constructor or factory against its annotated rules and `cross_checks` on
    every call, so a class built from Python refuses what the config schema refuses, in the same words."""

    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            values = {k: plain_value(v) for k, v in bound.arguments.items() if k != "self"}
            path = _CONFIG_PATH.get()
            check_values(call, values, (lambda option: f"{path}.{option}") if path else (lambda option: option))
            with config_path(""):
                return fn(*args, **kwargs)

        call.cross_checks = cross_checks
        # inspect.getfullargspec (what Lightning's load_from_checkpoint reads to drop a checkpoint's settings the
        # class no longer takes) does not follow __wrapped__: without this it sees (*args, **kwargs).
        call.__signature__ = signature
        return call

    return decorate
