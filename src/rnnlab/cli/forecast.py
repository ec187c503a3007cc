"""Write the next N predicted rows of a CSV file, from a checkpoint of `task=forecast`.

    rnnlab-forecast outputs/runs/<run>/checkpoints/last.ckpt --csv my.csv --steps 52 [--output next.csv]
"""

from __future__ import annotations

import argparse
import sys

from rnnlab.cli.common import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a checkpoint written by `python train.py task=forecast ...`")
    parser.add_argument("--csv", required=True, help="the series so far, with the columns the model was trained on")
    parser.add_argument("--steps", type=int, required=True, help="how many rows to predict")
    parser.add_argument("--output", default=None, help="CSV file to write (default: standard output)")
    args = parser.parse_args(argv)

    def forecast() -> int:
        from rnnlab.forecast import forecast_csv, load_regressor  # after parsing: --help stays fast

        frame = forecast_csv(load_regressor(args.ckpt), args.csv, args.steps)
        frame.to_csv(args.output if args.output else sys.stdout, index=False)
        return 0

    return run(forecast)


if __name__ == "__main__":
    sys.exit(main())
