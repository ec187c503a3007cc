"""The one error path of the command-line tools: a user's mistake is one line and exit status 2."""

from __future__ import annotations

import sys
from typing import Callable

from rnnlab.errors import USER_ERROR_EXIT, ConfigError, error_line


def run(main: Callable[[], int | None]) -> int:
    """Call `main`; a ConfigError (or a Hydra/OmegaConf error in composing the config) becomes one line."""
    try:
        return main() or 0
    except ConfigError as e:
        print(error_line(e), file=sys.stderr)
        return USER_ERROR_EXIT
    except Exception as e:  # Hydra's and OmegaConf's own errors for a bad override are the user's too
        if type(e).__module__.split(".")[0] in ("hydra", "omegaconf"):
            print(error_line(e), file=sys.stderr)
            return USER_ERROR_EXIT
        raise
