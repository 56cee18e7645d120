"""Scoring protocols: which scorer a task uses under ``corrected`` (the default) or ``official``.

``corrected`` uses the scorer the task YAML names, the harness's fixed version of CoIN's rule.
``official`` reproduces the official CoIN evaluation scripts, bugs included
(:mod:`cvqa_bench.scoring.official`), so that a paper's number can be reproduced.

Under ``official`` a CoIN task, known by its name, gets its task's official scorer whatever
the YAML names:

============  ===========================  ==========================================
task          official scorer              official script (``ETrain/Eval/LLaVA/CoIN/``)
============  ===========================  ==========================================
ScienceQA     ``scienceqa_official``       ``eval_science_qa.py``
TextVQA       ``vqa_evalai``               ``eval_textvqa.py`` + ``m4c_evaluator.py``
ImageNet      ``imagenet_official``        ``eval_ImagetNet.py``
GQA           ``exact_official_gqa``       ``convert_gqa_for_eval.py`` + ``eval_gqa.py``
VizWiz        ``exact_official``           ``eval_vizwiz.py``
Grounding     ``grounding_official``       ``eval_grounding.py``
VQAv2         ``exact_official``           ``eval_vqav2.py``
OCRVQA        ``exact_official_ocrvqa``    ``eval_ocrvqa.py`` (``OCR-VQA`` also accepted)
============  ===========================  ==========================================

The tasks of UCIT, MLLM-DCL, MLLM-ACL and TriGap get their scripts' scorers by name from
:data:`BENCHMARK_OFFICIAL_SCORERS` (table in docs/benchmarks.md).

Any other task (the synthetic ``mcq``, ``color``, ``shape``… and user tasks) gets the official
version of the rule its corrected scorer implements: ``contains`` -> ``imagenet_official``,
``grounding`` -> ``grounding_official``, ``choice`` -> ``scienceqa_official``, ``exact`` ->
``exact_official`` (no stripping of periods); ``vqa``, ``vqa_evalai`` and ``anls`` have no CoIN
variant and stay as they are, as does a scorer that is already an official one. Task names are
matched exactly as the CoIN task files spell them.
"""

from __future__ import annotations

PROTOCOLS: tuple[str, ...] = ("official", "corrected")

COIN_OFFICIAL_SCORERS: dict[str, str] = {
    "ScienceQA": "scienceqa_official",
    "TextVQA": "vqa_evalai",
    "ImageNet": "imagenet_official",
    "GQA": "exact_official_gqa",
    "VizWiz": "exact_official",
    "Grounding": "grounding_official",
    "VQAv2": "exact_official",
    "OCRVQA": "exact_official_ocrvqa",
    "OCR-VQA": "exact_official_ocrvqa",
}

# The other benchmarks' official scripts (docs/benchmarks.md): UCIT (HiDe-LLaVA / MCITlib eval_deepseek_r1.py,
# eval_caption.py), MLLM-DCL / MLLM-ACL (MLLM-CL ETrain/Eval/LLaVA/CoIN/eval_*.py) and TriGap (Prism
# backbone/shared/eval/eval_ucit.py), by the task names of tasks/{ucit,mllm-dcl,mllm-acl,trigap}.yaml.
BENCHMARK_OFFICIAL_SCORERS: dict[str, str] = {
    **dict.fromkeys(("ImageNet-R", "ArxivQA", "IconQA", "CLEVR-Math"), "exact_official"),
    **dict.fromkeys(("VizWiz-Caption", "Flickr30k"), "caption_official"),
    **dict.fromkeys(("RS", "AD"), "ai2d_official"),
    "Med": "pvqa_official", "Sci": "sci_official", "Fin": "finvis_official",
    "OCR": "ocrbench_official", "Math": "mathvista_judge", "VP": "sat_official", "APP": "app_official",
    **dict.fromkeys(("PMCVQA", "ChartQA", "Roadside", "ChemVQA", "FloodNetVQA", "CLEVR"), "exact_official"),
    **dict.fromkeys(("DocVQA", "InfographicVQA"), "anls_prism"),
}

OFFICIAL_BY_KIND: dict[str, str] = {
    "contains": "imagenet_official",
    "grounding": "grounding_official",
    "choice": "scienceqa_official",
    "exact": "exact_official",
    "vqa": "vqa",
    "vqa_evalai": "vqa_evalai",
    "anls": "anls",
    **{name: name for name in ("numeric", "cider", "bleu4", "meteor", "rouge_l", "mathvista_rule")},
}

_OFFICIAL_NAMES = (frozenset(COIN_OFFICIAL_SCORERS.values()) | frozenset(BENCHMARK_OFFICIAL_SCORERS.values())
                   | frozenset(OFFICIAL_BY_KIND.values()))


def official_scorer(task_name: str, corrected_scorer: str) -> str:
    """The official CoIN scorer for ``task_name``, whose task YAML names ``corrected_scorer``.

    Raises ``ValueError`` for a non-CoIN task whose corrected scorer has no known official version.
    """
    if task_name in COIN_OFFICIAL_SCORERS:
        return COIN_OFFICIAL_SCORERS[task_name]
    if task_name in BENCHMARK_OFFICIAL_SCORERS:
        return BENCHMARK_OFFICIAL_SCORERS[task_name]
    if corrected_scorer in OFFICIAL_BY_KIND:
        return OFFICIAL_BY_KIND[corrected_scorer]
    if corrected_scorer in _OFFICIAL_NAMES:
        return corrected_scorer
    raise ValueError(
        f"task {task_name!r}: scorer {corrected_scorer!r} has no official version; "
        f"the official protocol knows the scorers {', '.join(sorted(OFFICIAL_BY_KIND))}"
    )


def scorer_for(protocol: str, task_name: str, corrected_scorer: str) -> str:
    """The scorer name to use for a task under ``protocol`` (one of :data:`PROTOCOLS`).

    ``corrected`` returns ``corrected_scorer`` unchanged; ``official`` returns
    :func:`official_scorer`. An unknown protocol raises ``ValueError`` naming the allowed ones.
    """
    if protocol == "corrected":
        return corrected_scorer
    if protocol == "official":
        return official_scorer(task_name, corrected_scorer)
    raise ValueError(
        f"unknown scoring protocol {protocol!r}; expected one of: {', '.join(PROTOCOLS)}"
    )
