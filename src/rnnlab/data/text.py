"""Text preprocessing, tokenization and the vocabulary, as in d2l's 'Converting Raw Text into Sequence Data'.

These are the reference definitions, one Python string at a time: `rnnlab.data.corpus` computes the
same ids for files of any size without a Python loop per token, and generation prefixes go through
`prefix_tokens` here, so a prefix is processed exactly as the corpus was.
"""

from __future__ import annotations

import collections
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Iterable, Sequence

from rnnlab.options import checked, choice

TOKENIZERS = ("char", "word", "byte")
PREPROCESSES = ("book", "lower", "none")
TOKEN = choice(*TOKENIZERS)          # the rule of every `token` option (data.token, the functions below)
PREPROCESS = choice(*PREPROCESSES)   # the rule of every `preprocess` option
BOOK_PREFIX = "time traveller"  # d2l's generation prefix, for The Time Machine with the book's preprocessing
# The book reads lines with open(...).readlines(): universal newlines, so \r\n, \r and \n end a line.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def default_corpus_path() -> Path:
    """The Time Machine text shipped inside the package."""
    return Path(str(resources.files("rnnlab.data") / "timemachine.txt"))


def read_text(path: str | Path | None) -> str:
    """Read a whole UTF-8 corpus (small files; `corpus.load_ids` streams large ones)."""
    from rnnlab.data.corpus import check_regular_file, decode_utf8

    p = check_regular_file(path)
    raw = p.read_bytes()
    return decode_utf8(raw, p, 0, check_nul=True)


@checked()
def preprocess(text: str, mode: Annotated[str, PREPROCESS] = "book", strip: bool = True) -> list[str]:
    """The text as units that tokens never cross: the book's cleaned lines, or the whole text as one unit.

    `book` is d2l's `read_time_machine`, line by line: every run of non-letters becomes one space,
    strip, lower case; joining the characters of all lines (no separator) gives its 170,580-character
    corpus. `lower` only lower-cases and `none` keeps every character, newlines included, so the
    text stays one unit. `strip=False` keeps a prefix's trailing space (the book's 'time traveller ').
    """
    if mode == "lower":
        return [text.lower()]
    if mode == "none":
        return [text]
    lines = [re.sub("[^A-Za-z]+", " ", line).lower() for line in _LINE_BREAK.split(text)]
    return [line.strip() for line in lines] if strip else lines


@checked()
def tokenize(lines: Sequence[str], token: Annotated[str, TOKEN]) -> list[str]:
    """Characters of all units joined, the whitespace-separated words of every unit, or UTF-8 bytes.

    A byte is the one-character string of its value (latin-1), so 256 ids cover every file.
    """
    if token == "char":
        return [ch for line in lines for ch in line]
    if token == "byte":
        return list("".join(lines).encode("utf-8").decode("latin-1"))
    return [word for line in lines for word in line.split()]


def prefix_tokens(prefix: str, token: str, mode: str) -> list[str]:
    """Tokens of a generation prefix, processed as the corpus was (not stripped: it continues)."""
    return tokenize(preprocess(prefix, mode, strip=False), token)


def opening_prefix(tokens: Sequence[str | None], token: str, chars: int = 10, words: int = 2) -> str | None:
    """A generation prefix from a corpus's first tokens (after its preprocessing), or None if they give none.

    `tokens` are the corpus's first tokens, None for one that maps to <unk>; the prefix is taken from
    the first run of known tokens, so every one of its tokens is in the vocabulary. Words: the first
    `words` of them. Characters and bytes (decoded back to text): the first `chars` characters, run on
    to the end of the word in progress when a space follows within `chars` more (no space in sight,
    as in Chinese text: exactly `chars`); leading and trailing blanks are left out.
    """
    known: list[str] = []
    for t in tokens:
        if t is None:
            if known:
                break
            continue
        known.append(t)
    if token == "word":
        return " ".join(known[:words]) or None
    text = "".join(known)
    if token == "byte":  # one latin-1 character per byte; a character cut at the end is dropped
        text = text.encode("latin-1").decode("utf-8", errors="ignore")
    text = text.lstrip().lstrip("\ufeff").lstrip()
    head = text[:chars]
    if len(text) > chars and not text[chars].isspace():
        end = next((i for i in range(chars, min(len(text), 2 * chars)) if text[i].isspace()), None)
        if end is not None:
            head = text[:end]
    return head.rstrip() or None


class Vocab:
    """Token <-> index maps: `<unk>` at 0, then reserved tokens, then tokens by descending frequency.

    Equal frequencies keep first-occurrence order (a stable sort of the counts, as the book's
    `sorted(counter.items(), key=lambda x: x[1], reverse=True)`), so ids equal d2l's.
    """

    def __init__(self, tokens: Iterable[str] = (), min_freq: int = 0, reserved_tokens: Sequence[str] = (),
                 max_size: int | None = None):
        counter = collections.Counter(tokens)  # insertion order: first occurrence
        self.token_freqs = sorted(counter.items(), key=lambda kv: -kv[1])
        self.idx_to_token = ["<unk>", *reserved_tokens]
        seen = set(self.idx_to_token)
        for tok, freq in self.token_freqs:
            if freq < min_freq or (max_size is not None and len(self.idx_to_token) >= max_size):
                break
            if tok not in seen:
                self.idx_to_token.append(tok)
                seen.add(tok)
        self.token_to_idx = {tok: idx for idx, tok in enumerate(self.idx_to_token)}

    @classmethod
    def from_tokens_list(cls, idx_to_token: Sequence[str], token_freqs: Sequence[tuple[str, int]] = ()) -> "Vocab":
        """Rebuild a vocabulary from its saved index order (as stored in a checkpoint or the corpus cache)."""
        vocab = cls()
        vocab.idx_to_token = list(idx_to_token)
        vocab.token_to_idx = {tok: idx for idx, tok in enumerate(vocab.idx_to_token)}
        vocab.token_freqs = list(token_freqs)
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


def load_corpus(path: str | Path | None, token: str, min_freq: int = 0, max_tokens: int | None = None,
                preprocess: str = "book", max_vocab: int | None = None, unk: bool = True):
    """Read, clean and tokenize a text file; return (token indices, vocab), keeping the first `max_tokens`.

    The vocabulary is built over the whole corpus before the first `max_tokens` are kept, as the
    book's `load_corpus_time_machine` does. Indices are a list, for small corpora and tests; the
    data module uses `corpus.load_ids` (a numpy array) directly.
    """
    from rnnlab.data.corpus import load_ids

    ids, vocab = load_ids(path, token=token, preprocess=preprocess, min_freq=min_freq, max_vocab=max_vocab,
                          unk=unk, max_tokens=max_tokens)
    return ids.tolist(), vocab
