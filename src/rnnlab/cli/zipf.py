"""Corpus statistics of d2l 9.2 for the configured corpus and tokenizer: unigram, bigram and trigram
frequency against rank on log-log axes (Zipf's law) and the most frequent tokens, saved as PNG and
text and logged to TensorBoard.

    rnnlab-zipf                                    # The Time Machine, characters (the data config's defaults)
    rnnlab-zipf data.token=word                    # any data.* override that train.py takes
    rnnlab-zipf data.path=/path/to/any.txt --out outputs/zipf_mine
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnlab.cli.common import ArgumentParser, positive_int, run


def main(argv: list[str] | None = None) -> int:
    from rnnlab.configs import CONF_DIR  # the package's configs: the command works from any directory

    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="data.* overrides, as for train.py")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default outputs/zipf/<token>)")
    parser.add_argument("--top", type=positive_int, default=10, help="how many most frequent n-grams to list")
    parser.add_argument("--config-dir", type=Path, default=CONF_DIR,
                        help="Hydra config directory (default: the package's conf)")
    args = parser.parse_args(argv)

    def zipf() -> int:
        from rnnlab.zipf import corpus_tokens, write_report

        tokens, description, token_kind = corpus_tokens(args.overrides, args.config_dir)
        out = args.out or Path("outputs") / "zipf" / token_kind
        print(write_report(tokens, description, token_kind, out, args.top))
        print(f"figure: {out / 'zipf.png'}")
        return 0

    return run(zipf)


if __name__ == "__main__":
    sys.exit(main())
