"""LanguageModel behaviour: state policy, clipping, exact validation perplexity, generation."""

import math

import lightning as L
import pytest
import torch
from torch.nn import functional as F

from rnnlab.data import TextDataModule
from rnnlab.data.sampling import eval_stream_batches
from rnnlab.errors import ConfigError
from rnnlab.models import LanguageModel


def make(sampling="sequential", hidden=16, lr=1.0, kind="gru", **dm_kw):
    torch.manual_seed(0)
    dm = TextDataModule(sampling=sampling, batch_size=4, num_steps=8, max_tokens=3000,
                               val_batch_size=3, **dm_kw)
    dm.setup("fit")
    model = LanguageModel(core={"kind": kind, "hidden_size": hidden},
                          optimizer={"_target_": "torch.optim.SGD", "lr": lr}, **dm.module_kwargs())
    return dm, model


def trainer(callbacks=(), **kw):
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, callbacks=list(callbacks), **kw)


class StateRecorder(L.Callback):
    """Records the state each training batch starts from, and the state it leaves behind."""

    def __init__(self):
        self.before, self.after = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before.append((trainer.current_epoch, module.train_state.state))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after.append(module.train_state.state)


def test_sequential_sampling_carries_detached_state_and_resets_each_epoch():
    dm, model = make("sequential")
    rec = StateRecorder()
    trainer([rec], max_epochs=2, limit_val_batches=0).fit(model, dm)
    starts_of_epoch = [i for i, (e, _) in enumerate(rec.before) if i == 0 or rec.before[i - 1][0] != e]
    assert starts_of_epoch == [0, len(dm.train_dataloader())]
    for i, (_, state) in enumerate(rec.before):
        if i in starts_of_epoch:
            assert state is None
        else:
            assert state is rec.after[i - 1] and not state.requires_grad and state.grad_fn is None


def test_random_sampling_starts_every_batch_from_zero():
    dm, model = make("random")
    rec = StateRecorder()
    trainer([rec], max_epochs=1, limit_val_batches=0).fit(model, dm)
    assert len(rec.before) > 2 and all(s is None for _, s in rec.before) and all(s is None for s in rec.after)


