"""The any-size corpus loader: the book's ids exactly, every preprocess mode and token kind, bad input."""

import collections
import itertools
import os
import re

import numpy as np
import pytest

from rnnlab.data import corpus
from rnnlab.data.corpus import load_ids
from rnnlab.data.text import Vocab, default_corpus_path, preprocess, tokenize
from rnnlab.errors import ConfigError


# d2l-zh's d2l/torch.py (read_time_machine, tokenize, Vocab, count_corpus, load_corpus_time_machine),
# copied as the reference; only the file is the bundled one instead of a download.
def d2l_read_time_machine():
    with open(default_corpus_path(), "r") as f:
        lines = f.readlines()
    return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in lines]


def d2l_tokenize(lines, token="word"):
    if token == "word":
        return [line.split() for line in lines]
    return [list(line) for line in lines]


class D2lVocab:
    def __init__(self, tokens=None, min_freq=0, reserved_tokens=None):
        tokens, reserved_tokens = tokens or [], reserved_tokens or []
        if len(tokens) == 0 or isinstance(tokens[0], list):
            tokens = [token for line in tokens for token in line]
        counter = collections.Counter(tokens)
        self._token_freqs = sorted(counter.items(), key=lambda x: x[1], reverse=True)
        self.idx_to_token = ["<unk>"] + reserved_tokens
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}
        for token, freq in self._token_freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.idx_to_token.append(token)
                self.token_to_idx[token] = len(self.idx_to_token) - 1

    def __getitem__(self, tokens):
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, 0)
        return [self.__getitem__(token) for token in tokens]


def d2l_load_corpus_time_machine(max_tokens=-1):
    lines = d2l_read_time_machine()
    tokens = d2l_tokenize(lines, "char")
    vocab = D2lVocab(tokens)
    corpus = [vocab[token] for line in tokens for token in line]
    if max_tokens > 0:
        corpus = corpus[:max_tokens]
    return corpus, vocab


@pytest.mark.parametrize("max_tokens", [-1, 10000, 37])
def test_char_ids_equal_the_books_for_every_max_tokens(max_tokens):
    book_ids, book_vocab = d2l_load_corpus_time_machine(max_tokens)
    ids, vocab = load_ids(None, "char", max_tokens=max(max_tokens, 0))
    assert vocab.idx_to_token == book_vocab.idx_to_token
    assert ids.tolist() == book_ids and ids.dtype == np.uint8


@pytest.mark.parametrize("max_tokens", [0, 10000])
def test_word_ids_equal_the_books(max_tokens):
    words = d2l_tokenize(d2l_read_time_machine(), "word")
    book_vocab = D2lVocab(words)
    book_ids = [book_vocab[w] for line in words for w in line][: max_tokens or None]
    ids, vocab = load_ids(None, "word", max_tokens=max_tokens)
    assert vocab.idx_to_token == book_vocab.idx_to_token  # ties in first-occurrence order
    assert ids.tolist() == book_ids and ids.dtype == np.int16


def test_first_book_ids_are_pinned():
    """Constants computed once with d2l-zh's code, so a change of the reference itself shows too."""
    chars, cvocab = load_ids(None, "char", max_tokens=10000)
    assert "".join(cvocab.idx_to_token[1:]) == " etainoshrdlmucfwgypbvkxzjq"
    assert chars[:20].tolist() == [3, 9, 2, 1, 3, 5, 13, 2, 1, 13, 4, 15, 9, 5, 6, 2, 1, 21, 19, 1]
    words, wvocab = load_ids(None, "word")
    assert len(wvocab) == 4580 and len(words) == 32775
    assert wvocab.idx_to_token[:10] == ["<unk>", "the", "i", "and", "of", "a", "to", "was", "in", "that"]
    assert words[:20].tolist() == [1, 19, 50, 40, 2183, 2184, 400, 2, 1, 19, 71, 16, 37, 11, 115, 42, 680, 6, 586, 4]


MIXED = ("Καλημέρα κόσμε! ΣΟΦΟΣ σοφός.\r\nHello, WORLD 123 — naïve café 😀😀\n\n中文文本，测试。\r"
         "时间机器 İstanbul K\tend  \n  trailing   \nThe Time-Machine, by H. G. Wells [1898]\n")


@pytest.mark.parametrize("chunk_bytes", [1 << 22, 7, 3])
@pytest.mark.parametrize("mode, token", list(itertools.product(["book", "lower", "none"], ["char", "word", "byte"])))
def test_loader_equals_the_reference_pipeline_in_every_mode(tmp_path, monkeypatch, chunk_bytes, mode, token):
    """Chunked, vectorised ids == tokenize(preprocess(text)) + Vocab, whatever the chunk boundaries."""
    if chunk_bytes == 3 and mode == "lower" and token != "word":
        pytest.skip("a 3-byte chunk cuts inside a Greek word: final sigma needs the word (chunks end at newlines)")
    monkeypatch.setattr(corpus, "CHUNK_BYTES", chunk_bytes)
    p = tmp_path / "mixed.txt"
    p.write_bytes(MIXED.encode("utf-8"))
    tokens = tokenize(preprocess(MIXED, mode), token)
    ids, vocab = load_ids(p, token, mode)
    if token == "byte":
        assert ids.tolist() == [ord(t) for t in tokens] and len(vocab) == 256
    else:
        ref = Vocab(tokens)
        assert vocab.idx_to_token == ref.idx_to_token and ids.tolist() == ref[tokens]
        assert vocab.token_freqs == ref.token_freqs


