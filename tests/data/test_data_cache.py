"""The tokenized-corpus cache: hits, invalidation by content and options, atomic entries."""

import numpy as np
import pytest

from rnnlab.data import cache, corpus
from rnnlab.data.corpus import load_ids


@pytest.fixture
def small_entries(monkeypatch):
    """Cache even the tiny test files (the default skips files under 1 MiB)."""
    monkeypatch.setattr(cache, "MIN_BYTES", 0)


def no_build(*args, **kwargs):
    raise AssertionError("the corpus was tokenized again instead of read from the cache")


def test_second_load_reads_the_entry(tmp_path, monkeypatch, small_entries):
    p = tmp_path / "c.txt"
    p.write_text("Hello, world. Ωμέγα 😀\n", encoding="utf-8")
    ids, vocab = load_ids(p, "char", "none", cache_dir=tmp_path / "cache")
    assert sorted(f.suffix for f in (tmp_path / "cache").iterdir()) == [".json", ".npy"]  # no temp files left
    monkeypatch.setattr(corpus, "_char_ids", no_build)
    again, vocab2 = load_ids(p, "char", "none", cache_dir=tmp_path / "cache")
    assert np.array_equal(again, ids) and again.dtype == ids.dtype
    assert vocab2.idx_to_token == vocab.idx_to_token and vocab2.token_freqs == vocab.token_freqs


@pytest.mark.parametrize("change", ["content", "preprocess", "token", "max_tokens", "max_vocab"])
def test_a_changed_file_or_option_misses(tmp_path, monkeypatch, small_entries, change):
    p = tmp_path / "c.txt"
    p.write_text("abc abd abe\n", encoding="utf-8")
    options = dict(token="word", preprocess="none", max_tokens=None, max_vocab=None, cache_dir=tmp_path / "cache")
    first, _ = load_ids(p, **options)
    if change == "content":
        p.write_text("abc abd abf\n", encoding="utf-8")  # same size, same mtime granularity
    else:
        options[change] = {"preprocess": "lower", "token": "char", "max_tokens": 2, "max_vocab": 3}[change]
    built = []
    real = corpus._char_ids if options["token"] == "char" else corpus._word_ids
    monkeypatch.setattr(corpus, f"_{options['token']}_ids", lambda *a: built.append(a) or real(*a))
    load_ids(p, **options)
    assert len(built) == 1
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_writes_are_atomic_renames(tmp_path, monkeypatch, small_entries):
    """An entry appears under its name only whole: a writer that dies leaves no entry and no temp file."""
    p = tmp_path / "c.txt"
    p.write_text("abc\n", encoding="utf-8")

    def dies(f, ids, allow_pickle):
        f.write(b"\x93NUMPY half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        load_ids(p, "char", cache_dir=tmp_path / "cache")
    monkeypatch.undo()
    assert [f.suffix for f in (tmp_path / "cache").iterdir()] == [".json"]  # vocab written, ids not
    monkeypatch.setattr(cache, "MIN_BYTES", 0)
    key = cache.entry_key(p, dict(token="char", preprocess="book", min_freq=0, max_vocab=None, unk=True,
                                  max_tokens=None))
    assert cache.load(tmp_path / "cache", key) is None  # half an entry is a miss
    ids, _ = load_ids(p, "char", cache_dir=tmp_path / "cache")
    assert cache.load(tmp_path / "cache", key)[0].tolist() == ids.tolist()


def test_small_files_are_not_cached(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abc\n", encoding="utf-8")
    load_ids(p, "char", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
