"""Shared fixtures: tiny random models built from a config (no downloads, ever)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BIGTOM = REPO.parent / "shared" / "data" / "bigtom" / "bigtom.csv"

TINY = {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2}


@pytest.fixture(scope="session")
def tiny_llama():
    from tomlab.backends.models import load_model

    return load_model("random:llama", dtype="float32", device="cpu", random_config=TINY, seed=0)


@pytest.fixture(scope="session")
def bigtom_csv() -> Path:
    if not SHARED_BIGTOM.is_file():
        pytest.skip(f"real BigToM file not found at {SHARED_BIGTOM} (../shared/data/bigtom is absent)")
    return SHARED_BIGTOM


@pytest.fixture(scope="session")
def generated_conditions(tmp_path_factory):
    """``make(n, seed)``: the 25 condition folders of ``n`` generated stories (built once per (n, seed))."""
    from tomlab.bigtom.conditions import conditions_from_csv
    from tomlab.bigtom.stories import write_generated

    built: dict[tuple[int, int], Path] = {}

    def make(n: int, seed: int) -> Path:
        if (n, seed) not in built:
            root = tmp_path_factory.mktemp(f"stories_{n}_{seed}")
            write_generated(root / "stories.csv", n=n, seed=seed)
            conditions_from_csv(root / "stories.csv", root / "conditions")
            built[n, seed] = root / "conditions"
        return built[n, seed]

    return make
