"""The character/word language model of d2l's RNN chapter as a LightningModule around any recurrent core."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Annotated, Any, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from rnnlab.data.text import BOOK_PREFIX, TOKEN, Vocab, prefix_tokens
from rnnlab.errors import ConfigError
from rnnlab.metrics import TokenNLL
from rnnlab.models.base import RnnlabModule
from rnnlab.models.cores import output_size, weight_drop_names
from rnnlab.models.optim import configure_optimizers
from rnnlab.models.spec import core_from_spec, plain_spec
from rnnlab.models.state import CarriedState
from rnnlab.models.step_logging import OptimizerStepLogging, is_logging_step
from rnnlab.options import FRACTION, NON_NEGATIVE_INT, POSITIVE_INT, TEMPERATURE, checked, nullable

log = logging.getLogger(__name__)

EPOCH_STATE_KEY = "rnnlab_epoch_state"
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.SGD", "lr": 1.0}  # the book's


class LanguageModel(OptimizerStepLogging, RnnlabModule):
    """One-hot (or embedded) tokens -> recurrent core -> linear head -> cross-entropy.

    State policy follows the data: with sequential sampling (`sampling`, from the data module) the hidden
    state is carried from batch to batch, detached every step, and reset at each epoch start; with
    random sampling every batch starts from zero. Validation walks the held-out stream with its own
    carried state and reports exact perplexity, exp of the token-weighted mean NLL (and, for
    characters, bits per character). Gradient norms and the learning rate: OptimizerStepLogging.

    The core, optimizer and scheduler arrive as plain-data specs (rnnlab.models.spec: config nodes
    such as `{"kind": "lstm", "hidden_size": 256}` and `{"_target_": "torch.optim.SGD", "lr": 1.0}`)
    and are built here, so checkpoints hold only data and load with `weights_only=True`. A checkpoint
    saved mid-epoch also holds the epoch's carried hidden state, running training NLL and elapsed
    time, so a resume continues the epoch exactly.

    `sample_prefix` (from the data module: data.sample_prefix, or the corpus's own opening) is what
    generation continues when no prefix is given; it is kept in the checkpoint, so the tools
    (rnnlab-generate, eval.py) continue the training run's prefix. Checkpoints from before it: the
    book's "time traveller".
    """

    @checked()
    def __init__(
        self,
        core: Mapping[str, Any],
        vocab: Sequence[str],
        token: Annotated[str, TOKEN] = "char",
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        embedding_dim: Annotated[int | None, nullable(POSITIVE_INT, "one-hot input")] = None,
        dropout: Annotated[float, FRACTION] = 0.0,
        weight_drop: Annotated[float, FRACTION] = 0.0,
        preprocess: str = "book",  # the corpus's data.preprocess (checkpoints from before it: book)
        sampling: str = "sequential",  # the data's sampling: sequential carries the state across batches
        sample_prefix: str | None = None,  # the data's default generation prefix (None: the book's)
    ):
        super().__init__()
        vocab = [str(t) for t in vocab]
        self.save_hyperparameters(dict(
            core=plain_spec(core, "module.core"), vocab=vocab, token=token,
            optimizer=plain_spec(optimizer if optimizer is not None else DEFAULT_OPTIMIZER, "module.optimizer"),
            scheduler=plain_spec(scheduler, "module.scheduler"), embedding_dim=embedding_dim, dropout=dropout,
            weight_drop=weight_drop, preprocess=preprocess, sampling=sampling, sample_prefix=sample_prefix),
            logger=False)
        self.vocab = Vocab.from_tokens_list(vocab)
        self.token, self.preprocess = token, preprocess
        self.vocab_size = len(vocab)
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim) if embedding_dim else None
        self.core = core_from_spec(self.hparams.core, input_size=embedding_dim or self.vocab_size)
        self.head = nn.Linear(output_size(self.core), self.vocab_size)
        # Dropout on the core's input (an embedding's output) and on its outputs before the head,
        # as in pytorch/examples' word_language_model; the core's own dropout acts between layers.
        self.dropout = nn.Dropout(dropout) if dropout else None
        # DropConnect on the hidden-to-hidden weights (AWD-LSTM's weight drop): one mask per batch,
        # shared by all time steps, so the recurrence itself is regularised; the kernels stay cuDNN's.
        self.weight_drop = weight_drop
        self._recurrent_weights = weight_drop_names(self.core, weight_drop)  # a core without them: refused
        self.train_nll, self.val_nll = TokenNLL(), TokenNLL()
        self.train_state, self._val_state = CarriedState(), None
        self._epoch_t0 = self._train_seconds = None
        self._checked_prefixes: set[str] = set()

    # model -------------------------------------------------------------------------------------
    def encode(self, tokens: Tensor) -> Tensor:
        if self.embedding is not None:
            return self._drop(self.embedding(tokens))
        return F.one_hot(tokens, self.vocab_size).to(self.head.weight.dtype)

    def _drop(self, x: Tensor) -> Tensor:
        return x if self.dropout is None else self.dropout(x)

    def forward(self, tokens: Tensor, state=None):
        """tokens (batch, time) -> logits (batch, time, vocab) and the core's final state.

        Token ids may be of any integer dtype: the data module keeps its corpus in the narrowest one
        (uint8/int16/int32, rnnlab.data.corpus), and windows of it can be fed as they are; they are
        widened to int64 on their device (a kernel, no host sync) for the embedding or the one-hot."""
        if tokens.dtype != torch.long:
            if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
                raise TypeError(f"token ids must be an integer tensor, got {tokens.dtype}")
            tokens = tokens.long()
        x = self.encode(tokens)
        if self.training and self._recurrent_weights:
            dropped = {n: F.dropout(self.core.get_parameter(n), self.weight_drop, training=True)
                       for n in self._recurrent_weights}
            outputs, state = functional_call(self.core, dropped, (x, state))
        else:
            outputs, state = self.core(x, state)
        return self.head(self._drop(outputs)), state

    # training ----------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self.train_state.reset(carry=self.hparams.get("sampling", "sequential") == "sequential")
        self.train_nll.reset()
        self._train_seconds = None
        self._epoch_t0 = time.perf_counter()

    def on_train_start(self) -> None:
        # A mid-epoch checkpoint's carried state and sums (on_load_checkpoint) move to the training device.
        self.train_state.to(self.device)
        self.train_nll.to(self.device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Also store the epoch in progress (state, running NLL, elapsed time): a mid-epoch resume is exact."""
        super().on_save_checkpoint(checkpoint)
        elapsed = None if self._epoch_t0 is None else (
            self._train_seconds if self._train_seconds is not None else time.perf_counter() - self._epoch_t0)
        checkpoint[EPOCH_STATE_KEY] = {**self.train_state.state_dict(), **self.train_nll.state_dict(),
                                       "train_seconds": elapsed}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        epoch_state = checkpoint.get(EPOCH_STATE_KEY)
        if epoch_state is None:
            return
        self.train_state.load_state_dict(epoch_state)
        self.train_nll.load_state_dict(epoch_state)
        if epoch_state.get("train_seconds") is not None:
            self._epoch_t0, self._train_seconds = time.perf_counter() - epoch_state["train_seconds"], None

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits, state = self(x, self.train_state.initial())
        self.train_state.keep(state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        self.train_nll.update_mean(loss, y.numel())
        if is_logging_step(self.trainer):
            self.log("train/loss", loss)  # shown by rnnlab.callbacks.ProgressBar
        return loss

    def _freeze_train_time(self) -> None:
        if self._epoch_t0 is not None and self._train_seconds is None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # once per epoch, so the time covers the queued work
            self._train_seconds = time.perf_counter() - self._epoch_t0

    def on_train_epoch_end(self) -> None:
        self._freeze_train_time()
        # Already reduced over processes; sync_dist averages identical values (one all-reduce per epoch).
        self.log("train/ppl", self.train_nll.perplexity(self.trainer.strategy.reduce), sync_dist=True)
        tokens = self.train_nll.count * self.trainer.world_size  # tokens of this epoch's steps, a host int
        self.log("train/tokens_per_s", tokens / max(self._train_seconds, 1e-9), sync_dist=True)

    # validation --------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        if not self.trainer.sanity_checking:
            self._freeze_train_time()  # validation runs inside the training epoch: keep it out of tokens/s
        self._val_state = None
        self.val_nll.reset()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits, self._val_state = self(x, self._val_state)
        nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
        self.val_nll.update(nll, (y != -100).sum())

    def on_validation_epoch_end(self) -> None:
        ppl = self.val_nll.perplexity(self.trainer.strategy.reduce)
        self.log("val/ppl", ppl, prog_bar=True, sync_dist=True)
        nll = torch.log(ppl)
        self.log("val/loss", nll, sync_dist=True)
        if self.token == "char":
            self.log("val/bpc", nll / math.log(2), sync_dist=True)  # bits per character

    # test (the data's test split, data.test_fraction) --------------------------------------------
    def on_test_epoch_start(self) -> None:
        self._val_state = None
        self.val_nll.reset()

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        ppl = self.val_nll.perplexity(self.trainer.strategy.reduce)
        self.log("test/ppl", ppl, sync_dist=True)
        self.log("test/loss", torch.log(ppl), sync_dist=True)

    # optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self):
        return configure_optimizers(self)

    # generation --------------------------------------------------------------------------------
    @property
    def sample_prefix(self) -> str:
        """The prefix generation continues by default: the training data's sample prefix."""
        return self.hparams.get("sample_prefix") or BOOK_PREFIX

    def unknown_prefix_tokens(self, prefix: str) -> list[str]:
        """The distinct tokens of `prefix` (processed as the corpus was) that are not in the vocabulary."""
        known = self.vocab.token_to_idx
        return list(dict.fromkeys(t for t in prefix_tokens(prefix, self.token, self.preprocess) if t not in known))

    def check_prefix(self, prefix: str) -> None:
        """Log one warning line, once per prefix, if `prefix` has tokens the model reads as <unk>
        (e.g. the book's prefix on a corpus in another script)."""
        if prefix in self._checked_prefixes:
            return
        self._checked_prefixes.add(prefix)
        unknown = self.unknown_prefix_tokens(prefix)
        if unknown:
            kind = {"word": "words", "byte": "bytes"}.get(self.token, "characters")
            shown = ", ".join(repr(t) for t in unknown[:10]) + (
                f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
            log.warning("sample prefix %r has %s outside the vocabulary, read as <unk>: %s; give a prefix in the "
                        "corpus's own text", prefix, kind, shown)

    def prefix_indices(self, prefix: str) -> list[int]:
        """Process and tokenize a prefix as the corpus was; unknown tokens map to <unk> (with a warning)."""
        tokens = prefix_tokens(prefix, self.token, self.preprocess)
        if not tokens:
            raise ConfigError(f"prefix={prefix!r} is empty: give at least one {self.token}")
        self.check_prefix(prefix)
        return self.vocab[tokens]

    @torch.no_grad()
    @checked()
    def generate(self, prefix: str | None, num_tokens: Annotated[int, NON_NEGATIVE_INT],
                 temperature: Annotated[float, TEMPERATURE] = 0.0, generator: torch.Generator | None = None) -> str:
        """Continue `prefix` (None: `sample_prefix`) by `num_tokens`: warm up on the prefix, then argmax
        (temperature 0) or sample."""
        if prefix is None:
            prefix = self.sample_prefix
        was_training = self.training
        self.eval()
        try:
            idx = torch.tensor([self.prefix_indices(prefix)], device=self.device)
            logits, state = self(idx, None)
            out = []
            for _ in range(num_tokens):
                last = logits[:, -1]
                if temperature > 0:
                    probs = torch.softmax(last.float() / temperature, -1)
                    nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(self.device)
                else:
                    nxt = last.argmax(-1, keepdim=True)
                out.append(nxt)
                logits, state = self(nxt, state)
        finally:
            self.train(was_training)
        new = self.vocab.to_tokens(torch.cat(out, 1)[0]) if out else []
        sep = " " if self.token == "word" else ""
        return prefix + (sep if new and sep else "") + sep.join(new)
