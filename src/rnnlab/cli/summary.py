"""Turn a multirun directory into a comparison: a table of every job's overrides and final metrics
(CSV, and Markdown on the terminal), sorted by the metric, and a plot of the metric against each
swept value.

    rnnlab-summary outputs/multiruns/2026-11-23_10-00-00 [--metric val/ppl]
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnnlab.cli.common import ArgumentParser, run


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. outputs/multiruns/<date>_<time>")
    parser.add_argument("--metric", default=None, help="metric to sort and plot by (default: val/ppl, else val/mse)")
    args = parser.parse_args(argv)

    def summary() -> int:
        from rnnlab.summary import summarize

        result = summarize(args.sweep_dir, args.metric)
        print(result["markdown"])
        print(f"\ntable: {result['csv']}" + (f"\nplot: {result['plot']}" if result["plot"] else ""))
        return 0

    return run(summary)


if __name__ == "__main__":
    sys.exit(main())
