"""Recurrent sequence models from the d2l RNN chapter, trained with Lightning and configured by Hydra."""

__version__ = "0.1.0"

# The `${run_label:}` resolver of conf/logger/tensorboard.yaml (needs only omegaconf).
from rnnlab.dashboard import run_label as _run_label  # noqa: E402,F401
