"""Exact content hashes: of tensors (weights a cell is evaluated with, a frozen tower) and of image files."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

import torch


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
