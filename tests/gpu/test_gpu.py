"""The GPU path (trainer.accelerator=gpu): runs only where CUDA is available, skipped elsewhere (CI)."""

import json
from pathlib import Path

import pytest
import torch

from rnnlab.run.job import main_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("model", ["lstm", "lstm_scratch"])
def test_language_model_trains_on_gpu(make_cfg, model):
    cfg = make_cfg(f"model={model}", "trainer.accelerator=gpu")
    main_task(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["val/ppl"] < 28


def test_sine_on_gpu(make_cfg):
    cfg = make_cfg("task=forecast", "model=gru", "trainer.accelerator=gpu", "data.batch_size=4", tiny=False)
    main_task(cfg)
    assert json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["test/mse_k1"] > 0


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("compile", [False, True])
def test_scratch_core_matches_builtin_on_gpu(kind, compile):
    """The scratch cores (eager and compiled) against cuDNN's: outputs, states and gradients."""
    from rnnlab.models import build_core
    from rnnlab.models.scratch import load_builtin_weights

    torch.manual_seed(0)
    builtin = build_core(kind, 7, 32, num_layers=2).cuda()
    scratch = build_core(kind + "_scratch", 7, 32, num_layers=2, compile=compile).cuda()
    load_builtin_weights(scratch, builtin)
    x = torch.randn(4, 35, 7, device="cuda")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # full float32, as the scratch matmuls
        out_b, _ = builtin(x)
        out_b.square().sum().backward()
    out_s, _ = scratch(x)
    out_s.square().sum().backward()
    torch.testing.assert_close(out_s, out_b, atol=1e-4, rtol=1e-4)
    grads_b = [builtin.weight_hh_l0.grad, builtin.weight_ih_l1.grad]
    grads_s = [scratch.cells[0].W_h.grad.T, scratch.cells[1].W_x.grad.T]
    for gs, gb in zip(grads_s, grads_b):
        torch.testing.assert_close(gs, gb, atol=1e-3, rtol=1e-3)


def test_training_batches_are_gathered_on_the_gpu():
    """No per-batch host-to-device copy: the corpus and each epoch's window starts already sit on the GPU."""
    import lightning as L

    from rnnlab.data import TextDataModule

    dm = TextDataModule(max_tokens=2000, batch_size=4, num_steps=8)
    dm.trainer = L.Trainer(accelerator="gpu", devices=1, logger=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.dataset.sequence.is_cuda and loader.sampler.device.type == "cuda"
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.shape == (4, 8)
    vx, vy = next(iter(dm.val_dataloader()))
    assert vx.is_cuda and vy.is_cuda


def test_training_steps_do_not_wait_for_the_gpu(make_cfg):
    """No host sync inside or between training steps, away from logging steps and epoch ends, with the
    configured callbacks, logger and progress bar (refreshed every step): metrics stay on the device."""
    import warnings

    import lightning as L
    from hydra.utils import instantiate

    class Watch(L.Callback):
        def __init__(self):
            self.syncs, self.active = 0, False

        def on_train_batch_start(self, trainer, *args):
            self.active = 3 <= trainer.global_step < 40  # no logging step (every 1000), no epoch end

        def on_train_end(self, *args):
            self.active = False

    cfg = make_cfg("trainer.accelerator=gpu", "data.max_tokens=100000", "data.batch_size=16", "data.num_steps=16",
                   "trainer.max_steps=45", "trainer.log_every_n_steps=1000", "trainer.enable_progress_bar=true",
                   "callbacks.progress_bar={_target_:rnnlab.callbacks.ProgressBar,refresh_rate:1}",
                   "trainer.limit_val_batches=0")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    module = instantiate(cfg.module, **dm.module_kwargs())
    watch = Watch()
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + [watch]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[instantiate(c) for c in cfg.logger.values()])
    seen = 0

    def count(message, *args, **kwargs):
        nonlocal seen
        if "synchronizing" in str(message):
            seen += 1
            watch.syncs += watch.active

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on exit
            warnings.simplefilter("always")
            warnings.showwarning = count
            trainer.fit(module, datamodule=dm)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.global_step == 45
    assert seen > 0  # the detector works: set-up and teardown do sync
    assert watch.syncs == 0


def test_dynamic_evaluation_adapts_a_cudnn_lstm():
    """cuDNN computes an RNN's backward pass only in training mode: dynamic evaluation keeps the core
    there with its dropout off, and adapting to a repetitive stream pays off."""
    from rnnlab.dynamic_eval import dynamic_perplexity
    from rnnlab.models import LanguageModel

    torch.manual_seed(0)
    m = LanguageModel(core={"kind": "lstm", "hidden_size": 16, "num_layers": 2, "dropout": 0.5},
                      vocab=list(" abcdefgh")).cuda()
    repetitive = torch.tensor([1, 2, 3, 4, 5] * 60)
    static = dynamic_perplexity(m, repetitive, segment_len=20, lr=0.0)
    assert dynamic_perplexity(m, repetitive, segment_len=20, lr=2.0) < 0.7 * static
    assert m.core.dropout == 0.5


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm", "rnn_scratch", "gru_scratch", "lstm_scratch"])
def test_reduce_overhead_losses_equal_eager_over_100_steps(kind):
    """model.compile=reduce-overhead (CUDA graphs) on a GPU: 100 SGD steps with clipping and the state
    carried give the eager path's losses within float tolerance (both in full float32)."""
    from torch.nn import functional as F

    from rnnlab.models import build_core
    from rnnlab.models.cores import detach_state

    def losses(compile):
        torch.manual_seed(0)
        core = build_core(kind, 28, 64, compile=compile).cuda()
        head = torch.nn.Linear(64, 28).cuda()
        params = [*core.parameters(), *head.parameters()]
        opt, g, state, out = torch.optim.SGD(params, lr=1.0), torch.Generator("cuda").manual_seed(1), None, []
        for _ in range(100):
            x = torch.randint(0, 28, (32, 35), device="cuda", generator=g)
            y = torch.randint(0, 28, (32, 35), device="cuda", generator=g)
            logits, state = core(F.one_hot(x, 28).float(), state)
            state = detach_state(state)
            loss = F.cross_entropy(head(logits).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()
            out.append(loss.detach())
        return torch.stack(out).cpu()

    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        torch.backends.cuda.matmul.allow_tf32 = False
        eager, graphed = losses(False), losses("reduce-overhead")
    torch.testing.assert_close(graphed, eager, atol=1e-3, rtol=1e-3)
