"""Data modules: any text (The Time Machine bundled) for language modelling, and series for forecasting."""

from rnnlab.data.corpus import load_ids
from rnnlab.data.text import Vocab, load_corpus, preprocess, tokenize
from rnnlab.data.text_module import TextDataModule

# The name before 2026-12 (`_target_: rnnlab.data.TimeMachineDataModule` in older runs' .hydra/config.yaml).
TimeMachineDataModule = TextDataModule

__all__ = ["Vocab", "load_corpus", "load_ids", "preprocess", "tokenize", "TextDataModule", "TimeMachineDataModule"]
