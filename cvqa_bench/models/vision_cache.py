"""Frozen vision features computed once: the projector's input, per image.

With a frozen vision tower (LoRA + projector training, full training of the language model) the
vision features of a test image are the same at every stage; only the projector and the language model
change. The model family computes them through HF's own ``get_image_features`` (the projector's input is
captured, so the layer choice, CLS handling and tiling are HF's; ``ModelFamily.vision_features``); they
are stored as one safetensors file per image under ``<cache>/vision/<key>/``, and each stage projects them
with its current projector (``ModelFamily.encoder_outputs``) and generates with ``mm_encoder_outputs``,
which ``generate`` accepts as pre-encoded image features. A family that cannot cache says why
(``ModelFamily.no_vision_cache``). ``<key>`` hashes the vision tower's weights, the family's feature
settings, the image processor's settings and the dtype; a file's name is the image's byte hash plus its
preprocessing (pad or crop). A batch's missing
features are computed for the whole batch, as the uncached path computes them, so a cold cache gives
the same numbers as no cache. Training on features computed once (``models/train_features.py``) uses the
same selection and the forward hook :func:`accept_vision_features`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from cvqa_bench.models.fingerprint import file_digest, tensors_fingerprint
from cvqa_bench.models.prompting import VISION_FEATURES

MEMORY_BYTES = 1 << 30  # features kept in memory besides the files


def family_parts(model: torch.nn.Module) -> tuple[Any, Any]:
    """The model's family and its parts (vision tower, projector, language model, the core holding them)."""
    from cvqa_bench.models.families import family_for

    family = family_for(model)
    return family, family.modules(model)


def image_key(path: str, pad_to_square: bool) -> str:
    """The cache's name for one preprocessed image: its bytes' hash and its aspect handling."""
    return f"{file_digest(path)}-{'pad' if pad_to_square else 'crop'}"


def tower_is_frozen(model: torch.nn.Module) -> bool:
    """True when the vision features can be computed once: the model's family allows it (no
    ``no_vision_cache`` reason) and no tensor of the vision tower is trainable (its outputs cannot change
    between stages)."""
    return vision_cache_off(model) is None


def vision_cache_off(model: torch.nn.Module) -> str | None:
    """Why this model's vision features cannot be computed once (the family's ``no_vision_cache`` reason, or
    a trainable vision tower); None when they can. The run log and the manifest say it."""
    family, parts = family_parts(model)
    if family.no_vision_cache is not None:
        return f"{family.name}: {family.no_vision_cache}"
    if any(p.requires_grad for p in parts.vision_tower.parameters()):
        return "the vision tower trains: its features change between stages"
    return None


class VisionFeatureCache:
    """Selected vision features by image key, on disk (safetensors) and in a bounded memory cache."""

    def __init__(self, model: torch.nn.Module, processor: Any, folder: Path) -> None:
        self.family, self.parts = family_parts(model)
        settings = {
            "tower": tensors_fingerprint(self.parts.vision_tower.state_dict().items()), **self.family.cache_settings(),
            "image_processor": json.dumps(processor.image_processor.to_dict(), sort_keys=True, default=str),
        }
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
        self.folder = Path(folder) / self.key
        self.memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.memory_bytes = 0
        self.computed = 0  # images whose features this process computed
        self.loaded = 0  # images whose features came from the cache

    def _path(self, image_key: str) -> Path:
        return self.folder / image_key[:2] / f"{image_key}.safetensors"

    def _get(self, image_key: str, device: torch.device) -> torch.Tensor | None:
        if image_key in self.memory:
            self.memory.move_to_end(image_key)
            return self.memory[image_key].to(device)
        path = self._path(image_key)
        if not path.is_file():
            return None
        tensor = load_file(str(path))["features"]
        self._remember(image_key, tensor)
        return tensor.to(device)

    def _remember(self, image_key: str, tensor: torch.Tensor) -> None:
        self.memory[image_key] = tensor
        self.memory_bytes += tensor.numel() * tensor.element_size()
        while self.memory_bytes > MEMORY_BYTES and len(self.memory) > 1:
            _, old = self.memory.popitem(last=False)
            self.memory_bytes -= old.numel() * old.element_size()

    def _put(self, image_key: str, tensor: torch.Tensor) -> None:
        path = self._path(image_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # runs sharing the cache never share a temporary
        save_file({"features": tensor.contiguous()}, str(tmp))
        tmp.replace(path)
        self._remember(image_key, tensor)

    def features(self, image_keys: list[str], image_inputs: Callable[[], dict[str, torch.Tensor]]) -> list[torch.Tensor]:
        """The vision features of a batch's images, one tensor per image.

        When any is missing, ``image_inputs()`` gives the batch's image kwargs and the whole batch goes
        through the tower (the caller holds the model's autocast context, as ``generate`` would).
        """
        device = next(self.parts.projector.parameters()).device
        found = [self._get(k, device) for k in image_keys]
        if all(f is not None for f in found):
            self.loaded += len(image_keys)
            return found  # type: ignore[return-value]
        computed = self.family.vision_features(self.parts, {k: v.to(device) for k, v in image_inputs().items()})
        for key, tensor, hit in zip(image_keys, computed, found):
            if hit is None:
                self._put(key, tensor.detach().cpu().clone())
                self.computed += 1
        return computed

    def encoder_outputs(self, features: list[torch.Tensor], image_inputs: dict[str, torch.Tensor]) -> dict[str, Any]:
        """``mm_encoder_outputs`` for ``generate``: the features through the current projector."""
        return self.family.encoder_outputs(self.family.modules(self.parts.core), features, image_inputs)


def accept_vision_features(model: torch.nn.Module) -> None:
    """Let ``model(...)`` take ``vision_features`` (per-image features, as cached) in place of ``pixel_values``.

    A forward pre-hook on the family's core module projects them with the projector in place at call time
    and passes them on as HF's ``mm_encoder_outputs``. It runs inside the model's forward, so the Trainer's
    autocast, DDP and a method's second forward with other weights (LwF's teacher) see the usual graph:
    the projector's gradient is the same as with pixels. Installing it twice is a no-op.
    """
    family, parts = family_parts(model)
    core = parts.core  # the projector is looked up at call time: a method may have replaced it since
    if getattr(core, "_cvqa_accepts_features", False):
        return

    def features_to_encoder_outputs(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        features = kwargs.pop(VISION_FEATURES, None)
        if features is not None:
            kwargs["mm_encoder_outputs"] = family.encoder_outputs(family.modules(module), features, kwargs)
        return args, kwargs

    core.register_forward_pre_hook(features_to_encoder_outputs, with_kwargs=True)
    core._cvqa_accepts_features = True
