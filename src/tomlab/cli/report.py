"""Subcommands for the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tomlab import io
from tomlab.cli.common import N_BOOT, int_range, json_object
from tomlab.schema import default as schema_default

#: The columns of the Models overview (``tomlab models-overview``) that its figure reads.
OVERVIEW_COLUMNS = ("model", "metric", "value", "text", "n_params")


def cmd_setup_summary(args: argparse.Namespace) -> None:
    from tomlab.bigtom.raw import read_raw
    from tomlab.report.setup import run_summary

    config = json_object(args.config_json, "--config-json")
    if args.model_info:
        model = io.read_json(args.model_info)
    elif isinstance(config.get("model"), dict) and "base_url" in config["model"]:  # served: no geometry to record
        model = {"name": config["model"].get("model"), "source": "served"}
    else:
        raise SystemExit("tomlab setup-summary: --model-info is required for a local model")
    summary = run_summary(config, args.config_hash, model, read_raw(args.raw),
                          io.read_table(args.samples, ("story_id",), flag="--samples"),
                          io.read_table(args.split, ("is_val",), flag="--split"), name=args.name)
    io.write_json(args.out, summary)


def _named(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"tomlab: {flag} takes NAME=PATH, got {value!r}")
        if name in out:
            raise SystemExit(f"tomlab: {flag}: {name!r} given twice")
        out[name] = path
    return out


def cmd_gather(args: argparse.Namespace) -> None:
    import pandas as pd

    from tomlab.panel import gather

    tables = {name: io.read_table(path, flag=f"--table {name}=") for name, path in _named(args.table, "--table").items()}
    out = gather(tables)
    if args.shared_rows:
        column, _, values = args.shared_rows.partition("=")
        if column not in out.columns:
            raise SystemExit(f"tomlab gather: --shared-rows: the tables have no column {column!r}")
        shared = out[column].isin(values.split(","))
        once = out[shared].drop(columns="model").drop_duplicates()
        out = pd.concat([once.assign(model="")[out.columns], out[~shared]], ignore_index=True)
    io.write_parquet(args.out, out)


def cmd_models_overview(args: argparse.Namespace) -> None:
    from tomlab.manifest import Manifest
    from tomlab.report.models import overview

    manifest = Manifest.from_json(args.manifest_json, base=Path.cwd())
    io.write_parquet(args.out, overview(manifest, n_boot=args.n_boot, seed=args.seed))


def cmd_plot_models(args: argparse.Namespace) -> None:
    from tomlab.figures.models import scaling_figure

    scaling_figure(io.read_table(args.overview, OVERVIEW_COLUMNS, flag="--overview"), args.out)


def cmd_cost(args: argparse.Namespace) -> None:
    from tomlab.report.cost import experiment_costs, job_costs

    experiments = json_object(args.experiments_json, "--experiments-json")
    jobs = job_costs(args.benchmarks, args.usage_dir, experiments, models=args.models, per_model=args.per_model_rules)
    if jobs.empty:
        raise SystemExit(f"tomlab cost: no benchmark file of a known rule under {args.benchmarks}")
    io.write_parquet(args.out_jobs, jobs)
    io.write_parquet(args.out_experiments, experiment_costs(jobs).assign(cores=args.cores))
    if (args.plan is None) != (args.out_plan is None):
        raise ValueError("--plan and --out-plan go together: the plan table read, and the plan against the measured jobs written")
    if args.plan is not None:
        from tomlab.report.cost import PLAN_INPUT_COLUMNS, plan_against_measured

        plan = io.read_table(args.plan, PLAN_INPUT_COLUMNS, flag="--plan")
        io.write_parquet(args.out_plan, plan_against_measured(plan, jobs))


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
    p.add_argument("--model-info", help="the model's info.json (prepare-model); none for a served model")
    p.add_argument("--name", default=None, help="the model's name in the run's panel (models:)")
    p.add_argument("--raw", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_setup_summary)

    p = sub.add_parser("cost", help="the cost of every job (benchmark files and model usage), per job and experiment")
    p.add_argument("--benchmarks", required=True, help="folder of Snakemake benchmark files (<rule>[/<job>].tsv)")
    p.add_argument("--usage-dir", default=None, help="folder of tomlab --usage files, named like the benchmark files")
    p.add_argument("--experiments-json", required=True, help="JSON object: rule -> experiment")
    p.add_argument("--models", nargs="*", default=[], help="the panel's model names (a job's model is the first part of its name)")
    p.add_argument("--per-model-rules", nargs="*", default=[],
                   help="rules with a model wildcard: their files of models not in --models are left out")
    p.add_argument("--cores", type=int_range(1, sys.maxsize), default=None, help="the cores the run had (recorded with the totals)")
    p.add_argument("--out-jobs", required=True)
    p.add_argument("--out-experiments", required=True)
    p.add_argument("--plan", default=None, help="the plan table (tomlab plan) to set beside the measured jobs")
    p.add_argument("--out-plan", default=None, help="the plan against the measured jobs, one row per planned job")
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

    p = sub.add_parser("gather", help="per-model tables as one, with a model column first")
    p.add_argument("--table", nargs="+", required=True, metavar="MODEL=PATH", help="each model's table (parquet)")
    p.add_argument("--shared-rows", metavar="COLUMN=V1,V2",
                   help="rows whose COLUMN is one of these are the same in every model's table (no model played them): "
                        "kept once, with an empty model")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_gather)

    p = sub.add_parser("models-overview", help="one row per panel model: geometry, where it ran, headline numbers")
    p.add_argument("--manifest-json", required=True, help="the report's manifest with a 'models' entry")
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("evaluation.n_boot"))
    p.add_argument("--seed", type=int, default=schema_default("evaluation.seed"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_models_overview)

    p = sub.add_parser("plot-models", help="each headline metric against parameter count, one point per model")
    p.add_argument("--overview", required=True)
    p.add_argument("--out", required=True, help="figure stem (PNG and SVG)")
    p.set_defaults(func=cmd_plot_models)
