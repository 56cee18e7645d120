"""A task's training rows as collated batches outside the Trainer, for methods that need data at task end.

``TaskContext.batches(n)`` (EWC's Fisher) yields up to ``n`` batches of the task's own training rows
(not replayed ones), in an order drawn from a generator seeded by (run seed, stage): never global RNG,
so a resumed run sees the same batches and the training RNG stream is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def batch_source(rows: list[dict[str, Any]], collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
                 batch_size: int, device: torch.device,
                 seed: int) -> Callable[[int], Iterator[dict[str, torch.Tensor]]]:
    """A function ``batches(n)``: up to ``n`` collated batches of ``rows`` of ``batch_size`` on ``device``."""

    def batches(n: int) -> Iterator[dict[str, torch.Tensor]]:
        order = np.random.default_rng(np.random.SeedSequence([seed % 2**64])).permutation(len(rows))
        for start in range(0, min(n * batch_size, len(rows)), batch_size):
            batch = collator([rows[i] for i in order[start:start + batch_size]])
            yield {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    return batches
