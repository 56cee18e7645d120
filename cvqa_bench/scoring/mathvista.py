"""MLLM-CL's Math scoring (MathVista testmini), the pure part: answer inference, the check, the judge prompt.

github bjzhb666/MLLM-CL ``ETrain/Eval/LLaVA/CoIN/eval_math.py`` (VLMEvalKit's MathVista evaluation):
``post_check(prefetch=True)`` first tries to read the answer from the raw prediction (``can_infer`` for
multiple choice, ``int``/``float`` for numbers); when that fails an LLM judge is asked to extract the
answer (:func:`judge_prompt`), and ``post_check`` is applied to its reply. Quirks kept under the official
protocol: a text (``answer_type`` other than integer/float) free-form answer is never right on its own
(``res = str(res)`` turns the unset ``None`` into ``'None'``), so every such row goes to the judge, and
the judge's reply is checked the same way, so it is never right either; ``int('3.0')`` fails, so "3.0"
against 3 is wrong. :func:`rule_right` is the corrected check (no judge): numbers compared as numbers,
text answers compared case-insensitively, multiple choice by the same ``can_infer``.
"""

from __future__ import annotations

import ast
import string
from typing import Any

REJECTIONS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
FAIL_MSG = "Failed to obtain answer via API."


def choices_dict(choices: Any) -> dict[str, str]:
    """MathVista's ``choices`` (a list, or its Python repr as the xlsx stores it) as letter -> text."""
    if isinstance(choices, str):
        choices = ast.literal_eval(choices)  # the official eval() on a literal list; literal_eval is the safe form
    return {chr(65 + i): str(v) for i, v in enumerate(choices)}


def can_infer_option(answer: str, choices: dict[str, str]) -> str | bool:
    """The single option letter standing as a word in ``answer`` ('Z' for a refusal), else False."""
    if FAIL_MSG in answer:
        return False
    if any(refusal in answer for refusal in REJECTIONS):
        return "Z"
    mod = answer
    for char in ".()[],:;!*#{}":
        mod = mod.replace(char, " ")
    splits = [x.strip() for x in mod.split()]
    count = sum(c in splits for c in choices)
    if count == 1:
        return next(c for c in choices if c in splits)
    if count == 0 and sum(c in splits for c in ("Z", "")) == 1:
        return "Z"
    return False


def can_infer_text(answer: str, choices: dict[str, str]) -> str | bool:
    """The single option whose text (lower-cased) occurs in ``answer``, else False."""
    answer = answer.lower()
    found = [k for k, v in choices.items() if k in string.ascii_uppercase and v.lower() in answer]
    return found[0] if len(found) == 1 else False


def can_infer(answer: Any, choices: dict[str, str]) -> str | bool:
    """An option letter from a letter in the answer, else from an option's text, else False."""
    answer = str(answer)
    return can_infer_option(answer, choices) or can_infer_text(answer, choices)


def official_right(response: str, row: dict[str, Any], answer: str) -> bool:
    """eval_math.py ``post_check`` on a response (the raw prediction, or the judge's extraction)."""
    try:
        if row["question_type"] == "multi_choice":
            return can_infer(response, choices_dict(row["choices"])) == str(row["answer_option"])
        if row["answer_type"] == "integer":
            return int(response) == int(answer)
        if row["answer_type"] == "float":
            return float(response) == float(answer)
        return "None" == str(answer)  # the official res = str(res) with res still None
    except ValueError:
        return False


def rule_right(prediction: str, row: dict[str, Any], answer: str) -> bool:
    """The corrected check without a judge: numbers as numbers, text case-insensitively, options by can_infer."""
    if row["question_type"] == "multi_choice":
        return can_infer(prediction, choices_dict(row["choices"])) == str(row["answer_option"])
    text = prediction.strip().rstrip(".")
    if row["answer_type"] in ("integer", "float"):
        try:
            return float(text) == float(answer)
        except ValueError:
            return False
    return text.lower() == str(answer).strip().lower()


ICE = (
    "Hint: Please answer the question requiring an integer answer and provide the final value,\n"
    "e.g., 1, 2, 3, at the end.\n\nQuestion: Which number is missing?\n\n"
    "Model response: The number missing in the sequence is 14.\n\nExtracted answer: 14\n",
    "Hint: Please answer the question requiring a floating-point number with one decimal place and provide the "
    "final value,\ne.g., 1.2, 1.3, 1.4, at the end.\n\nQuestion: What is the fraction of females facing the "
    "camera?\n\nModel response: The fraction of females facing the camera is 0.6,\nwhich means that six out of "
    "ten females in the group are facing the camera.\n\nExtracted answer: 0.6\n",
    "Hint: Please answer the question requiring a floating-point number with two decimal places and provide the "
    "final value,\ne.g., 1.23, 1.34, 1.45, at the end.\n\nQuestion: How much money does Luca need to buy a sour "
    "apple candy and a butter-scotch candy? (Unit: $)\n\nModel response: Luca needs $1.45 to buy a sour apple "
    "candy and a butterscotch candy.\n\nExtracted answer: 1.45\n",
    "Hint: Please answer the question requiring a Python list as an answer and provide the final list,\n"
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n\nQuestion: Between which two years does the line graph saw "
    "its maximum peak?\n\nModel response: The line graph saw its maximum peak between 2007 and 2008.\n\n"
    "Extracted answer: [2007, 2008]\n",
    "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n\n"
    "Question: What fraction of the shape is blue?\n\nChoices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n\n"
    "Model response: The correct answer is (B) 8/11.\n\nExtracted answer: B\n",
)
TASK_DESCRIPTION = ("\nPlease read the following example.\n"
                    "Then extract the answer from the model response and type it at the end of the prompt.\n\n")


def judge_prompt(question: str, prediction: str) -> str:
    """``build_mathvista_gpt4_prompt``: the task, five worked examples, the question, then the response.

    As the official string: "respone", and no line break between the response and "Extracted answer:".
    """
    examples = "".join("\n" + example + "\n" for example in ICE)
    return f"{TASK_DESCRIPTION}{examples}{question}\nModel respone: {prediction}Extracted answer:"
