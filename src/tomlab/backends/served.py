"""A client for any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) behind the LanguageModel interface."""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from tomlab.backends.lm import (
    Completion,
    GenerationConfig,
    LanguageModel,
    Prompt,
    normalize_prompt,
    prompt_text,
)
from tomlab.schema import served_spec_problems

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
#: How much of an error answer's body goes into the message.
DETAIL_CHARS = 300


class ServerError(RuntimeError):
    """The server answered with an error, or did not answer after every retry."""


# --- the key never leaves ------------------------------------------------------------------------
def _hex_form(number: int, width: int) -> str:
    return "".join(f"[{h}{h.upper()}]" if h.isalpha() else h for h in f"{number:0{width}x}")


def _char_pattern(char: str) -> str:
    """A regex for one character as a server may echo it: itself, a JSON ``\\uXXXX`` escape, ``\\/`` for a
    slash, a ``%XX`` URL escape."""
    forms = [re.escape(char), r"\\u" + _hex_form(ord(char), 4)]
    if ord(char) < 128:
        forms.append("%" + _hex_form(ord(char), 2))
    if char == "/":
        forms.append(r"\\/")
    return "(?:" + "|".join(forms) + ")"


def _key_pattern(key: str) -> str:
    return "".join(_char_pattern(c) for c in key)


def redact(text: str, key: str | None) -> str:
    """``text`` with ``key`` blanked in every form a server may echo it in (as is, JSON- or URL-escaped, in
    any mix), and any bearer token."""
    if key and len(key) >= 4:
        text = re.sub(_key_pattern(key), "[redacted]", text)
    return re.sub(r"(?i)(bearer(?:\s|\\u0020)+)\S+", r"\1[redacted]", text)


def redacted_excerpt(text: str, key: str | None, limit: int = DETAIL_CHARS) -> str:
    """The first ``limit`` characters of ``text``, redacted before the cut; a start of the key (6 characters
    or more, in any of the forms :func:`redact` knows, a broken escape after it) left at the end is blanked
    too (the cut, or the server's own, fell inside the key)."""
    text = redact(text, key)[:limit]
    for n in range(len(key or "") - 1, 5, -1):
        start = _key_pattern(key[:n]) if key else ""
        tail = re.search(start + r"(?:\\(?:u[0-9a-fA-F]{0,3})?|%[0-9a-fA-F]?)?$", text)
        if tail:
            return text[:tail.start()] + "[redacted]"
    return text


