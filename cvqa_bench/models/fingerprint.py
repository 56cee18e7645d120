"""Exact content hashes: of tensors (weights a cell is evaluated with, a frozen tower), of image files and of
the base model (the files that define a checkpoint folder)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import torch

from cvqa_bench.data.file_hashes import FileHashes


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """BLAKE2b of every tensor's name, dtype, shape and raw bytes, in the given order (exact, not approximate)."""
    digest = hashlib.blake2b(digest_size=32)
    for name, tensor in named:
        data = tensor.detach().contiguous().cpu()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        if data.numel():  # raw bytes through uint8: works for dtypes numpy lacks (bfloat16)
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@lru_cache(maxsize=1 << 20)
def file_digest(path: str) -> str:
    """BLAKE2b of a file's bytes (memoised per path for the life of the process)."""
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The files that define a llava-hf checkpoint folder: config, weights, tokenizer, image processor, chat template.
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "*.bin", "*.index.json",
                       "*.pt", "*.pth", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab*",
                       "merges.txt", "*.model", "*.tiktoken", "preprocessor_config.json", "processor_config.json",
                       "image_processor*.json", "chat_template*")


def model_files(model_dir: Path) -> list[Path]:
    """The files of a checkpoint folder that define the model (:data:`MODEL_FILE_PATTERNS`), sorted by name."""
    return sorted({p for pattern in MODEL_FILE_PATTERNS for p in Path(model_dir).glob(pattern) if p.is_file()})


def model_content_hash(model_dir: Path, files: FileHashes | None = None) -> str:
    """SHA-256 over (name, SHA-256 of bytes) of every defining file of a llava-hf folder.

    A tiny model's folder is built from its YAML's content (``models/tiny.py``: the folder name is a hash
    of it), so this hash follows that content too. The weights are read once, then known by stat
    (``data/file_hashes.py``).
    """
    paths = model_files(model_dir)
    digests = (files or FileHashes()).digests(paths)
    listing = [[p.name, digests[str(p)]] for p in paths]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()
