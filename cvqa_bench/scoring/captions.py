"""Caption metrics as the UCIT scripts compute them: pycocoevalcap's PTB tokenizer, BLEU, METEOR, ROUGE-L, CIDEr.

The official path (``eval_caption.py`` of github Ghy0501/HiDe-LLaVA ``llava/eval/``, Ghy0501/MCITlib
``*/llava/eval/CoIN/`` and LAMDA-CL/Prism ``backbone/shared/eval/``): the k-th prediction becomes
``image_id`` k (the references are matched by position: :mod:`cvqa_bench.data.caption_refs`), pycocotools
loads both sides, ``COCOEvalCap.evaluate()`` lower-cases and tokenizes every caption with Stanford's
PTBTokenizer (punctuation tokens dropped) and runs ``Bleu(4)``, ``Meteor()``, ``Rouge()``, ``Cider()`` and
``Spice()`` in that order; the script prints Bleu_1..4, METEOR, ROUGE_L and CIDEr times 100 and their
plain mean, ``Average``, which is the number the UCIT tables report for VizWiz-Caption and Flickr30k.

Here the same pycocoevalcap classes run on the same dictionaries, without SPICE (it is computed, then
not printed; it downloads Stanford CoreNLP models on first use). The tokenizer and METEOR run Java: a
caption scorer is refused at construction, with one line, when ``java`` is not on PATH. There is no
pure-Python stand-in: its tokens, and so every score, would differ from the published ones.

CIDEr is the corpus IDF mean (the mean of the per-image values), so a cell can exceed 100; BLEU is
pycocoevalcap's corpus BLEU (not the mean of per-image BLEU); the per-row scores kept beside a cell (for
intervals) are the per-image values, whose mean is the cell for CIDEr and ROUGE-L only.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from cvqa_bench.scoring.base import Scorer, check_rows

OFFICIAL_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def require_java() -> None:
    """``ValueError`` (one line) when no ``java`` is on PATH: pycocoevalcap's tokenizer and METEOR need it."""
    if shutil.which("java") is None:
        raise ValueError("caption scorers need Java for pycocoevalcap's PTB tokenizer and METEOR, and no `java` is "
                         "on PATH: install a JRE (e.g. apt-get install openjdk-17-jre-headless)")


def coco_dicts(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    """``gts`` and ``res`` as ``COCOEvalCap.evaluate`` builds them: image_id k (1-based) -> caption dicts."""
    gts = {k: [{"caption": c} for c in refs] for k, refs in enumerate(references, start=1)}
    res = {k: [{"caption": p}] for k, p in enumerate(predictions, start=1)}
    return gts, res


@contextlib.contextmanager
def _java_stderr(what: str) -> Iterator[None]:
    """Keep a Java child's progress lines off the console (it inherits fd 2); its errors become one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        lines = sink.read().decode("utf-8", "replace").splitlines()
    errors = [line for line in lines if "Exception" in line or line.startswith("Error")]
    if errors:
        raise ValueError(f"pycocoevalcap's {what} (Java) failed: {errors[0].strip()}")


@functools.cache
def _meteor() -> Any:
    """One METEOR Java process per Python process: loading its paraphrase table takes seconds."""
    from pycocoevalcap.meteor.meteor import Meteor

    with _java_stderr("METEOR"):
        return Meteor()


def caption_metrics(predictions: Sequence[str], references: Sequence[Sequence[str]],
                    metrics: Sequence[str] = OFFICIAL_METRICS) -> dict[str, tuple[float, list[float]]]:
    """Each of ``metrics`` (names as ``COCOEvalCap.eval``) -> (corpus value, per-image values), in [0, 1] but CIDEr."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    require_java()
    gts, res = coco_dicts(predictions, references)
    # One tokenizer process for both sides (the official code starts two): -preserveLines tokenizes
    # each caption on its own, so the tokens are the same.
    with _java_stderr("the PTB tokenizer"):
        both = PTBTokenizer().tokenize({**{("gts", k): v for k, v in gts.items()},
                                        **{("res", k): v for k, v in res.items()}})
    gts = {k: both[("gts", k)] for k in gts}
    res = {k: both[("res", k)] for k in res}
    out: dict[str, tuple[float, list[float]]] = {}
    if any(m.startswith("Bleu_") for m in metrics):
        corpus, per_image = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            out[f"Bleu_{n + 1}"] = (float(corpus[n]), [float(s) for s in per_image[n]])
    for name, make in (("METEOR", _meteor), ("ROUGE_L", Rouge), ("CIDEr", Cider)):
        if name in metrics:
            corpus, per_image = make().compute_score(gts, res)
            out[name] = (float(corpus), [float(s) for s in per_image])
    return {m: out[m] for m in metrics}


class CaptionScorer(Scorer):
    """One caption metric over a whole predictions file (``score`` alone = a corpus of one)."""

    metrics: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        require_java()

    def _score(self, prediction: str, answers: tuple[str, ...]) -> float:
        return self.score_corpus([prediction], [answers])[0]

    def score_many(self, predictions: Sequence[str | None], answers: Sequence[Any]) -> list[float]:
        """The per-image values of a whole file (their IDF and corpus statistics come from the whole file)."""
        return self.score_corpus(predictions, answers)[1]

    def score_corpus(self, predictions: Sequence[str | None], answers: Sequence[Any],
                     contexts: Sequence[dict[str, Any] | None] | None = None) -> tuple[float, list[float]]:
        """The corpus value (the mean of :attr:`metrics`) and the per-image values (their mean per image)."""
        rows = check_rows(predictions, answers)
        if not rows:
            return 0.0, []
        values = caption_metrics([p for p, _ in rows], [a for _, a in rows], self.metrics)
        corpus = sum(v[0] for v in values.values()) / len(values)
        per_image = [sum(v[1][i] for v in values.values()) / len(values) for i in range(len(rows))]
        return corpus, per_image


class CaptionAverageOfficialScorer(CaptionScorer):
    """UCIT's caption number: the plain mean of Bleu_1..4, METEOR, ROUGE_L and CIDEr (eval_caption.py ``Average``)."""

    name = "caption_official"
    metrics = OFFICIAL_METRICS


class CIDErScorer(CaptionScorer):
    """CIDEr-D (pycocoevalcap ``Cider``), the corpus mean; a value of 1 is printed as 100."""

    name = "cider"
    metrics = ("CIDEr",)


class Bleu4Scorer(CaptionScorer):
    """Corpus BLEU-4 (pycocoevalcap ``Bleu(4)``, closest reference length)."""

    name = "bleu4"
    metrics = ("Bleu_4",)


class MeteorScorer(CaptionScorer):
    """METEOR 1.5 (pycocoevalcap ``Meteor``, its Java jar), the corpus aggregate."""

    name = "meteor"
    metrics = ("METEOR",)


class RougeLScorer(CaptionScorer):
    """ROUGE-L (pycocoevalcap ``Rouge``, beta 1.2), the mean over images."""

    name = "rouge_l"
    metrics = ("ROUGE_L",)
