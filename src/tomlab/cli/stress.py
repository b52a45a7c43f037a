"""Subcommands for the stress tests."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.cli.common import _load_split, _task_activations
from tomlab.schema import default as schema_default


def cmd_decodability(args: argparse.Namespace) -> None:
    from tomlab.stress.decodability import decodability_curve

    samples, acts = _task_activations(args.samples, args.activations)
    is_val = _load_split(samples, args.split)
    correct = decodability_curve(acts, samples, is_val, target=args.target, ks=args.ks, draws=args.draws,
                                 seed=args.seed, max_iter=args.max_iter)
    io.write_parquet(args.out, correct)


def cmd_stress_verdicts(args: argparse.Namespace) -> None:
    from tomlab.stress.verdicts import decodability_verdict, verdict_table

    rows = [decodability_verdict(pd.read_parquet(args.decodability), few=args.few, n_boot=args.n_boot)]
    io.write_parquet(args.out, verdict_table(rows))


def cmd_plot_stress(args: argparse.Namespace) -> None:
    from tomlab.figures.stress import plot_decodability
    from tomlab.stress.decodability import chance_level, curve_summary

    correct = pd.read_parquet(args.decodability)
    plot_decodability(curve_summary(correct), args.out_decodability, chance=chance_level(correct))


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("decodability", help="probe accuracy against features pooled (best head, random heads, layers)")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--target", default=schema_default("stress.decodability.target"))
    p.add_argument("--ks", type=int, nargs="+", default=schema_default("stress.decodability.ks"))
    p.add_argument("--draws", type=int, default=schema_default("stress.decodability.draws"))
    p.add_argument("--seed", type=int, default=schema_default("stress.seed"))
    p.add_argument("--max-iter", type=int, default=schema_default("probing.max_iter"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_decodability)

    p = sub.add_parser("stress-verdicts", help="one verdict per doubt, with its statistic and 95%% interval")
    p.add_argument("--decodability", required=True)
    p.add_argument("--few", type=int, default=schema_default("stress.decodability.few"))
    p.add_argument("--n-boot", type=int, default=schema_default("stress.n_boot"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress_verdicts)

    p = sub.add_parser("plot-stress", help="the stress tests' figures")
    p.add_argument("--decodability", required=True)
    p.add_argument("--out-decodability", required=True, help="file stem (PNG and SVG)")
    p.set_defaults(func=cmd_plot_stress)
