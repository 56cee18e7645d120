"""A stage in the formats other tools load: PEFT adapter folders and the non-LoRA tensors in the HF model's names.

Written into the stage folder beside ``weights.safetensors`` (before DONE.json seals the stage's files)::

    adapter/                 the model after the stage: adapter_config.json + adapter_model.safetensors,
                             written by peft's own ``save_pretrained`` (LoRA and the trainable projector),
                             and README.md, a model card naming the run's stage, method and tasks
    adapters/<group>/        a method that evaluates tasks with other weights (LLaCA's parameter groups):
                             one PEFT adapter per distinct set of weights, and routing.json (task → group)
    non_lora.safetensors     the trainable tensors that are not LoRA (the projector) under their names in
                             the HF model, e.g. ``model.multi_modal_projector.linear_1.weight`` (LLaVA)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cvqa_bench.config import ConfigError
from cvqa_bench.io import atomic_write_json
from cvqa_bench.methods.base import Method, TaskInfo, Trainables
from cvqa_bench.run.state.checkpoint import disk_errors, save_tensors

ADAPTER_DIR = "adapter"
GROUP_ADAPTERS_DIR = "adapters"
ROUTING_FILE = "routing.json"
NON_LORA_FILE = "non_lora.safetensors"


def is_peft(model: torch.nn.Module) -> bool:
    """True for a peft ``PeftModel`` (LoRA runs); full-parameter runs have no adapter."""
    return hasattr(model, "peft_config") and hasattr(model, "save_pretrained")


def llava_name(name: str) -> str:
    """A trainable tensor's name in the plain HF model (peft's prefix and wrapper removed)."""
    return name.removeprefix("base_model.model.").replace(".modules_to_save.default.", ".")


def peft_holds_every_lora(model: torch.nn.Module, trainables: Trainables) -> bool:
    """False when a method replaced peft's LoRA layers with its own (O-LoRA, MoELoRA: model surgery): peft's
    adapter would then lack them, and a folder written from it would silently be another model."""
    from peft import get_peft_model_state_dict

    saved = sum("lora_" in k for k in get_peft_model_state_dict(model))
    return saved == sum("lora_" in n for n in trainables.names)


def save_stage_adapters(model: torch.nn.Module, trainables: Trainables, method: Method, tasks: list[TaskInfo],
                        stage_dir: Path) -> None:
    """Write ``adapter/``, ``non_lora.safetensors`` and, where tasks are evaluated with other weights,
    ``adapters/<group>/`` for the model as it is after the stage (the model is left as it was)."""
    if not is_peft(model) or not peft_holds_every_lora(model, trainables):
        return
    stage_dir = Path(stage_dir)
    groups = _eval_groups(method, tasks)
    trained = "the weights trained last"
    _save_adapter(model, stage_dir / ADAPTER_DIR, method, stage_dir.name,
                  f"{trained}; the run evaluated the tasks with adapters/ ({GROUP_ADAPTERS_DIR}/{ROUTING_FILE})"
                  if groups else f"{trained}, which the run evaluated every task with")
    save_tensors(stage_dir / NON_LORA_FILE, {llava_name(n): p for n, p in trainables.items() if "lora_" not in n})
    if not groups:
        return
    current = trainables.snapshot()
    routing: dict[str, str] = {}
    try:
        for index, (state, names) in enumerate(groups):
            trainables.load(state)
            _save_adapter(model, stage_dir / GROUP_ADAPTERS_DIR / f"group-{index}", method, stage_dir.name,
                          f"the weights the run evaluated {', '.join(names)} with")
            routing.update({name: f"group-{index}" for name in names})
    finally:
        trainables.load(current)
    atomic_write_json(stage_dir / GROUP_ADAPTERS_DIR / ROUTING_FILE, routing)


def _save_adapter(model: torch.nn.Module, folder: Path, method: Method, stage: str, holds: str) -> None:
    """peft's ``save_pretrained`` into ``folder`` over a model card naming the run's stage, method and what the
    weights are. peft adds its tags, base model and version to the README.md it finds; without one it renders
    the hub's empty template ("More Information Needed"), 10-30 ms of jinja per save."""
    card = (f"# cvqa-bench adapter: stage {stage}, method {method.name}\n\n"
            f"A PEFT adapter from a cvqa-bench run: {holds}.\n\n"
            "Load it with `PeftModel.from_pretrained(base_model, folder)`, or write a standalone model with\n"
            f"`cvqa export RUN --stage {stage.split('-')[0]} --out DIR --merge` (add `--task T` where the run routed "
            "tasks).\n")
    with disk_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "README.md").write_text(f"---\nlibrary_name: peft\n---\n{card}\n", encoding="utf-8")
        model.save_pretrained(str(folder), safe_serialization=True)


def _eval_groups(method: Method, tasks: list[TaskInfo]) -> list[tuple[dict[str, torch.Tensor], list[str]]]:
    """The distinct weights ``method.eval_state`` routes the tasks to, each with its task names."""
    groups: dict[tuple[int, ...], tuple[dict[str, torch.Tensor], list[str]]] = {}
    for task in tasks:
        state = method.eval_state(task)
        if state is None:
            continue
        key = tuple(id(t) for t in state.values())  # a group's weights are the same tensors for its tasks
        groups.setdefault(key, (state, []))[1].append(task.name)
    return list(groups.values())


def stage_adapter(stage_dir: Path, task: str | None = None) -> Path:
    """The adapter folder that stage evaluated ``task`` with: ``adapter/`` when the method does not route,
    else the task's group. Without ``task``, a routed stage whose tasks use more than one group is refused,
    naming the choices: ``adapter/`` (the weights trained last) is then not what any evaluation used."""
    stage_dir = Path(stage_dir)
    routing_file = stage_dir / GROUP_ADAPTERS_DIR / ROUTING_FILE
    routing: dict[str, Any] = json.loads(routing_file.read_text()) if routing_file.is_file() else {}
    if task is None:
        groups = sorted(set(routing.values()))
        if len(groups) > 1:
            choices = "; ".join(f"{g}: {', '.join(t for t in routing if routing[t] == g)}" for g in groups)
            raise ConfigError(f"{routing_file}: the run evaluated this stage's tasks with {len(groups)} different "
                             f"weights; choose one with --task ({choices})")
        return stage_dir / GROUP_ADAPTERS_DIR / groups[0] if groups else stage_dir / ADAPTER_DIR
    if task not in routing:
        known = ", ".join(sorted(routing)) or "none: this method evaluates every task with adapter/"
        raise FileNotFoundError(f"{routing_file}: no adapter for task {task!r} (tasks: {known})")
    return stage_dir / GROUP_ADAPTERS_DIR / routing[task]
