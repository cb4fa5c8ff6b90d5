"""Language-model backends for the GLM analyzer: a local ``transformers`` checkpoint or an OpenAI-compatible server.

This is the only module that imports ``torch``/``transformers`` or speaks HTTP to a language model. Both are
imported lazily, so the agent runs without the ``[glm]`` extra as long as no GLM backend is configured.

- ``LocalCausalLM`` scores a fixed list of answers by log-likelihood (it never generates free text).
- ``OpenAIChatClient`` asks a chat endpoint (vLLM, SGLang, Ollama, a hosted GLM API) and returns its text;
  the caller validates that text, nothing here trusts it. Its ``timeout`` is a deadline for the whole question
  (connecting, sending, every byte of the answer; a server trickling bytes cannot stretch it), and an answer larger
  than ``max_response_bytes`` is refused without being read to the end.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import requests

from aiops.domain.errors import InputError
from aiops.settings import GlmSettings

MODEL_PATH = "glm.model_path"
MAX_RESPONSE_BYTES = 1_048_576
_READ_BYTES = 16_384


class LLMError(Exception):
    """The model or the endpoint failed to answer (unreachable, HTTP error, an answer without text)."""


def _import_transformers() -> tuple[Any, Any, Any]:
    # A path that is not a local folder would make transformers try the hub, retrying for ~23 s on a machine
    # without network. HF_HUB_OFFLINE must be set before the import to take effect; setdefault keeps a user's
    # explicit choice. This is the one place aiops touches the environment, and only for that library.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise InputError("glm.backend", f"the transformers backend needs the [glm] extra "
                                        f"(pip install 'aiops[glm]'): {exc}") from None
    return torch, AutoTokenizer, AutoModelForCausalLM


class LocalCausalLM:
    """A causal LM loaded from a local folder (``save_pretrained`` layout), used to score candidate answers.

    ``max_prompt_tokens`` bounds the prompt: a longer one keeps its first quarter (the instructions) and its end
    (the question and options), dropping the middle of the evidence.
    """

    def __init__(self, path: str | Path, dtype: str = "float32", max_prompt_tokens: int = 2048,
                 batch_size: int = 16, reuse_cache: bool = True, threads: int | None = None) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise InputError(MODEL_PATH, f"{path}: not a folder (a local checkpoint is needed; nothing is downloaded)")
        torch, auto_tokenizer, auto_model = _import_transformers()
        self._torch = torch
        if threads is not None:
            # Process-wide. On a busy small machine torch's spinning worker threads can make a tiny model ~10x
            # slower than one thread; a caller that knows its share of the cores says so here.
            torch.set_num_threads(max(1, threads))
        if not hasattr(torch, dtype):
            raise InputError("glm.dtype", f"unknown torch dtype {dtype!r}")
        try:
            self.tokenizer = auto_tokenizer.from_pretrained(folder, local_files_only=True)
            self.model = auto_model.from_pretrained(folder, local_files_only=True, dtype=getattr(torch, dtype))
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(MODEL_PATH, f"{path}: not a loadable causal LM checkpoint: {exc}") from None
        self.model.eval()
        self.path = folder
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = max(1, batch_size)
        self.reuse_cache = reuse_cache
        pad = self.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (self.tokenizer.eos_token_id or 0)
        # transformers 5 renamed ``past_key_values`` to ``cache`` (the old name is deprecated, removed in 5.40).
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters \
            else "past_key_values"

    # -- tokens --------------------------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str, system: str = "") -> list[int]:
        """The prompt's token ids: through the chat template when the tokenizer has one, else plain text."""
        if getattr(self.tokenizer, "chat_template", None):
            messages = ([{"role": "system", "content": system}] if system else []) + \
                [{"role": "user", "content": prompt}]
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                         return_dict=True)
            ids = list(encoded["input_ids"])
        else:
            text = f"{system}\n\n{prompt}" if system else prompt
            ids = list(self.tokenizer(text, add_special_tokens=True)["input_ids"])
        if len(ids) > self.max_prompt_tokens:
            head = self.max_prompt_tokens // 4
            ids = ids[:head] + ids[len(ids) - (self.max_prompt_tokens - head):]
        return ids

    def _choice_ids(self, choices: Sequence[str]) -> list[list[int]]:
        out = []
        for choice in choices:
            ids = list(self.tokenizer(choice, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ValueError(f"choice {choice!r} encodes to no tokens")
            out.append(ids)
        return out

    # -- scoring -------------------------------------------------------------------------------------------------
    def score_choices(self, prompt: str, choices: Sequence[str], system: str = "") -> list[float]:
        """Sum of the log-probabilities of each choice's tokens following the prompt (higher = more likely)."""
        if not choices:
            return []
        prompt_ids = self.prompt_ids(prompt, system)
        choice_ids = self._choice_ids(choices)
        with self._torch.inference_mode():
            if self.reuse_cache:
                return self._score_with_cache(prompt_ids, choice_ids)
            return self._score_full(prompt_ids, choice_ids)

    def _score_with_cache(self, prompt_ids: list[int], choice_ids: list[list[int]]) -> list[float]:
        """One prefill of the prompt; every batch of choices continues from a copy of its KV cache."""
        torch = self._torch
        out = self.model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        cache = getattr(out, "cache", None) or out.past_key_values
        scores: list[float] = []
        for start in range(0, len(choice_ids), self.batch_size):
            batch = choice_ids[start:start + self.batch_size]
            inputs, mask = self._padded(batch)
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(batch))
            attention = torch.cat([torch.ones(len(batch), len(prompt_ids), dtype=mask.dtype), mask], dim=1)
            logits = self.model(input_ids=inputs, attention_mask=attention, use_cache=True,
                                **{self._cache_arg: past}).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for i, ids in enumerate(batch):
                total = first[ids[0]]
                if len(ids) > 1:
                    # position j predicts token j+1; right padding never precedes a real token, so it is invisible
                    total = total + logp[i, torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum()
                scores.append(float(total))
        return scores

    def _score_full(self, prompt_ids: list[int], choice_ids: list[list[int]]) -> list[float]:
        """Prompt and choice together per row (no cache): slower, kept for models whose cache cannot be copied."""
        torch = self._torch
        scores: list[float] = []
        n = len(prompt_ids)
        for start in range(0, len(choice_ids), self.batch_size):
            batch = choice_ids[start:start + self.batch_size]
            inputs, mask = self._padded([prompt_ids + ids for ids in batch])
            logp = torch.log_softmax(self.model(input_ids=inputs, attention_mask=mask).logits.float(), dim=-1)
            for i, ids in enumerate(batch):
                positions = torch.arange(n - 1, n - 1 + len(ids))
                scores.append(float(logp[i, positions, torch.tensor(ids)].sum()))
        return scores

    def _padded(self, rows: list[list[int]]) -> tuple[Any, Any]:
        torch = self._torch
        width = max(len(r) for r in rows)
        inputs = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            inputs[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return inputs, mask


class OpenAIChatClient:
    """``POST .../chat/completions`` on an OpenAI-compatible server, temperature 0, JSON mode when it accepts it.

    ``endpoint`` is the server's base URL (``http://host:8000`` or ``.../v1``) or a full ``.../chat/completions``
    URL (hosted GLM APIs use their own prefix). ``timeout`` (seconds) is the deadline of one ``chat`` call, the
    JSON-mode fallback included; ``max_response_bytes`` caps the answer's body.
    """

    def __init__(self, endpoint: str, model: str, api_key: str | None = None, timeout: float = 30.0,
                 json_mode: bool = True, max_tokens: int = 256, max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.url = chat_url(endpoint)
        self.model = model
        self.timeout = timeout
        self.json_mode = json_mode
        self.max_tokens = max_tokens
        self.max_response_bytes = max_response_bytes
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def chat(self, system: str, user: str) -> str:
        """The assistant's reply text. Raises ``LLMError`` when the server cannot be reached, answers badly, too
        much, or not completely within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        body: dict[str, Any] = {"model": self.model, "temperature": 0, "max_tokens": self.max_tokens,
                                "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": user}]}
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        status, text = self._post(body, deadline)
        if status == 400 and self.json_mode and "response_format" in text:
            # Older servers reject JSON mode; the prompt asks for JSON anyway and the caller validates.
            self.json_mode = False
            body.pop("response_format")
            status, text = self._post(body, deadline)
        if status != 200:
            raise LLMError(f"POST {self.url}: HTTP {status}: {text[:300]}")
        try:
            content = json.loads(text)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError(f"POST {self.url}: not a chat completion: {text[:300]}") from None
        if not isinstance(content, str):
            raise LLMError(f"POST {self.url}: the reply has no text content")
        return content

    def _post(self, body: dict[str, Any], deadline: float) -> tuple[int, str]:
        """The status and body text of one POST, or ``LLMError`` once ``deadline`` (monotonic) has passed.

        Socket timeouts only bound each read, so a server sending a byte now and then keeps a plain request alive
        for as long as it likes; the exchange runs on a helper thread and the caller waits for it until the
        deadline only. The helper stops at its next read after that (each read is bounded by the time that was
        left), so it never outlives the deadline by more than one read's timeout.
        """
        left = deadline - time.monotonic()
        if left <= 0:
            raise LLMError(f"POST {self.url}: no complete answer within {self.timeout:g}s")
        outcome: dict[str, Any] = {}
        done, abandoned = threading.Event(), threading.Event()

        def exchange() -> None:
            try:
                outcome["answer"] = self._exchange(body, left, abandoned)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller as is
                outcome["error"] = exc
            finally:
                done.set()

        threading.Thread(target=exchange, name="llm-request", daemon=True).start()
        if not done.wait(left):
            abandoned.set()
            raise LLMError(f"POST {self.url}: no complete answer within {self.timeout:g}s")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def _exchange(self, body: dict[str, Any], timeout: float, abandoned: threading.Event) -> tuple[int, str]:
        cap = self.max_response_bytes
        try:
            with requests.post(self.url, json=body, headers=self._headers, timeout=timeout, allow_redirects=False,
                               stream=True) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise LLMError(f"POST {self.url}: the answer is {declared} bytes, more than "
                                   f"glm.max_response_bytes ({cap})")
                chunks, size = [], 0
                while not abandoned.is_set():
                    # read1: at most one read from the socket per call, so the deadline is looked at between reads
                    chunk = response.raw.read1(_READ_BYTES, decode_content=True)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > cap:
                        raise LLMError(f"POST {self.url}: the answer is more than glm.max_response_bytes ({cap})")
                    chunks.append(chunk)
                return response.status_code, b"".join(chunks).decode(response.encoding or "utf-8", "replace")
        except requests.RequestException as exc:
            raise LLMError(f"POST {self.url}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - urllib3's read errors (timeouts, a connection cut) are not wrapped
            if isinstance(exc, LLMError):
                raise
            raise LLMError(f"POST {self.url}: {type(exc).__name__}: {exc}") from None


def chat_url(endpoint: str) -> str:
    """The chat-completions URL for a base URL, a ``/v1`` URL or a full URL."""
    base = endpoint.rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


def read_api_key(path: Path) -> str:
    """The API key stored in ``path`` (surrounding whitespace removed)."""
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("glm.api_key_file", f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if not key:
        raise InputError("glm.api_key_file", f"{path}: is empty")
    return key


def llm_from_settings(glm: GlmSettings) -> LocalCausalLM | OpenAIChatClient | None:
    """The backend ``glm`` describes, or ``None`` when the GLM analyzer is off."""
    if glm.backend == "transformers":
        assert glm.model_path is not None  # the settings validator guarantees it
        return LocalCausalLM(glm.model_path, dtype=glm.dtype, max_prompt_tokens=glm.max_prompt_tokens)
    if glm.backend == "openai":
        assert glm.endpoint is not None
        key = read_api_key(glm.api_key_file) if glm.api_key_file else None
        return OpenAIChatClient(glm.endpoint, glm.model, api_key=key, timeout=glm.timeout_seconds,
                                max_response_bytes=glm.max_response_bytes)
    return None
