"""Benchmark: VQA scoring of a whole predictions file, fast path vs the naive per-question loop.

Builds N synthetic VQA questions (10 human answers each, with the case, punctuation, number-word
and article variants real annotations have), then scores them twice in one process:

* naive: ``[scorer.score(p, a) for ...]``, which cleans and normalises every answer anew per question;
* fast: ``scorer.score_many(predictions, answers)``, which normalises each distinct string once.

It asserts that both give identical scores and prints both times and their ratio.

    .venv/bin/python benchmarks/bench_scorers.py [--n 100000] [--seed 0] [--scorers vqa vqa_evalai]
"""

from __future__ import annotations

import argparse
import random
import time

from cvqa_bench.scoring import get_scorer

_WORDS = [
    "yes", "no", "red", "blue", "white", "black", "dog", "cat", "man", "woman", "tennis",
    "baseball", "pizza", "table", "kitchen", "left", "right", "wood", "metal", "frisbee",
    "surfing", "skateboard", "giraffe", "elephant", "train", "bus", "clock", "umbrella",
    "one", "two", "three", "four", "ten", "none", "1", "2", "3", "4", "10", "0", "1,000",
    "dont", "don't", "t-shirt", "stop sign", "fire hydrant", "2:30", "3.5", "nike", "UNKNOWN",
]  # fmt: skip


def _variant(rng: random.Random, word: str) -> str:
    """A human-like spelling of ``word``: capitalised, with a period, an article, or padded."""
    roll = rng.random()
    if roll < 0.55:
        return word
    if roll < 0.7:
        return word.capitalize()
    if roll < 0.8:
        return word + "."
    if roll < 0.9:
        return rng.choice(["the ", "a ", "an "]) + word
    return f" {word}\n"


def make_questions(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """``n`` predictions and their 10 answers each, deterministic for a seed."""
    rng = random.Random(seed)
    predictions, answers = [], []
    for _ in range(n):
        consensus = rng.choice(_WORDS)
        # Most questions: annotators mostly agree; some: all ten identical (no normalisation).
        if rng.random() < 0.3:
            gold = [consensus] * 10
        else:
            gold = [
                _variant(rng, consensus) if rng.random() < 0.7 else _variant(rng, rng.choice(_WORDS))
                for _ in range(10)
            ]
        answers.append(gold)
        predictions.append(_variant(rng, consensus if rng.random() < 0.6 else rng.choice(_WORDS)))
    return predictions, answers


def bench(name: str, predictions: list[str], answers: list[list[str]]) -> None:
    """Time the naive loop and ``score_many`` for scorer ``name``; assert identical scores."""
    scorer = get_scorer(name)
    start = time.perf_counter()
    naive = [scorer.score(p, a) for p, a in zip(predictions, answers)]
    naive_s = time.perf_counter() - start
    start = time.perf_counter()
    fast = scorer.score_many(predictions, answers)
    fast_s = time.perf_counter() - start
    assert fast == naive, f"{name}: score_many disagrees with the per-question loop"
    print(
        f"{name:<11} n={len(predictions):,}  naive loop {naive_s:7.2f} s  "
        f"score_many {fast_s:6.2f} s  ratio {naive_s / fast_s:5.1f}x  "
        f"mean score {sum(fast) / len(fast):.4f}"
    )


def main() -> None:
    """Parse arguments, build the synthetic file once, benchmark each scorer on it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scorers", nargs="+", default=["vqa", "vqa_evalai"])
    args = parser.parse_args()
    predictions, answers = make_questions(args.n, args.seed)
    for name in args.scorers:
        bench(name, predictions, answers)


if __name__ == "__main__":
    main()
