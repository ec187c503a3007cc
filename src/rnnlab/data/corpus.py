"""Token ids of a text file of any size: read in chunks, cleaned and mapped with numpy, no Python loop per token.

The ids equal those of the reference pipeline in `rnnlab.data.text` (`tokenize(preprocess(text))`
and `Vocab`, the book's definitions) for every preprocess mode and token kind:

- characters: each chunk becomes an array of code points (bytes when the chunk is ASCII), is given
  provisional ids in first-occurrence order through a code-point lookup table, and is counted; at
  the end one more table maps provisional ids to the frequency-ranked vocabulary, in place;
- `book` cleaning works on the UTF-8 bytes directly (every non-ASCII byte is a non-letter, as every
  non-ASCII character is), carrying across chunks whether a space is still owed;
- words: C-level `str.split`/`re.findall` per chunk, provisional ids through a dict (`map` in C);
- bytes: the bytes themselves (256 ids).

Ids are kept in the narrowest integer type that holds the vocabulary (uint8, int16 or int32), so a
100 MB character corpus needs 100-200 MB of ids, not the 800 MB of int64.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Callable, Iterator

import numpy as np

from rnnlab.data import cache
from rnnlab.data.text import PREPROCESS, TOKEN, Vocab, default_corpus_path
from rnnlab.errors import ConfigError, require_regular_file
from rnnlab.options import checked

CHUNK_BYTES = 1 << 20  # 1 MiB: chunk temporaries (~20x a chunk) stay far below the file size
CODE_POINTS = 0x110000

# ------------------------------------------------------------------ files and chunks
def check_regular_file(path: str | Path | None) -> Path:
    """The corpus path (the bundled one for null), checked with stat before any read: a FIFO or
    /dev/zero would block or never end (rnnlab.errors.require_regular_file, the one such check)."""
    return require_regular_file("data.path", default_corpus_path() if path in (None, "") else path)


def decode_utf8(raw: bytes, p: Path, offset: int, check_nul: bool) -> str:
    """Decode one chunk, naming the file's byte offset of a NUL byte or of the first invalid sequence."""
    if check_nul and b"\x00" in raw:
        raise ConfigError(f"data.path={str(p)!r} looks binary (a NUL byte at byte {offset + raw.index(0)}): "
                          "give a UTF-8 text file, or data.token=byte with data.preprocess=none")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"data.path={str(p)!r} is not UTF-8 text ({e.reason} at byte {offset + e.start}): "
                          "convert it to UTF-8, or use data.token=byte with data.preprocess=none") from None


def _cut_line(block: bytes) -> int:
    """Cut after the last newline, else before the last UTF-8 lead byte (never inside a character)."""
    i = block.rfind(b"\n")
    if i >= 0:
        return i + 1
    for j in range(len(block) - 1, max(len(block) - 5, -1), -1):
        if block[j] & 0xC0 != 0x80:
            return j
    return len(block)


def _cut_space(block: bytes) -> int:
    """Cut after the last ASCII whitespace (never inside a word); 0: read on."""
    return max(block.rfind(b"\n"), block.rfind(b" "), block.rfind(b"\t"), block.rfind(b"\r")) + 1


