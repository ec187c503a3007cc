"""The documented Python API (README, "From Python"): data sets and LightningModules built and trained
with a plain Lightning Trainer, no Hydra config; the same option checks as a config run."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from rnnlab.data import TextDataModule
from rnnlab.data.series import SeriesDataModule
from rnnlab.errors import ConfigError
from rnnlab.models import LanguageModel
from rnnlab.models.cores import build_core
from rnnlab.models.forecast_model import ForecastModel


def quiet_trainer(tmp_path, **kwargs) -> L.Trainer:
    return L.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                     **kwargs)


def test_a_language_model_trains_saves_and_generates_from_python(tmp_path):
    data = TextDataModule(batch_size=8, num_steps=10, max_tokens=3000)
    data.setup("fit")
    model = LanguageModel(core={"kind": "gru", "hidden_size": 16}, optimizer={"_target_": "torch.optim.SGD", "lr": 1.0},
                          **data.module_kwargs())
    trainer = quiet_trainer(tmp_path, max_epochs=1, gradient_clip_val=1.0, enable_checkpointing=False)
    trainer.fit(model, datamodule=data)
    ppl = float(trainer.callback_metrics["val/ppl"])
    assert math.isfinite(ppl) and 1 < ppl < len(data.vocab)  # better than guessing among the vocabulary
    trainer.save_checkpoint(tmp_path / "lm.ckpt")
    loaded = LanguageModel.load_from_checkpoint(tmp_path / "lm.ckpt", weights_only=True)
    assert loaded.generate("time traveller", 12) == model.generate("time traveller", 12)
    assert loaded.generate("time traveller", 12).startswith("time traveller")
    # A setting the class no longer takes (an option removed since) is dropped on load, as Lightning does for
    # a plain __init__: the option checks' wrapper keeps the signature Lightning reads.
    checkpoint = torch.load(tmp_path / "lm.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["an_option_removed_since"] = 1
    torch.save(checkpoint, tmp_path / "older.ckpt")
    older = LanguageModel.load_from_checkpoint(tmp_path / "older.ckpt", weights_only=True)
    assert older.generate("time traveller", 12) == model.generate("time traveller", 12)


def test_a_forecaster_trains_and_tests_from_python(tmp_path):
    data = SeriesDataModule(bundled="sunspots", time_column="year", season=11, ks=[1, 2])
    model = ForecastModel(core={"kind": "gru", "hidden_size": 8}, **data.module_kwargs())
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=3, enable_checkpointing=False)
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    scores = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/mase_k")}
    assert set(scores) == {"test/mase_k1", "test/mase_k2"} and all(math.isfinite(v) for v in scores.values())


@pytest.mark.parametrize("build, message", [
    (lambda: TextDataModule(batch_size=0), r"^batch_size=0 is invalid: must be a positive integer$"),
    (lambda: TextDataModule(sampling="shuffle"), r"^sampling='shuffle' is invalid: allowed values are random, "
                                                 r"sequential$"),
    (lambda: TextDataModule(val_fraction=0.6), r"^val_fraction=0.6 is invalid: with test_fraction=0 "),
    (lambda: SeriesDataModule(), r"^path=null is invalid: give a CSV file or bundled$"),
    (lambda: build_core("lstm", 3, dropout=0.5), r"^dropout=0.5 has no effect with num_layers=1"),
    (lambda: LanguageModel(core={"kind": "gru"}, vocab=["a", "b"], dropout=1.5), r"^dropout=1.5 is invalid"),
    (lambda: ForecastModel(core={"kind": "gru"}, series={}, ks=None), r"^ks=null is invalid here: the data derives "
                                                                       r"it; pass the data's module_kwargs\(\)"),
])
def test_bad_options_from_python_are_the_config_schemas_one_line_errors(build, message):
    with pytest.raises(ConfigError, match=message) as info:
        build()
    assert "\n" not in str(info.value)
