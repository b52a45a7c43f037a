"""The memory plan (tomlab.backends.memory): every batched pass holds no more rows than its budget allows,
on a geometry whose KV cache is large (as many key/value heads as query heads, as DeepSeek-7B), and
answers as an uncapped run does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tomlab.backends.activations import extract_activations
from tomlab.backends.batching import kv_bytes_per_token
from tomlab.backends.branching import Branches
from tomlab.backends.likelihood import continuation_logprobs
from tomlab.backends.lm import GenerationConfig, TransformersLM
from tomlab.backends.memory import MemoryPlan, memory_batches, plan_batches, row_bytes
from tomlab.steering.directions import random_directions
from tomlab.steering.intervention import Intervention

# DeepSeek-7B's head layout in miniature: every query head has its own keys and values
MANY_KV = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 8,
           "num_key_value_heads": 8}
PROMPTS = ["Ada puts milk in the fridge. The fridge breaks while Ada is out. Ada believes the milk is",
           "Bo leaves his keys on the desk.", "Cy plants tomatoes. A frost comes at night and Cy sleeps. Cy",
           "Di bakes bread.", "Ed parks the car on the street. A truck blocks it in.", "Fay sings."]


@pytest.fixture(scope="module")
def many_kv():
    from tomlab.backends.models import load_model

    return load_model("random:llama", dtype="float32", device="cpu", random_config=MANY_KV, seed=3)


def capped(lm, budget: int):
    return dataclasses.replace(lm, memory=MemoryPlan(budget_bytes=budget))


class RowCounter:
    """The (rows, tokens) of every forward pass of a model's body."""

    def __init__(self, lm):
        self.lm, self.passes = lm, []

    def __enter__(self):
        def pre(_module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None:
                self.passes.append(tuple(ids.shape))
        self.handle = self.lm.decoder().register_forward_pre_hook(pre, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_plan_batches_respects_the_size_and_the_fit_and_keeps_the_order():
    lengths = [50, 40, 40, 30, 10, 10, 10, 10]
    order = list(range(len(lengths)))
    fits = lambda n: 2000 // n  # noqa: E731  rows of length n that fit
    batches = plan_batches(order, lengths, 5, fits, per_item=8)
    assert [i for b in batches for i in b] == order
    for b in batches:
        assert len(b) <= 5 and (len(b) == 1 or len(b) * 8 <= fits(max(lengths[i] for i in b)))
    assert max(len(b) for b in batches) > 1
    # an item that alone does not fit runs alone; nothing is dropped
    assert plan_batches([0, 1], [10**6, 10**6], 4, fits, per_item=8) == [[0], [1]]
    assert plan_batches([], [], 3, fits) == []
    with pytest.raises(ValueError, match="at least one"):
        plan_batches([0], [3], 0, fits)
    # the order given is kept (ascending lengths: a longer item later closes the batch)
    assert plan_batches([4, 3, 0], lengths, 3, lambda n: 100 // n) == [[4, 3], [0]]


def test_planning_is_linear_in_the_items():
    import time

    n = 200_000
    lengths = list(np.random.default_rng(0).integers(5, 500, size=n))
    start = time.perf_counter()
    batches = plan_batches(list(range(n)), lengths, 64, lambda m: 10**6 // m)
    elapsed = time.perf_counter() - start
    assert sum(len(b) for b in batches) == n and elapsed < 10  # quadratic would take minutes


def test_row_bytes_counts_the_kv_cache_of_every_layer(many_kv):
    per_token = kv_bytes_per_token(many_kv)
    assert per_token == 2 * 3 * 8 * 8 * 4  # keys and values x layers x kv heads x head width x float32
    # the cache grows linearly, attention quadratically, each kept position adds its logits
    assert row_bytes(many_kv, 200) - row_bytes(many_kv, 100) > 100 * per_token
    assert row_bytes(many_kv, 100, logits=3) - row_bytes(many_kv, 100, logits=1) == 2 * 2 * 4 * many_kv.model.config.vocab_size


def test_plan_from_spec_and_its_checks(monkeypatch):
    from tomlab.backends import batching

    assert MemoryPlan.from_spec({"memory_budget_gb": 0.5}).budget_bytes == 2**29
    plan = MemoryPlan.from_spec({"memory_share": 0.5})
    monkeypatch.setattr("tomlab.backends.memory.free_memory_bytes", lambda device: 1000)
    assert plan.budget(object()) == 500 and "50%" in plan.describe()
    assert batching.MEMORY_SHARE == MemoryPlan().share
    for bad in ({"share": 0.0}, {"share": 1.5}, {"budget_bytes": 0}):
        with pytest.raises(ValueError, match="memory"):
            MemoryPlan(**bad)


def test_the_schema_takes_the_memory_and_precision_keys_and_refuses_bad_values():
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from tomlab.schema import SCHEMA_PATH

    base = {"stories": {"source": "generated"}}
    cfg = {**base, "model": {"name": "random:llama", "memory_budget_gb": 2, "matmul_precision": "high",
                             "revision": "abc123"}}
    validate(cfg, schema=str(SCHEMA_PATH), set_default=True)
    assert cfg["model"]["memory_share"] == 0.25 and cfg["model"]["matmul_precision"] == "high"
    for key, value in (("memory_share", 0), ("memory_share", 2), ("memory_budget_gb", -1),
                       ("matmul_precision", "medium")):
        with pytest.raises(WorkflowError, match=key):
            validate({**base, "model": {"name": "random:llama", key: value}}, schema=str(SCHEMA_PATH))


def _interventions(lm, k):
    theta = random_directions(lm.n_layers, lm.n_heads, lm.head_dim, seed=1)
    sigma = np.ones((lm.n_layers, lm.n_heads))
    base = Intervention(site="head_z", heads=[(0, 1), (2, 5)], directions=theta, sigma=sigma, alpha=0.0)
    return [base.with_alpha(a) for a in np.linspace(-30, 30, k)]


@pytest.mark.parametrize("groups", [False, True])
def test_shared_prefix_branches_stay_within_the_budget_and_answer_as_uncapped(many_kv, groups):
    lm = many_kv
    tok = lm.tokenizer
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    conts = [[[5, 6, 7] for _ in ids]]
    config = GenerationConfig(max_new_tokens=6, chat_template=False)
    ivs = _interventions(lm, 8)
    free = Branches(lm, [iv.hook(lm) for iv in ivs], batch_size=6, progress=False)
    done_free, scores_free = free.run(ids, config, conts)
    assert free.peak_rows == 6 * 8  # uncapped: every prompt's every branch in one pass
    longest = max(len(i) for i in ids) + 6
    # a budget of three prompts' branches, or (groups) of three branches of one prompt
    budget = row_bytes(lm, longest, 4) * (3 if groups else 3 * 8) + 1
    small = capped(lm, budget)
    tight = Branches(small, [iv.hook(small) for iv in ivs], batch_size=6, progress=False)
    done, scores = tight.run(ids, config, conts)
    assert tight.peak_rows < free.peak_rows
    assert 0 < tight.peak_cache_bytes <= budget  # measured: the bytes the cache's tensors held
    assert free.peak_rows * row_bytes(lm, longest, 4) > budget  # the uncapped pass would not have fitted
    # the plan's KV bytes per token are the cache's: the measured cache of the uncapped pass lies between
    # its rows at the shortest and at the longest prompt (plus new tokens)
    per_token = kv_bytes_per_token(lm)
    assert free.peak_rows * per_token * min(len(i) for i in ids) < free.peak_cache_bytes <= free.peak_rows * per_token * longest
    assert [[c.text for c in row] for row in done] == [[c.text for c in row] for row in done_free]
    np.testing.assert_allclose(scores, scores_free, atol=1e-3)
    assert len({c.text for row in done for c in row}) > 1  # the interventions changed the answers


def test_generation_scoring_and_extraction_split_their_passes_to_fit(many_kv):
    lm = many_kv
    config = GenerationConfig(max_new_tokens=5, chat_template=False)
    longest = max(len(lm.tokenizer(p)["input_ids"]) for p in PROMPTS)
    budget = row_bytes(lm, longest + 5, 1) * 2 + 1  # two of the longest rows
    small = capped(lm, budget)

    with RowCounter(lm) as free_gen:
        plain = TransformersLM(lm, batch_size=6).generate(PROMPTS, config)
    with RowCounter(lm) as tight_gen:
        tight = TransformersLM(small, batch_size=6).generate(PROMPTS, config)
    assert [c.text for c in tight] == [c.text for c in plain]
    assert max(r for r, _ in free_gen.passes) == 6 and max(r for r, _ in tight_gen.passes) < 6
    # every first (prefill) pass of the capped run fits: rows x bytes of a row of its width + new tokens
    for rows, width in tight_gen.passes:
        if width > 1:
            assert rows == 1 or rows * row_bytes(lm, width + 5, 1) <= budget

    conts = [" yes"] * len(PROMPTS)
    with RowCounter(lm) as tight_ll:
        ll, _ = continuation_logprobs(small, PROMPTS, conts, batch_size=6, chat_template=False, progress=False)
    free_ll, _ = continuation_logprobs(lm, PROMPTS, conts, batch_size=6, chat_template=False, progress=False)
    np.testing.assert_allclose(ll, free_ll, atol=1e-3)
    assert len(tight_ll.passes) > 1

    with RowCounter(lm) as tight_acts:
        acts = extract_activations(small, PROMPTS, batch_size=6, progress=False)
    free_acts = extract_activations(lm, PROMPTS, batch_size=6, progress=False)
    assert len(tight_acts.passes) > 1
    for site in acts:
        np.testing.assert_allclose(acts[site], free_acts[site], atol=1e-4)


def test_a_model_without_geometry_is_batched_by_size_alone():
    class Bare:
        pass

    assert memory_batches(Bare(), [0, 1, 2], [5, 5, 5], 2) == [[0, 1], [2]]


def test_precision_switch_and_load_messages(tiny_llama):
    from tomlab.backends.models import ModelLoadError, load_error_message, load_model

    with pytest.raises(ModelLoadError, match="matmul_precision"):
        load_model("random:llama", device="cpu", matmul_precision="medium")
    try:
        load_model("random:llama", device="cpu", dtype="float32", matmul_precision="high",
                   random_config={"hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1})
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision("highest")
    assert tiny_llama.describe()["revision"] is None  # a random model has no hub revision
    gated = load_error_message("mistralai/Mistral-7B-Instruct-v0.2", "hub", True,
                               OSError("401 Client Error: Unauthorized. Access to model is restricted (gated repo)"))
    assert "https://huggingface.co/mistralai/Mistral-7B-Instruct-v0.2" in gated and "HF_TOKEN" in gated
    assert "model.allow_download" in gated
    missing = load_error_message("org/model", "hub", False, OSError("not found in cache"))
    assert "downloads are off" in missing and "model.allow_download: true" in missing
    assert "HF_TOKEN" not in load_error_message("/some/folder", "local", False, OSError("no config.json"))


def test_branched_completions_need_one_namespace_per_intervention(many_kv):
    from tomlab.backends.branching import branched_completions

    hooks = [iv.hook(many_kv) for iv in _interventions(many_kv, 2)]
    with pytest.raises(ValueError, match="2 interventions"):
        branched_completions(many_kv, TransformersLM(many_kv), hooks, ["a"], ["x y"], GenerationConfig())


def test_free_memory_respects_the_cgroup_limit(tmp_path):
    from tomlab.backends.batching import cgroup_room_bytes, free_memory_bytes

    assert cgroup_room_bytes(tmp_path) is None  # no cgroup files: no limit
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert cgroup_room_bytes(tmp_path) is None  # v2 without a limit
    (tmp_path / "memory.max").write_text(f"{2**30}\n")
    assert cgroup_room_bytes(tmp_path) == 2**30 - 1000
    assert free_memory_bytes("cpu", tmp_path) <= 2**30 - 1000  # a SLURM job's 1 GiB, not the node's memory
    (tmp_path / "memory.current").write_text(f"{2**31}\n")
    assert cgroup_room_bytes(tmp_path) == 0
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory/memory.limit_in_bytes").write_text(f"{4 * 2**30}\n")
    (v1 / "memory/memory.usage_in_bytes").write_text(f"{2**30}\n")
    assert cgroup_room_bytes(v1) == 3 * 2**30
    (v1 / "memory/memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert cgroup_room_bytes(v1) is None


def test_only_the_prompts_that_do_not_fit_run_their_interventions_in_groups(many_kv, monkeypatch):
    lm = many_kv
    tok = lm.tokenizer
    long_prompt = " ".join(PROMPTS * 6)
    ids = [tok(p)["input_ids"] for p in [long_prompt, *PROMPTS[1:4]]]
    config = GenerationConfig(max_new_tokens=3, chat_template=False)
    ivs = _interventions(lm, 6)
    free = Branches(lm, [iv.hook(lm) for iv in ivs], batch_size=4, progress=False)
    done_free, scores_free = free.run(ids, config, [[[5, 6] for _ in ids]])
    short = max(len(i) for i in ids[1:]) + 3
    budget = row_bytes(lm, len(ids[0]) + 3, 3) * 2 + 1  # two of the long prompt's branches per pass
    assert row_bytes(lm, short, 3) * 6 <= budget  # while a short prompt's six branches fit one pass
    small = capped(lm, budget)
    tight = Branches(small, [iv.hook(small) for iv in ivs], batch_size=4, progress=False)
    grouped: list[list[int]] = []
    original = Branches._in_groups

    def spy(self, prompts, *args, **kwargs):
        grouped.append([len(p) for p in prompts])
        return original(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Branches, "_in_groups", spy)
    done, scores = tight.run(ids, config, [[[5, 6] for _ in ids]])
    assert [[c.text for c in row] for row in done] == [[c.text for c in row] for row in done_free]
    np.testing.assert_allclose(scores, scores_free, atol=1e-3)
    assert grouped == [[len(ids[0])]]  # only the long prompt's interventions went in groups
    assert tight.peak_rows >= 6 and tight.peak_cache_bytes <= budget  # the short ones branched all six at once


def test_the_auto_batch_size_follows_the_models_own_budget(many_kv):
    from tomlab.backends.batching import CPU_CAP, auto_batch_size

    per_sequence = kv_bytes_per_token(many_kv) * 2048
    assert auto_batch_size(capped(many_kv, 3 * per_sequence + 1)) == 3  # the model's budget, not the module's share
    assert auto_batch_size(capped(many_kv, per_sequence // 2)) == 1
    assert auto_batch_size(capped(many_kv, (CPU_CAP + 5) * per_sequence)) == CPU_CAP
