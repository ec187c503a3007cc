"""Data modules: The Time Machine corpus for language modelling and the noisy sine series."""

from rnnlab.data.text import Vocab, load_corpus, preprocess, tokenize
from rnnlab.data.timemachine import TimeMachineDataModule

__all__ = ["Vocab", "load_corpus", "preprocess", "tokenize", "TimeMachineDataModule"]
