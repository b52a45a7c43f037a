"""What the plan's counting functions read: the run's config and panel, the data the run's first rules
would make (built here in memory and a scratch folder, the same functions as the rules call), and each
model's tokenizer where one is at hand offline.

A model whose tokenizer is not at hand (a hub id not in the local cache) is counted at
:data:`CHARS_PER_TOKEN` characters per token, and :attr:`PlanContext.estimated` names it.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab.panel import experiment_panel, is_served, model_panel, run_models
from tomlab.plan.devices import Device

#: Characters per token where no tokenizer is at hand (English prose under a Llama-style BPE).
CHARS_PER_TOKEN = 4.0


class PlanContext:
    """The config (validated, with the schema's defaults), its panel and the data its rules would make."""

    def __init__(self, config: Mapping[str, Any], scratch: str | Path | None = None, device: Device | None = None) -> None:
        self.config: Mapping[str, Any] = config
        self.device = device  # the device projected onto, where a count depends on it (a dtype's extra load)
        self.panel: dict[str, dict[str, Any]] = model_panel(config)
        #: every model of the run by name: the panel, then the team's and the debate's own (as the workflow names them)
        self.specs: dict[str, Any] = run_models(config, self.panel)[2]
        self._scratch = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="tomlab-plan-"))
        self.estimated: set[str] = set()

    # --- config -------------------------------------------------------------------------------

    def section(self, name: str) -> Mapping[str, Any]:
        return self.config.get(name) or {}

    def models_of(self, experiment: str) -> list[str]:
        """The panel models ``experiment`` runs (its ``panel`` list, as the workflow reads it)."""
        return experiment_panel(self.config, experiment, self.panel)

    def local(self, name: str) -> bool:
        return not is_served(self.panel[name])

    # --- data ---------------------------------------------------------------------------------

    @functools.cached_property
    def raw(self) -> pd.DataFrame:
        """The raw stories: the BigToM file of ``bigtom_csv``, or the generated ones."""
        from tomlab.bigtom.raw import read_raw
        from tomlab.bigtom.stories import write_generated

        stories = self.section("stories")
        if stories.get("source") == "bigtom":
            if not self.config.get("bigtom_csv"):
                raise ValueError("config key 'bigtom_csv': stories.source is bigtom, so give the BigToM file's path")
            return read_raw(self.config["bigtom_csv"])
        path = self._scratch / "raw_stories.csv"
        if not path.exists():
            write_generated(path, n=int(stories.get("n", 200)), seed=int(stories.get("seed", 0)))
        return read_raw(path)

    @functools.cached_property
    def conditions_dir(self) -> Path:
        from tomlab.bigtom.conditions import write_conditions

        out = self._scratch / "conditions"
        if not out.exists():
            write_conditions(self.raw, out)
        return out

    @functools.cached_property
    def eval_items(self) -> pd.DataFrame:
        """The evaluation items as the ``eval_items`` rule makes them."""
        from tomlab.bigtom.evaluation import build_items

        ev, split = self.section("evaluation"), self.section("split")
        return build_items(self.conditions_dir, eval_fraction=float(split.get("eval_fraction", 0.5)),
                           seed=int(ev.get("seed", 0)), max_stories=ev.get("max_stories"),
                           protocol=str(ev.get("protocol", "original")), parser=ev.get("parser"))

    @functools.lru_cache(maxsize=None)  # noqa: B019 (one context per plan; the cache dies with it)
    def probe_samples(self, task: str) -> pd.DataFrame:
        """The probe samples of ``task`` as the ``probe_samples`` rule makes them."""
        from tomlab.probing.samples import build_probe_samples

        return build_probe_samples(self.conditions_dir, task=task,
                                   eval_fraction=float(self.section("split").get("eval_fraction", 0.5)),
                                   max_stories=self.section("activations").get("max_stories"),
                                   statements=str(self.section("probing").get("statements", "original")))

    # --- tokens -------------------------------------------------------------------------------

    @functools.lru_cache(maxsize=None)  # noqa: B019
    def tokenizer(self, model: str) -> Any | None:
        """The panel model's tokenizer where one is at hand offline, else None."""
        spec = self.panel[model]
        name = str(spec.get("name") or "")
        try:
            if name.startswith("random:"):
                from tomlab.backends.random_tokenizers import random_tokenizer

                return random_tokenizer(spec.get("random_tokenizer") or "bytes")
            from transformers import AutoTokenizer

            folder = _tokenizer_folder(spec)
            if folder is not None:
                return AutoTokenizer.from_pretrained(str(folder))
            if not name.startswith("embedded:") and not is_served(spec):
                return AutoTokenizer.from_pretrained(name, revision=spec.get("revision"), local_files_only=True)
        except (OSError, ValueError, ImportError):
            return None
        return None

    def tokens(self, model: str, texts: Sequence[str]) -> float:
        """The mean tokens of ``texts`` under ``model``'s tokenizer (0 for no text)."""
        if not texts:
            return 0.0
        tok = self.tokenizer(model)
        if tok is None:
            self.estimated.add(model)
            return sum(len(t) for t in texts) / len(texts) / CHARS_PER_TOKEN
        ids = tok(list(texts), add_special_tokens=True)["input_ids"]
        return sum(len(i) for i in ids) / len(ids)


def _tokenizer_folder(spec: Mapping[str, Any]) -> Path | None:
    """A folder holding the model's tokenizer: the model's own folder, or its converted copy in the cache."""
    name = str(spec.get("name") or "")
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if name.startswith("embedded:"):
        from tomlab.backends.models import cache_root

        root = cache_root(spec.get("cache_dir")) / "models"
        key = name.removeprefix("embedded:")
        found = sorted(p for p in root.glob(f"{key}-*") if (p / "tokenizer.json").is_file()) if root.is_dir() else []
        return found[0] if found else None
    return None
