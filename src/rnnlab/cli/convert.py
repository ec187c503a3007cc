"""Convert a checkpoint of rnnlab's format 1 (pickled Python objects) to format 2 (plain data).

    rnnlab-convert-checkpoint outputs/runs/<run>/checkpoints/last.ckpt          # in place, keeps last.ckpt.format1
    rnnlab-convert-checkpoint OLD.ckpt --out NEW.ckpt

Reading a format-1 file unpickles it in full: convert only files you trust.
"""

from __future__ import annotations

import sys

from rnnlab.cli.common import ArgumentParser, run


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a format-1 .ckpt written by an older rnnlab")
    parser.add_argument("--out", default=None,
                        help="where to write (default: in place, the original kept as <name>.format1)")
    args = parser.parse_args(argv)

    def convert() -> int:
        from rnnlab.checkpoints import convert_checkpoint

        print(f"written: {convert_checkpoint(args.checkpoint, args.out)}")
        return 0

    return run(convert)


if __name__ == "__main__":
    sys.exit(main())
