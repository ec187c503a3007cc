"""The Time Machine (or any UTF-8 text) as a LightningDataModule for character, word or byte language modelling."""

from __future__ import annotations

from typing import Annotated, Any, Mapping

import torch
from torch.utils.data import DataLoader

from rnnlab.data.base import TextData
from rnnlab.data.corpus import load_ids
from rnnlab.data.sampling import SAMPLINGS, eval_stream_batches, make_sampler, window_loader
from rnnlab.data.text import BOOK_PREFIX, PREPROCESS, TOKEN, Vocab, opening_prefix
from rnnlab.errors import ConfigError
from rnnlab.options import (
    BOOL,
    FILE_OR_NULL,
    FRACTION,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE_INT,
    PREFIX,
    SEED,
    STRING,
    Name,
    checked,
    choice,
    integer,
    nullable,
)


def held_out_parts(values: Mapping[str, Any], name: Name) -> None:
    """The held-out parts may be at most half of the corpus: a model scored on more tokens than it trains
    on (data.val_fraction=0.999 trains on 0.1%) is no result."""
    val, test = values["val_fraction"], values["test_fraction"]
    if val + test > 0.5:
        option, value, other, value_other = ("test_fraction", test, "val_fraction", val) if test > val else (
            "val_fraction", val, "test_fraction", test)
        high = 0.5 - value_other
        allowed = (f"it must lie in {'[' if option == 'test_fraction' else '('}0, {high:g}]" if high > 0 else
                   "no value works")
        raise ConfigError(f"{name(option)}={value:g} is invalid: with {name(other)}={value_other:g} {allowed} (the "
                          "held-out parts may be at most half of the corpus; the training part is the rest)")


def byte_vocabulary(values: Mapping[str, Any], name: Name) -> None:
    """Bytes have a fixed vocabulary of 256: nothing to cut."""
    if values["token"] == "byte" and (values["min_freq"] != 0 or values["max_vocab"] is not None):
        raise ConfigError(f"{name('token')}='byte' is invalid: byte has a fixed vocabulary of 256: leave "
                          f"{name('min_freq')}=0 and {name('max_vocab')}=null")


