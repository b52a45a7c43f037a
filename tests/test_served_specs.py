"""Served-model specs are checked before anything reads them, and the key never leaks (issue 15,
defect 4): wrong types and unknown keys are named, an inline key or a key in the URL is refused without
being echoed, and a server that echoes the key does not put it into the error."""

from __future__ import annotations

import http.server
import threading
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


class _Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = f"unauthorised: {self.headers.get('Authorization')}".encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_server_that_echoes_the_key_does_not_put_it_into_the_error(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("TOMLAB_TEST_KEY", SECRET)
        lm = OpenAICompatibleLM(f"http://127.0.0.1:{server.server_port}/v1", "m", api_key_env="TOMLAB_TEST_KEY",
                                max_retries=0)
        with pytest.raises(ServerError) as err:
            lm.generate(["hi"], GenerationConfig(max_new_tokens=2))
        assert "HTTP 401" in str(err.value) and SECRET not in str(err.value) and "[redacted]" in str(err.value)
        assert SECRET not in repr(lm) and SECRET not in lm.model_id
    finally:
        server.shutdown()


