"""The vicuna_v1 conversation: ``render_prompt`` against strings written by hand from the official
``conv_vicuna_v1`` definition, and the chat template rendering the same strings through a processor.

Official pieces (llava/conversation.py): the system text, then ``sep = " "``; each user turn
``"USER: " + text + " "``; each assistant turn ``"ASSISTANT: " + text + "</s>"``; the open
assistant turn ``"ASSISTANT:"``.
"""

from __future__ import annotations

from typing import Any

import pytest

import coin_standins as standins
from cvqa_bench.models.conversation import (
    VICUNA_V1_CHAT_TEMPLATE,
    VICUNA_V1_SYSTEM,
    chat_messages,
    move_image_to_front,
    render_prompt,
)

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")
VQA = "Answer the question using a single word or phrase."
NON_ASCII = "Qu'est-ce que c'est ? — 東京"

MULTI_TURN = [
    ("user", "<image>\nWho wrote this book?"), ("assistant", "Jane Austen"),
    ("user", "Is it a novel?"), ("assistant", "Yes"),
    ("user", "When was it published?"), ("assistant", "1813"),
]


def test_the_system_text_is_the_official_one() -> None:
    assert VICUNA_V1_SYSTEM == SYSTEM
    assert VICUNA_V1_CHAT_TEMPLATE.startswith(SYSTEM + " ")


# ---------------------------------------------------------------- render_prompt, by hand


def test_single_turn_eval_prompt_with_image() -> None:
    turns = [("user", f"<image>\nWhat is the object in the image?\n{VQA}")]
    assert render_prompt(turns, add_generation_prompt=True) == (
        SYSTEM + " " + "USER: " + "<image>\nWhat is the object in the image?\n" + VQA + " " + "ASSISTANT:"
    )


def test_single_turn_eval_prompt_without_image() -> None:
    assert render_prompt([("user", "Say hi.")], add_generation_prompt=True) == (
        SYSTEM + " " + "USER: " + "Say hi." + " " + "ASSISTANT:"
    )


def test_multi_turn_training_conversation() -> None:
    assert render_prompt(MULTI_TURN, add_generation_prompt=False) == (
        SYSTEM + " "
        + "USER: " + "<image>\nWho wrote this book?" + " " + "ASSISTANT: " + "Jane Austen" + "</s>"
        + "USER: " + "Is it a novel?" + " " + "ASSISTANT: " + "Yes" + "</s>"
        + "USER: " + "When was it published?" + " " + "ASSISTANT: " + "1813" + "</s>"
    )


def test_a_follow_up_question_ends_with_the_open_assistant_turn() -> None:
    turns = MULTI_TURN[:2] + [("user", "Is it a novel?")]
    assert render_prompt(turns, add_generation_prompt=True) == (
        SYSTEM + " USER: <image>\nWho wrote this book? ASSISTANT: Jane Austen</s>USER: Is it a novel? ASSISTANT:"
    )


def test_non_ascii_text_is_kept_verbatim() -> None:
    turns = [("user", f"<image>\n{NON_ASCII}"), ("assistant", "東京タワー")]
    assert render_prompt(turns, add_generation_prompt=False) == (
        SYSTEM + " USER: <image>\nQu'est-ce que c'est ? — 東京 ASSISTANT: 東京タワー</s>"
    )
    assert render_prompt(turns[:1], add_generation_prompt=True) == (
        SYSTEM + " USER: <image>\nQu'est-ce que c'est ? — 東京 ASSISTANT:"
    )


def test_texts_are_not_stripped_or_moved() -> None:
    # get_prompt uses string messages as they are; moving <image> is the caller's step
    turns = [("user", "What is <image> this? "), ("assistant", " a cat")]
    assert render_prompt(turns, add_generation_prompt=False) == (
        SYSTEM + " USER: What is <image> this?  ASSISTANT:  a cat</s>"
    )


