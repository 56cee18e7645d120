"""The checks of a run that need the model folder or the method, made before the run folder exists.

``cvqa_bench.run.prepare`` calls :func:`check_run` after the data validated: the seed range, the
model folder, LoRA ``target_modules`` against the model's module names (on the meta device: no
weights read), its chat template, the longest training prompt against ``train.max_length``, and the method's own
``setup`` on a throwaway instance (e.g. LLaCA overrides naming unknown tasks).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cvqa_bench.config import ConfigError, RunConfig

SEED_LIMIT = 2**32  # numpy's seed range; a stage seeds seed * 1000 + stage
PLACEHOLDER = "\x00cvqa-text\x00"


def check_seed(seed: int, n_tasks: int) -> None:
    """``seed`` such that every stage seed ``seed * 1000 + stage`` is a valid RNG seed."""
    top = (SEED_LIMIT - 1 - n_tasks) // 1000
    if not 0 <= seed <= top:
        raise ConfigError(f"seed {seed}: out of range; use 0..{top} (stage k seeds seed x 1000 + k)")


def check_run(config: RunConfig, tasks: list[Any], method_cls: type, options: Any, infos: list[Any]) -> Path:
    """Every model- and method-dependent check (module docstring); returns the model folder."""
    from cvqa_bench.models.load import model_directory, resolve_device

    check_seed(config.seed, len(tasks))
    resolve_device(config.model.device)  # an unavailable --device stops here, before the run folder exists
    try:
        checked = method_cls(options, seed=config.seed)
        checked.setup(infos)
        checked.check_model(config.model)  # e.g. O-LoRA, MoELoRA need LoRA; EProj a trainable projector
    except ValueError as exc:
        raise ConfigError(f"method {config.method.name!r} options: {exc}") from exc
    model_dir = model_directory(config.model)
    if config.model.lora is not None and config.model.lora.target_modules is not None:
        check_lora_targets(model_dir, config.model.lora.target_modules)
    check_prompt_lengths(model_dir, tasks, config.train.max_length)
    return model_dir


def check_lora_targets(model_dir: Path, pattern: str) -> None:
    """``pattern`` (peft's ``re.fullmatch`` on module names) matches at least one adaptable layer."""
    import torch
    from transformers import AutoConfig

    from cvqa_bench.models.load import checked_family

    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"model.lora.target_modules {pattern!r}: not a valid regex ({exc})") from exc
    config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    family = checked_family(model_dir)
    with torch.device("meta"):
        model = family.new_model(config)
    layers = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    modules = dict(model.named_modules())
    matched = [(n, modules[n]) for n in family.lora_matches(model, regex.pattern)]
    if not matched:
        raise ConfigError(f"model.lora.target_modules {pattern!r} matches no module of {model_dir}; "
                          "e.g. r'.*language_model.*\\.(q_proj|v_proj)'")
    bad = [n for n, m in matched if not isinstance(m, layers)]
    if bad:
        raise ConfigError(f"model.lora.target_modules {pattern!r} matches {bad[0]!r}, which LoRA cannot adapt "
                          "(not a Linear, Embedding or Conv layer)")


def check_prompt_lengths(model_dir: Path, tasks: list[Any], max_length: int) -> None:
    """The folder has a chat template, and the first prompt (with its image tokens) of every training row fits
    in ``max_length`` tokens."""
    from cvqa_bench.models.inputs import ModelInputs
    from cvqa_bench.models.load import checked_family

    processor = ModelInputs.from_pretrained(model_dir, checked_family(model_dir))
    if not getattr(processor.tokenizer, "chat_template", None):
        raise ConfigError(f"{model_dir}: the checkpoint has no chat template (no chat_template.jinja or "
                          "chat_template.json, none in tokenizer_config.json), which builds every prompt; "
                          "add the model's own, as llava-hf checkpoints and `cvqa assemble` do")
    for task in tasks:
        rows = [r for r in task.train if r.get("conversations")]
        if not rows:
            continue
        lengths = _prompt_lengths(processor, rows)
        worst = max(range(len(rows)), key=lengths.__getitem__)
        if lengths[worst] > max_length:
            raise ConfigError(
                f"train.max_length {max_length}: too short for task {task.spec.name!r}: the prompt of train row "
                f"{worst} (id {rows[worst]['id']!r}) is {lengths[worst]} tokens with its image; raise it")


def _prompt_lengths(processor: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Tokens of each row's first prompt as the training collator builds it (image tokens included)."""
    from cvqa_bench.models.prompting import generation_prompt, load_image, strip_image_marker

    templates = {flag: generation_prompt(processor, PLACEHOLDER, flag) for flag in (False, True)}

    def render(row: dict[str, Any]) -> str:
        text, image = row["conversations"][0]["value"], row.get("image") is not None
        return templates[image].replace(PLACEHOLDER, strip_image_marker(text))

    first = rows[0]
    fast = render(first) == generation_prompt(processor, first["conversations"][0]["value"], first.get("image") is not None)
    prompts = [render(r) if fast else generation_prompt(processor, r["conversations"][0]["value"],
                                                         r.get("image") is not None) for r in rows]
    counts = [len(ids) for ids in processor.tokenizer(prompts, add_special_tokens=True)["input_ids"]]
    with_image = next((i for i, r in enumerate(rows) if r.get("image") is not None), None)
    if with_image is None:
        return counts
    # The family expands the image to its tokens: a fixed number for one image size (that of the first row
    # with an image; families with dynamic resolution or tiles can differ per image size).
    row = {"text": rows[with_image]["conversations"][0]["value"]}
    full = processor.encode([row], [load_image(rows[with_image]["image"])], for_training=False)[0].input_ids
    extra = len(full) - counts[with_image]
    return [c + (extra if r.get("image") is not None else 0) for c, r in zip(counts, rows)]
