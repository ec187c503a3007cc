"""The one error path of the command-line tools: a user's mistake is one line and exit status 2."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable

from rnnlab.compat import defer_dynamo_import, skip_torchmetrics_optional_imports
from rnnlab.errors import USER_ERROR_EXIT, ConfigError, error_line
from rnnlab.extras import install_command, missing_package
from rnnlab.run.result import end_before_run

CONFIG_PACKAGES = ("hydra", "omegaconf")
OPTIONAL_GROUPS = ("logger", "debug", "experiment", "hparams_search", "launcher")  # a run works without them


def _raised_composing_config(error: BaseException) -> bool:
    """Whether `error` was raised by Hydra's or OmegaConf's own code before an rnnlab task ran: a bad
    override that Hydra reports with a builtin exception (`logger=null`: a ValueError)."""
    frames, tb = [], error.__traceback__
    while tb is not None:
        frames.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    in_task = any(name.startswith("rnnlab.run") for name in frames)
    return bool(frames) and not in_task and frames[-1].split(".")[0] in CONFIG_PACKAGES


def _override_hint(message: str) -> str:
    """What Hydra's message for a bad override does not say: `group=null` names no option, and `key=~/x`
    is a parse error because `~` starts a deletion."""
    if "LexerNoViableAltException" in message or "mismatched input" in message:
        tildes = [m.group(1) for a in sys.argv[1:] if (m := re.fullmatch(r"\+{0,2}([\w./@]+)=~.+", a))]
        return "".join(f"; quote a value that starts with ~: {k}='~/...' (~ alone deletes a key)" for k in tildes)
    if "Config group override must be a string or a list" not in message:
        return ""
    nulls = [m.group(1) for a in sys.argv[1:] if (m := re.fullmatch(r"([\w/]+)=(?:null|None|~)", a))]
    if not nulls:
        return ""
    return "; " + ", ".join(f"{g}=null: {g} is a config group, give one of its options"
                            + (f" (~{g} leaves the group out)" if g in OPTIONAL_GROUPS else "") for g in nulls)


# The command-line groups through which a user picks a Hydra plugin of each kind, most specific first.
PLUGIN_GROUPS = {"sweeper": ("hparams_search", "hydra/sweeper", "experiment"),
                 "launcher": ("launcher", "hydra/launcher", "experiment")}


def _asked_for(kind: str, fallback: str) -> str:
    """The command-line override that picked the Hydra plugin of `kind` (sweeper, launcher); `fallback` if none."""
    given = dict(a.split("=", 1) for a in sys.argv[1:] if re.fullmatch(r"[\w/]+=[^=]+", a))
    return next((f"{g}={given[g]}" for g in PLUGIN_GROUPS[kind] if g in given), fallback)


def missing_extra_line(error: BaseException) -> str | None:
    """A sweeper, launcher or package that one of rnnlab's extras installs and that is not installed, as
    one line naming the option that needs it and the pip command (None for any other error). Hydra
    reports a plugin it cannot find as a config it cannot find (`Could not find 'hydra/sweeper/optuna'`:
    the plugin registers that config), and a plugin missing a package as the plugin's instantiation error."""
    message = str(error)
    m = re.search(r"Could not find 'hydra/(sweeper|launcher)/(\w+)'", message)
    if m:
        kind, option = m.groups()
        # Hydra's plugins: hydra-optuna-sweeper, hydra-submitit-launcher
        package = f"hydra-{option.split('_')[0]}-{kind}"
        command = install_command(package)
        if command is None:  # not one of rnnlab's extras (or a misspelt plugin): Hydra's line lists what there is
            return None
        asked = _asked_for(kind, f"hydra/{kind}={option}")
        return f"error: {asked} needs the {option} {kind} ({package}), which is not installed: {command}"
    kind = _plugin_kind(error)
    line = missing_package(_asked_for(kind, f"hydra.{kind}") if kind else None, error)
    return f"error: {line}" if line else None


def _plugin_kind(error: BaseException) -> str | None:
    """`sweeper` or `launcher` when `error` comes from a Hydra plugin of that kind, or from making its parts
    (Hydra's message names `full_key: hydra.sweeper.sampler`); None otherwise."""
    plugin = r"hydra_plugins\.hydra_\w+?_(sweeper|launcher)\b"
    m = re.search(rf"{plugin}|full_key: hydra\.(sweeper|launcher)\b", str(error))
    if m:
        return m.group(1) or m.group(2)
    tb, kind = error.__traceback__, None
    while tb is not None:  # the innermost plugin frame: the plugin imports what it lacks (submitit) when it runs
        m = re.match(plugin, str(tb.tb_frame.f_globals.get("__name__", "")))
        kind = m.group(1) if m else kind
        tb = tb.tb_next
    return kind


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the tools' error path: a bad flag is one line (`error: ...`) and exit status 2."""

    def error(self, message: str):
        self.exit(USER_ERROR_EXIT, f"error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def run(main: Callable[[], int | None]) -> int:
    """Call `main`; a ConfigError (or a Hydra/OmegaConf error in composing the config, or a package of one
    of rnnlab's extras that is not installed) becomes one line. A training or evaluation run ends inside
    `main` (rnnlab.run.result.finish); what reaches here comes before a run exists or from a command that
    records nothing, so it ends with its line and the same exit status (rnnlab.run.result.end_before_run)."""
    try:
        return main() or 0
    except ConfigError as e:
        return end_before_run("config_error", error_line(e))
    except KeyboardInterrupt:  # Ctrl-C before a run's own interrupt path is installed (start-up, composing)
        return end_before_run("interrupted", "interrupted by SIGINT during start-up")
    except Exception as e:  # Hydra's and OmegaConf's own errors for a bad override are the user's too
        missing = missing_extra_line(e)
        if missing:
            return end_before_run("config_error", missing)
        if type(e).__module__.split(".")[0] in CONFIG_PACKAGES or _raised_composing_config(e):
            return end_before_run("config_error", error_line(e) + _override_hint(str(e)))
        raise


def hydra_cli(main: Callable[[], Any]) -> int:
    """A Hydra entry point (train.py, eval.py, rnnlab-eval) with the error path of every rnnlab command:
    Hydra's own errors (a bad override, an unknown group option) end with one line and exit status 2
    as well. With HYDRA_FULL_ERROR=1 set by the user, Hydra's full traces instead. torchmetrics, imported with
    Lightning, skips its optional imports of scipy.signal and matplotlib (rnnlab.compat; RNNLAB_TORCHMETRICS_FULL=1:
    as installed), and Lightning leaves torch._dynamo to torch.compile (RNNLAB_DYNAMO_AT_IMPORT=1: at its import)."""
    if os.environ.get("RNNLAB_TORCHMETRICS_FULL") != "1":
        skip_torchmetrics_optional_imports()
    if os.environ.get("RNNLAB_DYNAMO_AT_IMPORT") != "1":
        defer_dynamo_import()
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return 0
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors instead of printing them; run() prints one line
    return run(lambda: main() and 0)
