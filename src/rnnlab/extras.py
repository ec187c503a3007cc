"""Which of rnnlab's extras installs a missing package, so that its error names the command that
fixes it. The extras are read from rnnlab's installed metadata (pyproject's
[project.optional-dependencies]), not repeated here."""

from __future__ import annotations

import re
from importlib import metadata

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def normalized(name: str) -> str:
    """A distribution's name as pip compares them: lower case, `-` for `_` and `.`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    return normalized(re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0])


def _requires(distribution: str) -> list[str]:
    try:
        return metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []


def extra_of(distribution: str) -> str | None:
    """The extra of rnnlab that installs `distribution`: one that lists it, or failing that one that lists
    an installed package requiring it (submitit comes with hydra-submitit-launcher); None if none does."""
    wanted = normalized(distribution)
    own = _requires("rnnlab")
    if wanted in {_requirement_name(r) for r in own if not _EXTRA.search(r)}:
        return None  # one of rnnlab's own dependencies: no extra brings it
    listed = [(m.group(1), _requirement_name(r)) for r in own if (m := _EXTRA.search(r))]
    listed = [(extra, name) for extra, name in listed if name != "rnnlab"]  # the extras made of extras (test)
    for extra, name in listed:
        if name == wanted:
            return extra
    for extra, name in listed:
        if any(_requirement_name(r) == wanted for r in _requires(name) if not _EXTRA.search(r)):
            return extra
    return None


def distribution_of(module: str) -> str:
    """The distribution a module comes from, by the convention of the ones rnnlab needs:
    `sqlalchemy.orm` -> sqlalchemy, a Hydra plugin `hydra_plugins.hydra_optuna_sweeper` -> hydra-optuna-sweeper."""
    parts = module.split(".")
    return normalized(parts[1] if parts[0] == "hydra_plugins" and len(parts) > 1 else parts[0])


def missing_module(error: BaseException | None) -> str | None:
    """The module whose absence caused `error`: an ImportError in its chain of causes, by its `name` or
    its message (Lightning's loggers say "Requirement 'mlflow>=1.0.0' not met")."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ImportError):
            if error.name:
                return error.name
            m = re.search(r"No module named '([\w.]+)'|Requirement '([\w.-]+)", str(error))
            if m:
                return m.group(1) or m.group(2)
        error = error.__cause__ or error.__context__
    return None


def install_command(distribution: str) -> str | None:
    """`pip install "rnnlab[<extra>]"` for a distribution one of rnnlab's extras installs; None otherwise."""
    extra = extra_of(distribution)
    return f'pip install "rnnlab[{extra}]"' if extra else None


def missing_package(option: str | None, error: BaseException) -> str | None:
    """`<option> needs <package>, which is not installed: pip install "rnnlab[<extra>]"` when `error` comes
    from a package one of rnnlab's extras installs; None otherwise (a missing package no extra has is a bug)."""
    module = missing_module(error)
    command = install_command(distribution_of(module)) if module else None
    if command is None:
        return None
    package = distribution_of(module)
    if option is None:
        return f"{package} is not installed: {command}"
    return f"{option} needs {package}, which is not installed: {command}"
