"""tomlab's command line: one subcommand per pipeline step, each module registering its own.

Nothing in the library imports this package; each subcommand parses its flags, calls the library and
writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from tomlab.backends.meter import metered
from tomlab.cli import bench, bigtom, debate, plan, probing, report, steering, stress, team
from tomlab.cli.common import int_range
from tomlab.io import write_json

MODULES = (bigtom, probing, bench, steering, team, debate, stress, report, plan)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tomlab", description=__doc__)
    parser.add_argument("--threads", type=int_range(1, 4096), default=None,
                        help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--usage", default=None, metavar="JSON",
                        help="write what the command asked of its models (prompts, tokens generated and scored, "
                             "seconds) to this file")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in MODULES:
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        with metered() as meter:
            start = time.perf_counter()
            args.func(args)
            seconds = time.perf_counter() - start
        if args.usage:
            write_json(args.usage, {"command": args.command, "seconds": seconds, **meter.as_dict()})
    except (ValueError, OSError, RuntimeError) as err:
        print(f"tomlab {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0
