"""The end-of-run list of failed jobs (tomlab.runlog) and the workflow's keep-going behaviour."""

from __future__ import annotations

from pathlib import Path

from tomlab.runlog import failures, last_words, summary

LOG = """Select jobs to execute...
Error in rule steer:
    message: None
    jobid: 12
    input: results/models/a/steering/directions.npz
    output: results/models/a/steering/runs/head_z/plus_tpfo.parquet
    log: results/logs/a/steer_head_z_plus_tpfo.log (check log file(s) for error details)
    shell:
        tomlab steer ...
        (one of the commands exited with non-zero exit code)

Error in rule steer:
    message: None
    jobid: 13
    output: results/models/b/steering/runs/head_z/plus_tpfo.parquet
    log: results/logs/b/steer.log (check log file(s) for error details)

Error in rule steer:
    jobid: 12
    output: results/models/a/steering/runs/head_z/plus_tpfo.parquet
    log: results/logs/a/steer_head_z_plus_tpfo.log (check log file(s) for error details)

Error in rule gather_models:
    jobid: 40
    wildcards: table=x
Finished jobid: 7 (Rule: probe)
"""


def test_each_failed_job_is_listed_once_with_the_reason_from_its_log(tmp_path):
    log = tmp_path / "results/logs/a/steer_head_z_plus_tpfo.log"
    log.parent.mkdir(parents=True)
    log.write_text("loading\n" + "Traceback (most recent call last):\n  File x\n"
                   "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n\n")
    found = failures(LOG, tmp_path)
    # two jobs of one rule are two failures; the repeated block of job 12 is one
    assert [(f.rule, f.wildcards) for f in found] == [
        ("steer", "results/models/a/steering/runs/head_z/plus_tpfo.parquet"),
        ("steer", "results/models/b/steering/runs/head_z/plus_tpfo.parquet"), ("gather_models", "table=x")]
    assert found[0].reason.startswith("torch.OutOfMemoryError: CUDA out of memory")
    assert found[0].logs == ("results/logs/a/steer_head_z_plus_tpfo.log",)
    assert found[1].reason == "no log written" and found[2].reason == "no log file"
    text = summary(found)
    assert text.startswith("3 jobs failed:")
    assert "- steer (results/models/a/steering/runs/head_z/plus_tpfo.parquet): torch.OutOfMemoryError" in text
    assert summary([]) == "No job failed."


def test_last_words_of_missing_empty_and_huge_logs(tmp_path):
    assert last_words(tmp_path / "absent.log") == "no log written"
    (tmp_path / "empty.log").write_text("\n\n")
    assert last_words(tmp_path / "empty.log") == "the log is empty"
    big = tmp_path / "big.log"
    big.write_text("x" * 10_000_000 + "\nValueError: " + "y" * 1000 + "\nsome progress bar 100%\n")
    why = last_words(big)
    assert why.startswith("ValueError: ") and len(why) == 300  # the error line, not the progress bar, shortened


def test_a_failed_job_does_not_stop_the_others_and_the_run_lists_it(tmp_path):
    from tests.test_pipeline import REPO, _snakemake

    bad = tmp_path / "broken.json"
    bad.write_bytes(b"\x00\x01not json")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"debate: {{arithmetic: {{file: {bad}}}, translation: {{file: {bad}}}}}\n")
    targets = ["results/data/raw_stories.csv", "results/debate/arithmetic/items.parquet",
               "results/debate/translation/items.parquet"]
    proc = _snakemake(tmp_path, *targets, "--configfile", str(REPO / "config/smoke.yaml"), str(cfg))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (tmp_path / "results/data/raw_stories.csv").is_file()  # keep-going: the good job ran
    listed = (tmp_path / "results/logs/failed.txt").read_text()
    # two jobs of one rule failed: both are listed, each with its output and log, and why
    assert listed.startswith("2 jobs failed:"), listed
    assert "- debate_tasks (results/debate/arithmetic/items.parquet):" in listed
    assert "- debate_tasks (results/debate/translation/items.parquet):" in listed
    assert "broken.json" in listed and "results/logs/debate_tasks/translation.log" in listed
    assert "2 jobs failed:" in out
    assert not (tmp_path / "results/debate/arithmetic/items.parquet").exists()
    # a run that ends well (the files fixed: the generated sets) leaves no stale list
    again = _snakemake(tmp_path, *targets, "--configfile", str(REPO / "config/smoke.yaml"))
    assert again.returncode == 0 and not (tmp_path / "results/logs/failed.txt").exists()