def read_chunks(p: Path, cut: Callable[[bytes], int], chunk_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(file offset, block) pairs covering the file, each block ending where `cut` allows."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    with open(p, "rb") as f:
        carry, offset = b"", 0
        while True:
            data = f.read(chunk_bytes)
            if not data:
                if carry:
                    yield offset, carry
                return
            block = carry + data if carry else data
            end = cut(block)
            if end <= 0:
                carry = block
                continue
            yield offset, block[:end] if end < len(block) else block
            offset, carry = offset + end, block[end:]


# ------------------------------------------------------------------ cleaning, vectorised
class _BookState:
    """What the book's cleaning needs from earlier chunks to decide the space before a chunk's first letter."""

    def __init__(self):
        self.seen_letter = False      # a letter came before
        self.gap = False              # a non-letter came after the last letter
        self.newline = False          # a newline came after the last letter (the line ended: no space)


def book_clean(b: np.ndarray, state: _BookState) -> np.ndarray:
    """d2l's `re.sub('[^A-Za-z]+', ' ', line).strip().lower()` per line, lines joined, on UTF-8 bytes.

    A gap of non-letters becomes one space exactly when letters lie on both sides and no line break
    lies inside it (runs at a line's ends are stripped). Work is per gap (about one a word), not per letter.
    """
    low = b | np.uint8(0x20)
    is_letter = (low >= 97) & (low <= 122)
    breaks = np.flatnonzero((b == 10) | (b == 13))  # few: one a line
    if not is_letter.any():
        state.gap = state.gap or b.size > 0
        state.newline = state.newline or breaks.size > 0
        return np.empty(0, np.uint8)
    first, last = int(is_letter.argmax()), b.size - 1 - int(is_letter[::-1].argmax())
    starts = np.flatnonzero(is_letter[:-1] & ~is_letter[1:]) + 1  # first non-letter of a gap
    ends = np.flatnonzero(~is_letter[:-1] & is_letter[1:]) + 1    # first letter after a gap
    starts, ends = starts[starts < last], ends[ends > first]        # gaps with letters on both sides
    unbroken = np.searchsorted(breaks, starts) == np.searchsorted(breaks, ends)
    lead = (state.seen_letter and not state.newline and (state.gap or first > 0)
            and not (breaks.size and breaks[0] < first))  # the space owed before this chunk's first letter
    spaced = np.maximum(low * is_letter, np.uint8(32))  # letters lower-cased, everything else a space
    keep = is_letter
    keep[starts[unbroken]] = True
    keep[0] |= lead
    out = spaced[keep]
    if lead and first == 0:  # the gap lies wholly in the previous chunk
        out = np.concatenate([np.array([32], np.uint8), out])
    state.seen_letter, state.gap, state.newline = True, last < b.size - 1, bool(breaks.size and breaks[-1] > last)
    return out


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), np.uint32)


def char_pieces(p: Path, mode: str) -> Iterator[np.ndarray]:
    """Code points of the processed text, chunk by chunk (uint8 for ASCII chunks, else uint32).

    `lower` lower-cases each chunk as one string; chunks end at a newline, which bounds the context
    of the one context-dependent rule (Greek final sigma), so only lines over 4 MiB could differ.
    """
    state = _BookState()
    for offset, block in read_chunks(p, _cut_line):
        ascii_ = block.isascii()
        text = decode_utf8(block, p, offset, check_nul=True) if not ascii_ or b"\x00" in block else None
        if mode == "book":
            yield book_clean(np.frombuffer(block, np.uint8), state)
        elif ascii_:
            yield np.frombuffer(block.lower() if mode == "lower" else block, np.uint8)
        else:
            yield _code_points(text.lower() if mode == "lower" else text)


def byte_pieces(p: Path, mode: str) -> Iterator[np.ndarray]:
    """UTF-8 bytes of the processed text, chunk by chunk; with `none`, the file's bytes as they are."""
    if mode == "none":
        for _, block in read_chunks(p, len):
            yield np.frombuffer(block, np.uint8)
        return
    state = _BookState()
    for offset, block in read_chunks(p, _cut_line):
        text = decode_utf8(block, p, offset, check_nul=True) if not block.isascii() or b"\x00" in block else None
        if mode == "book":
            yield book_clean(np.frombuffer(block, np.uint8), state)
        else:
            yield np.frombuffer(block.lower() if text is None else text.lower().encode("utf-8"), np.uint8)


def word_pieces(p: Path, mode: str) -> Iterator[list]:
    """Words of the processed text, chunk by chunk: runs of ASCII letters (book, as bytes) or whitespace splits."""
    for offset, block in read_chunks(p, _cut_space):
        text = decode_utf8(block, p, offset, check_nul=True)
        if mode == "book":
            yield re.findall(rb"[a-z]+", block.lower())  # bytes.lower() touches only A-Z, as the book's
        else:
            yield (text.lower() if mode == "lower" else text).split()


