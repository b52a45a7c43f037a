"""Subcommands for the report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tomlab import io
from tomlab.schema import default as schema_default


def cmd_setup_summary(args: argparse.Namespace) -> None:
    from tomlab.bigtom.raw import read_raw
    from tomlab.report.setup import run_summary

    summary = run_summary(json.loads(args.config_json), args.config_hash, io.read_json(args.model_info),
                          read_raw(args.raw), io.read_parquet(args.samples), io.read_parquet(args.split))
    io.write_json(args.out, summary)


def cmd_cost(args: argparse.Namespace) -> None:
    from tomlab.report.cost import experiment_costs, job_costs

    experiments = json.loads(args.experiments_json)
    if not isinstance(experiments, dict):
        raise SystemExit("tomlab cost: --experiments-json must be a JSON object mapping rule -> experiment")
    jobs = job_costs(args.benchmarks, args.usage_dir, experiments)
    if jobs.empty:
        raise SystemExit(f"tomlab cost: no benchmark file of a known rule under {args.benchmarks}")
    io.write_parquet(args.out_jobs, jobs)
    io.write_parquet(args.out_experiments, experiment_costs(jobs).assign(cores=args.cores))


def cmd_report(args: argparse.Namespace) -> None:
    import tempfile

    from tomlab.manifest import Manifest
    from tomlab.report.render.engine import render_report

    source, results = Path(args.source).resolve(), Path(args.results).resolve()
    if args.manifest is None and args.manifest_json is None:
        # no manifest given: the report reads the one a pipeline run saved in --results
        render_report(source, results, args.html, args.pdf, engine=args.engine)
        return
    # relative paths in the manifest are relative to this working directory, like every other argument
    if args.manifest is not None:
        manifest = Manifest.load(args.manifest, base=Path.cwd())
    else:
        manifest = Manifest.from_json(args.manifest_json, base=Path.cwd())
    if args.save_manifest:
        manifest.resolved(Path.cwd()).write(args.save_manifest)
    with tempfile.TemporaryDirectory(prefix="tomlab-manifest-") as tmp:
        resolved = manifest.write(Path(tmp) / "manifest.json")
        render_report(source, results, args.html, args.pdf, engine=args.engine, manifest=resolved)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("setup-summary", help="model, data, sizes, seeds and config hash for the report")
    p.add_argument("--config-json", required=True)
    p.add_argument("--config-hash", required=True)
    p.add_argument("--model-info", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_setup_summary)

    p = sub.add_parser("cost", help="the cost of every job (benchmark files and model usage), per job and experiment")
    p.add_argument("--benchmarks", required=True, help="folder of Snakemake benchmark files (<rule>[/<job>].tsv)")
    p.add_argument("--usage-dir", default=None, help="folder of tomlab --usage files, named like the benchmark files")
    p.add_argument("--experiments-json", required=True, help="JSON object: rule -> experiment")
    p.add_argument("--cores", type=int, default=None, help="the cores the run had (recorded with the totals)")
    p.add_argument("--out-jobs", required=True)
    p.add_argument("--out-experiments", required=True)
    p.set_defaults(func=cmd_cost)

    p = sub.add_parser("report", help="render the Quarto report to HTML and PDF")
    p.add_argument("--source", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--html", required=True)
    p.add_argument("--pdf", required=True)
    p.add_argument("--engine", choices=["auto", "quarto", "builtin"], default=schema_default("report.engine"))
    given = p.add_mutually_exclusive_group()
    given.add_argument("--manifest", metavar="FILE",
                       help="JSON file naming every result file the report shows (name -> path, list of paths, "
                            "or key -> path); relative paths are taken from the working directory. Without one, "
                            "the report reads the manifest a pipeline run saved in --results")
    given.add_argument("--manifest-json", metavar="JSON", help="the same manifest as JSON text (what the pipeline passes)")
    p.add_argument("--save-manifest", metavar="FILE",
                   help="also save the given manifest here (absolute paths), for rendering the report again by hand")
    p.set_defaults(func=cmd_report)
