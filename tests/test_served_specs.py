"""Served-model specs are checked before anything reads them, and the key never leaks (issue 15,
defect 4; issue 26): wrong types and unknown keys are named, an inline key, a key in the URL, a key where a
variable's name or a model spec belongs are refused without being echoed, and a server that echoes the key
(whole, cut, or JSON-escaped) does not put it into the error.  The client against a misbehaving local
server (issue 26): a deadline for the whole request, a dropped connection retried, malformed usage and
content, a body that is not UTF-8."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tomlab.backends.build import served_model
from tomlab.backends.lm import GenerationConfig
from tomlab.backends.served import OpenAICompatibleLM, ServerError
from tomlab.schema import check_model_specs

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-never-echo-0123456789"


@pytest.mark.parametrize(("spec", "message"), [
    ({"base_url": 5}, "debate.models.judge.base_url: expected str, got int"),
    ({"base_url": "http://h/v1", "timeout": "soon"}, "debate.models.judge.timeout: expected int or float, got str"),
    ({"base_url": "http://h/v1", "max_retry": 2},
     "debate.models.judge.max_retry: unknown key of a served model (did you mean max_retries?)"),
    ({"base_url": "ftp://h/v1"}, "debate.models.judge.base_url: must start with http:// or https://"),
    ({"base_url": "http://h/v1", "concurrency": 0}, "debate.models.judge.concurrency: must be positive"),
])
def test_bad_served_specs_name_the_key(spec, message):
    with pytest.raises(ValueError) as err:
        check_model_specs({"debate": {"models": {"judge": spec}}})
    assert message in str(err.value)


@pytest.mark.parametrize("spec", [{"base_url": "http://h/v1", "api_key": SECRET},
                                  {"base_url": f"http://h/v1?key={SECRET}"},
                                  {"base_url": f"http://user:{SECRET}@h/v1"}])
def test_a_key_in_the_config_is_refused_and_not_echoed(spec):
    for config in ({"team": {"agent_models": {"alice": spec}}}, {"evaluation": {"served": spec}}):
        with pytest.raises(ValueError) as err:
            check_model_specs(config)
        assert SECRET not in str(err.value) and ("api_key_env" in str(err.value))
    with pytest.raises(ValueError) as err:
        served_model(spec, where="team.model")
    assert SECRET not in str(err.value)
    assert check_model_specs({"team": {"model": {"base_url": "http://h/v1", "api_key_env": "KEY"}}}) is None



def test_api_key_env_must_be_a_variable_name_and_is_not_echoed():
    for bad in (SECRET, "sk_live_0123456789abcdefXYZ", "MY KEY", "1KEY", ""):
        spec = {"base_url": "http://h/v1", "api_key_env": bad}
        with pytest.raises(ValueError) as err:
            check_model_specs({"debate": {"models": {"judge": spec}}})
        assert "debate.models.judge.api_key_env" in str(err.value)
        assert not bad or bad not in str(err.value)
        with pytest.raises(ValueError) as err:
            served_model(spec, where="team.model")
        assert "team.model.api_key_env" in str(err.value) and (not bad or bad not in str(err.value))
    for good in ("OPENAI_API_KEY", "HF_TOKEN", "_key2", None):
        assert check_model_specs({"team": {"model": {"base_url": "http://h/v1", "api_key_env": good}}}) is None


@pytest.mark.parametrize(("config", "where"), [
    ({"debate": {"models": {"judge": SECRET}}}, "debate.models.judge"),
    ({"debate": {"models": {"default": "not a name!"}}}, "debate.models.default"),
    ({"team": {"model": [SECRET]}}, "team.model"),
    ({"team": {"agent_models": {"alice": SECRET}}}, "team.agent_models.alice"),
    ({"models": {"big": SECRET}}, "models.big"),
    ({"evaluation": {"served": SECRET}}, "evaluation.served"),
    ({"debate": {"panel": ["tiny", SECRET]}}, "debate.panel[1]"),
    ({"team": {"panel": [{"key": SECRET}]}}, "team.panel[0]"),
])
def test_a_secret_or_a_non_spec_where_a_model_belongs_is_named_not_echoed(config, where):
    with pytest.raises(ValueError) as err:
        check_model_specs(config)
    assert where in str(err.value) and SECRET not in str(err.value) and "not a name!" not in str(err.value)


def test_model_names_where_a_model_belongs_pass():
    config = {"models": {"tiny": {"name": "random:llama"}},
              "debate": {"models": {"judge": "tiny", "default": None}, "panel": ["tiny"]},
              "team": {"model": "Llama-3.1-8B-Instruct", "agent_models": {"alice": "tiny"}},
              "evaluation": {"served": None}}
    assert check_model_specs(config) is None


# --- a local fake server: the first path segment chooses how it misbehaves -------------------------------
SLASHED = "sk-never/echo/0123456789"
HITS: Counter[str] = Counter()
CHAT = {"choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}


def _escape_all(text: str) -> str:
    return "".join(f"\\u{ord(c):04X}" for c in text)


ECHOES = {  # what the server says back to an unauthorised request, from the bearer token it was sent
    "echo": lambda t: f"unauthorised: Bearer {t}",
    "straddle": lambda t: "A" * 288 + t + " is not a valid key",  # the key crosses the 300-character cut
    "truncated": lambda t: "A" * 290 + t[:14],  # the server cut its own echo: a prefix at the cut
    "dash": lambda t: json.dumps({"error": "bad key " + t}).replace("-", "\\u002d"),
    "all": lambda t: '{"error": "bad key ' + _escape_all(t) + '"}',
    "slash": lambda t: '{"error": "bad key ' + t.replace("/", "\\/") + '"}',
}


class _Fake(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = self.path.strip("/").split("/")[0]
        HITS[mode] += 1
        self.close_connection = True
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if mode in ECHOES:
            self._send(401, ECHOES[mode](token).encode())
        elif mode in ("trickle", "trickle-head"):
            body = json.dumps(CHAT).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
            data = head + body if mode == "trickle-head" else body
            if mode == "trickle":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
            try:
                for i in range(len(data)):  # one byte every 0.4 s: each read is quick, the whole is not
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.4)
            except OSError:
                pass
        elif mode == "drop":
            self._send(200, json.dumps(CHAT).encode()[:20], length=500)  # then the connection closes
        elif mode == "usage":
            self._send(200, json.dumps({**CHAT, "usage": "lots"}).encode())
        elif mode == "usage-fields":
            self._send(200, json.dumps({**CHAT, "usage": {"prompt_tokens": "many", "completion_tokens": [1]}}).encode())
        elif mode == "content-int":
            self._send(200, json.dumps({**CHAT, "choices": [{"message": {"content": 123}}]}).encode())
        elif mode == "latin1":
            self._send(200, '{"choices": "caf\u00e9"}'.encode("latin-1"))

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield lambda mode: f"http://127.0.0.1:{server.server_port}/{mode}/v1"
    server.shutdown()
    server.server_close()


def _leaked(key: str, text: str) -> bool:
    """Whether 6 or more consecutive characters of ``key`` can be read in ``text``, as is or JSON-decoded."""
    decoded = text.replace("\\/", "/").encode("ascii", "backslashreplace").decode("unicode_escape")
    return any(key[i:i + 6] in t for i in range(len(key) - 5) for t in (text, decoded))


def test_a_server_that_echoes_the_key_does_not_put_it_into_the_error(monkeypatch, fake):
    monkeypatch.setenv("TOMLAB_TEST_KEY", SECRET)
    lm = OpenAICompatibleLM(fake("echo"), "m", api_key_env="TOMLAB_TEST_KEY", max_retries=0)
    with pytest.raises(ServerError) as err:
        lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert "HTTP 401" in str(err.value) and SECRET not in str(err.value) and "[redacted]" in str(err.value)
    assert SECRET not in repr(lm) and SECRET not in lm.model_id


@pytest.mark.parametrize(("mode", "key"), [("straddle", SECRET), ("truncated", SECRET), ("dash", SECRET),
                                           ("all", SECRET), ("slash", SLASHED), ("all", SLASHED)])
def test_a_key_echoed_cut_or_json_escaped_is_redacted(monkeypatch, fake, mode, key):
    monkeypatch.setenv("TOMLAB_TEST_KEY", key)
    lm = OpenAICompatibleLM(fake(mode), "m", api_key_env="TOMLAB_TEST_KEY", max_retries=0)
    with pytest.raises(ServerError) as err:
        lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert "HTTP 401" in str(err.value) and "[redacted]" in str(err.value)
    assert not _leaked(key, str(err.value)), str(err.value)


@pytest.mark.parametrize("mode", ["trickle", "trickle-head"])
def test_the_timeout_is_a_deadline_for_the_whole_request(fake, mode):
    """The server sends a byte every 0.4 s (the answer would take about 40 timeouts): each read is within
    the 1 s timeout, the request is not."""
    timeout = 1.0
    lm = OpenAICompatibleLM(fake(mode), "m", api_key_env=None, timeout=timeout, max_retries=0)
    start = time.monotonic()
    with pytest.raises(ServerError) as err:
        lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert time.monotonic() - start < 3 * timeout
    assert fake(mode) in str(err.value) and "timed out" in str(err.value)


def test_a_connection_dropped_mid_answer_is_retried_then_named(fake):
    lm = OpenAICompatibleLM(fake("drop"), "m", api_key_env=None, max_retries=1, backoff=0.01)
    before = HITS["drop"]
    with pytest.raises(ServerError) as err:
        lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert HITS["drop"] - before == 2 and "after 2 attempts" in str(err.value)
    assert f"{fake('drop')}/chat/completions" in str(err.value) and "dropped" in str(err.value)


@pytest.mark.parametrize("mode", ["usage", "usage-fields"])
def test_malformed_usage_counts_as_unknown(fake, mode):
    lm = OpenAICompatibleLM(fake(mode), "m", api_key_env=None, max_retries=0)
    (out,) = lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert out.text == "hi" and out.prompt_tokens == 0 and out.completion_tokens == 0


def test_content_that_is_not_text_is_a_malformed_answer(fake):
    lm = OpenAICompatibleLM(fake("content-int"), "m", api_key_env=None, max_retries=0)
    with pytest.raises(ServerError, match="unexpected answer") as err:
        lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert f"{fake('content-int')}/chat/completions" in str(err.value) and "int" in str(err.value)


def test_a_body_that_is_not_utf8_names_the_server(fake):
    lm = OpenAICompatibleLM(fake("latin1"), "m", api_key_env=None, max_retries=0)
    with pytest.raises(ServerError) as err:
        lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
    assert f"{fake('latin1')}/chat/completions" in str(err.value) and "UTF-8" in str(err.value)
