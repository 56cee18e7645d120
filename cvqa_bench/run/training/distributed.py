"""The processes of a multi-process run: who writes, where ranks wait, how shards are gathered, what DeepSpeed allows.

A run launched with ``torchrun --nproc_per_node N -m cvqa_bench.cli run ...`` or ``accelerate launch
... -m cvqa_bench.cli run ...`` is N copies of the same program. The HF ``Trainer`` makes training
data-parallel by itself; everything else follows one rule: the main process (rank 0) decides what
depends on the file system and writes every file, the others wait for it and receive its decision.

With one process every helper here is a no-op that never touches ``torch.distributed``. The process
group is joined through ``accelerate.PartialState`` (the same object the Trainer uses), collectives are
plain ``torch.distributed`` calls, so they keep working after the Trainer resets accelerate's state.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from cvqa_bench.config import ConfigError

T = TypeVar("T")
MAIN = 0


def launched_world_size() -> int:
    """The number of processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init() -> None:
    """Join the launcher's process group (gloo on CPU, NCCL on GPUs); nothing to do for one process."""
    if launched_world_size() <= 1 or dist.is_initialized():
        return
    from accelerate import PartialState

    # cpu=True is what makes accelerate use gloo on a machine without GPUs; without it the launch
    # silently becomes N independent single-process runs.
    PartialState(cpu=not torch.cuda.is_available())
    if not dist.is_initialized():
        raise RuntimeError(f"launched with WORLD_SIZE={launched_world_size()} but no process group could be joined")


def active() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes of the run (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True on the process that writes the run folder."""
    return rank() == MAIN


def backend() -> str | None:
    """The process group's backend (``gloo``, ``nccl``...), None without one."""
    return str(dist.get_backend()) if active() else None


def barrier() -> None:
    """Wait until every process gets here."""
    if not active():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on the main process first, then on the others (e.g. building a cache once)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def broadcast(obj: T) -> T:
    """The main process's ``obj`` on every process (picklable objects)."""
    if not active():
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=MAIN)
    return box[0]  # type: ignore[return-value]


def run_on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` on the main process only and return its result on every process.

    The other processes wait for it. An exception raised by ``fn`` is raised on every process, so a
    refusal on the main process (say, "a run already exists") stops the whole run instead of leaving
    the others waiting at the next collective.
    """
    if not active():
        return fn(*args, **kwargs)
    outcome: tuple[bool, Any] = (True, None)
    error: Exception | None = None
    if is_main():
        try:
            outcome = (True, fn(*args, **kwargs))
        except Exception as exc:  # re-raised below, on every rank
            error = exc
            outcome = (False, exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}"))
    ok, value = broadcast(outcome)
    if not ok:
        raise error if error is not None else value
    return value


def _picklable(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:  # any failure means: send a plain copy instead
        return False
    return True


def any_rank(flag: bool) -> bool:
    """True on every process when ``flag`` is true on at least one (e.g. a signal one process received)."""
    if not active():
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_main(obj: T) -> list[T] | None:
    """Every process's ``obj`` in rank order on the main process; None on the others."""
    if not active():
        return [obj]
    out: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=MAIN)
    return out


def merge_indexed(shards: list[list[tuple[int, T]]], n: int) -> list[T]:
    """Put ``(index, item)`` pairs from every shard back into one list of length ``n``, in index order.

    Raises:
        ValueError: an index is missing, repeated or outside ``0..n-1``.
    """
    slots: list[Any] = [None] * n
    seen = [False] * n
    for shard in shards:
        for index, item in shard:
            if not 0 <= index < n:
                raise ValueError(f"merged shards: index {index} outside 0..{n - 1}")
            if seen[index]:
                raise ValueError(f"merged shards: index {index} came from two processes")
            seen[index], slots[index] = True, item
    missing = [i for i, s in enumerate(seen) if not s]
    if missing:
        raise ValueError(f"merged shards: {len(missing)} of {n} items missing, e.g. index {missing[0]}")
    return slots


def deepspeed_zero_stage(env: dict[str, str] | None = None) -> int | None:
    """The ZeRO stage of a DeepSpeed launch through accelerate; None when DeepSpeed is not in use.

    Read where accelerate puts it: ``ACCELERATE_DEEPSPEED_ZERO_STAGE``, else the ``zero_optimization.stage``
    of ``ACCELERATE_DEEPSPEED_CONFIG_FILE``, else accelerate's default (2).
    """
    env = dict(os.environ) if env is None else env
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() not in ("true", "1", "yes"):
        return None
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage:
        return int(stage)
    path = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none")
    if path and path != "none":
        try:
            config = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the DeepSpeed config ({exc})") from exc
        value = config.get("zero_optimization", {}).get("stage", 0)
        return int(value) if str(value).isdigit() else 2
    return 2


def check_deepspeed(method_name: str, has_step_hook: bool, env: dict[str, str] | None = None) -> None:
    """Refuse a method that needs the live weights and gradients after every optimizer step under DeepSpeed.

    DeepSpeed (through accelerate) steps the optimizer and frees the gradients inside the backward
    pass, so a step hook would read no gradients; under ZeRO-3 the weights themselves are partitioned.

    Raises:
        ConfigError: DeepSpeed is in use and the method has an ``after_optimizer_step`` hook.
    """
    stage = deepspeed_zero_stage(env)
    if stage is None or not has_step_hook:
        return
    if stage == 3:
        raise ConfigError(
            f"method {method_name!r} cannot run under DeepSpeed ZeRO-3: its update after every optimizer step "
            "needs every trainable tensor and its gradient, which ZeRO-3 partitions across processes. "
            "Launch with plain DDP (configs/accelerate/ddp.yaml or torchrun) instead"
        )
    raise ConfigError(
        f"method {method_name!r} is not supported under DeepSpeed (ZeRO-{stage}): DeepSpeed steps the optimizer "
        "and frees the gradients inside the backward pass, so its update after every optimizer step would see "
        "no gradients. Launch with plain DDP (configs/accelerate/ddp.yaml or torchrun); DeepSpeed ZeRO-1/2 "
        "works for methods without that hook (finetune, replay)"
    )

