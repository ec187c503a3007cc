"""Where the Hydra configs are for the installed commands (rnnlab-eval, rnnlab-zipf): the package's
`conf` directory. In the source tree `src/rnnlab/conf` is a link to the repository's `conf/`, the one
place users edit; a wheel holds a copy of it (package-data in pyproject.toml), so the commands work
from any directory. train.py and eval.py read `conf/` beside them."""

from pathlib import Path

CONF_DIR = (Path(__file__).parent / "conf").resolve()
