"""Recurrent cores and the LightningModules that train them."""

from rnnlab.models.cores import CORES, build_core
from rnnlab.models.language_model import LanguageModel

__all__ = ["CORES", "build_core", "LanguageModel"]
