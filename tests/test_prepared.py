"""One fast load per job (tomlab.backends.prepared): prepare_model writes a hub or local model once into the
cache as safetensors; later loads read it straight onto the device, with the same weights, holding about one
copy of the weights in host memory; a half-written folder is never used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tomlab.backends.prepared import MARKER, find_prepared, prepared_dir, prepared_key

# a random llama of about 300 MB in float32, saved as a local checkpoint folder
BIG = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 6, "num_attention_heads": 8,
       "num_key_value_heads": 8}

PROBE = """
import json, resource, sys
import torch, transformers  # noqa: F401  (imported before the baseline)
from tomlab.backends.models import load_model_from_config
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
lm = load_model_from_config(json.loads(sys.argv[1]), cache_dir=sys.argv[2])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.no_grad():
    checksum = float(sum(p.double().sum() for p in lm.model.parameters()))
print(json.dumps({"grown": peak - base, "prepared": lm.extra.get("prepared"), "checksum": checksum}))
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from tomlab.backends.models import build_random_model

    folder = tmp_path_factory.mktemp("ckpt") / "big-llama"
    model, tok = build_random_model("llama", BIG, seed=1)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_prepared_weights_load_fast_with_one_copy_in_host_memory(checkpoint, tmp_path):
    spec = {"name": str(checkpoint), "dtype": "float32", "device": "cpu"}
    cache = tmp_path / "cache"
    before = json.loads(_run("-c", PROBE, json.dumps(spec), str(cache)).stdout.strip().splitlines()[-1])
    assert before["prepared"] is None  # nothing prepared yet: loaded by name
    info_path = tmp_path / "info.json"
    proc = _run("-m", "tomlab", "prepare-model", "--model-json", json.dumps(spec), "--cache-dir", str(cache),
                "--out", str(info_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(info_path.read_text())
    weights = info["prepared_bytes"]
    assert Path(info["prepared"]) == prepared_dir(cache, spec, "float32") and weights > 250e6
    after = json.loads(_run("-c", PROBE, json.dumps(spec), str(cache)).stdout.strip().splitlines()[-1])
    assert after["prepared"] == info["prepared"]  # the job found the prepared folder
    assert after["checksum"] == pytest.approx(before["checksum"], rel=1e-9)  # the same weights
    assert after["grown"] < 1.5 * weights, (after["grown"], weights)  # about one copy, never two


def test_a_half_written_or_other_folder_is_not_used(tmp_path):
    spec = {"name": "org/model", "dtype": "float32"}
    folder = prepared_dir(tmp_path, spec, "float32")
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * 10)  # killed before its marker
    assert find_prepared(tmp_path, spec, "float32") is None
    (folder / MARKER).write_text("{}")
    assert find_prepared(tmp_path, spec, "float32") == folder
    # what decides the weights decides the folder
    keys = {prepared_key(s, d) for s, d in [(spec, "float32"), (spec, "bfloat16"), ({**spec, "revision": "abc"}, "float32"),
                                            ({**spec, "trust_remote_code": True}, "float32"),
                                            ({**spec, "device": "cuda"}, "float32")]}
    assert len(keys) == 4  # the device does not change the weights
    assert all("/" not in k and ".." not in k for k in keys)
    odd = prepared_key({"name": "../../etc/passwd"}, "float32")
    assert "/" not in odd and not odd.startswith(".")
