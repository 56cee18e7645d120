"""Load a vision-language model (its family's HF class + the family's inputs) from a local directory and make
it trainable.

One code path for every scale and family: the tiny model is first materialised as an HF checkpoint folder
(``cvqa_bench.models.tiny``), a real checkpoint is already one. ``config.json``'s ``model_type`` picks the
family (``models/families/``). Nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cvqa_bench.config import ConfigError, ModelSpec
from cvqa_bench.config.base import resolve_path
from cvqa_bench.models.precision import compute_dtype, keep_trainables_fp32

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready to train, its processor, and where it came from."""

    model: torch.nn.Module
    processor: Any  # cvqa_bench.models.inputs.ModelInputs: the family, tokenizer and image processor
    source: str  # the local directory it was loaded from
    device: torch.device
    # bf16/fp16 runs: the base computes in the low dtype, the trainable tensors stay float32
    # (cvqa_bench.models.precision); a float32 run has float32 for both.
    compute_dtype: torch.dtype = torch.float32
    trainable_dtype: torch.dtype = torch.float32


def model_directory(spec: ModelSpec) -> Path:
    """The checkpoint folder ``spec`` refers to (building the tiny model on first use)."""
    if spec.tiny is not None:
        from cvqa_bench.models.tiny import tiny_model_dir

        return tiny_model_dir(resolve_path(spec.tiny))  # configs/models/tiny.yaml: local, else built in
    path = Path(spec.path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.path: {path} is not a local HF checkpoint directory (no config.json)")
    return path


def base_provenance(spec: ModelSpec, model_dir: str | Path) -> dict[str, Any]:
    """Where the base model came from, for the manifest: ``base`` (the assembly record of an assembled
    checkpoint, else None) and ``base_kind`` ("assembled", "llava-hf checkpoint" or "tiny")."""
    from cvqa_bench.models.assemble import read_base_record

    base = read_base_record(model_dir)
    kind = "assembled" if base is not None else "tiny" if spec.tiny is not None else "llava-hf checkpoint"
    return {"base": base, "base_kind": kind}


def default_device() -> torch.device:
    """This process's device: ``cuda:<local rank>`` under a multi-GPU launch, else CUDA when present, else CPU."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # the launcher's process count (torchrun, accelerate)
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cuda")


def resolve_device(name: str | None) -> torch.device:
    """The device ``model.device`` names (``cvqa run --device``), or :func:`default_device` when None.

    Raises:
        ConfigError: that device is not available in this process.
    """
    if name is None:
        return default_device()
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: CUDA is not available here (torch {torch.__version__}); "
                              "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if device.index is not None:
                raise ConfigError(f"--device {name}: under a multi-process launch each process takes "
                                  "cuda:<local rank>; use --device cuda")
            return default_device()
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


def load_model(spec: ModelSpec, device: torch.device | None = None) -> LoadedModel:
    """Load model + processor offline from a local directory and mark the trainable tensors.

    In a ``bfloat16``/``float16`` run the frozen base has that dtype, the trainable tensors are float32
    and the forward autocasts to the low dtype (:mod:`cvqa_bench.models.precision`).
    """
    import transformers

    from cvqa_bench.models.families import family_for
    from cvqa_bench.models.inputs import ModelInputs

    path = model_directory(spec)
    family = checked_family(path)
    device = device or resolve_device(spec.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # the Trainer then trains on this device too
    processor = ModelInputs.from_pretrained(path, family)  # left padding: batched generation
    model_class = getattr(transformers, family.model_class)
    model = model_class.from_pretrained(path, dtype=DTYPES[spec.dtype], local_files_only=True)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = make_trainable(model, spec, family_for(model))
    trainable = keep_trainables_fp32(model)
    return LoadedModel(model=model.to(device), processor=processor, source=str(path), device=device,
                       compute_dtype=compute_dtype(model), trainable_dtype=trainable)


def checked_family(path: str | Path) -> Any:
    """The family of the checkpoint at ``path``; ConfigError (one line) for a model_type no family serves."""
    from cvqa_bench.models.families import family_for
    from cvqa_bench.registry import UnknownNameError

    try:
        return family_for(path)
    except UnknownNameError as exc:
        raise ConfigError(f"model {path}: {exc}") from None


def make_trainable(model: torch.nn.Module, spec: ModelSpec, family: Any) -> torch.nn.Module:
    """LoRA on the language model (+ trainable projector) through peft, or full training of the LM.

    ``model.lora.target_modules`` null: the family's default, every linear layer of the language model.
    """
    projector = family.projector_names if spec.train_projector else ()
    if spec.lora is None:
        for name, param in model.named_parameters():
            param.requires_grad = any(part in name for part in (*family.language_model_names, *projector))
        return model
    from peft import LoraConfig, get_peft_model

    targets = spec.lora.target_modules
    lora = LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        # a regex string: plain q_proj/v_proj would also hit the vision tower
        target_modules=family.lora_target_modules(model, targets),
        modules_to_save=list(projector) or None,
    )
    return get_peft_model(model, lora)
