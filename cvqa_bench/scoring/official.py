"""The ``official`` scoring protocol: CoIN's own per-task evaluation rules, reproduced bug for bug.

Each scorer here gives the per-answer score the official CoIN evaluation script gives (the files
are ``ETrain/Eval/LLaVA/CoIN/<script>`` in zackschen/CoIN and ``llava/eval/CoIN/<script>`` in
JingyangQiao/CoIN; the scoring code of the two is identical), so that a published number can be
reproduced and set beside the corrected scorers of this package. The known bugs kept on purpose:

* ``imagenet_official``: case-sensitive containment both ways, so an empty prediction is right;
* ``grounding_official``: the box parser loses the last character of the last coordinate;
* ``scienceqa_official``: the first one-character word of any kind is taken as the letter;
* ``exact_official``, ``exact_official_gqa``, ``exact_official_ocrvqa``: raw string comparison
  with no whitespace or period clean-up (GQA strips trailing periods of the prediction only),
  and OCR-VQA scores every prediction containing ``Unanswerable`` as wrong.

TextVQA's official script (``eval_textvqa.py`` with ``m4c_evaluator.TextVQAAccuracyEvaluator``) is
the corrected ``vqa_evalai`` rule already and has no scorer here; see
:mod:`cvqa_bench.scoring.protocol` for which scorer each task uses under which protocol.

Where the harness has more than the official script had, the choice made is:

* a list of gold answers (the official test files hold one): right if right against any of them;
* a ``None`` prediction is the empty prediction, as everywhere in the harness - so under
  ``imagenet_official`` it is right, exactly as an empty generated text is officially;
* the official scripts compare the generated text as written to the results file, which their
  generation scripts ``strip()`` (as the harness does); the scorers do not strip again.
"""

from __future__ import annotations

from typing import ClassVar

from cvqa_bench.scoring.base import Scorer
from cvqa_bench.scoring.choice import gold_choice
from cvqa_bench.scoring.grounding import IOU_THRESHOLD, box_iou
from cvqa_bench.scoring.official_parsers import (
    official_choice,
    official_gold_box,
    official_predicted_box,
)

# eval_ocrvqa.py skips (so scores as wrong) every prediction holding this, case-sensitively.
OFFICIAL_UNANSWERABLE = "Unanswerable"


def _score(right: bool) -> float:
    return 1.0 if right else 0.0


class ImageNetOfficialScorer(Scorer):
    """Official ImageNet rule: gold in prediction or prediction in gold, case-sensitive; "" is right."""

    name: ClassVar[str] = "imagenet_official"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """Reproduces ``eval_single`` of ``eval_ImagetNet.py``: ``gt in pred or pred in gt``, raw strings.

        Nothing is lowercased or stripped, so ``"Goldfish"`` against ``"goldfish"`` is wrong, while
        ``""`` is contained in every gold answer and is right.
        """
        return _score(any(gold in prediction or prediction in gold for gold in answers))


class GroundingOfficialScorer(Scorer):
    """Official grounding rule: IoU > 0.5 with the official (lossy) box parser."""

    name: ClassVar[str] = "grounding_official"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """Reproduces ``eval_single`` and ``calculate_iou`` of ``eval_grounding.py``: ``iou > 0.5``.

        The prediction is read by :func:`official_predicted_box` (a prediction it cannot read is
        wrong), each gold box by :func:`official_gold_box`. ``calculate_iou`` is the same formula
        as :func:`cvqa_bench.scoring.grounding.box_iou`, with no check of range or of corner
        order (an inverted box has no intersection, so IoU 0). The official script first
        multiplies every coordinate by ``max(width, height)``; IoU does not depend on that scale
        except in the last bits of rounding, so it is computed on the normalised boxes here.
        """
        golds = [official_gold_box(answer) for answer in answers]
        box = official_predicted_box(prediction)
        if box is None:
            return 0.0
        return _score(any(box_iou(box, gold) > IOU_THRESHOLD for gold in golds))


class ScienceQAOfficialScorer(Scorer):
    """Official ScienceQA rule: the letter read by eval_science_qa.py must equal the gold letter."""

    name: ClassVar[str] = "scienceqa_official"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """Reproduces the ``__main__`` loop and ``get_pred_idx`` of ``eval_science_qa.py``.

        The letter comes from :func:`official_choice`; the official script compares its index
        with the gold option index, which for a gold letter among the question's choices is the
        same as comparing letters. Gold answers are ``"B"`` or ``"B. text"``, as for ``choice``.
        """
        golds = {gold_choice(answer) for answer in answers}
        return _score(official_choice(prediction) in golds)


class ExactOfficialScorer(Scorer):
    """Official VizWiz / VQAv2 rule: ``pred.upper() == answer.upper()``; spaces, periods kept."""

    name: ClassVar[str] = "exact_official"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """Reproduces ``eval_single`` of ``eval_vizwiz.py`` and of ``eval_vqav2.py`` (the same rule).

        ``"yes."`` against ``"yes"`` is wrong. Comparing ``upper()`` forms is not the same as
        comparing ``lower()`` forms: ``"straße"`` equals ``"STRASSE"`` here.
        """
        upper = prediction.upper()
        return _score(any(upper == gold.upper() for gold in answers))


class GQAOfficialScorer(Scorer):
    """Official GQA rule: ``pred.rstrip('.').lower() == answer``, the gold taken as written."""

    name: ClassVar[str] = "exact_official_gqa"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """Reproduces ``convert_gqa_for_eval.py`` then the main loop of ``eval_gqa.py``.

        The converter (a top-level script) writes ``text.rstrip('.').lower()``; ``eval_gqa.py``
        scores ``correct = (predicted == gold)``, the gold answer as the questions file holds it.
        Only the prediction is cleaned: a gold answer with a capital or a trailing period can never
        be matched, and ``"yes. "`` keeps its period because the space comes last.
        """
        cleaned = prediction.rstrip(".").lower()
        return _score(cleaned in answers)


class OCRVQAOfficialScorer(Scorer):
    """Official OCR-VQA rule: 'Unanswerable' in the prediction is wrong, else equality ignoring case."""

    name: ClassVar[str] = "exact_official_ocrvqa"

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        """Reproduces ``eval_single`` of ``eval_ocrvqa.py``.

        A prediction holding ``Unanswerable`` (case-sensitive substring) is skipped but still
        counted in the total, so it scores 0 even against the gold answer ``"Unanswerable"``;
        otherwise ``pred.lower() == answer.lower()`` with no stripping of spaces or periods.
        """
        if OFFICIAL_UNANSWERABLE in prediction:
            return 0.0
        lower = prediction.lower()
        return _score(any(lower == gold.lower() for gold in answers))