@pytest.mark.parametrize(("text", "expected"), [
    ("What is <image> this?", "<image>\nWhat is  this?"),
    (f"Question?\n{VQA}\n<image>", f"<image>\nQuestion?\n{VQA}"),
    ("<image>\nAlready in front.", "<image>\nAlready in front."),
    ("No image here. ", "No image here. "),
])
def test_move_image_to_front_is_llavas_preprocessing(text: str, expected: str) -> None:
    assert move_image_to_front(text) == expected


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("turns", "gen", "message"), [
    ([], True, "non-empty list of (role, text) pairs"),
    ([("human", "hi")], True, "turns[0]: role must be 'user' or 'assistant', got 'human'"),
    ([("assistant", "hi")], False, "turns[0]: expected role 'user'"),
    ([("user", "a"), ("user", "b")], True, "turns[1]: expected role 'assistant'"),
    ([("user", "a"), ("assistant", "b")], True, "add_generation_prompt needs the last turn to be the user's"),
    ([("user", "")], True, "turns[0]: text must be a non-empty string"),
    ([("user", "a"), ("assistant", None)], False, "turns[1]: text must be a non-empty string"),
    ([("user", "a", "b")], True, "turns[0]: expected a (role, text) pair"),
    ([(["user"], "a")], True, "turns[0]: role must be 'user' or 'assistant'"),
])
def test_bad_turns_raise_one_line_errors(turns: list, gen: bool, message: str) -> None:
    with pytest.raises(ValueError) as info:
        render_prompt(turns, add_generation_prompt=gen)
    assert message in str(info.value) and "\n" not in str(info.value)
    if not gen:
        with pytest.raises(ValueError, match="turns"):
            chat_messages(turns)


# ---------------------------------------------------------------- the chat template agrees


@pytest.fixture(scope="module")
def processor() -> Any:
    """A ``LlavaProcessor`` with a stand-in Llama tokenizer and the vicuna_v1 template, as assembled."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    tokenizer = standins.llama_tokenizer([SYSTEM, "USER: ASSISTANT:", NON_ASCII], vocab_size=300)
    return LlavaProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer, patch_size=8,
                          vision_feature_select_strategy="default", chat_template=VICUNA_V1_CHAT_TEMPLATE)


def test_chat_messages_hold_an_image_item_for_the_image_prefix() -> None:
    assert chat_messages(MULTI_TURN[:2]) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Who wrote this book?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Jane Austen"}]},
    ]
    assert chat_messages([("user", "Say hi.")]) == [{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}]


@pytest.mark.parametrize(("turns", "gen"), [
    ([("user", f"<image>\nWhat is the object in the image?\n{VQA}")], True),
    ([("user", "Say hi.")], True),
    (MULTI_TURN, False),
    (MULTI_TURN[:3], True),
    ([("user", f"<image>\n{NON_ASCII}"), ("assistant", "東京タワー")], False),
    ([("user", "What is <image> this? "), ("assistant", " a cat")], False),
])
def test_the_chat_template_renders_what_render_prompt_renders(processor: Any, turns: list, gen: bool) -> None:
    rendered = processor.apply_chat_template(chat_messages(turns), add_generation_prompt=gen, tokenize=False)
    assert rendered == render_prompt(turns, add_generation_prompt=gen)


def test_the_training_and_eval_prompts_are_the_official_strings(processor: Any) -> None:
    from cvqa_bench.models.prompting import conversation_segments, generation_prompt

    question = f"<image>\nWhat is the object in the image?\n{VQA}"
    assert generation_prompt(processor, question, True) == render_prompt([("user", question)], True)
    row = {"image": "x.jpg", "conversations": [
        {"from": "human" if role == "user" else "gpt", "value": text} for role, text in MULTI_TURN]}
    segments = conversation_segments(processor, row)
    assert "".join(text for text, _ in segments) == render_prompt(MULTI_TURN, add_generation_prompt=False)
    assert [text for text, target in segments if target] == [" Jane Austen</s>", " Yes</s>", " 1813</s>"]
