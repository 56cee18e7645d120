"""Load a LLaVA (HF ``LlavaForConditionalGeneration`` + processor) from a local directory and make it trainable.

One code path for every scale: the tiny model is first materialised as a llava-hf directory
(``cvqa_bench.models.tiny``), a real checkpoint is already one. Nothing is downloaded.
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

PROJECTOR_MODULE = "multi_modal_projector"
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    """A model ready to train, its processor, and where it came from."""

    model: torch.nn.Module
    processor: Any
    source: str  # the local directory it was loaded from
    device: torch.device
    # bf16/fp16 runs: the base computes in the low dtype, the trainable tensors stay float32
    # (cvqa_bench.models.precision); a float32 run has float32 for both.
    compute_dtype: torch.dtype = torch.float32
    trainable_dtype: torch.dtype = torch.float32


def model_directory(spec: ModelSpec) -> Path:
    """The llava-hf directory ``spec`` refers to (building the tiny model on first use)."""
    if spec.tiny is not None:
        from cvqa_bench.models.tiny import tiny_model_dir

        return tiny_model_dir(resolve_path(spec.tiny))  # configs/models/tiny.yaml: local, else built in
    path = Path(spec.path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.path: {path} is not a local llava-hf checkpoint directory (no config.json)")
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
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = model_directory(spec)
    device = device or resolve_device(spec.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # the Trainer then trains on this device too
    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    processor.tokenizer.padding_side = "left"  # batched generation of a decoder-only model
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=DTYPES[spec.dtype], local_files_only=True)
    if spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = make_trainable(model, spec)
    trainable = keep_trainables_fp32(model)
    return LoadedModel(model=model.to(device), processor=processor, source=str(path), device=device,
                       compute_dtype=compute_dtype(model), trainable_dtype=trainable)


def make_trainable(model: torch.nn.Module, spec: ModelSpec) -> torch.nn.Module:
    """LoRA on the language model (+ trainable projector) through peft, or full training of the LM."""
    if spec.lora is None:
        for name, param in model.named_parameters():
            param.requires_grad = "language_model" in name or "lm_head" in name or (
                spec.train_projector and PROJECTOR_MODULE in name
            )
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=spec.lora.r,
        lora_alpha=spec.lora.alpha,
        lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.target_modules,  # a regex string: plain q_proj/v_proj also hit the CLIP tower
        modules_to_save=[PROJECTOR_MODULE] if spec.train_projector else None,
    )
    return get_peft_model(model, lora)
