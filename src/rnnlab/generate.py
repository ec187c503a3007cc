"""Continue a prefix with a trained language model checkpoint (any core, char or word tokens).

    rnnlab-generate outputs/runs/<run>/checkpoints/last.ckpt --prefix "time traveller" --num-tokens 100
    rnnlab-generate CKPT --prefix "the time" --temperature 0.8 --seed 1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rnnlab.errors import ConfigError


def load_language_model(path: str | Path, map_location: str = "cpu"):
    """Load a LanguageModel checkpoint; a missing file or another model's checkpoint is a ConfigError."""
    from rnnlab.models import LanguageModel

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"checkpoint={str(p)!r} is not a file: give a .ckpt from <run>/checkpoints/")
    # Checkpoints hold the model's constructor arguments (the core factory and optimizer partials),
    # which need full unpickling: load only checkpoints you trust.
    ckpt = torch.load(p, map_location=map_location, weights_only=False)
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    if "vocab" not in hparams or "core" not in hparams:
        raise ConfigError(f"checkpoint={str(p)!r} is not a language-model checkpoint (no vocabulary in it)")
    return LanguageModel.load_from_checkpoint(p, map_location=map_location, weights_only=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="path to a .ckpt written by train.py")
    parser.add_argument("--prefix", default="time traveller")
    parser.add_argument("--num-tokens", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (argmax), > 0: sampling")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling")
    args = parser.parse_args(argv)
    try:
        if args.num_tokens < 0 or args.temperature < 0:
            raise ConfigError("--num-tokens and --temperature must be >= 0")
        model = load_language_model(args.checkpoint)
        text = model.generate(args.prefix, args.num_tokens, temperature=args.temperature,
                              generator=torch.Generator().manual_seed(args.seed))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
