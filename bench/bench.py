"""Training throughput, side by side in one process: raw PyTorch loop, the book's scratch loop, and
this project's real path (Trainer.fit on the DataModule, Hydra-composed config, logging on).

    python bench/bench.py                     # CPU, the six cores at the book's settings
    python bench/bench.py --device cuda --compile reduce-overhead --scale
                                 # a GPU; every core also with model.compile=reduce-overhead (its raw
                                 # loop compiled alike); plus the batch/hidden-size cost curve
Prints tables of tokens/s (median of interleaved repeats after warm-up) with the ratios project/raw,
raw/book-style and project/book-style (for the scratch cores), and writes the same as JSON rows
(--out; the schema of bench/rows.py; peak memory per loop on a GPU, null on a CPU, where the loops
share one process: bench/end_to_end.py measures each in its own).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from book_style import BookStyleRNN  # noqa: E402
from rows import loop, row, write_rows  # noqa: E402

from rnnlab.data import TextDataModule  # noqa: E402
from rnnlab.models import build_core  # noqa: E402
from rnnlab.models.cores import detach_state, output_size  # noqa: E402

CONFIGS = [("rnn", 256), ("gru", 256), ("lstm", 256), ("rnn_scratch", 256), ("rnn_scratch", 512),
           ("gru_scratch", 256), ("lstm_scratch", 256)]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def batches_on(device, batch_size, num_steps, n=64):
    """Real training batches of The Time Machine (sequential partitioning), moved to the device once."""
    dm = TextDataModule(batch_size=batch_size, num_steps=num_steps)
    dm.setup("fit")
    out = [(x.to(device), y.to(device)) for x, y in dm.train_dataloader()]
    return (out * (n // len(out) + 1))[:n], dm.vocab_size


def timed(step, batches, device, seconds, warmup=5):
    for x, y in batches[:warmup]:
        step(x, y)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for x, y in batches:
            step(x, y)
            n += x.numel()
            if time.perf_counter() - t0 >= seconds:
                break
    sync(device)
    return n / (time.perf_counter() - t0)


def update(loss, params, opt):
    """What every plain loop here does after its forward: backward, clip the gradient norm at 1, SGD step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def raw_loop(kind, hidden, batches, vocab, device, seconds, compile=False):
    """The same model as the project's, a plain loop: forward, cross-entropy, backward, clip, SGD."""
    torch.manual_seed(0)
    core = build_core(kind, vocab, hidden, compile=compile).to(device)
    head = nn.Linear(output_size(core), vocab).to(device)
    params = [*core.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=1.0)
    state = [None]

    def step(x, y):
        out, s = core(F.one_hot(x, vocab).float(), state[0])
        state[0] = detach_state(s)
        update(F.cross_entropy(head(out).flatten(0, 1), y.flatten()), params, opt)

    return timed(step, batches, device, seconds)


def book_loop(cell, hidden, batches, vocab, device, seconds):
    torch.manual_seed(0)
    net = BookStyleRNN(cell, vocab, hidden).to(device)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=1.0)
    state = [None]

    def step(x, y):
        s = state[0] or net.begin_state(x.shape[0], device)
        out, s = net(x, s)
        state[0] = tuple(t.detach() for t in s)
        update(F.cross_entropy(out, y.T.reshape(-1)), params, opt)

    return timed(step, batches, device, seconds)


class Throughput(L.Callback):
    """Tokens/s of the training steps after `warmup` steps, synchronised at both ends."""

    def __init__(self, warmup: int):
        self.warmup, self.t0, self.tokens, self.rate = warmup, None, 0, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            sync(str(module.device))
            self.t0 = time.perf_counter()
        if self.t0 is not None:
            self.tokens += batch[0].numel()

    def on_train_end(self, trainer, module):
        sync(str(module.device))
        self.rate = self.tokens / (time.perf_counter() - self.t0)


def project_path(kind, hidden, batch_size, num_steps, device, steps, tmp, compile=False, bare=False, extra=(),
                 module=None):
    """train.py's path: Hydra-composed config, real DataModule (sequential, state carried), logging on.
    `bare`: without the configured callbacks and logger, to tell Lightning's own loop from what they add;
    `extra`: more callbacks (diagnostics); `module`: train this LightningModule instead of the configured one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from rnnlab.run.build import build_group

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"model={kind}", f"model.hidden_size={hidden}", f"model.compile={compile}", f"data.batch_size={batch_size}",
            f"data.num_steps={num_steps}", f"trainer.accelerator={'gpu' if device.startswith('cuda') else 'cpu'}",
            f"trainer.max_steps={steps}", "trainer.max_epochs=-1", "trainer.limit_val_batches=0",
            "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "callbacks.progress_bar=null",
            "trainer.enable_model_summary=false", "~callbacks.model_checkpoint", "~callbacks.last_checkpoint",
            "~callbacks.text_sample",
            f"paths.output_dir={tmp}"])
    L.seed_everything(0, verbose=False)
    dm = instantiate(cfg.data)
    dm.setup("fit")
    if module is None:
        module = instantiate(cfg.module, **dm.module_kwargs())
    meter = Throughput(warmup=5)
    callbacks = [] if bare else list(build_group(cfg.callbacks, "callbacks").values())  # as train.py builds them
    loggers = [] if bare else list(build_group(cfg.logger, "logger").values())
    callbacks += [meter, *extra]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    return meter.rate


def side_by_side(fns: dict, repeats: int, device: str = "cpu", peaks: dict | None = None) -> dict:
    """Median of `repeats` runs of each function, interleaved (a, b, c, a, b, c, ...), so that drifts of
    a shared machine (clocks, neighbours) hit every contender alike. On a GPU, `peaks` receives each
    function's peak of allocated memory (MB)."""
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            runs[name].append(fn())
            if peaks is not None and device.startswith("cuda"):
                peaks[name] = max(peaks.get(name, 0.0), torch.cuda.max_memory_allocated() / 2**20)
    return {name: statistics.median(values) for name, values in runs.items()}


