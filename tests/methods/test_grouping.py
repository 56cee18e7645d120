"""Instruction grouping: TF-IDF similarities checked by hand (sklearn's smooth idf) and group plans."""

import math

import pytest

from cvqa_bench.methods.grouping import (
    group_scores,
    instruction_similarity,
    plan_groups,
    plan_groups_with_scores,
    route,
)

SQA = "Answer with the option's letter from the given choices directly."
VQA = "Answer the question using a single word or phrase."
IMAGENET = "What is the object in the image?"
GROUNDING = "Please provide the bounding box coordinate of the region this sentence describes"

# "answer the question" -> {answer, question}; "answer with a word" -> {answer, word} (the, with, a are
# stop words). Two documents, smooth idf = ln((1 + n) / (1 + df)) + 1:
#   idf(answer) = ln(3/3) + 1 = 1;  idf(question) = idf(word) = ln(3/2) + 1 = 1.4054651
# cosine = (1 * 1) / (1 + 1.4054651^2) = 1 / 2.9753320 = 0.3360969
PARTIAL_A, PARTIAL_B = "answer the question", "answer with a word"
PARTIAL_COSINE = 1 / (1 + (math.log(1.5) + 1) ** 2)


def test_partial_overlap_cosine_matches_hand_tfidf() -> None:
    assert PARTIAL_COSINE == pytest.approx(0.3360969, abs=1e-7)
    assert instruction_similarity(PARTIAL_A, PARTIAL_B) == pytest.approx(PARTIAL_COSINE, abs=1e-9)


def test_identical_instruction_has_similarity_one_and_joins_at_090() -> None:
    assert instruction_similarity(VQA, VQA) == pytest.approx(1.0)
    assert plan_groups([[VQA], [VQA]], threshold=0.9) == [0, 0]


def test_partial_overlap_joins_at_030_but_not_at_090() -> None:
    assert plan_groups([[PARTIAL_A], [PARTIAL_B]], threshold=0.3) == [0, 0]
    assert plan_groups([[PARTIAL_A], [PARTIAL_B]], threshold=0.9) == [0, 1]


def test_stop_words_only_instruction_scores_zero_without_crashing() -> None:
    # "what is it" and "the of" are all stop words: an empty TF-IDF vocabulary
    assert instruction_similarity("what is it", "the of") == 0.0
    assert instruction_similarity("what is it", VQA) == 0.0
    assert plan_groups([["what is it"], ["what is it"]], threshold=0.3) == [0, 1]


def test_score_is_the_mean_over_all_pairs_of_distinct_strings() -> None:
    # new {PARTIAL_A, PARTIAL_B} (PARTIAL_A twice counts once) vs codebook {PARTIAL_A}:
    # pairs (A, A) = 1 and (B, A) = 0.3360969 -> mean 0.6680485
    scores = group_scores([PARTIAL_A, PARTIAL_B, PARTIAL_A], [[PARTIAL_A], [IMAGENET]])
    assert scores[0] == pytest.approx((1 + PARTIAL_COSINE) / 2, abs=1e-9)
    assert scores[1] == 0.0


def test_coin_like_sequence_gives_the_official_groups() -> None:
    # ScienceQA, TextVQA, ImageNet, GQA, VizWiz, Grounding, VQAv2, OCR-VQA
    tasks = [[SQA], [VQA], [IMAGENET], [VQA], [VQA], [GROUNDING], [VQA], [VQA]]
    groups = plan_groups(tasks, threshold=0.9)
    assert groups == [0, 1, 2, 1, 1, 3, 1, 1]
    members = {g: [i for i, x in enumerate(groups) if x == g] for g in set(groups)}
    assert members == {0: [0], 1: [1, 3, 4, 6, 7], 2: [2], 3: [5]}


def test_scores_are_recorded_against_every_earlier_group() -> None:
    groups, scores = plan_groups_with_scores([[VQA], [IMAGENET], [VQA]], threshold=0.9)
    assert groups == [0, 1, 0]
    assert scores[0] == []  # no group exists yet
    assert scores[1] == [0.0]  # no shared non-stop word with VQA
    assert scores[2] == pytest.approx([1.0, 0.0])


def test_ties_go_to_the_first_group() -> None:
    # two groups with the same codebook score the same (1.0); the first one wins
    assert route([VQA], [[VQA], [VQA]], threshold=0.9) == 0


def test_route_below_threshold_is_none() -> None:
    assert route([PARTIAL_B], [[IMAGENET], [PARTIAL_A]], threshold=0.9) is None
    assert route([PARTIAL_B], [[IMAGENET], [PARTIAL_A]], threshold=0.3) == 1
    assert route([VQA], [], threshold=0.3) is None


def test_a_task_without_instructions_opens_a_new_group() -> None:
    assert plan_groups([[VQA], []], threshold=0.0) == [0, 0]  # score 0 >= threshold 0 joins
    assert plan_groups([[VQA], []], threshold=0.3) == [0, 1]


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_threshold_outside_unit_interval_is_rejected(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        plan_groups([[VQA]], threshold=threshold)


def test_a_bare_string_instead_of_a_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="list of instruction strings"):
        plan_groups([VQA], threshold=0.9)  # type: ignore[list-item]
