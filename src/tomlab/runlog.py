"""What failed in a Snakemake run, and why: read from Snakemake's own log and each failed job's log, for the
summary the workflow prints (and writes to ``results/logs/failed.txt``) when a run with ``keep-going``
ends with errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tomlab import io

_ERROR = re.compile(r"^Error in rule (\S+?):\s*$")
_FIELD = re.compile(r"^\s+(\w+):\s*(.*)$")


@dataclass(frozen=True)
class Failure:
    """One failed job: its rule, what it was to make (its wildcards where Snakemake prints them, else its
    outputs), log files and the last words of its log."""

    rule: str
    wildcards: str
    logs: tuple[str, ...]
    reason: str


def _blocks(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _ERROR.match(line)
        if not m:
            continue
        fields: dict[str, str] = {}
        for follow in lines[i + 1:]:
            f = _FIELD.match(follow)
            if not follow.startswith((" ", "\t")) or not follow.strip():
                break
            if f and f.group(1) not in fields:
                fields[f.group(1)] = f.group(2).strip()
        yield m.group(1), fields


def last_words(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a log that says why (an exception's message, usually), shortened."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "no log written"
    lines = [x.strip() for x in tail.splitlines() if x.strip()]
    if not lines:
        return "the log is empty"
    why = next((x for x in reversed(lines) if re.match(r"^[\w.]*(Error|Exception|Exit)\b|^tomlab", x)), lines[-1])
    return why if len(why) <= limit else why[: limit - 3] + "..."


def failures(snakemake_log: str, root: Path = Path(".")) -> list[Failure]:
    """Every failed job of a run, in the order Snakemake reported them (each job once)."""
    out: list[Failure] = []
    seen: set[tuple[str, str]] = set()
    for rule, fields in _blocks(snakemake_log):
        # Snakemake repeats a failed job's block (at the failure and in the final summary): one job is one
        # jobid; its wildcards, where printed, else its outputs, say which of the rule's jobs it was
        wildcards = fields.get("wildcards") or fields.get("output", "")
        job = fields.get("jobid") or wildcards
        if (rule, job) in seen:
            continue
        seen.add((rule, job))
        log_field = fields.get("log", "").split(" (check log", 1)[0]
        logs = tuple(p.strip() for p in log_field.split(",") if p.strip())
        reason = last_words(root / logs[0]) if logs else fields.get("message", "") or "no log file"
        out.append(Failure(rule, wildcards, logs, reason))
    return out


def summary(found: list[Failure]) -> str:
    """The end-of-run list: one paragraph per failed job."""
    if not found:
        return "No job failed."
    parts = [f"{len(found)} job{'s' if len(found) != 1 else ''} failed:"]
    for f in found:
        head = f"- {f.rule}" + (f" ({f.wildcards})" if f.wildcards else "")
        parts.append(f"{head}: {f.reason}" + (f"\n  log: {', '.join(f.logs)}" if f.logs else ""))
    return "\n".join(parts)


def report_failures(logs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None, out: str | os.PathLike[str]) -> str:
    """Read Snakemake's log file(s) of this run, write the list of failed jobs to ``out`` (atomically) and
    return it as printed at the end of the run."""
    paths = [logs] if isinstance(logs, (str, os.PathLike)) else list(logs or [])
    text = "".join(Path(p).read_text(encoding="utf-8", errors="replace") for p in paths if Path(p).is_file())
    listed = summary(failures(text))
    io.write_text(out, f"{listed}\n")
    return f"\n{listed}\n(also in {out})"