class TextDataModule(TextData):
    """Tokenized corpus split into a training stream and a contiguous held-out tail.

    Training batches come from the book's random or sequential sampler (a fresh offset every epoch);
    validation walks the whole held-out stream once, as `val_batch_size` continuous rows.
    `sample_prefix` is the text generated samples continue by default (`sample_prefix` below).
    """

    PREFIX_SCAN = 1000  # tokens from the corpus's start in which its default sample prefix is looked for

    @checked(held_out_parts, byte_vocabulary)
    def __init__(
        self,
        path: Annotated[str | None, FILE_OR_NULL] = None,
        token: Annotated[str, TOKEN] = "char",
        sampling: Annotated[str, choice(*SAMPLINGS)] = "sequential",
        batch_size: Annotated[int, POSITIVE_INT] = 32,
        num_steps: Annotated[int, POSITIVE_INT] = 35,
        val_fraction: Annotated[float, OPEN_FRACTION] = 0.1,
        test_fraction: Annotated[float, FRACTION] = 0.0,
        max_tokens: Annotated[int | None, nullable(NON_NEGATIVE_INT, "all; 0: all")] = None,
        min_freq: Annotated[int, NON_NEGATIVE_INT] = 0,
        val_batch_size: Annotated[int, POSITIVE_INT] = 32,
        seed: Annotated[int, SEED] = 0,
        preprocess: Annotated[str, PREPROCESS] = "book",
        max_vocab: Annotated[int | None, nullable(integer(2, allowed="must be an integer >= 2 (<unk> and one token)"),
                                                  "no cap")] = None,
        unk: Annotated[bool, BOOL] = True,
        cache_dir: Annotated[str | None, nullable(STRING, "no cache")] = None,
        sample_prefix: Annotated[str | None, nullable(PREFIX, "time traveller on the bundled book, else the corpus's "
                                                              "opening")] = None,
    ):
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.path, self.token, self.sampling = path, token, sampling
        self.batch_size, self.num_steps, self.val_batch_size = batch_size, num_steps, val_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.max_tokens, self.min_freq, self.seed = max_tokens, min_freq, seed
        self.preprocess, self.max_vocab, self.unk, self.cache_dir = preprocess, max_vocab, unk, cache_dir
        self._sample_prefix = sample_prefix
        self.vocab: Vocab | None = None
        self.train_tokens = self.val_tokens = self.test_tokens = None

    def prepare_corpus(self) -> None:
        """Read, tokenize and split once (or read the cache); cheap enough to run in every process.

        Ids stay in the narrowest integer type (uint8/int16/int32); batches are widened when gathered.
        """
        if self.train_tokens is not None:
            return
        ids, self.vocab = load_ids(self.path, token=self.token, preprocess=self.preprocess, min_freq=self.min_freq,
                                   max_vocab=self.max_vocab, unk=self.unk, max_tokens=self.max_tokens,
                                   cache_dir=self.cache_dir)
        corpus = torch.from_numpy(ids)
        n_val = int(round(len(corpus) * self.val_fraction))
        n_test = int(round(len(corpus) * self.test_fraction))
        if n_val < 2 or len(corpus) - n_val - n_test < 2 or (self.test_fraction and n_test < 2):
            raise ConfigError(
                f"data.val_fraction={self.val_fraction} (data.test_fraction={self.test_fraction}) splits "
                f"{len(corpus)} tokens into an empty part: use a longer corpus or other fractions"
            )
        # train | val | test, each contiguous; without a test part the split is the book's train | val.
        n_train = len(corpus) - n_val - n_test
        self.train_tokens, self.val_tokens = corpus[:n_train], corpus[n_train:n_train + n_val]
        self.test_tokens = corpus[n_train + n_val:] if n_test else None
        # Fail now, with a clear message, if batches cannot be cut (per process under data parallelism).
        make_sampler(self.sampling, len(self.train_tokens), self.batch_size, self.num_steps, seed=self.seed,
                     trainer=self.trainer)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_corpus()

    def train_dataloader(self) -> DataLoader:
        return window_loader(self.train_tokens, self.sampling, self.batch_size, self.num_steps, seed=self.seed,
                             trainer=self.trainer)

    def val_dataloader(self) -> DataLoader:
        return self._stream_loader(self.val_tokens)

    @property
    def has_test_split(self) -> bool:
        return self.test_fraction > 0

    def test_dataloader(self) -> DataLoader:
        """The test part (data.test_fraction > 0), walked as validation walks the held-out stream."""
        if self.test_tokens is None:
            raise ConfigError("this data has no test split: set data.test_fraction (e.g. 0.1) when training")
        return self._stream_loader(self.test_tokens)

    def _stream_loader(self, tokens) -> DataLoader:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        rows = None
        if self.trainer is not None and self.trainer.world_size > 1:
            share = -(-self.val_batch_size // self.trainer.world_size)
            rows = slice(self.trainer.global_rank * share, (self.trainer.global_rank + 1) * share)
        batches = eval_stream_batches(tokens.to(device), self.val_batch_size, self.num_steps, rows=rows)
        return DataLoader(batches, batch_size=None)

    def module_kwargs(self) -> dict:
        """The declared interface between a data set and its task's module: what the LanguageModel needs
        from the data, the vocabulary (in index order), the token kind and the preprocessing (generation
        prefixes are processed as the corpus was), and the sampling (whether the state is carried)."""
        self.prepare_corpus()
        return {"vocab": list(self.vocab.idx_to_token), "token": self.token, "preprocess": self.preprocess,
                "sampling": self.sampling, "sample_prefix": self.sample_prefix}

    @property
    def is_book(self) -> bool:
        """The bundled Time Machine with the book's preprocessing (what d2l trains on)."""
        return self.path in (None, "") and self.preprocess == "book"

    @property
    def sample_prefix(self) -> str:
        """The text samples continue unless a prefix is given: `data.sample_prefix`; without one, the
        book's "time traveller" on the book's corpus, and on any other the corpus's own opening (its
        first 10 or so characters or first 2 words, after its preprocessing, only tokens of the
        vocabulary: rnnlab.data.text.opening_prefix), so a sample is in the corpus's language and script."""
        if self._sample_prefix is not None:
            return self._sample_prefix
        if self.is_book:
            return BOOK_PREFIX
        self.prepare_corpus()
        ids = self.train_tokens[: self.PREFIX_SCAN].tolist()
        unk = self.vocab.unk if self.token != "byte" else None  # 256 byte ids: every byte is known
        opening = opening_prefix([None if i == unk else self.vocab.idx_to_token[i] for i in ids], self.token)
        # Nothing but <unk> or blanks at the start: the most frequent token.
        return opening or self.vocab.idx_to_token[1 if len(self.vocab) > 1 else 0]

    @property
    def vocab_size(self) -> int:
        self.prepare_corpus()
        return len(self.vocab)

    def describe(self) -> str:
        src = self.path or "The Time Machine (bundled)"
        test = f" / {len(self.test_tokens)} test" if self.test_tokens is not None else ""
        return (f"{src}: {len(self.train_tokens)} train / {len(self.val_tokens)} val{test} {self.token} tokens "
                f"(preprocess {self.preprocess}, {self.train_tokens.dtype}), "
                f"vocab {len(self.vocab)}, {self.sampling} sampling, batch {self.batch_size} x {self.num_steps}")
