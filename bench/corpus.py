"""Corpus loading at scale, side by side in one run: the project's loader (cold and cached) in every
preprocess mode against a floor that only reads the bytes and maps them through a lookup table, with
the peak memory of each, and training tokens/s on the large corpus beside the bundled one.

    python bench/corpus.py                        # a synthetic 100 MB corpus (enwik8's size)
    python bench/corpus.py --size-mb 1000         # 1 GB (enwik9's size)
    python bench/corpus.py --train-steps 0        # loading only

The synthetic text is The Time Machine repeated, with 2% of its characters replaced by ~4,000
others (Greek, Cyrillic, CJK, emoji...), so that, like enwik8, it is mostly ASCII with thousands of
distinct characters. Every measurement runs in a fresh process (peak RSS, from /proc, over the RSS
after imports: the growth the load itself causes); the file sits in the page cache for all.
Rows are interleaved over `--repeats` and the median is printed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "src" / "rnnlab" / "data" / "timemachine.txt"

# One measurement in a fresh process: growth of peak RSS over the post-import RSS, and seconds.
# Peak from /proc (VmHWM, reset after imports): getrusage's ru_maxrss survives fork and exec, so a
# child would report its parent's peak as its own.
CHILD = r"""
import json, sys, time
import numpy as np
args = json.loads(sys.argv[1])
if args["kind"] != "floor":
    from rnnlab.data.corpus import load_ids

def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak to the current RSS
base = kib("VmRSS")
t0 = time.perf_counter()
if args["kind"] == "floor":
    lut = np.arange(256, dtype=np.uint8)
    ids, vocab = lut[np.fromfile(args["path"], np.uint8)], 256  # (np.take would widen the index to int64: 8x)
else:
    ids, vocab = load_ids(args["path"], **args["options"])
    vocab = len(vocab)
seconds = time.perf_counter() - t0
peak = kib("VmHWM")
print(json.dumps({"seconds": seconds, "growth_mb": (peak - base) / 1024, "tokens": int(ids.size),
                  "vocab": vocab, "dtype": str(ids.dtype)}))