def test_none_keeps_every_character_and_lower_only_lowers(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes("Ab 1,\r\nΩ😀".encode("utf-8"))
    ids, vocab = load_ids(p, "char", "none")
    assert "".join(vocab.to_tokens(ids)) == "Ab 1,\r\nΩ😀"
    ids, vocab = load_ids(p, "char", "lower")
    assert "".join(vocab.to_tokens(ids)) == "ab 1,\r\nω😀"
    ids, vocab = load_ids(p, "word", "none")
    assert vocab.to_tokens(ids) == ["Ab", "1,", "Ω😀"]
    ids, vocab = load_ids(p, "byte", "none")
    assert bytes(ids.tolist()) == p.read_bytes() and ids.dtype == np.uint8


def test_ids_take_the_narrowest_type(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("".join(chr(0x4E00 + i) for i in range(300)), encoding="utf-8")
    ids, vocab = load_ids(p, "char", "none")
    assert ids.dtype == np.int16 and len(vocab) == 301
    p.write_text(" ".join(f"w{i}" for i in range(40000)), encoding="utf-8")
    ids, vocab = load_ids(p, "word", "none")
    assert ids.dtype == np.int32 and vocab.to_tokens(ids[-1]) == "w39999"


def test_max_vocab_maps_rarer_tokens_to_unk_or_fails_without_unk(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("a a a b b c d", encoding="utf-8")
    ids, vocab = load_ids(p, "word", "none", max_vocab=3)
    assert vocab.idx_to_token == ["<unk>", "a", "b"] and ids.tolist() == [1, 1, 1, 2, 2, 0, 0]
    with pytest.raises(ConfigError, match=r"data.max_vocab=3 is invalid with data.unk=false: .*4 distinct word"):
        load_ids(p, "word", "none", max_vocab=3, unk=False)
    with pytest.raises(ConfigError, match=r"data.min_freq=2 is invalid with data.unk=false"):
        load_ids(p, "word", "none", min_freq=2, unk=False)
    assert load_ids(p, "word", "none", max_vocab=5, unk=False)[1].idx_to_token == ["<unk>", "a", "b", "c", "d"]


def test_max_tokens_keeps_the_first_tokens_of_a_whole_corpus_vocabulary(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("ab" + "z" * 50, encoding="utf-8")
    ids, vocab = load_ids(p, "char", "none", max_tokens=2)
    assert vocab.idx_to_token == ["<unk>", "z", "a", "b"] and ids.tolist() == [2, 3]


def test_not_a_regular_file_is_refused_before_reading(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block forever
    with pytest.raises(ConfigError, match=r"data.path=.*fifo.* is a FIFO, not a regular file"):
        load_ids(fifo)
    with pytest.raises(ConfigError, match=r"data.path='/dev/zero' is a device, not a regular file"):
        load_ids("/dev/zero")
    with pytest.raises(ConfigError, match=r"is a directory: give a UTF-8 text file"):
        load_ids(tmp_path)


def test_invalid_utf8_names_the_files_byte_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 8)
    p = tmp_path / "c.txt"
    p.write_bytes(b"hello\nworld\nabc\xffdef\n")
    with pytest.raises(ConfigError, match=r"data.path=.* is not UTF-8 text \(invalid start byte at byte 15\)"):
        load_ids(p, "char", "none")
    assert load_ids(p, "byte", "none")[0].size == p.stat().st_size  # bytes are bytes


@pytest.mark.parametrize("mode, content, hint", [("book", "123 — 中文", "try data.preprocess=none"),
                                                 ("none", "", "give a file with text")])
def test_empty_corpus_names_the_mode(tmp_path, mode, content, hint):
    p = tmp_path / "c.txt"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"the corpus is empty after data.preprocess='{mode}'.*{hint}"):
        load_ids(p, "char", mode)


@pytest.mark.parametrize("seed", range(4))
def test_book_cleaning_of_random_text_in_random_chunks(tmp_path, monkeypatch, seed):
    """Runs of letters, spaces, punctuation and line breaks (\\n, \\r, \\r\\n) cut anywhere: same as the book."""
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list("aB  .\n\r\r\né-"), 3000).tolist())
    p = tmp_path / "c.txt"
    p.write_bytes(text.encode("utf-8"))
    monkeypatch.setattr(corpus, "CHUNK_BYTES", int(rng.integers(2, 40)))
    ids, vocab = load_ids(p, "char", "book")
    assert "".join(vocab.to_tokens(ids)) == "".join(preprocess(text, "book"))
    words, wvocab = load_ids(p, "word", "book")
    assert wvocab.to_tokens(words) == tokenize(preprocess(text, "book"), "word")
