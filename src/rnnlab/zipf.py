"""Corpus statistics of d2l 9.2 for the configured corpus and tokenizer: unigram, bigram and trigram
frequency against rank on log-log axes (Zipf's law) and the most frequent tokens, saved as PNG and
text and logged to TensorBoard.

    rnnlab-zipf                                    # The Time Machine, characters (the data config's defaults)
    rnnlab-zipf data.token=word                    # any data.* override that train.py takes
    rnnlab-zipf data.path=/path/to/any.txt --out outputs/zipf_mine
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from rnnlab.errors import ConfigError  # noqa: E402

DEFAULT_CONF = Path(__file__).resolve().parents[2] / "conf"


def ngram_counts(tokens: list[str], n: int) -> list[tuple[tuple[str, ...], int]]:
    """(n-gram, count) pairs, most frequent first."""
    counts = collections.Counter(zip(*(tokens[i:] for i in range(n))))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def zipf_figure(tables: dict[int, list]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for n, table in tables.items():
        ax.loglog(range(1, len(table) + 1), [c for _, c in table], label=["unigram", "bigram", "trigram"][n - 1])
    ax.set(xlabel="token: x (rank)", ylabel="frequency: n(x)")
    ax.legend()
    fig.tight_layout()
    return fig


def corpus_tokens(overrides: list[str], config_dir: Path) -> tuple[list[str], str, str]:
    """Tokens, description and token kind of the corpus the `data` config describes, via its data module."""
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    try:
        dm = instantiate(cfg.data)
    except Exception as e:  # surface the data module's own one-line error
        raise (e.__cause__ if isinstance(e.__cause__, ConfigError) else e) from None
    if not hasattr(dm, "vocab"):
        raise ConfigError("rnnlab-zipf needs a text data set (data=timemachine with any data.path)")
    dm.setup("fit")
    tokens = dm.vocab.to_tokens(torch.cat([dm.train_tokens, dm.val_tokens]))
    return tokens, dm.describe(), dm.token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="data.* overrides, as for train.py")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default outputs/zipf/<token>)")
    parser.add_argument("--top", type=int, default=10, help="how many most frequent n-grams to list")
    parser.add_argument("--config-dir", type=Path, default=DEFAULT_CONF)
    args = parser.parse_args(argv)
    try:
        tokens, description, token_kind = corpus_tokens(args.overrides, args.config_dir)
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    out = args.out or Path("outputs") / "zipf" / token_kind
    out.mkdir(parents=True, exist_ok=True)
    tables = {n: ngram_counts(tokens, n) for n in (1, 2, 3)}
    sep = "" if token_kind == "char" else " "
    lines = [f"corpus: {description}"]
    for n, table in tables.items():
        top = ", ".join(f"{sep.join(g)!r}: {c}" for g, c in table[: args.top])
        lines.append(f"top {n}-grams ({len(table)} distinct): {top}")
    report = "\n".join(lines)
    (out / "top_tokens.txt").write_text(report + "\n", encoding="utf-8")  # any script, whatever the locale
    fig = zipf_figure(tables)
    fig.savefig(out / "zipf.png", dpi=120)
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out / "tensorboard")) as writer:
        writer.add_figure("corpus/zipf", fig)
        writer.add_text("corpus/top_tokens", report.replace("\n", "  \n"))
    plt.close(fig)
    print(report)
    print(f"figure: {out / 'zipf.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
