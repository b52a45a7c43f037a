"""A client for any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API) behind the LanguageModel interface."""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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


class ServerError(RuntimeError):
    """The server answered with an error, or did not answer after every retry."""


class OpenAICompatibleLM(LanguageModel):
    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 0.5, concurrency: int = 4) -> None:
        super().__init__()
        problems = served_spec_problems({"base_url": base_url}, "base_url")
        if problems:
            raise ValueError("; ".join(problems))
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.concurrency = max(1, int(concurrency))

    def _redact(self, text: str) -> str:
        """``text`` with the API key (the value of ``api_key_env``) and any bearer token blanked: a server
        that echoes the request must not put the key into errors and logs."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key and len(key) >= 4:
            text = text.replace(key, "[redacted]")
        return re.sub(r"(?i)(bearer\s+)\S+", r"\1[redacted]", text)

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleLM(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    @property
    def model_id(self) -> str:
        return f"openai-compatible:{self.model}@{self.base_url}"

    # --- HTTP --------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as err:
                detail = self._redact(err.read().decode("utf-8", "replace")[:300])
                last = f"HTTP {err.code} from {url}: {detail}"
                if err.code not in RETRY_STATUS:
                    raise ServerError(last) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                last = self._redact(f"{type(err).__name__} talking to {url}: {getattr(err, 'reason', err)}")
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
            out = self._post("/chat/completions", {**body, "messages": messages})
            try:
                choice = out["choices"][0]
                text = choice["message"].get("content") or ""
            except (KeyError, IndexError, TypeError, AttributeError):
                raise ServerError(f"{self.base_url}/chat/completions: unexpected answer shape") from None
        else:
            out = self._post("/completions", {**body, "prompt": prompt_text(prompt)})
            try:
                choice = out["choices"][0]
                text = choice.get("text") or ""
            except (KeyError, IndexError, TypeError, AttributeError):
                raise ServerError(f"{self.base_url}/completions: unexpected answer shape") from None
        usage = out.get("usage") or {}
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        for s in config.stop:  # servers differ on whether the stop string is kept
            cut = text.find(s)
            if cut >= 0:
                text, reason = text[:cut], "stop"
        return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0), finish_reason=reason)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        prompts = list(prompts)
        if len(prompts) <= 1 or self.concurrency == 1:
            out = [self._one(p, config) for p in prompts]
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts))) as pool:
                out = list(pool.map(lambda p: self._one(p, config), prompts))
        self._record(out)
        return out
