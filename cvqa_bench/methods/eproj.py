"""EProj (He et al. 2023, "Continual Instruction Tuning for Large Multimodal Models"): one projector per task.

Each task trains its own copy of the multimodal projector, started from the base model's projector
(``init: previous`` starts from the previous task's); the LLM LoRA is shared and fine-tuned across tasks.
At test time a task is evaluated with the shared LoRA and the projector its instructions select: the
LLaCA grouping machinery (``methods/grouping.py``) with one codebook per trained task, the best mean
TF-IDF similarity winning; with no shared word at all (best score 0, or below ``threshold``) the newest
projector is used. ``oracle: true`` picks a trained task's own projector by name.

Ties cannot pass silently: CoIN's VQA-style tasks share one instruction ("Answer the question using a
single word or phrase."), so their instruction scores tie exactly. A tie is broken over the whole prompt
set (questions included): the cosine similarity of the TF-IDF centroid of the evaluated task's test
prompts to that of each tied task's training prompts, one vectorizer fitted on all of them. What is
still tied after that goes to the first (oldest) task and is named in the records (``ambiguous``).
Memory: one projector copy per task plus one of the shared tensors, and up to ``PROMPT_SAMPLE`` prompt
texts per task.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

from cvqa_bench.config import ConfigError
from cvqa_bench.data.coin import IMAGE_TOKEN
from cvqa_bench.methods.base import PROMPT_SAMPLE, Method, TaskContext, TaskInfo
from cvqa_bench.methods.dynamic_ema import strip_prefix
from cvqa_bench.methods.grouping import group_scores
from cvqa_bench.models.families.base import DEFAULT_PROJECTOR_NAMES


class EProjOptions(BaseModel):
    """Options of the ``eproj`` method."""

    model_config = ConfigDict(extra="forbid")

    oracle: bool = Field(False, description="pick a trained task's projector by its name instead of its instructions")
    init: Literal["base", "previous"] = Field("base", description="a new projector starts as the base model's "
                                              "or as the previous task's")
    threshold: float = Field(0.0, ge=0, le=1, description="below this best similarity the newest projector is used")


TIE_TOLERANCE = 1e-9  # instruction scores this close are a tie (TF-IDF sums in another order)


def prompt_texts(prompts: Iterable[str], limit: int = PROMPT_SAMPLE) -> tuple[str, ...]:
    """The first ``limit`` distinct prompts, ``<image>`` removed and whitespace collapsed."""
    kept: dict[str, None] = {}
    for prompt in prompts:
        text = " ".join(prompt.replace(IMAGE_TOKEN, " ").split())
        if text:
            kept.setdefault(text, None)
        if len(kept) == limit:
            break
    return tuple(kept)


def prompt_scores(query: Sequence[str], books: list[Sequence[str]]) -> list[float]:
    """Cosine similarity of the TF-IDF centroid of ``query`` to each book's centroid (0 for an empty side);
    one ``TfidfVectorizer(stop_words="english")`` fitted on every prompt of the query and the books."""
    texts = [*query, *(t for book in books for t in book)]
    if not query or not texts:
        return [0.0] * len(books)
    try:
        vectors = TfidfVectorizer(stop_words="english").fit_transform(texts)
    except ValueError:  # stop words only: nothing to compare
        return [0.0] * len(books)
    centroids, start = [], len(query)
    for book in books:
        centroids.append(np.asarray(vectors[start:start + len(book)].mean(axis=0)) if book else None)
        start += len(book)
    mine = np.asarray(vectors[:len(query)].mean(axis=0))
    return [0.0 if c is None else float(cosine_similarity(mine, c)[0, 0]) for c in centroids]


@dataclass(frozen=True)
class Routing:
    """One routing decision: the chosen codebook and why."""

    index: int
    scores: list[float]  # mean instruction similarity to each codebook
    tied: list[int] = field(default_factory=list)  # codebooks tied at the best instruction score (when > 1)
    prompt_scores: list[float] = field(default_factory=list)  # the tie-break's score of each tied codebook
    ambiguous: bool = False  # still tied after the tie-break: the first of them was taken

    def record(self, names: list[str]) -> dict[str, Any]:
        """JSON-able, codebooks by task name."""
        out: dict[str, Any] = {"to": names[self.index], "instruction_scores": dict(zip(names, self.scores))}
        if self.tied:
            out["tied"] = [names[i] for i in self.tied]
            out["prompt_scores"] = dict(zip(out["tied"], self.prompt_scores))
            out["ambiguous"] = self.ambiguous
        return out


def route_projector(instructions: Sequence[str], codebooks: list[list[str]], threshold: float,
                    prompts: Sequence[str] = (), prompt_books: list[Sequence[str]] | None = None) -> Routing:
    """The codebook (one per trained task) whose instructions match best; the last one when the best mean
    similarity is 0 or below ``threshold``. Ties at the best score are broken by :func:`prompt_scores` of
    ``prompts`` against ``prompt_books`` (one per codebook); a tie left after that goes to the first."""
    if not codebooks:
        raise ValueError("no projector has been trained yet")
    scores = group_scores(instructions, codebooks)
    top = max(scores)
    if top <= 0 or top < threshold:
        return Routing(len(codebooks) - 1, scores)
    tied = [i for i, s in enumerate(scores) if top - s <= TIE_TOLERANCE]
    if len(tied) == 1:
        return Routing(tied[0], scores)
    books = prompt_books or [() for _ in codebooks]
    second = prompt_scores(prompts, [books[i] for i in tied])
    best = max(second)
    winners = [i for i, s in zip(tied, second) if best - s <= TIE_TOLERANCE]
    return Routing(winners[0], scores, tied, second, ambiguous=len(winners) > 1 or best <= 0)


def select_projector(instructions: Sequence[str], codebooks: list[list[str]], threshold: float,
                     prompts: Sequence[str] = (), prompt_books: list[Sequence[str]] | None = None) -> int:
    """Index of the selected codebook (:func:`route_projector`)."""
    return route_projector(instructions, codebooks, threshold, prompts, prompt_books).index


class EProj(Method):
    """EProj: a new projector per task, shared LLM LoRA, projector chosen at test time by instructions."""

    name = "eproj"
    Options = EProjOptions

    def __init__(self, options: BaseModel | None = None, seed: int = 0) -> None:
        super().__init__(options, seed)
        self.trained: list[TaskInfo] = []  # in order; their instructions are the codebooks
        self.projectors: dict[str, dict[str, torch.Tensor]] = {}  # task name -> its projector tensors
        self.base: dict[str, torch.Tensor] = {}  # the base model's projector
        self.shared: dict[str, torch.Tensor] = {}  # the rest of the trainable tensors after the last task
        self.tasks: list[TaskInfo] = []
        self.prompts: dict[str, tuple[str, ...]] = {}  # task name -> its training prompts (routing tie-break)
        self._in_progress: str | None = None

    def check_model(self, model: Any) -> None:
        """EProj trains one projector per task: the projector must be trainable."""
        if not model.train_projector:
            raise ValueError("EProj trains one projector per task and needs model.train_projector: true")

    def setup(self, tasks: list[TaskInfo]) -> None:
        """Remember the tasks (for the routing records)."""
        self.tasks = list(tasks)

    def train_rows(self, task: TaskInfo, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows unchanged; their first prompts are kept for routing ties."""
        self.prompts[task.name] = prompt_texts(r["conversations"][0]["value"] for r in rows)
        return rows

    def prepare_model(self, model: torch.nn.Module, tasks: list[TaskInfo]) -> None:
        """Remember which parameters are the projector in this model's family (copied per task)."""
        from cvqa_bench.models.families import family_for

        self.projector_names = family_for(model).projector_names

    def _split(self, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        names = getattr(self, "projector_names", DEFAULT_PROJECTOR_NAMES)
        projector = {n: t for n, t in state.items() if any(part in n for part in names)}
        return projector, {n: t for n, t in state.items() if n not in projector}

    def before_task(self, ctx: TaskContext) -> None:
        """Start the task's projector from the base (or previous) one; the shared tensors stay as they are."""
        if self._in_progress == ctx.task.name:
            return  # resumed mid-task: the weights came from the checkpoint
        projector, _ = self._split(ctx.trainables.snapshot())
        if not projector:
            raise ConfigError("method eproj trains one projector per task and needs model.train_projector: true")
        if not self.base:
            self.base = projector  # before the first task: the base model's projector
        start = self.base if self.options.init == "base" or not self.trained else self.projectors[self.trained[-1].name]
        ctx.trainables.load({**ctx.trainables.snapshot(), **start})
        self._in_progress = ctx.task.name

    def after_task(self, ctx: TaskContext) -> None:
        """Keep the task's projector and the shared tensors."""
        projector, self.shared = self._split(ctx.trainables.snapshot())
        self.projectors[ctx.task.name] = projector
        if ctx.task.name not in [t.name for t in self.trained]:
            self.trained.append(ctx.task)
        self._in_progress = None

    def routing(self, task: TaskInfo) -> Routing:
        """How ``task`` is routed by its instructions (ties broken by its test prompts)."""
        books = [list(t.instructions) for t in self.trained]
        prompt_books = [self.prompts.get(t.name, ()) for t in self.trained]
        return route_projector(task.instructions, books, self.options.threshold, prompt_texts(task.test_prompts),
                               prompt_books)

    def route(self, task: TaskInfo) -> str:
        """The name of the trained task whose projector ``task`` is evaluated with."""
        if self.options.oracle and task.name in self.projectors:
            return task.name
        return self.trained[self.routing(task).index].name

    def eval_state(self, task: TaskInfo) -> dict[str, torch.Tensor] | None:
        """The shared tensors with the selected task's projector; None before any task is trained."""
        if not self.trained:
            return None
        return {**self.shared, **self.projectors[self.route(task)]}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``proj.<task index>.<name>``, ``base.<name>``, ``shared.<name>``."""
        index = {t.name: t.index for t in self.trained}
        out = {f"proj.{index[task]}.{n}": t for task, params in self.projectors.items() for n, t in params.items()}
        out.update({f"base.{n}": t for n, t in self.base.items()})
        out.update({f"shared.{n}": t for n, t in self.shared.items()})
        return {k: v.detach().contiguous() for k, v in out.items()}

    def extra_state(self) -> dict[str, Any]:
        """The trained tasks (name, index, instructions) and the task in progress."""
        return {"trained": [{"name": t.name, "index": t.index, "instructions": list(t.instructions)}
                            for t in self.trained], "in_progress": self._in_progress,
                "prompts": {name: list(texts) for name, texts in self.prompts.items()}}

    def load_state(self, tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
        """Restore ``state_dict`` + ``extra_state``."""
        self.trained = [TaskInfo(index=int(t["index"]), name=t["name"], instructions=tuple(t["instructions"]))
                        for t in extra.get("trained", [])]
        self._in_progress = extra.get("in_progress")
        self.prompts = {str(name): tuple(texts) for name, texts in extra.get("prompts", {}).items()}
        self.projectors = {t.name: strip_prefix(tensors, f"proj.{t.index}.") for t in self.trained}
        self.base = strip_prefix(tensors, "base.")
        self.shared = strip_prefix(tensors, "shared.")

    def records(self) -> dict[str, Any]:
        """Oracle or not, the trained projectors and which projector each task is evaluated with now."""
        routing = {t.name: self.route(t) for t in self.tasks} if self.trained else {}
        names = [t.name for t in self.trained]
        decisions = {t.name: self.routing(t).record(names) for t in self.tasks} if self.trained else {}
        return {"oracle": self.options.oracle, "init": self.options.init, "projectors": names, "routing": routing,
                "decisions": decisions, "ambiguous": sorted(n for n, d in decisions.items() if d.get("ambiguous"))}