"""

# (label, options); the word row caps the vocabulary as a word-level enwik/WikiText set-up would.
ROWS = [
    ("char book", dict(token="char", preprocess="book")),
    ("char lower", dict(token="char", preprocess="lower")),
    ("char none", dict(token="char", preprocess="none")),
    ("byte none", dict(token="byte", preprocess="none")),
    ("char book max_tokens=10000", dict(token="char", preprocess="book", max_tokens=10000)),
    ("word lower max_vocab=50000", dict(token="word", preprocess="lower", max_vocab=50000)),
]


def write_synthetic(path: Path, size_bytes: int, seed: int = 0) -> None:
    """Mostly-ASCII UTF-8 text with thousands of distinct characters, written in 8 MB pieces."""
    rng = np.random.default_rng(seed)
    base = np.frombuffer(BUNDLED.read_text(encoding="utf-8").encode("utf-32-le"), np.uint32)
    pool = np.concatenate([np.arange(0xA1, 0x17F), np.arange(0x391, 0x3CA), np.arange(0x410, 0x450),
                           np.arange(0x4E00, 0x5A00), np.arange(0x1F600, 0x1F650)]).astype(np.uint32)
    weights = 1.0 / np.arange(1, pool.size + 1)
    weights /= weights.sum()
    tmp = path.with_suffix(".tmp")
    written, pos = 0, 0
    with open(tmp, "wb") as f:
        while written < size_bytes:
            n = 8 << 20
            idx = (pos + np.arange(n)) % base.size
            pos = (pos + n) % base.size
            cps = base[idx]
            swap = rng.random(n) < 0.02
            cps[swap] = rng.choice(pool, int(swap.sum()), p=weights)
            data = cps.tobytes().decode("utf-32-le").encode("utf-8")[: size_bytes - written]
            data = data.decode("utf-8", errors="ignore").encode("utf-8")  # never end inside a character
            f.write(data)
            written += len(data)
    os.replace(tmp, path)


def measure(kind: str, path: Path, options: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    arg = json.dumps({"kind": kind, "path": str(path), "options": options or {}})
    out = subprocess.run([sys.executable, "-c", CHILD, arg], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_rate(path: Path | None, options: dict, steps: int, cache_dir: str | None) -> tuple[float, int]:
    """Training tokens/s (Trainer.fit, LSTM 256 at the book's 32 x 35, CPU) on a corpus, and its vocabulary."""
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT / "src"))
    import lightning as L

    from bench import Throughput

    from rnnlab.data import TextDataModule
    from rnnlab.models import LanguageModel

    L.seed_everything(0, verbose=False)
    dm = TextDataModule(path=str(path) if path else None, cache_dir=cache_dir, **options)
    dm.setup("fit")
    module = LanguageModel(core={"kind": "lstm", "hidden_size": 256},
                           optimizer={"_target_": "torch.optim.SGD", "lr": 1.0}, **dm.module_kwargs())
    meter = Throughput(warmup=5)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, max_epochs=-1, limit_val_batches=0,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                        callbacks=[meter])
    trainer.fit(module, datamodule=dm)
    return meter.rate, dm.vocab_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="size of the synthetic corpus (1000: 1 GB)")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "rnnlab_corpus_bench")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=60, help="0: skip the training rows")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"synthetic_{args.size_mb}mb.txt"
    if not path.is_file() or path.stat().st_size != args.size_mb * 10 ** 6:
        t0 = time.perf_counter()
        write_synthetic(path, args.size_mb * 10 ** 6)
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    cache_dir = args.workdir / "cache"
    results: dict[str, list] = {}
    for _ in range(args.repeats):  # interleaved: drifts of a shared machine hit every row alike
        results.setdefault("floor (read + lookup table)", []).append(measure("floor", path))
        for label, options in ROWS:
            results.setdefault(f"{label}, cold", []).append(measure("load", path, options))
            measure("load", path, {**options, "cache_dir": str(cache_dir)})  # writes the entry (if absent)
            results.setdefault(f"{label}, cached", []).append(
                measure("load", path, {**options, "cache_dir": str(cache_dir)}))
    size_mb = path.stat().st_size / 1e6
    lines = [f"command: python bench/corpus.py --size-mb {args.size_mb} --repeats {args.repeats} "
             f"--train-steps {args.train_steps}",
             f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"machine: {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs visible, Python {platform.python_version()}",
             f"corpus: {path.name}, {size_mb:.0f} MB; median of {args.repeats} interleaved runs, "
             "each in a fresh process",
             "",
             "| loader | seconds | peak memory growth (MB) | x file size | tokens | vocab | dtype |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for label, runs in results.items():
        sec = statistics.median(r["seconds"] for r in runs)
        mem = statistics.median(r["growth_mb"] for r in runs)
        r = runs[0]
        lines.append(f"| {label} | {sec:.2f} | {mem:.0f} | {mem / size_mb:.2f} | {r['tokens']:,} | {r['vocab']:,} "
                     f"| {r['dtype']} |")
    if args.train_steps:
        lines += ["", "| training corpus (LSTM 256, batch 32 x 35, CPU) | tokens/s | vocab |", "|---|---:|---:|"]
        for label, p, options in [("The Time Machine (bundled), char book", None, dict(token="char")),
                                  (f"synthetic {size_mb:.0f} MB, char book", path, dict(token="char")),
                                  (f"synthetic {size_mb:.0f} MB, byte none", path,
                                   dict(token="byte", preprocess="none"))]:
            rate, vocab = train_rate(p, options, args.train_steps, str(cache_dir))
            lines.append(f"| {label} | {rate:,.0f} | {vocab:,} |")
    report = "\n".join(lines)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
