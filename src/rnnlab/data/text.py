"""Text preprocessing, tokenization and the vocabulary, as in d2l's 'Converting Raw Text into Sequence Data'."""

from __future__ import annotations

import collections
import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from rnnlab.errors import ConfigError, require_choice

TOKENIZERS = ("char", "word")


def default_corpus_path() -> Path:
    """The Time Machine text shipped inside the package."""
    return Path(str(resources.files("rnnlab.data") / "timemachine.txt"))


def read_text(path: str | Path | None) -> str:
    """Read a UTF-8 corpus, failing with one clear line for a missing, directory, binary or empty file."""
    p = default_corpus_path() if path in (None, "") else Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"data.path={str(p)!r} does not exist: give a UTF-8 text file")
    if p.is_dir():
        raise ConfigError(f"data.path={str(p)!r} is a directory: give a UTF-8 text file")
    raw = p.read_bytes()
    if b"\x00" in raw:
        raise ConfigError(f"data.path={str(p)!r} looks binary (contains NUL bytes): give a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"data.path={str(p)!r} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def preprocess(text: str) -> list[str]:
    """The book's cleaning, line by line: every run of non-letters becomes one space, strip, lower case.

    This is d2l's `read_time_machine`; joining the characters of all lines (no separator), as
    `tokenize(..., "char")` does, gives its 170,580-character corpus, the split that the reference
    perplexities in shared/reference were measured on.
    """
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines()]


def tokenize(lines: Sequence[str], token: str) -> list[str]:
    """Characters of all lines joined, or the whitespace-separated words of all lines."""
    require_choice("data.token", token, TOKENIZERS)
    if token == "char":
        return [ch for line in lines for ch in line]
    return [word for line in lines for word in line.split()]


class Vocab:
    """Token <-> index maps: `<unk>` at 0, then reserved tokens, then tokens by descending frequency."""

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 0, reserved_tokens: Sequence[str] = ()):
        counter = collections.Counter(tokens)
        # Sort by descending frequency, ties broken by the token itself so the order is reproducible.
        self.token_freqs = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        self.idx_to_token = ["<unk>", *reserved_tokens]
        seen = set(self.idx_to_token)
        for tok, freq in self.token_freqs:
            if freq >= min_freq and tok not in seen:
                self.idx_to_token.append(tok)
                seen.add(tok)
        self.token_to_idx = {tok: idx for idx, tok in enumerate(self.idx_to_token)}

    @classmethod
    def from_tokens_list(cls, idx_to_token: Sequence[str]) -> "Vocab":
        """Rebuild a vocabulary from its saved index order (as stored in a checkpoint)."""
        vocab = cls()
        vocab.idx_to_token = list(idx_to_token)
        vocab.token_to_idx = {tok: idx for idx, tok in enumerate(vocab.idx_to_token)}
        return vocab

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if isinstance(tokens, (list, tuple)):
            return [self[t] for t in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def to_tokens(self, indices):
        if hasattr(indices, "tolist"):
            indices = indices.tolist()
        if isinstance(indices, (list, tuple)):
            return [self.idx_to_token[int(i)] for i in indices]
        return self.idx_to_token[int(indices)]

    @property
    def unk(self) -> int:
        return 0


def load_corpus(path: str | Path | None, token: str, min_freq: int = 0, max_tokens: int | None = None):
    """Read, clean and tokenize a text file; return (token indices, vocab), keeping the first `max_tokens`."""
    require_choice("data.token", token, TOKENIZERS)
    tokens = tokenize(preprocess(read_text(path)), token)
    if not tokens:
        raise ConfigError(f"data.path={str(path or default_corpus_path())!r} has no letters: the corpus is empty")
    if max_tokens is not None and max_tokens > 0:
        tokens = tokens[:max_tokens]
    vocab = Vocab(tokens, min_freq=min_freq)
    if len(vocab) < 2:
        raise ConfigError(f"data.min_freq={min_freq} leaves only <unk> in the vocabulary: lower it")
    return [vocab[t] for t in tokens], vocab
