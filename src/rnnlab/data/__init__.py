"""Data modules: The Time Machine (or any text) for language modelling and the noisy sine series."""

from rnnlab.data.corpus import load_ids
from rnnlab.data.text import Vocab, load_corpus, preprocess, tokenize
from rnnlab.data.timemachine import TimeMachineDataModule

__all__ = ["Vocab", "load_corpus", "load_ids", "preprocess", "tokenize", "TimeMachineDataModule"]
