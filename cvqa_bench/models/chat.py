"""CoIN rows as chat-template messages, rendered with the checkpoint's own chat template.

Anything with ``apply_chat_template`` renders them (a tokenizer, or HF's processor wrapper). Training labels
cover only the assistant turns; the prompt used at evaluation is exactly the prefix the model saw before
each answer in training.
"""

from __future__ import annotations

from typing import Any

IMAGE_MARKER = "<image>"  # CoIN's marker in a question's text; the chat template places the image itself


def strip_image_marker(text: str) -> str:
    """The question text without CoIN's ``<image>`` marker (the chat template places the image)."""
    return "\n".join(line for line in text.replace(IMAGE_MARKER, "\n").split("\n") if line.strip()).strip()


def user_message(text: str, with_image: bool) -> dict[str, Any]:
    """A chat-template user message holding the image (first) and the question text."""
    content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": strip_image_marker(text)})
    return {"role": "user", "content": content}


def assistant_message(text: str) -> dict[str, Any]:
    """A chat-template assistant message."""
    return {"role": "assistant", "content": [{"type": "text", "text": text.strip()}]}


def generation_prompt(renderer: Any, text: str, with_image: bool) -> str:
    """The evaluation prompt for one question, ending where the answer starts."""
    return renderer.apply_chat_template([user_message(text, with_image)], add_generation_prompt=True, tokenize=False)


def conversation_segments(renderer: Any, row: dict[str, Any], with_image: bool | None = None) -> list[tuple[str, bool]]:
    """Split a training conversation into (text, is_target) pieces whose concatenation is the rendered chat.

    The image goes into the first user turn when ``with_image`` (default: the row names an image).
    """
    with_image = row.get("image") is not None if with_image is None else with_image
    turns = row["conversations"]
    messages: list[dict[str, Any]] = []
    segments: list[tuple[str, bool]] = []
    rendered = ""
    for i in range(0, len(turns) - 1, 2):
        messages.append(user_message(turns[i]["value"], with_image=i == 0 and with_image))
        prompt = renderer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append(assistant_message(turns[i + 1]["value"]))
        full = renderer.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
        if not (prompt.startswith(rendered) and full.startswith(prompt)):
            raise ValueError("the checkpoint's chat template does not render turns as prefixes of each other")
        segments += [(prompt[len(rendered):], False), (full[len(prompt):], True)]
        rendered = full
    return segments