def peak_memory_mb(device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per timed repeat of a raw/book loop")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-steps", type=int, default=35)
    parser.add_argument("--scale", action="store_true", help="also the batch-size / hidden-size cost curve")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    parser.add_argument("--cores", nargs="*", default=None, help="only these cores (default: all six)")
    parser.add_argument("--compile", nargs="?", const="true", default=None, metavar="MODE",
                        help="also every core with model.compile=MODE (true if no MODE; default, reduce-overhead, "
                             "max-autotune)")
    parser.add_argument("--no-table", action="store_true", help="skip the per-core table (with --scale)")
    args = parser.parse_args(argv)
    args.compile = {"true": True, "false": False}.get(args.compile, args.compile)
    dev = args.device
    import tempfile

    tmp = tempfile.mkdtemp()
    batches, vocab = batches_on(dev, args.batch_size, args.num_steps)
    rows = []
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch_size} num_steps={args.num_steps} {platform.processor() or platform.machine()}")
    print("| core | hidden | raw tok/s | project tok/s | project/raw | book-style tok/s | raw/book-style "
          "| project/book-style |")
    print("|---|---|---|---|---|---|---|---|")
    configs = [(k, h, c) for k, h in CONFIGS for c in ([False, args.compile] if args.compile else [False])
               if (not args.cores or k in args.cores) and not args.no_table]
    for kind, hidden, comp in configs:
        # Size the project's run like one raw repeat: the same number of tokens.
        probe = raw_loop(kind, hidden, batches, vocab, dev, min(args.seconds, 1.0), compile=comp)
        steps = max(int(probe * args.seconds / (args.batch_size * args.num_steps)), 20) + 5
        fns = {"raw": lambda: raw_loop(kind, hidden, batches, vocab, dev, args.seconds, compile=comp),
               "project": lambda: project_path(kind, hidden, args.batch_size, args.num_steps, dev, steps, tmp, comp)}
        if kind.endswith("_scratch"):
            cell = kind.split("_")[0]
            fns["book"] = lambda: book_loop(cell, hidden, batches, vocab, dev, args.seconds)
        peaks = {}
        m = side_by_side(fns, args.repeats, dev, peaks)
        raw, proj, book = m["raw"], m["project"], m.get("book")
        name = kind + (f" +compile={comp}" if comp else "")
        rows.append(row("bench", kind, hidden, dev, args.batch_size, args.num_steps, steps, compile=comp,
                        loops={k: loop(v, peaks.get(k)) for k, v in m.items()}))
        print(f"| {name} | {hidden} | {raw:,.0f} | {proj:,.0f} | {proj / raw:.2f} | "
              + (f"{book:,.0f} | {raw / book:.2f} | {proj / book:.2f} |" if book else "- | - | - |"), flush=True)
    if args.scale:
        print("\n| core | batch | hidden | raw tok/s | project tok/s | project/raw |\n|---|---|---|---|---|---|")
        for b, h in [(32, 256), (128, 256), (512, 256), (1024, 256), (256, 128), (256, 512), (256, 1024)]:
            bb, _ = batches_on(dev, b, 64, n=16)
            probe = raw_loop("lstm", h, bb, vocab, dev, min(args.seconds, 1.0))
            steps = max(int(probe * args.seconds / (b * 64)), 20) + 5
            peaks = {}
            m = side_by_side({"raw": lambda: raw_loop("lstm", h, bb, vocab, dev, args.seconds),
                              "project": lambda: project_path("lstm", h, b, 64, dev, steps, tmp)}, args.repeats,
                             dev, peaks)
            raw, proj = m["raw"], m["project"]
            rows.append(row("bench", "lstm", h, dev, b, 64, steps,
                            loops={k: loop(v, peaks.get(k)) for k, v in m.items()}, scale=True))
            print(f"| lstm | {b} | {h} | {raw:,.0f} | {proj:,.0f} | {proj / raw:.2f} |", flush=True)
    print(f"peak memory of the whole process: {peak_memory_mb(dev):.0f} MB")
    if args.out:
        write_rows(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
