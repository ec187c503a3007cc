"""The project's whole run against the book's loop, end to end, each in its own process.

    python bench/end_to_end.py [--cores rnn gru ...] [--epochs 10] [--repeats 3] [--out rows.json]

Per core: `python train.py model=X trainer.max_epochs=N` (start-up, validation, checkpoints, the
TensorBoard logger, the final generated sample: the whole run, in a temporary run directory) against
`python bench/book_loop.py --core X --epochs N` (d2l's train_ch8 on the same training tokens),
interleaved A B A B over `--repeats`. Wall time is the child's (from its start to its exit), peak
memory the child's maximum resident set (os.wait4's rusage of that child alone). The table shows
medians; tokens/s is the training tokens (steps x batch x num_steps) over the whole wall time.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rows import loop, row, write_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CORES = ("rnn", "gru", "lstm", "rnn_scratch", "gru_scratch", "lstm_scratch")
BATCH, NUM_STEPS, HIDDEN = 32, 35, 256


def run_child(cmd: list[str], log: Path) -> tuple[float, float]:
    """Run `cmd` to its end; its wall seconds and its peak resident set in MB (Linux: ru_maxrss in KB)."""
    with open(log, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited with {proc.returncode}; its output: {log}")
    return wall, usage.ru_maxrss / 1024


def project(core: str, epochs: int, run_dir: Path, log: Path) -> tuple[float, float, int]:
    wall, peak = run_child([sys.executable, "train.py", f"model={core}", f"trainer.max_epochs={epochs}",
                            f"hydra.run.dir={run_dir}"], log)
    steps = json.loads((run_dir / "metrics.json").read_text())["global_step"]
    return wall, peak, steps


def book(core: str, epochs: int, log: Path) -> tuple[float, float, int]:
    wall, peak = run_child([sys.executable, "bench/book_loop.py", "--core", core, "--epochs", str(epochs)], log)
    tokens = int(re.search(r"^tokens (\d+)$", log.read_text(), re.M).group(1))
    return wall, peak, tokens // (BATCH * NUM_STEPS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", nargs="*", default=list(CORES), choices=CORES)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON rows (bench/rows.py)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="end_to_end_"))
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {platform.machine()} {os.cpu_count()} CPUs, load average at start "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; epochs={args.epochs} repeats={args.repeats}; "
          f"logs in {tmp}")
    print("| core | project s | book s | project/book | project peak MB | book peak MB | project/book |\n"
          "|---|---|---|---|---|---|---|")
    rows = []
    for core in args.cores:
        runs = {"project": [], "book": []}
        for i in range(args.repeats):  # A B A B: drifts of a shared machine hit both alike
            runs["project"].append(project(core, args.epochs, tmp / f"{core}-{i}", tmp / f"{core}-{i}-project.log"))
            runs["book"].append(book(core, args.epochs, tmp / f"{core}-{i}-book.log"))
        med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[0][2])
               for name, rs in runs.items()}
        (pw, pm, ps), (bw, bm, _) = med["project"], med["book"]
        rows.append(row("end_to_end", core, HIDDEN, "cpu", BATCH, NUM_STEPS, ps, epochs=args.epochs,
                        repeats=args.repeats, load_average=os.getloadavg()[0], loops={
                            name: loop(steps * BATCH * NUM_STEPS / wall, peak, wall_s=wall, steps=steps,
                                       wall_s_runs=[r[0] for r in runs[name]])
                            for name, (wall, peak, steps) in med.items()}))
        print(f"| {core} | {pw:.1f} | {bw:.1f} | {pw / bw:.2f} | {pm:.0f} | {bm:.0f} | {pm / bm:.2f} |", flush=True)
    print(f"load average at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.out:
        write_rows(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
