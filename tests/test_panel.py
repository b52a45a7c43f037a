"""The panel of models (issue 23): names and specs, per-experiment lists, gathering, the manifest's
per-model views, the report helpers that set models side by side, and Gemma 3's wide heads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tomlab.manifest import Manifest, ManifestError
from tomlab.panel import experiment_panel, gather, model_name, model_panel, resolve_spec
from tomlab.report import models as MD

REPO = Path(__file__).resolve().parents[1]
SERVED = {"base_url": "http://127.0.0.1:9/v1", "model": "org/Served-8B"}
GEMMA_GEOMETRY = {"hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                  "head_dim": 32, "num_key_value_heads": 1}


# ----------------------------------------------------------------------------- names and specs


@pytest.mark.parametrize("spec, name", [
    ({"name": "embedded:smollm2-135m-instruct"}, "smollm2-135m-instruct"),
    ({"name": "random:gemma3_text"}, "random-gemma3_text"),
    ({"name": "mistralai/Mistral-7B-Instruct-v0.2"}, "Mistral-7B-Instruct-v0.2"),
    ({"name": "/data/models/my model/"}, "my-model"),
    (SERVED, "Served-8B"),
])
def test_a_spec_gets_a_short_folder_safe_name(spec, name):
    assert model_name(spec) == name


def test_model_alone_is_a_panel_of_one_with_the_schema_defaults():
    panel = model_panel({"model": {"name": "random:llama"}})
    assert list(panel) == ["random-llama"]
    assert panel["random-llama"]["dtype"] == "auto" and panel["random-llama"]["gpu"] == 0


def test_models_win_over_a_model_layered_under_them():
    panel = model_panel({"model": {"name": "random:llama"}, "models": {"a": {"name": "random:gpt2"}, "b": SERVED}})
    assert list(panel) == ["a", "b"] and panel["a"]["name"] == "random:gpt2" and panel["b"] == SERVED


@pytest.mark.parametrize("models, words", [
    ({"../up": {"name": "random:llama"}}, "'../up' is not a short name"),
    ({"a/b": {"name": "random:llama"}}, "is not a short name"),
    ({"a": "random:llama"}, "models.a: a model spec is a mapping"),
    ({"a": {"name": "random:llama", "dtyp": "float32"}}, "models.a.dtyp: unknown key"),
    ({"a": {"dtype": "float32"}}, "models.a: a local model needs a non-empty name"),
    ({"a": {**SERVED, "concurrency": 0}}, "models.a.concurrency: must be positive"),
])
def test_a_bad_panel_entry_is_refused_by_name(models, words):
    with pytest.raises(ValueError, match=None) as err:
        model_panel({"models": models})
    assert words in str(err.value)


def test_an_inline_key_in_the_panel_is_refused_without_being_echoed():
    secret = "sk-panel-0123456789abcdef"
    with pytest.raises(ValueError) as err:
        model_panel({"models": {"x": {**SERVED, "api_key": secret}}})
    assert "models.x: an inline API key is refused" in str(err.value) and secret not in str(err.value)


def test_experiment_panels_default_to_what_each_experiment_can_run():
    panel = model_panel({"models": {"a": {"name": "random:llama"}, "s": SERVED}})
    assert experiment_panel({}, "probing", panel) == ["a"]  # needs weights: the served one is left out
    assert experiment_panel({}, "team", panel) == ["a", "s"]
    assert experiment_panel({"debate": {"panel": ["s"]}}, "debate", panel) == ["s"]


@pytest.mark.parametrize("experiment", ["probing", "steering", "stress"])
def test_a_served_model_is_refused_where_weights_are_needed(experiment):
    panel = model_panel({"models": {"a": {"name": "random:llama"}, "s": SERVED}})
    with pytest.raises(ValueError, match=rf"'{experiment}.panel': \['s'\] is a served model"):
        experiment_panel({experiment: {"panel": ["a", "s"]}}, experiment, panel)


def test_an_unknown_panel_name_is_refused_with_the_known_ones():
    panel = model_panel({"models": {"a": {"name": "random:llama"}}})
    with pytest.raises(ValueError, match=r"'team.panel': \['b'\] not in the panel \(models: \['a'\]\)"):
        experiment_panel({"team": {"panel": ["b"]}}, "team", panel)
    secret = "sk-pasted-0123456789"
    with pytest.raises(ValueError, match="'debate.models.judge': a string here must be a panel model's name") as err:
        resolve_spec(secret, panel, "debate.models.judge")
    assert secret not in str(err.value)  # a key pasted where a name belongs is not repeated
    assert resolve_spec("a", panel, "x")["name"] == "random:llama" and resolve_spec(None, panel, "x") is None


def test_gather_puts_the_model_first_and_refuses_a_second_model_column():
    out = gather({"a": pd.DataFrame({"x": [1, 2]}), "b": pd.DataFrame({"x": [3]})})
    assert list(out.columns) == ["model", "x"] and list(out["model"]) == ["a", "a", "b"]
    with pytest.raises(ValueError, match="model 'a' already has a 'model' column"):
        gather({"a": pd.DataFrame({"model": ["z"]})})


# ----------------------------------------------------------------------------- the manifest's views


def _two_model_manifest(tmp_path: Path) -> Manifest:
    for model, acc in (("m1", 0.4), ("m2", 0.9)):
        d = tmp_path / model
        d.mkdir()
        pd.DataFrame({"task": ["fb", "fa"], "acc": [acc, acc / 2]}).to_parquet(d / "t.parquet")
        from PIL import Image

        Image.new("RGB", (40, 20), "red" if model == "m1" else "blue").save(d / "f.png")
    pd.DataFrame({"word": ["w"]}).to_parquet(tmp_path / "shared.parquet")
    entries = {"shared": "shared.parquet",
               "models": {m: {"table": f"{m}/t.parquet", "figs": {"acc": f"{m}/f.png"}} for m in ("m1", "m2")}}
    entries["models"]["m2"]["only_m2"] = "m2/t.parquet"
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(entries))
    return Manifest.load(path)


def test_a_model_view_has_its_own_entries_over_the_shared_ones(tmp_path):
    m = _two_model_manifest(tmp_path)
    assert m.panel == ["m1", "m2"]
    view = m.model("m2")
    assert view.path("table") == tmp_path / "m2/t.parquet" and view.path("shared") == tmp_path / "shared.parquet"
    with pytest.raises(ManifestError, match="has no model 'm3'"):
        m.model("m3")
    again = Manifest(m.to_dict())  # round trip keeps the models
    assert again.panel == ["m1", "m2"] and again.model("m1").path("table") == tmp_path / "m1/t.parquet"
    with pytest.raises(TypeError, match="entry 'models' must map each model's name to its entries"):
        Manifest({"models": {"m1": "a/path"}})


def _acc(view: Manifest) -> pd.DataFrame:
    return pd.read_parquet(view.path("table"))


def test_tables_stack_with_a_model_column_and_skip_a_model_without_the_result(tmp_path):
    m = _two_model_manifest(tmp_path)
    both = MD.table(m, _acc)
    assert list(both.columns) == ["model", "task", "acc"] and list(both["model"]) == ["m1", "m1", "m2", "m2"]
    only = MD.table(m, lambda v: pd.read_parquet(v.path("only_m2")))
    assert "model" not in only.columns and len(only) == 2  # one model has it: shown as it is
    wide = MD.side_by_side(m, _acc, ["task"])
    assert list(wide.columns) == ["task", "m1: acc", "m2: acc"] and wide["m2: acc"].tolist() == [0.9, 0.45]
    text = MD.text(m, lambda v: f"{pd.read_parquet(v.path('table'))['acc'].iloc[0]:.1f}")
    assert text == "**m1.** 0.4\n\n**m2.** 0.9"


def test_a_figure_gets_one_panel_per_model(tmp_path):
    from io import BytesIO

    from PIL import Image

    m = _two_model_manifest(tmp_path)
    stacked = Image.open(BytesIO(MD.figure(m, "figs", "acc")))
    assert stacked.height > 2 * 20 and stacked.getpixel((20, stacked.height - 5)) == (0, 0, 255)
    assert MD.figure(m, "figs", "acc", first=True) == (tmp_path / "m1/f.png").read_bytes()


def test_a_one_model_manifest_shows_tables_as_they_are(tmp_path):
    pd.DataFrame({"acc": [0.5]}).to_parquet(tmp_path / "t.parquet")
    m = Manifest({"table": str(tmp_path / "t.parquet")})
    assert list(MD.table(m, _acc).columns) == ["acc"] and MD.side_by_side(m, _acc, []).shape == (1, 1)


# ----------------------------------------------------------------------------- Gemma 3's wide heads


@pytest.fixture(scope="module")
def gemma():
    from tomlab.backends.models import load_model

    return load_model("random:gemma3_text", dtype="float32", device="cpu", random_config=GEMMA_GEOMETRY)


def test_attn_out_heads_are_equal_slices_of_the_hidden_size(gemma):
    from tomlab.backends.activations import extract_activations

    assert (gemma.n_heads, gemma.head_dim, gemma.hidden_size) == (4, 32, 48)
    acts = extract_activations(gemma, ["Anna puts the ball in the box.", "Bo"], progress=False)
    assert acts["attn_out"].shape == (2, 2, 4, 12) and acts["head_z"].shape == (2, 2, 4, 32)
    assert gemma.describe()["attn_out_width"] == 12


@pytest.mark.parametrize("site, width", [("attn_out", 12), ("head_z", 32)])
def test_an_intervention_moves_only_its_head_slice_at_both_sites(gemma, site, width):
    from tomlab.backends.hooks import HeadCapture, HeadIntervention

    enc = gemma.tokenizer(["Anna puts the ball in the box."], return_tensors="pt")
    theta = np.zeros((2, 4, width))
    theta[0, 2] = np.linspace(-1, 1, width)
    with torch.no_grad(), HeadCapture(gemma, [site]) as cap:
        gemma.model(**enc)
        plain = cap.take()[site][0, 0]
        with HeadIntervention(gemma, [(0, 2)], theta, np.ones((2, 4)), alpha=3.0, site=site):
            gemma.model(**enc)
        steered = cap.take()[site][0, 0]
    diff = (steered - plain).numpy()
    assert np.allclose(diff[2], 3.0 * theta[0, 2], atol=1e-5)
    assert np.allclose(np.delete(diff, 2, axis=0), 0.0)
    with pytest.raises(ValueError, match=r"directions must have shape \(2, 4, " + str(width) + r"\)"):
        HeadIntervention(gemma, [(0, 2)], np.zeros((2, 4, width + 1)), np.ones((2, 4)), alpha=1.0, site=site)


def test_a_model_without_a_chat_template_gets_plain_text_with_a_warning(gemma):
    from tomlab.backends.lm import GenerationConfig, TransformersLM

    gemma.tokenizer.chat_template = None
    lm = TransformersLM(gemma)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = lm.render("Question: where is the ball?", GenerationConfig(max_new_tokens=2, chat_template=True))
    assert text == "Question: where is the ball?"
    assert any("has no chat template" in str(w.message) for w in caught)


# ----------------------------------------------------------------------------- the workflow


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HF_HUB_OFFLINE": "1"}


def _dry(tmp_path: Path, *extra: str, configs: tuple[str, ...] = ("config/smoke.yaml", "config/smoke-panel.yaml")):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--cores", "2", "-n",
           *extra, "--configfile", *(str(REPO / c) for c in configs)]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)


def planned_models(out: str) -> dict[str, set[str]]:
    """rule -> the model wildcard values of its planned jobs, from a dry run's job listing."""
    found: dict[str, set[str]] = {}
    for block in out.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0].strip()
        for line in block.splitlines():
            if line.strip().startswith("wildcards:"):
                for part in line.split(":", 1)[1].split(","):
                    key, _, value = part.strip().partition("=")
                    if key == "model":
                        found.setdefault(rule, set()).add(value)
    return found


