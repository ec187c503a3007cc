"""experiment=best_char_lm_ensemble: members trained apart, scored together by the mean of their probabilities."""

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from rnnlab.cli.ensemble import main as ensemble_main
from rnnlab.dynamic_eval import dynamic_perplexity
from rnnlab.ensemble import mixture_log_probs, score_ensemble
from rnnlab.models import LanguageModel

VOCAB = list(" abcdefgh")


def member(seed):
    torch.manual_seed(seed)
    return LanguageModel(core={"kind": "gru", "hidden_size": 10}, vocab=VOCAB)


def test_mixture_is_the_log_of_the_mean_probability():
    p = torch.tensor([[0.5, 0.1, 0.9], [0.1, 0.3, 0.9]], dtype=torch.float64)
    mixed = mixture_log_probs(list(p.log()))
    torch.testing.assert_close(mixed, p.mean(0).log())
    torch.testing.assert_close(mixture_log_probs([p[0].log()]), p[0].log())


def test_one_member_scores_as_dynamic_evaluation_and_two_score_no_worse_than_their_geometric_mean():
    tokens = torch.randint(0, len(VOCAB), (150,), generator=torch.Generator().manual_seed(3))
    a, b = member(1), member(2)
    one = score_ensemble([a], tokens, segment_len=30, lr=0.5)
    assert one["ensemble/ppl_stream"] == pytest.approx(dynamic_perplexity(a, tokens, 30, lr=0.0), rel=1e-9)
    assert one["ensemble/ppl_dynamic"] == pytest.approx(dynamic_perplexity(a, tokens, 30, lr=0.5), rel=1e-9)
    two = score_ensemble(iter([a, b]), tokens, segment_len=30, lr=0.5)
    assert two["members"] == 2 and two["member/ppl_stream"][0] == one["member/ppl_stream"][0]
    for kind in ("stream", "dynamic"):
        geometric = math.exp(sum(math.log(v) for v in two[f"member/ppl_{kind}"]) / 2)
        assert two[f"ensemble/ppl_{kind}"] <= geometric  # -log is convex: mixing never loses to the average member
        assert two[f"ensemble/ppl_{kind}"] < max(two[f"member/ppl_{kind}"])


@pytest.mark.slow  # a real multirun (~15 s); tests/runs/test_reliability_paths.py scores sweeps in the default suite
def test_preset_multirun_writes_the_ensemble_of_its_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "experiment=best_char_lm_ensemble", "seed=1,2", "trainer.max_epochs=1",
         "data.max_tokens=4000", "data.num_steps=16", "data.val_batch_size=1", "model.hidden_size=16",
         "model.num_layers=1", "model.dropout=0", "module.embedding_dim=8",
         "print_config=false", "callbacks.progress_bar=null", "trainer.enable_progress_bar=false",
         "trainer.enable_model_summary=false", f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((sweep / "ensemble.json").read_text())
    assert report["members"] == 2 and report["checkpoints"][0].startswith("0/checkpoints/")
    jobs = [json.loads((sweep / str(i) / "metrics.json").read_text()) for i in range(2)]
    assert [j["seed"] for j in jobs] == [1, 2]
    # One validation row is the stream read in order: each member scores its best checkpoint's val/ppl.
    for job, ppl in zip(jobs, report["member/ppl_stream"]):
        assert ppl == pytest.approx(job["best/val/ppl"], rel=1e-4)
    assert report["ensemble/ppl_stream"] <= math.exp(sum(map(math.log, report["member/ppl_stream"])) / 2)
    # rnnlab-ensemble scores the finished multirun again, here without dynamic evaluation.
    assert ensemble_main([str(sweep), "--lr", "0", "--device", "cpu"]) == 0
    again = json.loads((sweep / "ensemble.json").read_text())
    assert again["ensemble/ppl_stream"] == pytest.approx(report["ensemble/ppl_stream"], rel=1e-9)
    assert "ensemble/ppl_dynamic" not in again and "ensemble/ppl_dynamic" in report


def test_bad_ensemble_option_is_named_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "-m", "experiment=best_char_lm_ensemble",
                           "hydra.callbacks.ensemble.lr=-1", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "hydra.callbacks.ensemble.lr=-1 is invalid: must be a number >= 0" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "sweep").exists()
