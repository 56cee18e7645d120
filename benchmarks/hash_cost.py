"""Benchmark: the cost of hashing a run's inputs by content (data/file_hashes.py, run/state/inputs.py).

Two kinds of input, each hashed with an empty stat cache (a run's first start or first ``--resume``) and
then ``--passes`` more times with the cache a pass leaves (every later ``--resume``):

- ``files``: ``--n`` files of ``--size`` random bytes (dataset scale); also ``os.stat`` of them alone;
- a run: what a run hashes before it can reuse anything (``RunInputs``: every task's training rows and
  images, every task's test rows and images, the manifest's data record). ``--sequence coin8-standin``
  builds the CoIN stand-in of tests/coin_standins.py; ``--config configs/default.yaml`` the default run.

::

    .venv/bin/python benchmarks/hash_cost.py files --n 100000
    .venv/bin/python benchmarks/hash_cost.py run --sequence coin8-standin
    .venv/bin/python benchmarks/hash_cost.py run --config configs/default.yaml

Prints one JSON line: seconds of the first pass, of each later pass, and files read in full by each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cvqa_bench.data.file_hashes import FileHashes


def timed_passes(work: Callable[[FileHashes], object], cache: Path, passes: int) -> dict[str, object]:
    """``work`` once with an empty cache file, then ``passes`` times with what it left."""
    cache.unlink(missing_ok=True)
    out: dict[str, object] = {"first_s": None, "later_s": [], "hashed": []}
    for i in range(passes + 1):
        files = FileHashes(cache)
        start = time.perf_counter()
        work(files)
        elapsed = round(time.perf_counter() - start, 3)
        if i == 0:
            out["first_s"] = elapsed
        else:
            out["later_s"].append(elapsed)  # type: ignore[union-attr]
        out["hashed"].append(files.hashed)  # type: ignore[union-attr]
    return out


def small_files(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` files of ``size`` random bytes in 100 subfolders (made once, older than the racy window)."""
    paths = [folder / f"{i % 100:02d}" / f"{i}.bin" for i in range(n)]
    if not (folder / ".done").exists():
        for sub in range(100):
            (folder / f"{sub:02d}").mkdir(parents=True, exist_ok=True)
        for path in paths:
            path.write_bytes(os.urandom(size))
        (folder / ".done").touch()
        time.sleep(2.5)  # past data/file_hashes.RACY_SECONDS, so the first pass may cache them
    return paths


def run_inputs(args: argparse.Namespace, workdir: Path) -> Callable[[FileHashes], object]:
    """The hashing a run does on (re)start, as a function of the stat cache."""
    from cvqa_bench.config import load_run_config
    from cvqa_bench.run.prepare import prepare
    from cvqa_bench.run.state.inputs import RunInputs

    overrides: dict[str, object] = {}
    if args.sequence == "coin8-standin":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import coin_standins  # type: ignore[import-not-found]

        root = workdir / "CoIN"
        if not root.exists():
            coin_standins.build_coin_root(root)
            time.sleep(2.5)
        overrides = {"sequence": "coin8", "data_root": str(root)}
    elif args.sequence:
        overrides = {"sequence": args.sequence}
    prepared = prepare(load_run_config(args.config, overrides), check_images=False)
    n_images = sum(1 for t in prepared.tasks for r in [*t.train, *t.test] if r.get("image"))
    print(f"{len(prepared.tasks)} tasks, {n_images} image references", file=sys.stderr)

    def work(files: FileHashes) -> object:
        inputs = RunInputs(prepared, files)
        inputs.train_hashes()
        for task in prepared.tasks:
            inputs.test_hash(task)
        return inputs.data_record()

    return work


def main() -> None:
    """Parse, measure, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["files", "run"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=600)
    parser.add_argument("--sequence", default=None, help="a sequence name, or coin8-standin")
    parser.add_argument("--config", default=None, help="a run config YAML")
    parser.add_argument("--passes", type=int, default=3, help="later passes after the first")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "cvqa-hash-cost")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"what": args.what}
    if args.what == "files":
        paths = small_files(args.workdir / f"files-{args.n}-{args.size}", args.n, args.size)
        start = time.perf_counter()
        for path in paths:
            os.stat(path)
        result.update(n=args.n, size=args.size, stat_only_s=round(time.perf_counter() - start, 3))
        result.update(timed_passes(lambda files: files.digests(paths), args.workdir / "files.sqlite", args.passes))
    else:
        work = run_inputs(args, args.workdir)
        result.update(sequence=args.sequence, config=args.config)
        result.update(timed_passes(work, args.workdir / "run.sqlite", args.passes))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
