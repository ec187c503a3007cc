"""Recurrent sequence models from the d2l RNN chapter, trained with Lightning and configured by Hydra."""

__version__ = "0.1.0"
