"""The GPU slot's table: at the book's batch 32 x 35, for the six cores, the raw eager loop, the
project's path eager and with `model.compile=MODE`, and (scratch cores) the book's loop, side by side.

    python bench/gpu_check.py [--mode reduce-overhead] [--seconds 1] [--repeats 2] [--out rows.json]
Run by bench/gpu_check.sh together with the 100-step equality test. Targets (issue 21): project with
the option >= 1.2x raw eager for gru, lstm and the scratch cores, >= 1.0x for rnn; ahead of the book
everywhere. Compilation happens in the warm-up steps, outside the timed ones. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import batches_on, book_loop, project_path, raw_loop, side_by_side  # noqa: E402
from rows import loop, row, write_rows  # noqa: E402

CORES = ("rnn", "gru", "lstm", "rnn_scratch", "gru_scratch", "lstm_scratch")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="reduce-overhead")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--cores", nargs="*", default=list(CORES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    dev, B, T, H = args.device, 32, 35, args.hidden
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else dev
    print(f"{name} torch={torch.__version__} batch={B} num_steps={T} hidden={H} mode={args.mode}")
    print(f"| core | raw eager tok/s | project tok/s | project +{args.mode} tok/s | +option/raw | book tok/s "
          "| +option/book |\n|---|---|---|---|---|---|---|")
    batches, vocab = batches_on(dev, B, T)
    tmp, rows = tempfile.mkdtemp(), []
    for kind in args.cores:
        probe = raw_loop(kind, H, batches, vocab, dev, min(args.seconds, 1.0))
        steps = max(int(probe * args.seconds / (B * T)), 20) + 5
        fns = {"raw": lambda: raw_loop(kind, H, batches, vocab, dev, args.seconds),
               "project": lambda: project_path(kind, H, B, T, dev, steps, tmp),
               "project_compiled": lambda: project_path(kind, H, B, T, dev, 2 * steps, tmp, args.mode)}
        if kind.endswith("_scratch"):
            fns["book"] = lambda: book_loop(kind.split("_")[0], H, batches, vocab, dev, args.seconds)
        peaks = {}
        m = side_by_side(fns, args.repeats, dev, peaks)
        book = m.get("book")
        print(f"| {kind} | {m['raw']:,.0f} | {m['project']:,.0f} | {m['project_compiled']:,.0f} | "
              f"{m['project_compiled'] / m['raw']:.2f} | " + (f"{book:,.0f} | {m['project_compiled'] / book:.2f} |"
                                                              if book else "- | - |"), flush=True)
        rows.append(row("gpu_check", kind, H, dev, B, T, steps, compile=args.mode,
                        loops={k: loop(v, peaks.get(k)) for k, v in m.items()}))
        if args.out:
            write_rows(args.out, rows)  # after every core: a slot cut short keeps what it measured
    return rows


if __name__ == "__main__":
    main()
