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