# ------------------------------------------------------------------ ids
def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest integer type that torch indexes well and that holds ids below `vocab_size`."""
    return np.dtype(np.uint8 if vocab_size <= 256 else np.int16 if vocab_size <= 2 ** 15 else np.int32)


class IdBuffer:
    """Ids appended in place, in the narrowest type that holds them so far; stops at `limit` ids."""

    def __init__(self, capacity: int, limit: int | None = None):
        self.limit = limit
        self.capacity = max(capacity if limit is None else min(capacity, limit), 1)
        self.buf, self.n = np.empty(self.capacity, np.uint8), 0  # untouched pages cost no memory

    @property
    def full(self) -> bool:
        return self.limit is not None and self.n >= self.limit

    def _move(self, dtype, capacity: int) -> None:
        new = np.empty(capacity, dtype)
        new[:self.n] = self.buf[:self.n]
        self.buf, self.capacity = new, capacity

    def widen(self, dtype: np.dtype) -> None:
        if dtype.itemsize > self.buf.itemsize:
            self._move(dtype, self.capacity)

    def append(self, ids: np.ndarray) -> None:
        if self.limit is not None:
            ids = ids[:self.limit - self.n]
        if self.n + ids.size > self.capacity:  # only `lower` bytes can outgrow the file (İ -> i + U+0307)
            self._move(self.buf.dtype, max(self.n + ids.size, self.capacity + self.capacity // 4))
        self.buf[self.n:self.n + ids.size] = ids
        self.n += ids.size

    def ids(self) -> np.ndarray:
        return self.buf[:self.n]


class FirstOccurrenceIds:
    """Provisional ids in first-occurrence order through a code-point table, with the count of each."""

    def __init__(self):
        self.table = np.full(CODE_POINTS, -1, np.int32)
        self.code_points: list[np.ndarray] = []
        self.counts = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return self.counts.size

    def __call__(self, cps: np.ndarray) -> np.ndarray:
        ids = np.take(self.table, cps)  # take: a third of fancy indexing's time here
        if ids.size and ids.min() < 0:
            new = np.flatnonzero(ids < 0)
            cands, first = np.unique(cps[new], return_index=True)
            cands = cands[np.argsort(first, kind="stable")]
            self.table[cands] = np.arange(len(self), len(self) + cands.size, dtype=np.int32)
            self.code_points.append(cands)
            self.counts = np.concatenate([self.counts, np.zeros(cands.size, np.int64)])
            ids = np.take(self.table, cps)
        self.counts += np.bincount(ids, minlength=len(self))
        return ids


def keep_count(sorted_counts: np.ndarray, token: str, min_freq: int, max_vocab: int | None, unk: bool) -> int:
    """How many of the frequency-sorted tokens get their own id (the rest become <unk>), or a ConfigError."""
    n = int(np.count_nonzero(sorted_counts >= max(min_freq, 1)))
    if n == 0:
        raise ConfigError(f"data.min_freq={min_freq} leaves only <unk> in the vocabulary: lower it")
    if n < sorted_counts.size and not unk:
        raise ConfigError(f"data.min_freq={min_freq} is invalid with data.unk=false: {sorted_counts.size - n} "
                          f"{token} tokens are rarer and may not become <unk>; "
                          "lower data.min_freq or set data.unk=true")
    if max_vocab is not None and n + 1 > max_vocab:
        if not unk:
            raise ConfigError(f"data.max_vocab={max_vocab} is invalid with data.unk=false: the corpus has {n} "
                              f"distinct {token} tokens (+ <unk>); raise data.max_vocab or set data.unk=true")
        n = max_vocab - 1
    return n


def _char_ids(p: Path, mode: str, min_freq: int, max_vocab: int | None, unk: bool, max_tokens: int | None):
    ranks, out = FirstOccurrenceIds(), IdBuffer(os.stat(p).st_size, max_tokens)
    for cps in char_pieces(p, mode):
        ids = ranks(cps)  # counted even past max_tokens: the vocabulary covers the whole corpus
        if not out.full:
            out.widen(id_dtype(len(ranks) + 1))
            out.append(ids)
    if len(ranks) == 0:
        return None, None
    tokens = [chr(c) for c in np.concatenate(ranks.code_points).tolist()]
    return _ranked(ranks.counts, tokens, out.ids(), "char", min_freq, max_vocab, unk)


def _ranked(counts: np.ndarray, tokens: list[str], ids: np.ndarray, token: str, min_freq: int,
            max_vocab: int | None, unk: bool) -> tuple[np.ndarray, Vocab]:
    """Provisional (first-occurrence) ids -> the vocabulary's ids, by a stable sort of the counts."""
    order = np.argsort(-counts, kind="stable")  # ties keep first-occurrence order, as the book's sort
    counts = counts[order]
    n = keep_count(counts, token, min_freq, max_vocab, unk)
    table = np.zeros(len(tokens), id_dtype(n + 1))
    table[order[:n]] = np.arange(1, n + 1)
    final = ids if ids.dtype == table.dtype else np.empty(ids.size, table.dtype)
    for s in range(0, ids.size, CHUNK_BYTES):
        final[s:s + CHUNK_BYTES] = np.take(table, ids[s:s + CHUNK_BYTES])
    ranked = [tokens[i] for i in order[:n].tolist()]  # token_freqs: the tokens with an id (not millions of rare words)
    return final, Vocab.from_tokens_list(["<unk>", *ranked], list(zip(ranked, counts[:n].tolist())))


