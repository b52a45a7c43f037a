"""The OpenAI-compatible client against a real server: ``transformers serve`` (an OpenAI-compatible
FastAPI server from the transformers package) started by the test on a tiny random local model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tomlab.backends.lm import CachedLM, GenerationConfig
from tomlab.backends.lockstep import run_lockstep
from tomlab.backends.served import OpenAICompatibleLM, ServerError
from tomlab.debate.protocol import DebateConfig, debate

pytestmark = pytest.mark.slow

SECRET = "sk-tomlab-test-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # The server's own dependencies are test extras (pyproject): a missing one must fail, not skip.
    import fastapi  # noqa: F401
    import torch
    import uvicorn  # noqa: F401

    from tomlab.backends.models import build_random_model

    folder = tmp_path_factory.mktemp("tiny-model")
    model, tok = build_random_model("llama", {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                              "num_attention_heads": 2, "num_key_value_heads": 1},
                                    seed=0, device=torch.device("cpu"), dtype=torch.float32)
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    port = _free_port()
    exe = Path(sys.executable).parent / "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([str(exe), "serve", str(folder), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((folder / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("transformers serve did not come up within 180 s")
    yield {"url": f"{url}/v1", "model": str(folder), "log": folder / "server.log"}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_chat_and_text_completions_with_token_accounting(server):
    lm = OpenAICompatibleLM(server["url"], server["model"], api_key_env=None, timeout=60)
    out = lm.generate(["Hello", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]],
                      GenerationConfig(max_new_tokens=4))
    assert len(out) == 2 and all(c.prompt_tokens > 0 and 0 < c.completion_tokens <= 4 for c in out)
    assert all(c.finish_reason in ("stop", "length") for c in out)
    assert lm.usage.completions == 2 and lm.usage.prompt_tokens == sum(c.prompt_tokens for c in out)
    text = lm.generate(["Story: once upon a time"], GenerationConfig(max_new_tokens=3, chat_template=False))
    assert text[0].completion_tokens > 0


def test_api_key_is_sent_from_the_environment_and_never_written(server, tmp_path, monkeypatch):
    monkeypatch.setenv("TOMLAB_TEST_KEY", SECRET)
    lm = OpenAICompatibleLM(server["url"], server["model"], api_key_env="TOMLAB_TEST_KEY")
    assert lm._headers()["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(lm) and SECRET not in lm.model_id and SECRET not in str(vars(lm))
    cached = CachedLM(lm, tmp_path / "cache")
    first = cached.generate(["Hello there"], GenerationConfig(max_new_tokens=3))
    again = cached.generate(["Hello there"], GenerationConfig(max_new_tokens=3))
    assert again[0].text == first[0].text and cached.hits == 1 and lm.usage.completions == 1
    for f in (tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(encoding="utf-8")
    assert SECRET not in server["log"].read_text()


def test_errors_are_clear_retried_and_keyless(server, monkeypatch):
    monkeypatch.setenv("TOMLAB_TEST_KEY", SECRET)
    bad_path = OpenAICompatibleLM(server["url"].replace("/v1", "/nope"), server["model"],
                                  api_key_env="TOMLAB_TEST_KEY", max_retries=3, backoff=5.0)
    start = time.time()
    with pytest.raises(ServerError, match="HTTP 404") as err:
        bad_path.generate(["x"], GenerationConfig(max_new_tokens=2))
    assert time.time() - start < 4.0  # a 404 is not retried
    assert SECRET not in str(err.value)
    dead = OpenAICompatibleLM(f"http://127.0.0.1:{_free_port()}/v1", "m", api_key_env="TOMLAB_TEST_KEY",
                              max_retries=2, backoff=0.01, timeout=2)
    with pytest.raises(ServerError, match="after 3 attempts") as err:
        dead.generate(["x"], GenerationConfig(max_new_tokens=2))
    assert SECRET not in str(err.value)
    with pytest.raises(ValueError, match="http"):
        OpenAICompatibleLM("localhost:8000", "m")


def test_a_debate_runs_against_the_server(server):
    lm = OpenAICompatibleLM(server["url"], server["model"], api_key_env=None)
    cfg = DebateConfig(rounds=2, max_new_tokens=6, judge_max_new_tokens=6)
    (res,) = run_lockstep([debate("q", "What is 2 + 3?", cfg)], {"affirmative": lm, "negative": lm, "judge": lm})
    assert len(res.turns) >= 2 and res.judge and res.prompt_tokens > 0
    assert all(j["parsed"] in (True, False) for j in res.judge)  # random text: recorded, not fatal


def test_team_episodes_run_against_the_server(server, tmp_path, capsys):
    """Whole (short) team-game episodes played by a served model through the same command the pipeline runs,
    with the ToM questions, the token cost per episode, and the completion cache (a rerun asks nothing)."""
    import json

    import pandas as pd

    from tomlab.cli.main import main

    spec = json.dumps({"base_url": server["url"], "model": server["model"], "api_key_env": None, "concurrency": 2})
    team = json.dumps({"max_rounds": 2})
    llm = json.dumps({"max_new_tokens": 8, "tom_max_new_tokens": 3, "belief_max_new_tokens": 8})
    args = ["team-play", "--agent-type", "llm_belief", "--team-json", team, "--seeds", "2", "--model-json", spec,
            "--llm-json", llm, "--completion-cache", str(tmp_path / "cache"), "--out-episodes",
            str(tmp_path / "ep.parquet"), "--out-tom", str(tmp_path / "tom.parquet"), "--transcripts", str(tmp_path / "tr")]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    episodes = pd.read_parquet(tmp_path / "ep.parquet")
    assert len(episodes) == 2 and (episodes["rounds_played"] >= 1).all()
    assert (episodes["calls"] > 0).all() and (episodes["prompt_tokens"] > 0).all()
    assert (episodes["total_tokens"] == episodes["prompt_tokens"] + episodes["completion_tokens"]).all()
    # ToM questions follow valid moves, inspections and cuts, which a random model rarely makes
    assert {"question", "answer", "truth"} <= set(pd.read_parquet(tmp_path / "tom.parquet").columns)
    record = json.loads((tmp_path / "tr" / "seed0.jsonl").read_text().splitlines()[0])
    assert record["kind"] == "episode" and record["bombs"]
    assert first["cache_misses"] > 0
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["cache_misses"] == 0 and again["cache_hits"] == first["cache_hits"] + first["cache_misses"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ep.parquet"), episodes)


def test_plain_bigtom_evaluation_runs_against_the_server(server, tmp_path, capsys, generated_conditions):
    """The unsteered BigToM evaluation (evaluation.served) by generation through the same command the
    pipeline's evaluate_served rule runs; log-likelihoods are refused by name, the tables are written."""
    import json

    import pandas as pd

    from tomlab.bigtom.evaluation import build_items
    from tomlab.cli.main import main

    items = build_items(generated_conditions(4, 0), eval_fraction=0.5, seed=0, max_stories=1)
    items.to_parquet(tmp_path / "items.parquet")
    spec = json.dumps({"base_url": server["url"], "model": server["model"], "api_key_env": None})
    args = ["evaluate", "--model-json", spec, "--items", str(tmp_path / "items.parquet"), "--max-new-tokens", "4",
            "--modes", "generation", "--n-boot", "100", "--out", str(tmp_path / "scored.parquet"),
            "--out-table", str(tmp_path / "acc.parquet")]
    assert main(args) == 0
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(scored) == len(items) and scored["completion"].notna().all() and scored["valid"].notna().all()
    assert {"parsed_original", "parsed_lenient"} <= set(scored.columns)
    assert set(pd.read_parquet(tmp_path / "acc.parquet")["mode"]) == {"generation"}
    capsys.readouterr()
    both = [*args[:8], "generation", "log-likelihood", *args[9:]]
    with pytest.raises(SystemExit, match="generation only"):
        main(both)
