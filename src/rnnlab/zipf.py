"""Corpus statistics of d2l 9.2 (Zipf's law): n-gram frequency against rank and the most frequent
n-grams of the corpus a `data` config describes; `rnnlab-zipf` (rnnlab.cli.zipf) writes them out."""

from __future__ import annotations

import collections
from pathlib import Path

from rnnlab.errors import ConfigError

# matplotlib, torch and Hydra are imported where they are used: `rnnlab-zipf --help` starts without them.


def ngram_counts(tokens: list[str], n: int) -> list[tuple[tuple[str, ...], int]]:
    """(n-gram, count) pairs, most frequent first."""
    counts = collections.Counter(zip(*(tokens[i:] for i in range(n))))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def zipf_figure(tables: dict[int, list]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for n, table in tables.items():
        ax.loglog(range(1, len(table) + 1), [c for _, c in table], label=["unigram", "bigram", "trigram"][n - 1])
    ax.set(xlabel="token: x (rank)", ylabel="frequency: n(x)")
    ax.legend()
    fig.tight_layout()
    return fig


def corpus_tokens(overrides: list[str], config_dir: Path) -> tuple[list[str], str, str]:
    """Tokens, description and token kind of the corpus the `data` config describes, via its data module."""
    import torch
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    from rnnlab.run.build import build
    from rnnlab.schema import validate

    validate(cfg)
    dm = build(cfg.data, "data")
    from rnnlab.data.base import TextData

    if not isinstance(dm, TextData):
        raise ConfigError("rnnlab-zipf needs a text data set (data=text with any data.path)")
    dm.setup("fit")
    tokens = dm.vocab.to_tokens(torch.cat([dm.train_tokens, dm.val_tokens]))
    return tokens, dm.describe(), dm.token


def write_report(tokens: list[str], description: str, token_kind: str, out: Path, top: int = 10) -> str:
    """top_tokens.txt, zipf.png and a TensorBoard event file under `out`; returns the text report."""
    try:
        return _write_report(tokens, description, token_kind, out, top)
    except OSError as e:  # --out under a file, or not writable
        raise ConfigError(f"--out={str(out)!r} cannot be written ({e.strerror}): give a writable directory") from None


def _write_report(tokens: list[str], description: str, token_kind: str, out: Path, top: int) -> str:
    out.mkdir(parents=True, exist_ok=True)
    tables = {n: ngram_counts(tokens, n) for n in (1, 2, 3)}
    sep = "" if token_kind == "char" else " "
    lines = [f"corpus: {description}"]
    for n, table in tables.items():
        listed = ", ".join(f"{sep.join(g)!r}: {c}" for g, c in table[:top])
        lines.append(f"top {n}-grams ({len(table)} distinct): {listed}")
    report = "\n".join(lines)
    (out / "top_tokens.txt").write_text(report + "\n", encoding="utf-8")  # any script, whatever the locale
    fig = zipf_figure(tables)
    fig.savefig(out / "zipf.png", dpi=120)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as writer:
        writer.add_figure("corpus/zipf", fig)
        writer.add_text("corpus/top_tokens", report.replace("\n", "  \n"))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return report