# --- one request, within its deadline ------------------------------------------------------------
class _Deadline:
    """Shuts down the sockets of one request when its time is up, so that no read (of the headers or the
    body, however slowly the server trickles them) outlives it; ``finish()`` says whether it came first."""

    def __init__(self, seconds: float) -> None:
        self.sockets: list[socket.socket] = []
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.finish()
        self._timer.cancel()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self.sockets.append(sock)
            if self.fired:
                _shut(sock)

    def finish(self) -> bool:
        """Stop watching; whether the deadline had passed first (then what was read may be cut short)."""
        with self._lock:
            self._done = True
            return self.fired

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self.sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's opener (proxies from the environment as usual) whose connections report their sockets."""

    def tracked(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
        class Tracked(base):  # type: ignore[valid-type,misc]
            def connect(self) -> None:
                super().connect()
                deadline.track(self.sock)

        return Tracked

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(tracked(http.client.HTTPConnection), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(tracked(http.client.HTTPSConnection), req, context=ssl.create_default_context())

    return urllib.request.build_opener(Http, Https)


def exchange(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
    """(HTTP status, body) of one request, the whole of it (connection, headers, body) within ``timeout``
    seconds: a :class:`TimeoutError` otherwise."""
    late = TimeoutError(f"timed out: no complete answer within {timeout:g} s")
    with _Deadline(timeout) as deadline:
        try:
            try:
                with _opener(deadline).open(request, timeout=timeout) as response:
                    status, body = response.status, response.read()
            except urllib.error.HTTPError as err:
                try:
                    status, body = err.code, err.read()
                finally:
                    err.close()
        except (OSError, http.client.HTTPException, ValueError):  # ValueError: a TLS socket shut mid-read
            if deadline.finish():
                raise late from None
            raise
        if deadline.finish():
            raise late
    return status, body


# --- the answer ----------------------------------------------------------------------------------
def _tokens(usage: Any, field: str) -> int:
    """A token count of the answer's ``usage``; 0 (unknown) when it is missing or malformed."""
    value = usage.get(field) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0
    return int(value)


def parse_answer(answer: Any, chat: bool, where: str) -> tuple[str, Any, int, int]:
    """(text, finish reason, prompt tokens, completion tokens) of a completions answer; a
    :class:`ServerError` naming ``where`` when its shape is not a completion's (missing text is empty,
    text that is not a string is refused; malformed usage counts as unknown, 0)."""
    field = "content" if chat else "text"
    try:
        choice = answer["choices"][0]
        text = (choice["message"] if chat else choice).get(field)
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ServerError(f"{where}: unexpected answer shape") from None
    if text is not None and not isinstance(text, str):
        raise ServerError(f"{where}: unexpected answer shape (its {field} is {type(text).__name__}, not text)")
    usage = answer.get("usage")
    return text or "", choice.get("finish_reason"), _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")


class OpenAICompatibleLM(LanguageModel):
    """A served model; ``timeout`` bounds each request as a whole (a server that trickles its answer does
    not hold the client), and a request that fails for a passing reason (5xx, 429, a dropped connection,
    a timeout, a body that is not JSON) is tried again ``max_retries`` times."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5, concurrency: int = 4) -> None:
        super().__init__()
        problems = served_spec_problems({"base_url": base_url, "api_key_env": api_key_env}, "served model")
        if problems:
            raise ValueError("; ".join(problems))
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def _redact(self, text: str) -> str:
        """``text`` with the API key (the value of ``api_key_env``) and any bearer token blanked: a server
        that echoes the request must not put the key into errors and logs."""
        return redact(text, self._key())

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleLM(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    @property
    def model_id(self) -> str:
        return f"openai-compatible:{self.model}@{self.base_url}"

    # --- HTTP --------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            try:
                status, raw = exchange(request, self.timeout)
            except http.client.HTTPException as err:  # IncompleteRead, a closed connection, a garbled status line
                last = f"the connection to {url} dropped mid-answer ({type(err).__name__})"
                continue
            except OSError as err:
                last = self._redact(f"{type(err).__name__} talking to {url}: {getattr(err, 'reason', err)}")
                continue
            if status >= 400:
                last = f"HTTP {status} from {url}: {redacted_excerpt(raw.decode('utf-8', 'replace'), self._key())}"
                if status not in RETRY_STATUS:
                    raise ServerError(last)
                continue
            try:
                return json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                last = f"{url} answered with a body that is not UTF-8 text"
            except json.JSONDecodeError:
                last = f"{url} answered with something that is not JSON"
        raise ServerError(f"{last} (after {self.max_retries + 1} attempts)")

    # --- LanguageModel -----------------------------------------------------------------------
    def _one(self, prompt: Prompt, config: GenerationConfig) -> Completion:
        body: dict[str, Any] = {"model": self.model, "max_tokens": int(config.max_new_tokens),
                                "temperature": float(config.temperature), "top_p": float(config.top_p)}
        if not config.greedy:
            body["seed"] = int(config.seed)
        if config.stop:
            body["stop"] = list(config.stop)
        if config.chat_template:
            norm = normalize_prompt(prompt)
            messages = [{"role": "user", "content": norm}] if isinstance(norm, str) else list(norm)
            path, out = "/chat/completions", self._post("/chat/completions", {**body, "messages": messages})
        else:
            path, out = "/completions", self._post("/completions", {**body, "prompt": prompt_text(prompt)})
        answer = parse_answer(out, bool(config.chat_template), self.base_url + path)
        text, finish, prompt_tokens, completion_tokens = answer
        reason = "length" if finish == "length" else "stop"
        for s in config.stop:  # servers differ on whether the stop string is kept
            cut = text.find(s)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        return Completion(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          finish_reason=reason)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        prompts = list(prompts)
        if len(prompts) <= 1 or self.concurrency == 1:
            out = [self._one(p, config) for p in prompts]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
                out = list(pool.map(lambda p: self._one(p, config), prompts))
        self._record(out)
        return out
