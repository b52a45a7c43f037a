"""The rehearsal at the paper models' geometry (config/rehearsal.yaml): random weights with Mistral-7B's and
DeepSeek-7B's heads and widths, a SentencePiece tokenizer with Mistral-Instruct's [INST] format built here.
On two CPU cores a 4096-wide model runs about 30 tokens a second, so the tests plan the whole paper run at
both geometries, run extraction on one story at depth 2, and run shared-prefix branches at DeepSeek's
geometry under a small memory budget (the whole DAG at that width is a GPU's job: README, "Running at
paper scale")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.test_pipeline import REPO, _snakemake
from tomlab.backends.random_tokenizers import INST_TEMPLATE, sentencepiece_inst_tokenizer

REHEARSAL = yaml.safe_load((REPO / "config/rehearsal.yaml").read_text())["models"]


def test_the_sentencepiece_tokenizer_encodes_anything_with_the_inst_format():
    tok = sentencepiece_inst_tokenizer()
    text = "Ada puts milk in the fridge. 你好, naïve café!"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id  # plain text gets a BOS, as Llama's and Mistral's tokenizers add
    assert tok.decode(ids, skip_special_tokens=True) == text  # byte fallback: nothing is lost
    assert "<unk>" not in tok.convert_ids_to_tokens(ids)
    pieces = tok.convert_ids_to_tokens(tok("the fridge")["input_ids"])
    assert all(p.startswith("▁") for p in pieces[1:]) and "▁the" in pieces  # words start with ▁, no merge across
    chat = tok.apply_chat_template([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}],
                                   tokenize=False, add_generation_prompt=True)
    assert chat == "<s>[INST] Be brief.\n\nHi [/INST]Hello</s>[INST] Bye [/INST]"
    assert sentencepiece_inst_tokenizer().get_vocab() == tok.get_vocab()  # built the same way every time
    assert tok.chat_template == INST_TEMPLATE


def test_the_rehearsal_config_has_the_paper_models_geometry_and_plans_the_paper_run(tmp_path, bigtom_csv):
    mistral, deepseek = REHEARSAL["mistral-geometry"]["random_config"], REHEARSAL["deepseek-geometry"]["random_config"]
    assert (mistral["hidden_size"], mistral["num_attention_heads"], mistral["head_dim"], mistral["num_key_value_heads"],
            mistral["intermediate_size"], mistral["num_hidden_layers"], mistral["vocab_size"]) == (
                4096, 32, 128, 8, 14336, 32, 32000)
    assert (deepseek["num_key_value_heads"], deepseek["num_hidden_layers"], deepseek["intermediate_size"],
            deepseek["vocab_size"]) == (32, 30, 11008, 102400)
    proc = _snakemake(tmp_path, "-n", "--configfile", str(REPO / "config/bigtom.yaml"), str(REPO / "config/paper.yaml"),
                      str(REPO / "config/rehearsal.yaml"), "--config", f"bigtom_csv={bigtom_csv}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    steer = out[out.index("rule steer:"):].split("Shell command", 1)[0]
    assert "gpu=1" in steer and "threads: 2" in steer  # the GPU job takes gpu_threads cores (capped at --cores 2)
    assert "model=mistral-geometry" in out and "model=deepseek-geometry" in out


@pytest.mark.slow
def test_the_rehearsal_runs_the_model_steps_at_mistral_geometry(tmp_path, bigtom_csv):
    small = tmp_path / "small.yaml"
    small.write_text(
        "models:\n  mistral-geometry: {random_config: {num_hidden_layers: 2}, device: cpu, gpu: 0}\n"
        "activations: {max_stories: 1, batch_size: 4}\n")
    acts = "results/models/mistral-geometry/activations/forward_belief/samples.parquet"
    proc = _snakemake(tmp_path, acts, "--configfile", str(REPO / "config/bigtom.yaml"),
                      str(REPO / "config/paper.yaml"), str(REPO / "config/rehearsal.yaml"), str(small),
                      "--config", f"bigtom_csv={bigtom_csv}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    info = json.loads((tmp_path / "results/models/mistral-geometry/info.json").read_text())
    assert (info["n_layers"], info["n_heads"], info["head_dim"], info["hidden_size"]) == (2, 32, 128, 4096)
    samples = pd.read_parquet(tmp_path / acts)
    head_z = np.load(tmp_path / "results/models/mistral-geometry/activations/forward_belief/head_z.npy")
    assert head_z.shape == (len(samples), 2, 32, 128) and np.isfinite(head_z).all()
    assert samples["n_tokens"].min() > 100  # BigToM prompts through the SentencePiece tokenizer


@pytest.mark.slow
def test_shared_prefix_branches_at_deepseek_geometry_stay_within_a_small_budget():
    import dataclasses

    from tomlab.backends.branching import Branches
    from tomlab.backends.lm import GenerationConfig
    from tomlab.backends.memory import MemoryPlan, row_bytes
    from tomlab.backends.models import load_model
    from tomlab.steering.directions import random_directions
    from tomlab.steering.intervention import Intervention

    geometry = {**REHEARSAL["deepseek-geometry"]["random_config"], "num_hidden_layers": 1}
    lm = load_model("random:llama", dtype="float32", device="cpu", random_config=geometry,
                    random_tokenizer_kind="sentencepiece_inst")
    prompts = ["Story: Ada puts milk in the fridge. The fridge breaks while Ada is out. Question: is the milk cold?",
               "Story: Bo leaves his keys on the desk. His sister moves them. Question: where will Bo look?",
               "Story: Cy plants tomatoes and sleeps; a frost comes. Question: does Cy think they are fine?"]
    ids = [lm.tokenizer(p)["input_ids"] for p in prompts]
    theta = random_directions(lm.n_layers, lm.n_heads, lm.head_dim, seed=0)
    base = Intervention(site="head_z", heads=[(0, 3), (0, 17)], directions=theta, sigma=np.ones((1, 32)), alpha=0.0)
    ivs = [base.with_alpha(a) for a in (0.0, 10.0, -10.0, 30.0)]
    config = GenerationConfig(max_new_tokens=3, chat_template=False)
    free = Branches(lm, [iv.hook(lm) for iv in ivs], batch_size=3, progress=False)
    done_free, _ = free.run(ids, config)
    longest = max(len(i) for i in ids) + 3
    budget = row_bytes(lm, longest, 1) * 4 + 1  # one prompt's four branches per pass
    small = dataclasses.replace(lm, memory=MemoryPlan(budget_bytes=budget))
    tight = Branches(small, [iv.hook(small) for iv in ivs], batch_size=3, progress=False)
    done, _ = tight.run(ids, config)
    assert free.peak_rows == 12 and tight.peak_rows == 4
    assert tight.peak_cache_bytes <= budget < free.peak_rows * row_bytes(lm, longest, 1)
    # DeepSeek's 32 key/value heads: 2 x 32 x 128 x 4 bytes per token and layer
    assert tight.peak_cache_bytes >= 4 * min(len(i) for i in ids) * 2 * 32 * 128 * 4
    assert [[c.text for c in row] for row in done] == [[c.text for c in row] for row in done_free]
