"""``tomlab plan``: what a config's model jobs will ask and cost on a device, before the run."""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from tomlab import io
from tomlab.cli.common import json_object


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from tomlab.schema import merged_config, validate_config

    if args.config_json is not None:
        if args.configfile or args.config:
            raise ValueError("--config-json: give the whole config as JSON, or config files with --config, not both")
        config = json_object(args.config_json, "--config-json")
        validate_config(config)
        return config
    base = [] if args.workflow_config in ("", "none") else [Path(args.workflow_config)]
    if base and not base[0].is_file():
        raise ValueError(f"--workflow-config {args.workflow_config}: no such file (run from the workflow's folder, "
                         "or give its path, or 'none')")
    files = [*base, *(Path(f) for f in args.configfile)]  # in Snakemake's order: the Snakefile's own first
    if not files:
        raise ValueError("give the run's config files with --configfile FILE [FILE ...] (or --config-json)")
    return merged_config(files, args.config or ())


def cmd_plan(args: argparse.Namespace) -> None:
    from tomlab.backends.batching import free_memory_bytes
    from tomlab.plan import plan_table, summary
    from tomlab.plan.context import PlanContext
    from tomlab.plan.devices import device

    config = _config(args)
    dev = device(args.device)
    with tempfile.TemporaryDirectory(prefix="tomlab-plan-") as scratch, warnings.catch_warnings():
        # the data the run's first rules would make is built in scratch; their warnings belong to those rules
        warnings.simplefilter("ignore", UserWarning)
        ctx = PlanContext(config, scratch=scratch, device=dev)
        table = plan_table(ctx, dev, host_bytes=free_memory_bytes("cpu") if dev.kind == "cpu" else None)
    io.write_parquet(args.out, table)
    print(summary(table, dev, ctx.estimated), file=sys.stdout)


def add_commands(sub: Any) -> None:
    """Register ``plan`` on the top-level subparsers."""
    from tomlab.plan.devices import DEVICE_NAMES

    p = sub.add_parser("plan", help="per rule and model: prompts, tokens, loads, peak memory and projected time "
                                    "on a device, before the run (no weights needed)")
    p.add_argument("--configfile", nargs="+", default=[], metavar="FILE",
                   help="the run's config files, layered in order as snakemake --configfile takes them")
    p.add_argument("--workflow-config", default="config/config.yaml", metavar="FILE",
                   help="the Snakefile's own config file, which Snakemake loads before any --configfile "
                        "(default: config/config.yaml, from the workflow's folder; 'none': not loaded)")
    p.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                   help="values layered on top, as snakemake --config takes them (VALUE is YAML)")
    p.add_argument("--config-json", default=None, metavar="JSON",
                   help="the whole merged config as JSON (the workflow's plan rule passes its own)")
    p.add_argument("--device", required=True, choices=DEVICE_NAMES,
                   help="cpu: this machine, its peaks measured now; h100, a100-80g, h200: published peaks")
    p.add_argument("--out", default="results/plan/plan.parquet", help="the plan table (parquet)")
    p.set_defaults(func=cmd_plan)
