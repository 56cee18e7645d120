"""The ``vicuna_v1`` conversation of LLaVA-1.5 (the prompt of the published CoIN runs), as a string
renderer and as a chat template that renders the same string.

Official definition (``llava/conversation.py`` of LLaCA / CoIN, ``conv_vicuna_v1``): roles
``("USER", "ASSISTANT")``, separator style TWO, ``sep=" "``, ``sep2="</s>"``. ``get_prompt`` starts
with ``system + sep``; message ``i`` with text renders as ``role + ": " + text + (sep, sep2)[i % 2]``
(the separator follows the position, so user turns end with " " and assistant turns with "</s>");
a message of ``None`` (``append_message(roles[1], None)``) renders as ``role + ":"``, so an
evaluation prompt ends with ``ASSISTANT:`` and the model writes `` {answer}</s>``::

    {system} USER: <image>\\n{question} ASSISTANT: {answer}</s>USER: {question} ASSISTANT:

``<image>`` placement: ``get_prompt`` itself moves ``<image>`` only when the first message is a
``(text, image, mode)`` tuple (the demo server's path). Training (``preprocess_multimodal`` in
``llava/train/train.py``) and the evaluation scripts (``llava/eval/``) pass plain strings and move
the marker *before* ``get_prompt``: every ``<image>`` is removed, the text stripped and
``"<image>\\n"`` put in front. :func:`render_prompt` reproduces ``get_prompt`` on strings (texts
verbatim); :func:`move_image_to_front` is that earlier step, for callers that need it.
``cvqa_bench.models.prompting.conversation_segments`` relies on a rendered assistant turn
extending the generation prompt, which both renderings guarantee.
"""

from __future__ import annotations

from typing import Any

VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = {"user": "USER", "assistant": "ASSISTANT"}
SEP, SEP2 = " ", "</s>"
IMAGE_TOKEN = "<image>"
IMAGE_PREFIX = IMAGE_TOKEN + "\n"

# Whitespace matters: "{system} " then per turn "USER: ... " (sep) and "ASSISTANT: ...</s>" (sep2).
VICUNA_V1_CHAT_TEMPLATE = (
    VICUNA_V1_SYSTEM + " "
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: "
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %} "
    "{% elif message['role'] == 'assistant' %}ASSISTANT: "
    "{% for item in message['content'] %}{{ item['text'] }}{% endfor %}</s>"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def check_turns(turns: list[tuple[str, str]], add_generation_prompt: bool = False) -> None:
    """Raise ValueError unless ``turns`` is a non-empty list of ``(role, text)`` alternating from "user".

    With ``add_generation_prompt`` the last turn must be the user's (the open assistant turn follows).
    Empty texts are refused: official ``get_prompt`` renders an empty message like ``None``, as an
    open ``"ROLE:"`` slot without separator, which would silently corrupt the prompt.
    """
    if not isinstance(turns, (list, tuple)) or not turns:
        raise ValueError(f"turns: expected a non-empty list of (role, text) pairs, got {turns!r:.60}")
    for i, turn in enumerate(turns):
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise ValueError(f"turns[{i}]: expected a (role, text) pair, got {turn!r:.60}")
        role, text = turn
        expected = "user" if i % 2 == 0 else "assistant"
        if role not in tuple(ROLES):
            raise ValueError(f"turns[{i}]: role must be 'user' or 'assistant', got {role!r:.40}")
        if role != expected:
            raise ValueError(f"turns[{i}]: expected role {expected!r} (turns start with 'user' and alternate), "
                             f"got {role!r}")
        if not isinstance(text, str) or not text:
            raise ValueError(f"turns[{i}]: text must be a non-empty string, got {text!r:.40}")
    if add_generation_prompt and turns[-1][0] != "user":
        raise ValueError("turns: add_generation_prompt needs the last turn to be the user's, got 'assistant'")


def render_prompt(turns: list[tuple[str, str]], add_generation_prompt: bool) -> str:
    """The string official ``conv_vicuna_v1.get_prompt()`` gives for these ``(role, text)`` turns.

    Texts are used verbatim (``"<image>\\n"`` prefix included where present); with
    ``add_generation_prompt`` the open assistant turn is appended, so the string ends with
    ``ASSISTANT:``. ValueError for bad roles, order or texts (see :func:`check_turns`).
    """
    check_turns(turns, add_generation_prompt)
    parts = [VICUNA_V1_SYSTEM, SEP]
    for i, (role, text) in enumerate(turns):
        parts += [ROLES[role], ": ", text, SEP if i % 2 == 0 else SEP2]
    if add_generation_prompt:
        parts += [ROLES["assistant"], ":"]
    return "".join(parts)


def chat_messages(turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The chat-template message list of these turns; ``VICUNA_V1_CHAT_TEMPLATE`` renders it exactly
    as :func:`render_prompt` renders the turns.

    A user text starting with ``"<image>\\n"`` becomes an image item followed by the rest of the
    text; every other text is one text item, verbatim. ValueError as in :func:`check_turns`.
    """
    check_turns(turns)
    messages: list[dict[str, Any]] = []
    for role, text in turns:
        content: list[dict[str, str]] = []
        if role == "user" and text.startswith(IMAGE_PREFIX):
            content.append({"type": "image"})
            text = text[len(IMAGE_PREFIX):]
        content.append({"type": "text", "text": text})
        messages.append({"role": role, "content": content})
    return messages


def move_image_to_front(text: str) -> str:
    """The text as official LLaVA training/evaluation prepares it before ``get_prompt``: every
    ``<image>`` removed and one ``"<image>\\n"`` put in front (texts without ``<image>`` unchanged)."""
    if IMAGE_TOKEN not in text:
        return text
    return (IMAGE_PREFIX + text.replace(IMAGE_TOKEN, "").strip()).strip()