class FirstOccurrenceWords:
    """Provisional word ids in first-occurrence order through a dict, with the count of each.

    Python touches each distinct word of a chunk once; the per-token lookup is `map` in C.
    """

    def __init__(self):
        self.table: dict = {}
        self.counts = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.table)

    def __call__(self, words: list) -> np.ndarray:
        table = self.table
        for w in dict.fromkeys(words):  # the chunk's distinct words, in order
            if w not in table:
                table[w] = len(table)
        ids = np.fromiter(map(table.__getitem__, words), np.int32, len(words))
        self.counts = np.concatenate([self.counts, np.zeros(len(table) - self.counts.size, np.int64)])
        self.counts += np.bincount(ids, minlength=len(table))
        return ids


def _word_ids(p: Path, mode: str, min_freq: int, max_vocab: int | None, unk: bool, max_tokens: int | None):
    ranks, out = FirstOccurrenceWords(), IdBuffer(os.stat(p).st_size // 2 + 1, max_tokens)
    for words in word_pieces(p, mode):
        ids = ranks(words)
        if not out.full:
            out.widen(id_dtype(len(ranks) + 1))
            out.append(ids)
    if len(ranks) == 0:
        return None, None
    words = list(ranks.table)
    if mode == "book":
        words = [w.decode("ascii") for w in words]
    return _ranked(ranks.counts, words, out.ids(), "word", min_freq, max_vocab, unk)


def _byte_ids(p: Path, mode: str, max_tokens: int | None):
    out = IdBuffer(os.stat(p).st_size, max_tokens)
    for piece in byte_pieces(p, mode):
        out.append(piece)
        if out.full:
            break
    ids = out.ids()
    return (ids, Vocab.from_tokens_list([chr(i) for i in range(256)])) if ids.size else (None, None)


@checked()
def load_ids(path: str | Path | None, token: Annotated[str, TOKEN] = "char",
             preprocess: Annotated[str, PREPROCESS] = "book", min_freq: int = 0,
             max_vocab: int | None = None, unk: bool = True, max_tokens: int | None = None,
             cache_dir: str | Path | None = None) -> tuple[np.ndarray, Vocab]:
    """Token ids (narrowest integer numpy array) and vocabulary of a text file, through the cache if given.

    The vocabulary covers the whole corpus; then the first `max_tokens` ids are kept (the book's order).
    """
    p = check_regular_file(path)
    max_tokens = max_tokens or None
    options = dict(token=token, preprocess=preprocess, min_freq=min_freq, max_vocab=max_vocab, unk=unk,
                   max_tokens=max_tokens)
    key = cache.entry_key(p, options) if cache_dir and os.stat(p).st_size >= cache.MIN_BYTES else None
    if key and (hit := cache.load(cache_dir, key)) is not None:
        return hit
    if token == "byte":
        ids, vocab = _byte_ids(p, preprocess, max_tokens)
    elif token == "char":
        ids, vocab = _char_ids(p, preprocess, min_freq, max_vocab, unk, max_tokens)
    else:
        ids, vocab = _word_ids(p, preprocess, min_freq, max_vocab, unk, max_tokens)
    if ids is None:
        hint = ("book keeps only the letters A-Z: try data.preprocess=none" if preprocess == "book" else
                "try data.preprocess=none" if preprocess == "lower" else "give a file with text in it")
        raise ConfigError(f"data.path={str(p)!r} is invalid: the corpus is empty after "
                          f"data.preprocess={preprocess!r} ({hint})")
    if key:
        cache.save(cache_dir, key, ids, vocab)
    return ids, vocab
