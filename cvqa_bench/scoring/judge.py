"""The ``mathvista_judge`` scorer: MLLM-CL's Math score with its LLM judge, through any OpenAI-compatible endpoint.

Rows whose answer the official ``post_check`` reads from the prediction itself never reach the judge
(:mod:`cvqa_bench.scoring.mathvista`); for the others the judge is sent the official extraction prompt
and its reply is checked the official way. The endpoint is given by environment variables, so that
``cvqa score`` and ``cvqa run`` use the same one:

- ``CVQA_JUDGE_URL``: the API base, e.g. ``http://127.0.0.1:8000/v1`` (a local vLLM or sglang server) or a
  provider's; requests go to ``<base>/chat/completions``;
- ``CVQA_JUDGE_MODEL``: default ``gpt-4o-mini-2024-07-18``, what the official ``gpt-4o-mini`` maps to;
- ``CVQA_JUDGE_API_KEY``: sent as ``Authorization: Bearer``, when set;
- ``CVQA_JUDGE_CACHE``: the cache folder, default ``$CVQA_CACHE/judge``.

Every reply is cached on disk under the SHA-256 of the request (URL, model, messages, temperature,
max_tokens), so scoring again sends nothing. As officially: ``max_tokens`` 128, temperature 0, and up to
five tries at temperatures 0, 0.5, 1, 1.5, 2 while the reply holds the official failure message. Unlike the
official script, which scores a row 0 when all five tries fail, an unreachable or failing endpoint stops
scoring with one line: an outage never becomes a score.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from cvqa_bench.config import ConfigError
from cvqa_bench.config.base import cache_root
from cvqa_bench.io import atomic_write_json
from cvqa_bench.scoring.mathvista import (
    FAIL_MSG, can_infer, choices_dict, judge_prompt, official_right, rule_right,
)
from cvqa_bench.scoring.mcit_rules import ContextScorer

MATH_CONTEXT = ("text", "question_type", "answer_type", "choices", "answer_option")
DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
MAX_TOKENS = 128
TRIES = 5
TIMEOUT_S = 60.0  # the official OpenAIWrapper's timeout


class JudgeError(ValueError):
    """The judge endpoint failed or answered something unreadable; the message names the endpoint."""


class JudgeClient:
    """One OpenAI-compatible chat endpoint with an on-disk cache of its replies, keyed by request."""

    def __init__(self, url: str, model: str = DEFAULT_MODEL, api_key: str | None = None,
                 cache_dir: Path | None = None, timeout: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout = model, api_key, timeout
        self.cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "judge"

    @classmethod
    def from_env(cls) -> JudgeClient:
        """The client ``CVQA_JUDGE_*`` describe; ``ConfigError`` (one line) when no endpoint is set."""
        url = os.environ.get("CVQA_JUDGE_URL", "").strip()
        if not url:
            raise ConfigError("scorer 'mathvista_judge' needs an OpenAI-compatible endpoint: set CVQA_JUDGE_URL "
                              "(e.g. http://127.0.0.1:8000/v1 for a local vLLM or sglang server), or score with "
                              "protocol corrected (mathvista_rule, no judge)")
        cache = os.environ.get("CVQA_JUDGE_CACHE")
        return cls(url, os.environ.get("CVQA_JUDGE_MODEL") or DEFAULT_MODEL, os.environ.get("CVQA_JUDGE_API_KEY"),
                   Path(cache).expanduser() if cache else None)

    def request(self, prompt: str, temperature: float) -> dict[str, Any]:
        """The JSON body sent for ``prompt``."""
        return {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "max_tokens": MAX_TOKENS, "temperature": temperature}

    def complete(self, prompt: str, temperature: float = 0.0) -> str:
        """The judge's reply to ``prompt``: from the cache, else from the endpoint (then cached)."""
        body = self.request(prompt, temperature)
        key = hashlib.sha256(json.dumps({"url": self.url, **body}, sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / key[:2] / f"{key}.json"
        if path.is_file():
            try:
                return str(json.loads(path.read_text(encoding="utf-8"))["reply"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry is asked again and rewritten
        reply = self._post(body)
        atomic_write_json(path, {"request": body, "reply": reply})
        return reply

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = json.loads(resp.read().decode("utf-8"))
            return str(data["choices"][0]["message"]["content"]).strip()
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise JudgeError(f"judge endpoint {self.url}: {getattr(exc, 'reason', exc)}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise JudgeError(f"judge endpoint {self.url}: not an OpenAI chat completion reply ({exc})") from exc


def judge_extract(client: JudgeClient, question: str, prediction: str) -> str:
    """``MathVista_auxeval`` after its prefetch: the judge's extraction, retried at rising temperatures."""
    prompt = judge_prompt(question, prediction)
    for attempt in range(TRIES):
        reply = client.complete(prompt, temperature=attempt * 0.5)
        if FAIL_MSG not in reply:
            return reply
    return ""


class MathVistaJudgeScorer(ContextScorer):
    """MLLM-CL eval_math.py: the answer read from the prediction, else extracted by the LLM judge."""

    name: ClassVar[str] = "mathvista_judge"
    context_fields: ClassVar[tuple[str, ...]] = MATH_CONTEXT

    def __init__(self, client: JudgeClient | None = None) -> None:
        self.client = client if client is not None else JudgeClient.from_env()

    def score_row(self, prediction: str, answers: tuple[str, ...], context: dict[str, Any]) -> float:
        # The prefetch: a multiple-choice letter read from the prediction is final, right or wrong (refusals
        # read as 'Z'); a number is final only when it is right. Anything else goes to the judge.
        if context["question_type"] == "multi_choice":
            letter = can_infer(prediction, choices_dict(context["choices"]))
            if letter:
                return float(letter == str(context["answer_option"]))
        elif official_right(prediction, context, answers[0]):
            return 1.0
        extracted = judge_extract(self.client, str(context["text"]), prediction)
        return float(official_right(extracted, context, answers[0]))


class MathVistaRuleScorer(ContextScorer):
    """The corrected Math score: no judge; numbers as numbers, text case-insensitive, options by can_infer."""

    name: ClassVar[str] = "mathvista_rule"
    context_fields: ClassVar[tuple[str, ...]] = MATH_CONTEXT

    def score_row(self, prediction: str, answers: tuple[str, ...], context: dict[str, Any]) -> float:
        return float(rule_right(prediction, context, answers[0]))
