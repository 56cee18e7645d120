"""One ``cvqa`` run through the library, launched by ``tests/test_distributed.py`` under torchrun.

Each process writes what the test compares across processes into ``--dump``: the dynamic-EMA state
of every task at its end (before it is written into the model and dropped), the final method state,
the process count it saw and the ids of the training rows it batched, in order::

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_run.py \\
        --config RUN.yaml --out RUN_DIR --dump DUMP_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file


def main() -> None:
    """Run the config into ``--out``; dump this process's method state into ``--dump``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dump", type=Path, required=True)
    args = parser.parse_args()

    from cvqa_bench.run.training import distributed
    from cvqa_bench.run.loop import execute
    from cvqa_bench.run.prepare import prepare
    from cvqa_bench.config import load_run_config
    from cvqa_bench.models.prompting import TrainCollator

    collated: list[list[str]] = []
    collate = TrainCollator.__call__

    def recording_collate(self: TrainCollator, rows: list[dict[str, Any]]) -> Any:
        collated.append([row["id"] for row in rows])
        return collate(self, rows)

    TrainCollator.__call__ = recording_collate  # type: ignore[method-assign]

    prepared = prepare(load_run_config(args.config))
    method = prepared.method
    rank = distributed.rank()
    args.dump.mkdir(parents=True, exist_ok=True)
    finish_task = method.after_task

    def after_task(ctx: Any) -> None:
        # the EMA copies and previous gradients as they stand after the task's last optimizer step
        tensors = {k: v.detach().contiguous().cpu() for k, v in method.dynamic.state_dict().items()}
        save_file(tensors, str(args.dump / f"rank{rank}-stage{ctx.stage}-ema.safetensors"))
        finish_task(ctx)

    method.after_task = after_task  # type: ignore[method-assign]
    execute(prepared, args.out)
    save_file({k: v.cpu() for k, v in method.state_dict().items()}, str(args.dump / f"rank{rank}-final.safetensors"))
    info = {"rank": rank, "world_size": distributed.world_size(), "backend": distributed.backend(),
            "extra_state": method.extra_state(), "collated": collated}
    (args.dump / f"rank{rank}.json").write_text(json.dumps(info, sort_keys=True))


if __name__ == "__main__":
    main()
