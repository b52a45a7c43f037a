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
