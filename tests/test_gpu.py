"""The GPU path (trainer.accelerator=gpu): runs only where CUDA is available, skipped elsewhere (CI)."""

import json
from pathlib import Path

import pytest
import torch

from rnnlab.training import main_task

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("model", ["lstm", "lstm_scratch"])
def test_language_model_trains_on_gpu(make_cfg, model):
    cfg = make_cfg(f"model={model}", "trainer.accelerator=gpu")
    main_task(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["val/ppl"] < 28


def test_sine_on_gpu(make_cfg):
    cfg = make_cfg("data=sine", "model=gru", "trainer.accelerator=gpu", "data.batch_size=4", tiny=False)
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

    from rnnlab.data import TimeMachineDataModule

    dm = TimeMachineDataModule(max_tokens=2000, batch_size=4, num_steps=8)
    dm.trainer = L.Trainer(accelerator="gpu", devices=1, logger=False)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert loader.dataset.sequence.is_cuda and loader.sampler.device.type == "cuda"
    x, y = next(iter(loader))
    assert x.is_cuda and y.is_cuda and x.shape == (4, 8)
    vx, vy = next(iter(dm.val_dataloader()))
    assert vx.is_cuda and vy.is_cuda
