# tomlab: theory of mind in language models, reproduced and stress-tested.
#   snakemake --cores all                                    # embedded model, generated stories
#   snakemake --configfile config/bigtom.yaml --config bigtom_csv=PATH --cores all
import os
import sys

from snakemake.utils import min_version

min_version("8.20")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/activations.smk"
include: "workflow/rules/probing.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/steering.smk"
include: "workflow/rules/stress.smk"
include: "workflow/rules/team.smk"
include: "workflow/rules/debate.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        html=rules.report.output.html,
        pdf=rules.report.output.pdf,


FAILED_JOBS = "results/logs/failed.txt"  # the end-of-run list of failed jobs


onerror:
    # keep-going (the profile) lets every other job finish; then: what failed, and why
    from tomlab.runlog import report_failures

    print(report_failures(log, FAILED_JOBS), file=sys.stderr)


onsuccess:
    # a run that ends well leaves no list of failures from an earlier one
    if os.path.isfile(FAILED_JOBS):
        os.remove(FAILED_JOBS)
