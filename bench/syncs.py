"""Where the GPU waits: host syncs in the project's training loop, and GPU busy time against wall time.

    python bench/syncs.py [--core lstm] [--hidden 256] [--batch-size 1024] [--num-steps 64] [--steps 60]
Needs CUDA. Three measurements of the project path (bench.project_path: Trainer.fit, Hydra config,
callbacks, logger) and of bench.py's raw loop on the same sizes:
1. every synchronizing CUDA call (torch.cuda.set_sync_debug_mode), counted by the innermost frames
   of our code and Lightning's that made it, split into calls inside a training batch and calls
   between batches (epoch boundaries);
2. wall milliseconds per step;
3. GPU kernel milliseconds per step (torch.profiler): a loop is launch-bound (the GPU idles) when
   wall time exceeds kernel time. The project's figure also counts the kernels of the Trainer's
   set-up (model initialisation, first transfers), spread over its steps: an upper bound.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
import time
import traceback
import warnings

import lightning as L
import torch
from torch.autograd import DeviceType

from bench import ROOT, batches_on, project_path, raw_loop

OURS = ("/rnnlab/", "/lightning/", "/bench/")


class Phase(L.Callback):
    """Tells the sync recorder whether a training batch is running; counts batches and epochs and
    times the host's gaps between one batch's end and the next one's start, within and across epochs."""

    def __init__(self):
        self.in_batch, self.batches, self.epochs = False, 0, 0
        self.t_end, self.new_epoch, self.gaps = None, False, {"within": [], "across": []}

    def on_train_batch_start(self, *args):
        if self.t_end is not None:
            self.gaps["across" if self.new_epoch else "within"].append(time.perf_counter() - self.t_end)
        self.in_batch, self.new_epoch = True, False
        self.batches += 1

    def on_train_batch_end(self, *args):
        self.in_batch, self.t_end = False, time.perf_counter()

    def on_train_epoch_start(self, *args):
        self.epochs += 1
        self.new_epoch = True

    def gap_ms(self, kind: str) -> str:
        gaps = self.gaps[kind]
        return f"{1e3 * statistics.median(gaps):.3f} ms (median of {len(gaps)})" if gaps else "-"


def where(stack) -> str:
    frames = [f for f in stack if any(k in f.filename for k in OURS) and "syncs.py" not in f.filename]
    return " <- ".join(f"{f.filename.split('/site-packages/')[-1].removeprefix(f'{ROOT}/')}:{f.lineno} {f.name}"
                       for f in reversed(frames[-3:]))


def record_syncs(run) -> tuple[collections.Counter, Phase]:
    phase, found = Phase(), collections.Counter()
    show = warnings.showwarning

    def hook(message, category, *args, **kwargs):
        if "synchronizing" in str(message):
            found[("batch" if phase.in_batch else "between", where(traceback.extract_stack()[:-1]))] += 1
        else:
            show(message, category, *args, **kwargs)

    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters on exit
            warnings.showwarning = hook
            warnings.simplefilter("always")
            run(phase)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return found, phase


def kernel_ms(run) -> float:
    """GPU kernel time per optimizer step (steps counted by the optimizer's own profiler records)."""
    acts = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=acts) as prof:
        run()
        torch.cuda.synchronize()
    events = prof.key_averages()
    steps = sum(e.count for e in events if e.key.startswith("Optimizer.step#"))
    kernels_us = sum(e.self_device_time_total for e in events if e.device_type == DeviceType.CUDA)
    return kernels_us / 1e3 / max(steps, 1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", default="lstm")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--num-steps", type=int, default=64)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args(argv)
    dev, B, T, H, steps = "cuda", args.batch_size, args.num_steps, args.hidden, args.steps
    tmp = tempfile.mkdtemp()
    batches, vocab = batches_on(dev, B, T, n=16)
    print(f"core={args.core} hidden={H} batch={B} num_steps={T}")

    found, phase = record_syncs(lambda ph: project_path(args.core, H, B, T, dev, steps, tmp, extra=[ph]))
    print(f"host syncs in {phase.batches} batches, {phase.epochs} epochs:")
    for (when, place), n in found.most_common():
        print(f"  {n:5d} {when:7s} {place}")
    print(f"host gap between batches: within an epoch {phase.gap_ms('within')}, across epochs {phase.gap_ms('across')}"
          " (with sync debugging on)")

    raw_loop(args.core, H, batches, vocab, dev, 1.0)  # warm-up (cuDNN plans, allocator)
    raw_wall = B * T / raw_loop(args.core, H, batches, vocab, dev, 2.0) * 1e3
    raw_kernel = kernel_ms(lambda: raw_loop(args.core, H, batches, vocab, dev, 0.5))
    proj_wall = B * T / project_path(args.core, H, B, T, dev, steps, tmp) * 1e3
    proj_kernel = kernel_ms(lambda: project_path(args.core, H, B, T, dev, steps, tmp))
    print("| loop | wall ms/step | GPU kernel ms/step |\n|---|---|---|")
    print(f"| raw | {raw_wall:.3f} | {raw_kernel:.3f} |")
    print(f"| project (kernels include the Trainer's set-up) | {proj_wall:.3f} | {proj_kernel:.3f} |")


if __name__ == "__main__":
    main()