class UpdateNorm(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.prev = torch.cat([p.detach().flatten().clone() for p in module.parameters()])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = torch.cat([p.detach().flatten() for p in module.parameters()])
        self.norms.append(float((now - self.prev).norm()))
        self.grad_norms.append(float(trainer.callback_metrics["train/grad_norm"]))

    def __init__(self):
        self.norms, self.grad_norms = [], []


@pytest.mark.parametrize("clip", [0.01, None])
def test_clipping_bounds_the_sgd_update(clip):
    dm, model = make(lr=1.0)
    rec = UpdateNorm()
    trainer([rec], max_steps=6, limit_val_batches=0, gradient_clip_val=clip, log_every_n_steps=1).fit(model, dm)
    # The logged gradient norm is the one before clipping: larger than the clip threshold here.
    assert min(rec.grad_norms) > 0.01
    if clip:
        assert max(rec.norms) <= 0.01 * (1 + 1e-4)
    else:
        assert max(rec.norms) > 0.01  # the same run without clipping takes larger steps
        for n, g in zip(rec.norms, rec.grad_norms):
            assert n == pytest.approx(g, rel=1e-3)  # SGD lr 1: the step is the gradient


def test_validation_perplexity_is_exact_over_the_whole_stream():
    dm, model = make(kind="lstm")
    result = trainer().validate(model, dm, verbose=False)[0]
    # Reference: each of the val_batch_size rows walked from a zero state in one pass, summed NLL over real tokens.
    model.eval()
    (x, y), = [(torch.cat([b[0] for b in eval_stream_batches(dm.val_tokens, 3, 8)], 1),
                torch.cat([b[1] for b in eval_stream_batches(dm.val_tokens, 3, 8)], 1))]
    with torch.no_grad():
        logits, _ = model(x)
    nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
    count = int((y != -100).sum())
    assert count == len(dm.val_tokens) - 1
    assert result["val/ppl"] == pytest.approx(math.exp(float(nll) / count), rel=1e-5)


def book_predict(model, prefix, num_preds):
    """d2l's predict_ch8: feed one token at a time, warm up on the prefix, then argmax."""
    state, outputs = None, [model.vocab[prefix[0]]]
    for i in range(len(prefix) + num_preds - 1):
        logits, state = model(torch.tensor([[outputs[-1]]]), state)
        outputs.append(model.vocab[prefix[i + 1]] if i < len(prefix) - 1 else int(logits[0, -1].argmax()))
    return "".join(model.vocab.to_tokens(outputs))


@pytest.mark.parametrize("kind", ["lstm_scratch", "rnn"])
def test_greedy_generation_matches_the_books_predict(kind):
    _, model = make(kind=kind)
    model.eval()
    assert model.generate("time traveller", 20) == book_predict(model, "time traveller", 20)


def test_sampling_generation_is_reproducible_and_uses_the_vocab():
    _, model = make()
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = model.generate("the", 30, temperature=1.0, generator=g1)
    b = model.generate("the", 30, temperature=1.0, generator=g2)
    c = model.generate("the", 30, temperature=1.0, generator=torch.Generator().manual_seed(2))
    assert a == b != c and a.startswith("the") and len(a.replace("<unk>", "?")) == 33


def test_generation_handles_unknown_and_rejects_empty_prefix():
    _, model = make()  # book preprocessing: the prefix is cleaned as the corpus was
    assert model.prefix_indices("T#é") == [model.vocab["t"], model.vocab[" "]]
    lower = LanguageModel(core={"kind": "gru", "hidden_size": 4}, vocab=model.vocab.idx_to_token,
                          preprocess="lower")
    assert lower.prefix_indices("T#é") == [model.vocab["t"], 0, 0]
    with pytest.raises(ConfigError, match="prefix=''"):
        model.generate("", 5)


def test_word_level_generation_joins_words():
    _, model = make(token="word")
    text = model.generate("the time zzzunknown", 4)
    words = text.split()
    assert words[:3] == ["the", "time", "zzzunknown"] and len(words) == 7


def test_token_nll_is_token_weighted_not_a_mean_of_batch_perplexities():
    from rnnlab.metrics import TokenNLL

    acc = TokenNLL()
    assert math.isnan(float(acc.perplexity()))
    acc.update(torch.tensor(10 * 1.0), 10)  # 10 tokens at NLL 1.0
    acc.update(torch.tensor(2 * 3.0), 2)    # 2 tokens at NLL 3.0
    assert float(acc.perplexity()) == pytest.approx(math.exp(16 / 12))
    assert float(acc.perplexity()) != pytest.approx((math.exp(1.0) + math.exp(3.0)) / 2)
    assert acc.total.dtype == torch.float64
    acc.update_mean(torch.tensor(2.0, dtype=torch.float32), 4)  # a training loss: mean NLL over 4 tokens
    assert float(acc.perplexity()) == pytest.approx(math.exp(24 / 16))
    assert isinstance(acc.count, int)  # integer counts stay on the host: no kernel per step
    acc.update(torch.tensor(3.0), torch.tensor(1))
    assert float(acc.perplexity()) == pytest.approx(math.exp(27 / 17))
    acc.reset()
    assert acc.total is None and acc.count == 0


def test_progress_bar_shows_the_last_logged_training_loss(make_cfg):
    """train/loss is not a prog_bar metric (Lightning would read it on every step); the bar shows the
    value last logged, read when it changes."""
    from hydra.utils import instantiate

    from rnnlab.callbacks import ProgressBar

    cfg = make_cfg("trainer.max_steps=7", "trainer.log_every_n_steps=3", "trainer.limit_val_batches=0",
                   "trainer.enable_progress_bar=true", "callbacks.progress_bar={_target_:rnnlab.callbacks.ProgressBar}")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    module = instantiate(cfg.module, **dm.module_kwargs())
    bar = instantiate(cfg.callbacks.progress_bar)
    trainer = instantiate(cfg.trainer, callbacks=[bar], logger=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    assert isinstance(bar, ProgressBar)
    assert "train/loss" not in trainer.progress_bar_metrics
    logged = trainer.logged_metrics["train/loss"]  # from step 6, the last logging step
    assert bar.get_metrics(trainer, module)["train/loss"] == float(logged)


@pytest.fixture(scope="module")
def compact_corpora(tmp_path_factory):
    """Data modules whose ids are stored in each compact dtype: the book's characters (uint8), its
    words (int16) and a file of 33,000 distinct words (int32)."""
    path = tmp_path_factory.mktemp("corpus") / "many_words.txt"
    path.write_text(" ".join(f"w{i}" for i in range(33000)) + "\n")
    modules = {}
    kinds = {"uint8": {}, "int16": {"token": "word"},
             "int32": {"token": "word", "path": str(path), "preprocess": "lower"}}
    for name, kw in kinds.items():
        dm = TextDataModule(batch_size=2, num_steps=8, val_batch_size=2, max_tokens=3000, **kw)
        dm.setup("fit")
        modules[name] = dm
    return modules


@pytest.mark.parametrize("embedding_dim", [None, 8])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32"])
def test_forward_takes_the_data_modules_own_compact_ids(compact_corpora, dtype, embedding_dim):
    """The data module keeps its ids in the narrowest integer type; the model reads windows of them as
    they are (one-hot and embedding), with the logits of the same ids as int64."""
    dm = compact_corpora[dtype]
    assert dm.train_tokens.dtype == getattr(torch, dtype)
    torch.manual_seed(0)
    model = LanguageModel(core={"kind": "gru", "hidden_size": 4}, embedding_dim=embedding_dim, **dm.module_kwargs())
    model.eval()
    for window in (dm.train_tokens[:16].view(2, 8), dm.val_tokens[-8:].view(1, 8)):
        assert window.dtype == getattr(torch, dtype)
        logits, state = model(window)
        wide_logits, wide_state = model(window.long())
        assert logits.shape == (*window.shape, dm.vocab_size)
        assert torch.equal(logits, wide_logits) and torch.equal(state, wide_state)
    with pytest.raises(TypeError, match="token ids must be an integer tensor, got torch.float32"):
        model(dm.train_tokens[:8].view(1, 8).float())
