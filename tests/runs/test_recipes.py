"""docs/design.md's recipes, followed as a user follows them: a data set and a core in the user's own module
(here a module in tmp_path on sys.path), their config files in a config directory of the user's own
(hydra.searchpath), and a tiny run through main_task, the task function of train.py."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from conftest import assert_refused_in_process, compose_config
from rnnlab.run.job import main_task

TOYS = "rnnlab_recipe_toys"

# What a user writes by following docs/design.md: "a data set" and "a recurrent core".
TOY_MODULE = '''
"""A toy text data set and a toy core, written by the recipes of docs/design.md."""

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from rnnlab.data.base import TextData
from rnnlab.data.sampling import eval_stream_batches, window_loader
from rnnlab.data.series import ForecastData
from rnnlab.data.text import Vocab


class ToyText(TextData):
    """A phrase repeated, as characters: the last tenth held out."""

    def __init__(self, phrase: str = "the cat sat on the mat ", repeats: int = 30, batch_size: int = 4,
                 num_steps: int = 8, seed: int = 0):
        super().__init__()
        self.phrase, self.repeats, self.seed = phrase, repeats, seed
        self.batch_size, self.num_steps = batch_size, num_steps
        self.token, self.vocab = "char", None

    def setup(self, stage=None):
        if self.vocab is None:
            tokens = list(self.phrase * self.repeats)
            self.vocab = Vocab(tokens)
            ids = torch.tensor(self.vocab[tokens])
            held_out = len(ids) // 10
            self.train_tokens, self.val_tokens = ids[:-held_out], ids[-held_out:]

    def train_dataloader(self):
        return window_loader(self.train_tokens, "sequential", self.batch_size, self.num_steps, seed=self.seed,
                             trainer=self.trainer)

    def val_dataloader(self):
        return DataLoader(eval_stream_batches(self.val_tokens, 2, self.num_steps), batch_size=None)

    has_test_split = False
    sample_prefix = "the "

    def module_kwargs(self):
        return {"vocab": list(self.vocab.idx_to_token), "token": self.token, "sampling": "sequential",
                "sample_prefix": self.sample_prefix}

    def describe(self):
        return f"toy: {len(self.train_tokens)} train / {len(self.val_tokens)} val characters, vocab {len(self.vocab)}"


class ToySine(ForecastData):
    """A clean sine of `T` points, through rnnlab.data.series.ForecastData (levels and parts)."""

    def __init__(self, T: int = 200, batch_size: int = 8, num_steps: int = 10, sampling: str = "random",
                 eval_context: int = 16, ks=(1, 4), seed: int = 0):
        super().__init__(batch_size, num_steps, sampling, seed)
        self.name, self.eval_context, self.ks = "toy sine", eval_context, list(ks)
        self.levels = torch.sin(0.1 * torch.arange(T, dtype=torch.float32))[:, None]
        train_end, val_end = int(0.6 * T), int(0.8 * T)
        self._finish(["x"], ["x"], train_end, [train_end, train_end, val_end], [val_end, val_end, T], val_end,
                     difference=False, scale=True)

    def describe(self):
        return f"toy sine: {len(self.levels)} points"


class ToyRNN(nn.Module):
    """An Elman RNN with torch.nn.RNN's interface (batch first, state (1, batch, hidden))."""

    def __init__(self, input_size: int, hidden_size: int = 8):
        super().__init__()
        self.hidden_size, self.bidirectional, self.num_layers = hidden_size, False, 1
        self.W_x = nn.Parameter(torch.randn(input_size, hidden_size) * 0.3)
        self.W_h = nn.Parameter(torch.randn(hidden_size, hidden_size) * 0.3)
        self.b = nn.Parameter(torch.zeros(hidden_size))

    def recurrent_weight_names(self):
        return ["W_h"]

    def forward(self, x, state=None):
        h = x.new_zeros(x.shape[0], self.hidden_size) if state is None else state[0]
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(x[:, t] @ self.W_x + h @ self.W_h + self.b)
            outputs.append(h)
        return torch.stack(outputs, 1), h[None]


class Undeclared(ToyRNN):
    """The same core without its recurrent weights declared."""

    recurrent_weight_names = None


