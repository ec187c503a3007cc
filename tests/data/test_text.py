import pytest

from rnnlab.data.text import Vocab, default_corpus_path, load_corpus, opening_prefix, preprocess, read_text, tokenize
from rnnlab.errors import ConfigError


def test_preprocess_collapses_non_letters_and_lowercases():
    assert preprocess("The Time-Machine, by H. G. Wells [1898]\n\nI ") == ["the time machine by h g wells", "", "i"]


def test_tokenize_char_and_word():
    assert tokenize(["ab c", "d"], "char") == ["a", "b", " ", "c", "d"]  # lines joined as the book does
    assert tokenize(["ab  c", "d"], "word") == ["ab", "c", "d"]
    with pytest.raises(ConfigError, match="^token='bpe'.*char, word"):
        tokenize(["ab"], "bpe")


def test_vocab_order_unk_reserved_and_min_freq():
    tokens = list("aaabbc")
    vocab = Vocab(tokens, reserved_tokens=["<pad>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "a", "b", "c"]
    assert vocab["a"] == 2 and vocab["zzz"] == 0 == vocab.unk
    assert vocab[["c", "b"]] == [4, 3]
    assert vocab.to_tokens([2, 3]) == ["a", "b"] and vocab.to_tokens(4) == "c"
    assert vocab.token_freqs == [("a", 3), ("b", 2), ("c", 1)]
    assert Vocab(tokens, min_freq=2).idx_to_token == ["<unk>", "a", "b"]
    assert len(Vocab(tokens, min_freq=2)) == 3


def test_bundled_corpus_matches_the_book():
    indices, vocab = load_corpus(None, "char")
    assert len(indices) == 170580 and len(vocab) == 28  # 26 letters, space, <unk>
    assert vocab.idx_to_token[:3] == ["<unk>", " ", "e"]
    words, wvocab = load_corpus(None, "word", max_tokens=10000)
    assert len(words) == 10000 and wvocab.to_tokens(words[:3]) == ["the", "time", "machine"]


def test_any_text_file_can_be_the_corpus(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("Hello, hello WORLD!")
    indices, vocab = load_corpus(p, "word")
    assert vocab.to_tokens(indices) == ["hello", "hello", "world"]


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), ("DIR", "is a directory"), (b"", "corpus is empty"),
     (b"123 456 !!", "corpus is empty"), (b"\x00\x01\x02abc", "binary"), (b"\xff\xfe\xfa", "not UTF-8")],
)
def test_bad_corpus_files_name_data_path(tmp_path, content, message):
    p = tmp_path / "corpus"
    if content == "DIR":
        p.mkdir()
    elif content is not None:
        p.write_bytes(content)
    with pytest.raises(ConfigError, match=f"data.path=.*{message}"):
        load_corpus(p, "char")


def test_min_freq_that_leaves_only_unk_is_rejected(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abc")
    with pytest.raises(ConfigError, match="data.min_freq=5"):
        load_corpus(p, "char", min_freq=5)


def test_default_corpus_ships_in_package():
    assert default_corpus_path().is_file() and read_text(None).startswith("The Time Machine")


def test_opening_prefix_is_the_corpus_first_characters_or_words():
    """A default sample prefix from a corpus's first tokens: about 10 characters, run on to the end of
    the word in progress (none in sight: exactly 10), or 2 words; only tokens of the vocabulary (None:
    <unk>), so the first run of known tokens; blanks at either end left out."""
    assert opening_prefix(list("the time machine by h g wells"), "char") == "the time machine"
    assert opening_prefix(list("\ufeff  Call me Ishmael. Some years ago"), "char") == "Call me Ishmael."
    assert opening_prefix(list("时间旅行者正在向我们讲解一个深奥的问题。"), "char") == "时间旅行者正在向我们"
    assert opening_prefix(list("abcdefghijklmnopqrstuvwxyz and more"), "char") == "abcdefghij"  # no space in 10 more
    assert opening_prefix(["the", "time", "machine"], "word") == "the time"
    assert opening_prefix([None, None, "time", "traveller", None, "for"], "word") == "time traveller"
    assert opening_prefix([None, *"ab cd", None, *"xyz"], "char") == "ab cd"
    utf8 = list("时间旅行者正在向我们讲解".encode("utf-8").decode("latin-1"))  # byte tokens, 3 a character
    assert opening_prefix(utf8, "byte") == "时间旅行者正在向我们"
    assert opening_prefix(utf8[:7], "byte") == "时间"  # a character cut at the end is dropped
    assert opening_prefix([None, None], "char") is None and opening_prefix(list("  \n "), "char") is None
