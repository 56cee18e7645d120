"""Benchmark: peak resident memory of a short run whose images are huge but under max_image_pixels.

The regression sequence's data is generated into ``--workdir``; the first ``--n`` training images and the
first ``--n`` test images of its first task are replaced by the same picture scaled up to ``--side`` px
(nearest neighbour, PNG, so the files stay small on disk while each decodes to side x side x 3 bytes).
One short ``cvqa run`` (``--method``, ``train.max_steps``) runs in a child process; the figure is the
child's peak RSS (``ru_maxrss``). ``--n 0`` gives the same run on the normal 32 px images::

    .venv/bin/python benchmarks/big_images_rss.py --n 0
    .venv/bin/python benchmarks/big_images_rss.py --n 24 --side 4990

``--python`` and ``--cwd`` run another checkout (e.g. a worktree of an earlier commit) with this
checkout's data; the images are made by this checkout's generator either way.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def make_data(root: Path, n: int, side: int) -> None:
    """The regression sequence's files under ``root``, with ``n`` train and ``n`` test images of its first task
    scaled up to ``side`` px."""
    from PIL import Image

    from cvqa_bench.config import load_sequence
    from cvqa_bench.data.synthetic import generate

    seq, _ = load_sequence("regression")
    assert seq.generator is not None
    generate(seq.generator, root, [t.name for t in seq.tasks])
    first = seq.tasks[0].name
    for split in ("train", "test"):
        for i in range(n):
            path = root / "images" / first / f"{split}_{i}.png"
            with Image.open(path) as img:
                img.convert("RGB").resize((side, side), Image.NEAREST).save(path)


def peak_rss(python: str, cwd: Path, data: Path, out: Path, method: str, steps: int) -> tuple[float, float, int]:
    """(peak RSS in GiB, wall seconds, exit code) of one ``cvqa run`` in a child process."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [python, "-m", "cvqa_bench.cli", "run", "--sequence", "regression", "--data-root", str(data),
           "--method", method, "--set", f"train.max_steps={steps}", "--out", str(out), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
    kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # this script has one child at a time
    return kib / 2**20, wall, proc.returncode


def main() -> None:
    """Make the data, run once, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="huge images per split of the first task")
    parser.add_argument("--side", type=int, default=4990)
    parser.add_argument("--method", default="finetune")
    parser.add_argument("--steps", type=int, default=4, help="train.max_steps")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cvqa-big-images"))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--cwd", type=Path, default=Path.cwd())
    args = parser.parse_args()
    data = args.workdir / f"data-{args.n}-{args.side}"
    if not (data / ".done").exists():
        shutil.rmtree(data, ignore_errors=True)
        make_data(data, args.n, args.side)
        (data / ".done").touch()
    gib, wall, rc = peak_rss(args.python, args.cwd, data, args.workdir / "run", args.method, args.steps)
    print(json.dumps({"n": args.n, "side": args.side, "cwd": str(args.cwd), "peak_rss_gib": round(gib, 3),
                      "wall_s": round(wall, 1), "exit_code": rc}))


if __name__ == "__main__":
    main()
