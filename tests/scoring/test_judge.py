"""The ``mathvista_judge`` scorer against a fake OpenAI-compatible server on 127.0.0.1 that counts requests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmark_standins import FakeJudge
from cvqa_bench.config import ConfigError
from cvqa_bench.scoring import get_scorer

MC = {"text": "Which shape is blue?", "question_type": "multi_choice", "answer_type": "text",
      "choices": "['circle', 'square']", "answer_option": "B"}
INT = {"text": "How many sides?", "question_type": "free_form", "answer_type": "integer", "choices": "[]",
       "answer_option": ""}


@pytest.fixture
def judge(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeJudge]:
    fake = FakeJudge()
    monkeypatch.setenv("CVQA_JUDGE_URL", fake.url)
    monkeypatch.setenv("CVQA_JUDGE_CACHE", str(tmp_path / "judge-cache"))
    monkeypatch.delenv("CVQA_JUDGE_API_KEY", raising=False)
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_judge_is_asked_only_when_the_answer_cannot_be_read_and_cached_after(judge: FakeJudge) -> None:
    predictions = ["The answer is (B).", "The shape has four sides", "4", "5"]
    answers = [["square"], ["4"], ["4"], ["4"]]
    contexts = [MC, INT, INT, INT]
    # row 0: letter B read from the prediction (no judge), right; row 1: not an integer -> judge says "4",
    # right; row 2: int("4") == 4 read directly, right; row 3: 5 != 4 -> the judge is asked, says "4", right
    # (the official flow asks the judge whenever the prefetch does not match).
    score, scores = get_scorer("mathvista_judge").score_corpus(predictions, answers, contexts)
    assert scores == [1.0, 1.0, 1.0, 1.0] and score == 1.0
    assert len(judge.bodies) == 2
    first = judge.bodies[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["model"] == "gpt-4o-mini-2024-07-18" and first["max_tokens"] == 128 and first["temperature"] == 0
    assert first["messages"][0]["content"].endswith("How many sides?\nModel respone: The shape has four sidesExtracted answer:")
    # a second scoring, with a new scorer, sends nothing: every reply comes from the on-disk cache
    again = get_scorer("mathvista_judge").score_corpus(predictions, answers, contexts)
    assert again == (score, scores)
    assert len(judge.bodies) == 2


def test_no_endpoint_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CVQA_JUDGE_URL", raising=False)
    with pytest.raises(ConfigError, match="set CVQA_JUDGE_URL") as err:
        get_scorer("mathvista_judge")
    assert "\n" not in str(err.value)


def test_an_unreachable_endpoint_stops_scoring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeJudge()
    url = fake.url
    fake.server.shutdown()
    fake.server.server_close()  # nothing listens there any more
    monkeypatch.setenv("CVQA_JUDGE_URL", url)
    monkeypatch.setenv("CVQA_JUDGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=f"judge endpoint {url}/chat/completions"):
        get_scorer("mathvista_judge").score_corpus(["five"], [["4"]], [INT])
