"""Continue a prefix with a trained language model checkpoint (any core, char or word tokens).

    rnnlab-generate outputs/runs/<run>/checkpoints/last.ckpt --prefix "time traveller" --num-tokens 100
    rnnlab-generate CKPT --prefix "the time" --temperature 0.8 --seed 1
"""

from __future__ import annotations

import argparse
import sys

from rnnlab.cli.common import run
from rnnlab.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="path to a .ckpt written by train.py")
    parser.add_argument("--prefix", default="time traveller")
    parser.add_argument("--num-tokens", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (argmax), > 0: sampling")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling")
    args = parser.parse_args(argv)

    def generate() -> int:
        import torch

        from rnnlab.checkpoints import load_language_model

        if args.num_tokens < 0 or args.temperature < 0:
            raise ConfigError("--num-tokens and --temperature must be >= 0")
        model = load_language_model(args.checkpoint)
        print(model.generate(args.prefix, args.num_tokens, temperature=args.temperature,
                             generator=torch.Generator().manual_seed(args.seed)))
        return 0

    return run(generate)


if __name__ == "__main__":
    sys.exit(main())
