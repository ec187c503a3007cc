"""The project's whole run against the book's loop, end to end, each in its own process.

    python bench/end_to_end.py [--cores rnn gru ...] [--epochs 10] [--repeats 3] [--out rows.json]
        [--variant NAME="override ... [env:VAR=value ...]" ...] [--no-book]

Per core: `python train.py model=X trainer.max_epochs=N` (start-up, validation, checkpoints, the
TensorBoard logger, the final generated sample: the whole run, in a temporary run directory) against
`python bench/book_loop.py --core X --epochs N` (d2l's train_ch8 on the same training tokens),
interleaved A B A B over `--repeats`. Wall time is the child's (from its start to its exit), peak
memory the child's maximum resident set (os.wait4's rusage of that child alone). The table shows
medians; tokens/s is the training tokens (steps x batch x num_steps) over the whole wall time.
"first step" is the time from the child's start to its first training step (after the sanity check),
read from bench/startup_times.py's callback, which each project run gets on its command line.
`--variant` adds a project run with more overrides (and environment variables, `env:NAME=value`) to
each round, interleaved with the others: one lever measured against the default side by side.
`--book-ftz` adds the book's loop with denormals flushed to zero (as train.py's flush_denormal, not the book's).
OMP_NUM_THREADS and the rest of the environment are inherited (unset: torch uses every core).
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


def run_child(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Run `cmd` to its end; its wall seconds, its peak resident set in MB (Linux: ru_maxrss in KB) and
    the wall-clock time (time.time()) it started at."""
    with open(log, "w") as out:
        start, t0 = time.time(), time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} exited with {proc.returncode}; its output: {log}")
    return wall, usage.ru_maxrss / 1024, start


def parse_variant(text: str) -> tuple[str, list[str], dict[str, str]]:
    """`NAME=override ... env:VAR=value ...` -> (name, overrides, environment variables)."""
    name, _, rest = text.partition("=")
    overrides, env = [], {}
    for token in rest.split():
        if token.startswith("env:"):
            key, _, value = token[4:].partition("=")
            env[key] = value
        else:
            overrides.append(token)
    return name, overrides, env


def project(core: str, epochs: int, run_dir: Path, log: Path, overrides: list[str] = (),
            env: dict[str, str] | None = None) -> tuple[float, float, int, float | None]:
    """The whole `python train.py` run: wall seconds, peak MB, training steps, seconds to the first step."""
    times = run_dir.with_name(run_dir.name + "-times.json")
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "bench"), child_env.get("PYTHONPATH")) if p)
    wall, peak, start = run_child(
        [sys.executable, "train.py", f"model={core}", f"trainer.max_epochs={epochs}", f"hydra.run.dir={run_dir}",
         "+callbacks.startup_times._target_=startup_times.StartupTimes", f"+callbacks.startup_times.path={times}",
         *overrides], log, child_env)
    steps = json.loads((run_dir / "metrics.json").read_text())["global_step"]
    first = json.loads(times.read_text())["first_step"] - start if times.is_file() else None
    return wall, peak, steps, first


def book(core: str, epochs: int, log: Path, *options: str) -> tuple[float, float, int, None]:
    wall, peak, _ = run_child([sys.executable, "bench/book_loop.py", "--core", core, "--epochs", str(epochs),
                               *options], log)
    tokens = int(re.search(r"^tokens (\d+)$", log.read_text(), re.M).group(1))
    return wall, peak, tokens // (BATCH * NUM_STEPS), None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", nargs="*", default=list(CORES), choices=CORES)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON rows (bench/rows.py)")
    parser.add_argument("--variant", action="append", default=[], metavar='NAME="OVERRIDES"',
                        help="another project run per round, with these overrides (env:VAR=value: environment)")
    parser.add_argument("--no-book", action="store_true", help="project runs only (the variants' side-by-side)")
    parser.add_argument("--book-ftz", action="store_true",
                        help="also the book's loop with denormals flushed to zero (book_loop.py --flush-denormal)")
    args = parser.parse_args(argv)
    variants = [("project", [], {})] + [parse_variant(v) for v in args.variant]
    tmp = Path(tempfile.mkdtemp(prefix="end_to_end_"))
    print(f"{time.strftime('%Y-%m-%d %H:%M')} {platform.machine()} {os.cpu_count()} CPUs, load average at start "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; epochs={args.epochs} repeats={args.repeats}; "
          f"logs in {tmp}")
    extra = (" wall / book_ftz | peak / book_ftz |", "---|---|") if args.book_ftz and not args.no_book else ("", "")
    print(f"| core | run | wall s | peak MB | first step s | wall / book | peak / book | wall / project |{extra[0]}\n"
          f"|---|---|---|---|---|---|---|---|{extra[1]}")
    rows = []
    for core in args.cores:
        runs = {name: [] for name, _, _ in variants}
        if not args.no_book:
            runs["book"] = []
            if args.book_ftz:
                runs["book_ftz"] = []
        for i in range(args.repeats):  # A B A B: drifts of a shared machine hit both alike
            for name, overrides, env in variants:
                runs[name].append(project(core, args.epochs, tmp / f"{core}-{name}-{i}",
                                          tmp / f"{core}-{name}-{i}.log", overrides, env))
            if not args.no_book:
                runs["book"].append(book(core, args.epochs, tmp / f"{core}-{i}-book.log"))
                if args.book_ftz:
                    runs["book_ftz"].append(book(core, args.epochs, tmp / f"{core}-{i}-book_ftz.log",
                                                 "--flush-denormal"))
        med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), rs[0][2],
                      statistics.median(r[3] for r in rs) if rs[0][3] is not None else None)
               for name, rs in runs.items()}
        rows.append(row("end_to_end", core, HIDDEN, "cpu", BATCH, NUM_STEPS, med["project"][2], epochs=args.epochs,
                        repeats=args.repeats, load_average=os.getloadavg()[0], loops={
                            name: loop(steps * BATCH * NUM_STEPS / wall, peak, wall_s=wall, steps=steps,
                                       wall_s_runs=[r[0] for r in runs[name]], first_step_s=first,
                                       **({"overrides": next(v[1] for v in variants if v[0] == name),
                                           "env": next(v[2] for v in variants if v[0] == name)}
                                          if not name.startswith("book") else {}))
                            for name, (wall, peak, steps, first) in med.items()}))
        bw, bm = (med["book"][0], med["book"][1]) if "book" in med else (None, None)
        for name, (wall, peak, _, first) in med.items():
            ratio = f"{wall / bw:.2f} | {peak / bm:.2f}" if bw else "- | -"
            fs = f"{first:.2f}" if first is not None else "-"
            ftz = f" {wall / med['book_ftz'][0]:.2f} | {peak / med['book_ftz'][1]:.2f} |" if "book_ftz" in med else ""
            rel = wall / med["project"][0]
            print(f"| {core} | {name} | {wall:.1f} | {peak:.0f} | {fs} | {ratio} | {rel:.2f} |{ftz}", flush=True)
    print(f"load average at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.out:
        write_rows(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
