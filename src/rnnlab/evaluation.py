"""Evaluation steps that follow training, listed in the config's `evaluation` group (chosen by the
task): each is called once with the trained Trainer, module and data, and returns metrics for
metrics.json (and TensorBoard)."""

from __future__ import annotations

from typing import Annotated, Any

import torch

from rnnlab.dashboard.logger import writers
from rnnlab.dynamic_eval import DECAY, LR, SEGMENT_LEN, dynamic_perplexity
from rnnlab.metrics import finite_or_none
from rnnlab.options import DATA_PREFIX, NON_NEGATIVE_INT, TEMPERATURE, checked


def best_checkpoint(trainer) -> str:
    """The checkpoint with the best monitored metric ("" without one): what the evaluation reports."""
    ckpt = trainer.checkpoint_callback
    return ckpt.best_model_path if ckpt is not None else ""


def log_scalars(trainer, values: dict[str, float]) -> None:
    for name, value in values.items():
        for writer, tag in writers(trainer, name):
            writer.add_scalar(tag, value, trainer.global_step)


class TestSplit:
    """Lightning's test loop on the data's test part, with the weights that scored best on validation
    (as `ckpt_path="best"` does); its logged metrics go to metrics.json."""

    def __call__(self, trainer, module, datamodule) -> dict[str, Any]:
        if not datamodule.has_test_split:  # rnnlab.data.base: e.g. text with data.test_fraction=0
            return {}
        best = best_checkpoint(trainer)
        results = trainer.test(module, datamodule=datamodule, verbose=False, ckpt_path=best or None,
                               weights_only=True)
        return {k: finite_or_none(v) for r in results for k, v in r.items()}


class GeneratedSample:
    """A continuation of `prefix` by the trained language model (greedy at temperature 0), as `sample`;
    `prefix` null: the data's sample prefix (`data.sample_prefix`, held by the module)."""

    @checked()
    def __init__(self, prefix: Annotated[str | None, DATA_PREFIX] = None,
                 num_tokens: Annotated[int, NON_NEGATIVE_INT] = 50, temperature: Annotated[float, TEMPERATURE] = 0.0):
        self.prefix, self.num_tokens, self.temperature = prefix, num_tokens, temperature

    def __call__(self, trainer, module, datamodule) -> dict[str, Any]:
        if not trainer.is_global_zero:
            return {}
        prefix = self.prefix if self.prefix is not None else module.sample_prefix
        return {"sample": module.generate(prefix, self.num_tokens, temperature=self.temperature)}


class DynamicEvaluation:
    """The held-out stream read in order as one stream by the best checkpoint's weights: `val/ppl_stream`
    as they are, and `val/ppl_dynamic` under dynamic evaluation (rnnlab.dynamic_eval)."""

    @checked()
    def __init__(self, segment_len: Annotated[int, SEGMENT_LEN] = 50, lr: Annotated[float, LR] = 1e-3,
                 decay: Annotated[float, DECAY] = 0.0):
        self.segment_len, self.lr, self.decay = segment_len, lr, decay

    def __call__(self, trainer, module, datamodule) -> dict[str, Any]:
        if not trainer.is_global_zero:
            return {}
        tokens = datamodule.val_tokens
        if trainer.fast_dev_run:  # a debug run checks that the step works: two segments, not the whole stream
            tokens = tokens[: 2 * self.segment_len + 1]
        current = {k: v.detach().clone() for k, v in module.state_dict().items()}
        best = best_checkpoint(trainer)
        if best:  # the weights reported as best/val/ppl (the averaged ones, with weight averaging)
            module.load_state_dict(torch.load(best, map_location=module.device, weights_only=True)["state_dict"])
        try:
            result = {
                "val/ppl_stream": dynamic_perplexity(module, tokens, self.segment_len, lr=0.0),
                "val/ppl_dynamic": dynamic_perplexity(module, tokens, self.segment_len, self.lr, self.decay),
            }
        finally:
            module.load_state_dict(current)
        log_scalars(trainer, result)
        return result
