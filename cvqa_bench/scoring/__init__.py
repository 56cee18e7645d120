"""Per-answer scoring rules, looked up by name: ``get_scorer(name).score(prediction, answers)``.

Every scorer returns a float in [0, 1] for one prediction against one gold answer or a list of
them, and offers ``score_many`` for a whole predictions file. Entries are lazy, so importing this
package (and ``cvqa list scorers``) stays pure Python and instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cvqa_bench.registry import Registry

if TYPE_CHECKING:
    from cvqa_bench.scoring.base import Scorer

scorers: Registry = Registry("scorer")

_ENTRIES = {
    "vqa": ("vqa:VQAScorer", "official VQA accuracy (vqaEval.py): min(1, matches/3), leave-one-out, normalises only if answers differ"),
    "vqa_evalai": ("vqa:VQAEvalAIScorer", "TextVQA/EvalAI VQA accuracy: always normalises prediction and answers"),
    "exact": ("exact:ExactScorer", "case-insensitive exact match against any answer, trailing periods ignored"),
    "choice": ("choice:ChoiceScorer", "ScienceQA option letter A-E ('B', 'B. text' or first single-letter word)"),
    "contains": ("contains:ContainsScorer", "ImageNet: every word of a gold answer is a word of the prediction (case-folded)"),
    "grounding": ("grounding:GroundingScorer", "box [x1, y1, x2, y2] in [0, 1], right if IoU > 0.5"),
    "anls": ("anls:ANLSScorer", "average normalised Levenshtein similarity, threshold 0.5"),
    # The `official` protocol (scoring/protocol.py): CoIN's eval scripts reproduced, bugs included.
    "imagenet_official": ("official:ImageNetOfficialScorer", "CoIN eval_ImagetNet.py: gold in pred or pred in gold, case-sensitive; empty prediction is right"),
    "grounding_official": ("official:GroundingOfficialScorer", "CoIN eval_grounding.py: IoU > 0.5, parser drops the last character of the last coordinate"),
    "scienceqa_official": ("official:ScienceQAOfficialScorer", "CoIN eval_science_qa.py: letter, 'X. ', else first one-character word uppercased"),
    "exact_official": ("official:ExactOfficialScorer", "CoIN eval_vizwiz.py / eval_vqav2.py: pred.upper() == answer.upper(), nothing stripped"),
    "exact_official_gqa": ("official:GQAOfficialScorer", "CoIN convert_gqa_for_eval.py + eval_gqa.py: pred.rstrip('.').lower() == answer"),
    "exact_official_ocrvqa": ("official:OCRVQAOfficialScorer", "CoIN eval_ocrvqa.py: 'Unanswerable' in pred is wrong, else pred.lower() == answer.lower()"),
    # UCIT, MLLM-DCL / MLLM-ACL and TriGap (docs/benchmarks.md): their official scripts' rules and corrections.
    "caption_official": ("captions:CaptionAverageOfficialScorer", "UCIT eval_caption.py Average: mean of BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, Java)"),
    "cider": ("captions:CIDErScorer", "CIDEr-D over the file (pycocoevalcap; PTB tokenizer needs Java)"),
    "bleu4": ("captions:Bleu4Scorer", "corpus BLEU-4 (pycocoevalcap; PTB tokenizer needs Java)"),
    "meteor": ("captions:MeteorScorer", "METEOR 1.5 (pycocoevalcap; Java)"),
    "rouge_l": ("captions:RougeLScorer", "ROUGE-L (pycocoevalcap; PTB tokenizer needs Java)"),
    "ai2d_official": ("mcit_rules:AI2DOfficialScorer", "MLLM-CL eval_ai2d.py (RS, AD): gold substring, one-word gold bounded by space/period/comma"),
    "pvqa_official": ("mcit_rules:PVQAOfficialScorer", "MLLM-CL eval_pvqa.py (Med): gold.lower() in pred.lower(); 'Unanswerable' is wrong"),
    "finvis_official": ("mcit_rules:FinVisOfficialScorer", "MLLM-CL eval_finvis.py (Fin): pred without spaces and periods == gold, lower-cased"),
    "sci_official": ("mcit_rules:SciOfficialScorer", "MLLM-CL eval_sci.py (Sci): exact by image source, MapQA containment / listed states (context image, text)"),
    "sat_official": ("mcit_rules:SATOfficialScorer", "MLLM-CL eval_sat.py (VP): squashed gold in squashed prediction"),
    "ocrbench_official": ("mcit_rules:OCRBenchOfficialScorer", "MLLM-CL eval_ocr.py (OCRBench): gold contained, handwritten math without spaces (context answer_type)"),
    "app_official": ("mcit_rules:APPOfficialScorer", "MLLM-CL APP submission: text.strip().upper() == gold letter"),
    "anls_prism": ("mcit_rules:ANLSPrismScorer", "Prism eval_ucit.py ANLS: 1 - lev/max_len, no 0.5 threshold"),
    "numeric": ("mcit_rules:NumericScorer", "first number of the prediction (digits or a word up to twenty) == gold number"),
    "mathvista_judge": ("judge:MathVistaJudgeScorer", "MLLM-CL eval_math.py: answer read from the prediction, else extracted by an LLM judge (CVQA_JUDGE_URL)"),
    "mathvista_rule": ("judge:MathVistaRuleScorer", "MathVista answer check without a judge: numbers as numbers, text case-insensitive, options by can_infer"),
}  # fmt: skip
for _name, (_target, _description) in _ENTRIES.items():
    scorers.add_lazy(_name, f"cvqa_bench.scoring.{_target}", _description)


def get_scorer(name: str) -> Scorer:
    """A ready scorer for ``name``; unknown names raise ``UnknownNameError`` with suggestions."""
    scorer = scorers.get(name)()
    assert scorer.name == name, f"scorer registered as {name!r} calls itself {scorer.name!r}"
    return scorer


__all__ = ["get_scorer", "scorers"]
