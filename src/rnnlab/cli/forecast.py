"""Write the next N predicted rows of a CSV file, from a checkpoint of `task=forecast`.

    rnnlab-forecast outputs/runs/<run>/checkpoints/last.ckpt --csv my.csv --steps 52 [--output next.csv]
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnlab.cli.common import ArgumentParser, run
from rnnlab.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", help="a checkpoint written by `python train.py task=forecast ...`")
    parser.add_argument("--csv", required=True, help="the series so far, with the columns the model was trained on")
    parser.add_argument("--steps", type=int, required=True,
                        help="how many rows to predict: at most the number of rows of --csv")
    parser.add_argument("--output", default=None, help="CSV file to write (default: standard output)")
    args = parser.parse_args(argv)

    def forecast() -> int:
        from rnnlab.forecast import forecast_csv, load_forecast_model  # after parsing: --help stays fast

        if args.output and not Path(args.output).resolve().parent.is_dir():
            raise ConfigError(f"--output={args.output!r} is invalid: its directory "
                              f"{Path(args.output).resolve().parent} does not exist")
        frame = forecast_csv(load_forecast_model(args.ckpt), args.csv, args.steps)
        try:
            frame.to_csv(args.output if args.output else sys.stdout, index=False)
        except OSError as e:
            raise ConfigError(f"--output={args.output!r} cannot be written ({e.strerror})") from None
        return 0

    return run(forecast)


if __name__ == "__main__":
    sys.exit(main())