def test_the_panel_plans_every_model_dependent_job_once_per_model(tmp_path):
    proc = _dry(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = planned_models(proc.stdout)
    for rule in ("prepare_model", "extract_activations", "probe", "steer", "stress_verdicts", "team_play_llm",
                 "debate_run", "setup_summary"):
        assert models.get(rule) == {"random-llama", "gemma"}, rule
    assert "model" not in "".join(planned_models(proc.stdout).keys() & {"raw_stories", "team_train_mappo"})
    jobs = proc.stdout
    assert jobs.count("rule raw_stories:") == 1 and jobs.count("rule team_train_mappo:") == 1


def test_a_served_panel_model_in_steering_is_refused_before_anything_runs(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models:\n  a: {name: 'random:llama'}\n  far: {base_url: 'http://127.0.0.1:9/v1', model: m}\n"
                   "steering:\n  panel: [a, far]\n")
    proc = _dry(tmp_path, configs=("config/smoke.yaml", str(cfg)))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "'steering.panel': ['far'] is a served model" in out


def test_a_served_panel_model_plays_the_team_and_debate_without_weights(tmp_path):
    cfg = tmp_path / "served.yaml"
    cfg.write_text("models:\n  a: {name: 'random:llama'}\n  far: {base_url: 'http://127.0.0.1:9/v1', model: m}\n")
    proc = _dry(tmp_path, "-p", configs=("config/smoke.yaml", str(cfg)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = planned_models(proc.stdout)
    assert models["team_play_llm"] == {"a", "far"} and models["debate_run"] == {"a", "far"}
    assert models["prepare_model"] == {"a"} and models["extract_activations"] == {"a"}
    served_eval = [line for line in proc.stdout.splitlines() if " evaluate --model-json " in line and "127.0.0.1:9" in line]
    assert served_eval and all("--modes generation " in line for line in served_eval)


def test_the_probing_card_says_what_attn_out_heads_are_for_wide_heads():
    from tomlab.report.protocol import probing_card

    wide = probing_card({"model": {"n_heads": 4, "head_dim": 32, "hidden_size": 48}, "config": {}})
    row = wide[wide["aspect"] == "attn_out heads"]
    assert len(row) == 1 and "4 slices of 12" in row["this run"].iloc[0]
    plain = probing_card({"model": {"n_heads": 4, "head_dim": 16, "hidden_size": 64}, "config": {}})
    assert "attn_out heads" not in set(plain["aspect"])


def _tomlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tomlab", *args], capture_output=True, text=True, env=_env(), timeout=120)


def test_gather_keeps_the_rows_without_a_model_once(tmp_path):
    for model, score in (("a", 1.0), ("b", 2.0)):
        pd.DataFrame({"agent_type": ["random", "llm"], "score": [0.5, score]}).to_parquet(tmp_path / f"{model}.parquet")
    out = tmp_path / "out.parquet"
    proc = _tomlab("gather", "--table", f"a={tmp_path / 'a.parquet'}", f"b={tmp_path / 'b.parquet'}",
                   "--shared-rows", "agent_type=random,planner", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out)
    assert list(table.columns) == ["model", "agent_type", "score"]
    assert list(zip(table["model"], table["agent_type"], table["score"])) == [
        ("", "random", 0.5), ("a", "llm", 1.0), ("b", "llm", 2.0)]
    bad = _tomlab("gather", "--table", str(tmp_path / "a.parquet"), "--out", str(out))
    assert bad.returncode != 0 and "--table takes NAME=PATH" in bad.stderr
    twice = _tomlab("gather", "--table", f"a={tmp_path / 'a.parquet'}", f"a={tmp_path / 'b.parquet'}", "--out", str(out))
    assert twice.returncode != 0 and "'a' given twice" in twice.stderr
    col = _tomlab("gather", "--table", f"a={tmp_path / 'a.parquet'}", "--shared-rows", "kind=random", "--out", str(out))
    assert col.returncode != 0 and "no column 'kind'" in col.stderr


def test_a_team_model_given_as_a_section_plays_under_its_panel_name_or_its_own(tmp_path):
    same = tmp_path / "same.yaml"  # the smoke model written out again, defaults left to the schema
    same.write_text("team:\n  model: {name: 'random:llama', dtype: float32, device: cpu, random_config: "
                    "{hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, "
                    "num_key_value_heads: 2}}\n")
    proc = _dry(tmp_path, configs=("config/smoke.yaml", str(same)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = planned_models(proc.stdout)
    assert models["team_play_llm"] == {"random-llama"} and models["prepare_model"] == {"random-llama"}
    other = tmp_path / "other.yaml"  # another seed: another model, under a name of its own
    other.write_text(same.read_text().replace("device: cpu,", "device: cpu, seed: 3,"))
    proc = _dry(tmp_path, configs=("config/smoke.yaml", str(other)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = planned_models(proc.stdout)
    assert models["team_play_llm"] == {"random-llama-team"} and models["prepare_model"] == {"random-llama",
                                                                                            "random-llama-team"}


def test_the_probing_card_names_each_model_whose_heads_are_wider():
    from tomlab.report.protocol import probing_card

    panel = {"llama": {"model": {"n_heads": 4, "head_dim": 16, "hidden_size": 64}, "config": {}},
             "gemma": {"model": {"n_heads": 4, "head_dim": 32, "hidden_size": 48}, "config": {}}}
    card = probing_card(panel["llama"], panel=panel)
    assert [a for a in card["aspect"] if a.startswith("attn_out heads")] == ["attn_out heads (gemma)"]


def test_team_rows_name_the_panel_model_that_played_them():
    from tomlab.report.team import llm_model

    spec = {"name": "random:llama", "dtype": "float32"}
    setup = {"panel_name": "random-llama", "config": {"model": spec, "team": {"model": spec}}}
    assert llm_model(setup) == "random-llama"
    # an agent playing another panel model is shown by that model's name, a section by its own name
    setup["config"]["team"]["agent_models"] = {"bravo": "gemma", "charlie": {"name": "random:gpt2"}}
    assert llm_model(setup) == "random-llama; bravo: gemma; charlie: random:gpt2"
    # a setup written before panel names (or a team model other than the run's) keeps the spec's name
    assert llm_model({"config": {"model": spec, "team": {}}}) == "random:llama"
    other = {"panel_name": "random-llama", "config": {"model": spec, "team": {"model": {"name": "random:gpt2"}}}}
    assert llm_model(other) == "random:gpt2"
