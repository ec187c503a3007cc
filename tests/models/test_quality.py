"""The quality levers of experiment=best_char_lm: dropout, weight drop, weight averaging, dynamic evaluation."""

import json
import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from rnnlab.dynamic_eval import dynamic_log_probs, dynamic_perplexity
from rnnlab.models import LanguageModel
from rnnlab.models.cores import recurrent_weight_names
from rnnlab.run.job import main_task

VOCAB = list(" abcdefgh")


def model(kind="lstm", **kw):
    torch.manual_seed(0)
    return LanguageModel(core={"kind": kind, "hidden_size": 12, "num_layers": 2}, vocab=VOCAB, **kw)


def stream(n=120, seed=1):
    return torch.randint(0, len(VOCAB), (n,), generator=torch.Generator().manual_seed(seed))


def test_stream_perplexity_without_adaptation_is_the_plain_one():
    m, tokens = model(embedding_dim=6, dropout=0.5), stream()
    with torch.no_grad():
        m.eval()
        logits, _ = m(tokens[None, :-1])
        expected = math.exp(F.cross_entropy(logits[0], tokens[1:]).item())
    m.train()
    assert dynamic_perplexity(m, tokens, segment_len=25, lr=0.0) == pytest.approx(expected, rel=1e-5)


def test_dynamic_evaluation_scores_each_segment_before_adapting_to_it():
    """Tokens after a segment cannot change its score: change the stream's tail, keep its head's scores."""
    m = model()
    a = stream(100, seed=1)
    b = a.clone()
    b[61:] = (b[61:] + 1) % len(VOCAB)  # segments of 20 predict tokens 1-20, 21-40, 41-60: unchanged
    scores_a = dynamic_log_probs(m, a, segment_len=20, lr=0.5)
    scores_b = dynamic_log_probs(m, b, segment_len=20, lr=0.5)
    assert scores_a.shape == (99,)
    torch.testing.assert_close(scores_a[:60], scores_b[:60])
    assert not torch.allclose(scores_a[60:], scores_b[60:])


def test_dynamic_evaluation_adapts_and_leaves_the_model_as_it_was():
    m = model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.train()
    repetitive = torch.tensor([1, 2, 3, 4, 5] * 60)
    static = dynamic_perplexity(m, repetitive, segment_len=20, lr=0.0)
    adapted = dynamic_perplexity(m, repetitive, segment_len=20, lr=2.0)
    assert adapted < 0.7 * static  # the stream repeats: adapting to what was read pays off
    assert m.training and all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters())


@pytest.mark.parametrize("kind", ["lstm", "gru_scratch"])
def test_weight_drop_masks_recurrent_weights_while_training_only(kind):
    m = model(kind, weight_drop=0.5)
    names = recurrent_weight_names(m.core)
    assert len(names) == 2 and all(("weight_hh" in n) or n.endswith("W_h") for n in names)
    x = stream(20)[None]
    weights = {n: p.clone() for n, p in m.core.named_parameters()}
    m.train()
    out1, _ = m(x)
    out2, _ = m(x)
    assert not torch.allclose(out1, out2)  # a fresh mask per forward
    out1.sum().backward()
    params = dict(m.core.named_parameters())
    assert all(params[n].grad is not None and params[n].grad.abs().sum() > 0 for n in names)
    assert all(torch.equal(p, weights[n]) for n, p in m.core.named_parameters())  # masks never overwrite weights
    m.eval()
    plain = model(kind)
    plain.load_state_dict(m.state_dict())
    plain.eval()
    torch.testing.assert_close(m(x)[0], plain(x)[0])


def test_best_char_lm_preset_runs_end_to_end_small(make_cfg):
    """The preset's whole path on a tiny corpus: embedding, dropouts, EMA weights, dynamic evaluation."""
    cfg = make_cfg("experiment=best_char_lm", "model.hidden_size=16", "model.num_layers=2",
                   "module.embedding_dim=8", "module.weight_drop=0.2", "trainer.max_epochs=2",
                   "data.num_steps=16", "callbacks.ema.decay=0.9")
    assert cfg.trainer.max_epochs == 2 and cfg.module.scheduler.T_max == 2
    main_task(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["val/ppl_stream"] > 1 and metrics["val/ppl_dynamic"] > 1
    # the stream perplexity scores the best checkpoint, as val/ppl scored it (one stream, not 4 rows)
    assert metrics["val/ppl_stream"] == pytest.approx(metrics["best/val/ppl"], rel=0.05)
    ckpt = torch.load(Path(cfg.paths.output_dir) / metrics["best_checkpoint"], weights_only=True)  # relative to the run
    assert "current_model_state" in ckpt  # Lightning's weight averaging saved the average as the state_dict


def test_dynamic_evaluation_turns_off_the_dropout_inside_the_core_and_restores_it():
    """The core's own (inter-layer) dropout is off while adapting, and its setting comes back after."""
    m = model()  # a 2-layer nn.LSTM
    m.core.dropout = 0.9
    tokens = stream(80)
    first = dynamic_log_probs(m, tokens, segment_len=20, lr=0.5)
    torch.testing.assert_close(dynamic_log_probs(m, tokens, segment_len=20, lr=0.5), first)  # no random masks
    assert m.core.dropout == 0.9 and m.training
