"""The ``vicuna_v1`` conversation of LLaVA-1.5 as a chat template (the prompt of the published CoIN runs).

LLaVA's ``conv_vicuna_v1`` (separator style TWO, ``sep=" "``, ``sep2="</s>"``) renders one turn as::

    A chat between ... human's questions. USER: <image>\\n{question} ASSISTANT: {answer}</s>USER: ...

and the evaluation prompt ends with ``ASSISTANT:``; the model then writes `` {answer}</s>``. The
template below renders exactly that for a chat-template message list, so a rendered assistant turn
always extends the generation prompt (``cvqa_bench.models.prompting.conversation_segments`` relies
on it). LLaVA moves ``<image>`` to the front of the first human turn; the image item is rendered
first for the same reason.
"""

from __future__ import annotations

VICUNA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

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
