"""Continue a prefix with a trained language model checkpoint (any core, char or word tokens).

    rnnlab-generate outputs/runs/<run>/checkpoints/last.ckpt --prefix "time traveller" --num-tokens 100
    rnnlab-generate CKPT --prefix "the time" --temperature 0.8 --seed 1
"""

from __future__ import annotations

import sys

from rnnlab.cli.common import ArgumentParser, run


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="path to a .ckpt written by train.py")
    parser.add_argument("--prefix", default=None,
                        help="the text to continue (default: the training run's sample prefix, kept in the checkpoint)")
    parser.add_argument("--num-tokens", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (argmax), > 0: sampling")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)

    def generate() -> int:
        import torch

        from rnnlab.checkpoints import load_language_model, resolve_device
        from rnnlab.options import NON_NEGATIVE_INT, SEED, TEMPERATURE

        NON_NEGATIVE_INT("--num-tokens", args.num_tokens)
        TEMPERATURE("--temperature", args.temperature)
        SEED("--seed", args.seed)
        device = resolve_device(args.device)
        model = load_language_model(args.checkpoint, map_location=device)
        print(model.generate(args.prefix, args.num_tokens, temperature=args.temperature,
                             generator=torch.Generator().manual_seed(args.seed)))
        return 0

    return run(generate)


if __name__ == "__main__":
    sys.exit(main())
