"""Where the project's per-step overhead comes from: the model code or the Trainer around it.

    python bench/overhead.py [--device cuda] [--core rnn] [--hidden 256] [--batch-size 32 --num-steps 35]
Loops side by side on the same batches (median of interleaved repeats, as bench.py):
1. raw: bench.py's raw loop (its own core and head);
2. module: the project's LanguageModel.training_step (one-hot, carried state, cross-entropy,
   running NLL) driven by a plain loop: backward, clip, SGD, no Trainer loop;
3. bare Trainer: the project path without the configured callbacks and logger;
4. project: bench.py's project path (Trainer.fit, Hydra config, callbacks, logger);
and, to price Lightning's loop apart from any model, an empty step (one scalar weight) in a plain
loop and in the bare Trainer.
module/raw near 1 means the model code costs nothing; bare - module (ms per step) is Lightning's
own loop, project - bare what our callbacks and the logger add. The empty step's bare Trainer -
plain loop is what Lightning's loop and the DataLoader cost per step whatever the model: with it,
project/raw can reach at most raw / (raw + that).

    python bench/overhead.py --boundary [--core lstm --hidden 16 --batch-size 1024 --num-steps 64]
instead times the host between batches of the project path, within an epoch and across an epoch
boundary (median), and what one epoch-level `self.log` call costs there. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
from torch import nn

from bench import batches_on, project_path, raw_loop, side_by_side, timed, update
from syncs import Phase

from rnnlab.data import TextDataModule
from rnnlab.models import LanguageModel

# The empty step trains on the real DataModule, whose validation loader it does not use.
warnings.filterwarnings("ignore", message="You passed in a `val_dataloader` but have no `validation_step`")


def module_loop(kind, hidden, batches, vocab_tokens, device, seconds):
    """LanguageModel.training_step itself (one-hot, carried state, running NLL) in a plain loop.

    The module is attached to an idle Trainer only so that training_step can ask it whether this is
    a logging step (it never is: the Trainer does not run, its step counter stays at 0).
    """
    torch.manual_seed(0)
    model = LanguageModel(core={"kind": kind, "hidden_size": hidden}, vocab=vocab_tokens).to(device)
    model.trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False,
                              enable_model_summary=False)
    model.train_state.reset(carry=True)
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=1.0)

    def step(x, y):
        update(model.training_step((x, y), 0), params, opt)

    return timed(step, batches, device, seconds)


class EmptyStep(L.LightningModule):
    """The cheapest training step: one scalar weight and a loss that reads the batch. What the Trainer
    spends around it is its per-step cost whatever the model."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0][0, 0]) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def empty_loop(batches, device, seconds):
    """EmptyStep in a plain loop: forward, backward, clip, SGD, as the raw loop does around its model."""
    model = EmptyStep().to(device)
    params, opt = list(model.parameters()), model.configure_optimizers()

    def step(x, y):
        update(model.training_step((x, y), 0), params, opt)

    return timed(step, batches, device, seconds)


class EpochLogCost(L.Callback):
    """Times one more epoch-level `self.log` at each epoch end: what each of the module's costs there."""

    def __init__(self):
        self.ms = []

    def on_train_epoch_end(self, trainer, pl_module):
        t0 = time.perf_counter()
        pl_module.log("bench/probe", float(trainer.current_epoch))
        self.ms.append((time.perf_counter() - t0) * 1e3)


def boundary(args) -> None:
    phase, probe = Phase(), EpochLogCost()
    project_path(args.core, args.hidden, args.batch_size, args.num_steps, args.device, args.steps, tempfile.mkdtemp(),
                 extra=[phase, probe])
    print(f"device={args.device} core={args.core} hidden={args.hidden} batch={args.batch_size} "
          f"num_steps={args.num_steps}: {phase.batches} batches, {phase.epochs} epochs")
    print(f"host gap between batches: within an epoch {phase.gap_ms('within')}, across epochs {phase.gap_ms('across')}")
    print(f"one epoch-level self.log: {statistics.median(probe.ms):.3f} ms (median of {len(probe.ms)})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--core", default="rnn")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boundary", action="store_true", help="time the host between batches instead")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=35)
    parser.add_argument("--steps", type=int, default=200, help="training steps, with --boundary")
    args = parser.parse_args(argv)
    if args.boundary:
        return boundary(args)
    B, T, dev = args.batch_size, args.num_steps, args.device
    batches, vocab = batches_on(dev, B, T)
    dm = TextDataModule(batch_size=B, num_steps=T)
    dm.setup("fit")
    probe = raw_loop(args.core, args.hidden, batches, vocab, dev, 1.0)
    steps = max(int(probe * args.seconds / (B * T)), 20) + 5
    # About `seconds` of the Trainer around the empty step, which takes some 3-5x the plain loop's time.
    empty_steps = max(int(empty_loop(batches, dev, 0.5) * args.seconds / (B * T) / 4), 100) + 5
    tmp = tempfile.mkdtemp()
    m = side_by_side({
        "raw": lambda: raw_loop(args.core, args.hidden, batches, vocab, dev, args.seconds),
        "module": lambda: module_loop(args.core, args.hidden, batches, dm.vocab.idx_to_token, dev, args.seconds),
        "bare Trainer": lambda: project_path(args.core, args.hidden, B, T, dev, steps, tmp, bare=True),
        "project": lambda: project_path(args.core, args.hidden, B, T, dev, steps, tmp),
        "empty step": lambda: empty_loop(batches, dev, args.seconds),
        "empty step, bare Trainer": lambda: project_path(args.core, args.hidden, B, T, dev, empty_steps, tmp,
                                                         bare=True, module=EmptyStep()),
    }, args.repeats)
    ms = {name: B * T / rate * 1e3 for name, rate in m.items()}
    print(f"device={dev} core={args.core} hidden={args.hidden} batch={B} num_steps={T}")
    print("| loop | tok/s | ms/step | / raw |\n|---|---|---|---|")
    for name in m:
        ratio = "-" if name.startswith("empty step") else f"{m[name] / m['raw']:.3f}"  # another model: no ratio
        print(f"| {name} | {m[name]:,.0f} | {ms[name]:.3f} | {ratio} |")
    print(f"Lightning's loop adds {ms['bare Trainer'] - ms['module']:.3f} ms per step, "
          f"our callbacks and the logger {ms['project'] - ms['bare Trainer']:.3f} ms")
    floor = ms["empty step, bare Trainer"] - ms["empty step"]
    print(f"Around an empty step Lightning's loop and the DataLoader cost {floor:.3f} ms per step: "
          f"project/raw can reach at most {ms['raw'] / (ms['raw'] + floor):.3f} for this core")


if __name__ == "__main__":
    main()
