"""rnnlab-ensemble SWEEP_DIR: score (again) the ensemble of a finished multirun's best checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

from rnnlab.cli.common import ArgumentParser, run


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. outputs/multiruns/<date>_<time>")
    parser.add_argument("--segment-len", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3,
                        help="dynamic evaluation's step size; 0: the stream as is only")
    parser.add_argument("--decay", type=float, default=0.0)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--skip-damaged", action="store_true",
                        help="leave out jobs whose best checkpoint is missing, truncated or unreadable (and say so) "
                             "instead of refusing the ensemble")
    args = parser.parse_args(argv)

    def ensemble() -> int:
        from rnnlab.checkpoints import resolve_device
        from rnnlab.ensemble import EnsembleReport, rescore, summary_line
        from rnnlab.options import check_values

        check_values(EnsembleReport, vars(args), name=lambda option: "--" + option.replace("_", "-"))
        result = rescore(args.sweep_dir, resolve_device(args.device), args.segment_len, args.lr, args.decay,
                         args.skip_damaged)
        print(summary_line(result))
        print(f"written: {args.sweep_dir / 'ensemble.json'}")
        return 0

    return run(ensemble)


if __name__ == "__main__":
    sys.exit(main())