class OldRecipe(L.LightningDataModule):
    """A data module by the recipe before rnnlab.data.base: loaders, describe(), module_kwargs(), no interface."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.text = ToyText(seed=seed)

    def setup(self, stage=None):
        self.text.setup(stage)

    def train_dataloader(self):
        return self.text.train_dataloader()

    def val_dataloader(self):
        return self.text.val_dataloader()

    def module_kwargs(self):
        return self.text.module_kwargs()

    def describe(self):
        return self.text.describe()
'''

CONFIGS = {
    "data/toy.yaml": f"_target_: {TOYS}.ToyText\nrepeats: 30\nbatch_size: 4\nnum_steps: 8\nseed: ${{seed}}\n",
    "data/toy_sine.yaml": f"_target_: {TOYS}.ToySine\nT: 200\nbatch_size: 8\nnum_steps: 10\nsampling: random\n"
                          "eval_context: 16\nks: [1, 4]\nseed: ${seed}\n",
    "data/old_recipe.yaml": f"_target_: {TOYS}.OldRecipe\nseed: ${{seed}}\n",
    "model/toy.yaml": f"_target_: {TOYS}.ToyRNN\nhidden_size: 8\n",
    "model/toy_undeclared.yaml": f"_target_: {TOYS}.Undeclared\nhidden_size: 8\n",
}


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """The user's module on sys.path and the user's config directory."""
    root = tmp_path_factory.mktemp("user")
    (root / f"{TOYS}.py").write_text(textwrap.dedent(TOY_MODULE))
    for name, text in CONFIGS.items():
        (root / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "conf" / name).write_text(text)
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    sys.modules.pop(TOYS, None)


def user_cfg(user_dir: Path, run: Path, *overrides: str):
    return compose_config(run, f"hydra.searchpath=[file://{user_dir / 'conf'}]", "trainer.max_epochs=1",
                          *overrides, tiny=False)


def metrics(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_a_users_text_data_set_and_core_train_by_the_recipes(user_dir, tmp_path):
    cfg = user_cfg(user_dir, tmp_path / "run", "data=toy", "model=toy", "module.weight_drop=0.2",
                   "callbacks.text_sample.num_tokens=5", "evaluation.sample.num_tokens=5")
    main_task(cfg)
    result = metrics(cfg)
    assert result["status"] == "ok" and result["val/ppl"] > 1 and "test/ppl" not in result
    assert result["sample"].startswith("the ")
    ckpt = torch.load(Path(cfg.paths.output_dir) / result["best_checkpoint"], weights_only=True)
    assert ckpt["hyper_parameters"]["core"]["_target_"] == f"{TOYS}.ToyRNN"
    assert ckpt["hyper_parameters"]["weight_drop"] == 0.2 and "core.W_h" in ckpt["state_dict"]


def test_a_users_series_data_set_trains_by_the_recipe(user_dir, tmp_path):
    cfg = user_cfg(user_dir, tmp_path / "run", "task=forecast", "data=toy_sine", "model=gru", "model.hidden_size=8",
                   "callbacks.forecast_figures=null")
    main_task(cfg)
    result = metrics(cfg)
    assert result["status"] == "ok" and result["val/mase"] > 0 and result["test/mase_k4"] > 0


def test_weight_drop_on_a_core_that_declares_no_recurrent_weights_is_one_line(user_dir, tmp_path, capsys):
    cfg = user_cfg(user_dir, tmp_path / "run", "data=toy", "model=toy_undeclared", "module.weight_drop=0.2")
    assert_refused_in_process(cfg, capsys, rf"^error: module\.weight_drop=0\.2 is invalid: the core {TOYS}\.Undeclared "
                                           r"declares no recurrent \(hidden-to-hidden\) weights to drop")


def test_a_data_module_without_its_tasks_interface_is_one_line_before_training(user_dir, tmp_path, capsys):
    cfg = user_cfg(user_dir, tmp_path / "run", "data=old_recipe", "model=toy")
    assert_refused_in_process(cfg, capsys, rf"^error: data\._target_={TOYS}\.OldRecipe is invalid: a data set of "
                                           r"task=lm must derive from rnnlab\.data\.base\.TextData, its interface; "
                                           r"it lacks has_test_split, sample_prefix$")
