"""The alpha regime against tensor size from finished llaca runs (configs/alpha-scale.yaml).

Prints, per run, the median over its (task, tensor) points of the entry count, the fallback fraction,
the median alpha and the retained fraction, and plots every point against entries per tensor:

    .venv/bin/python benchmarks/alpha_scale.py results/alpha-scale/*-seed* --out alpha_scale.png
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from cvqa_bench.report.alpha_scale import alpha_scale_points, plot_alpha_scale


def main() -> None:
    """Print the per-run table and write the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("alpha_scale.png"))
    args = parser.parse_args()
    points = alpha_scale_points(args.runs)
    print(f"{'run':<24} {'points':>6} {'entries':>9} {'fallback':>9} {'median a':>10} {'retained':>10}")
    for run in dict.fromkeys(p.run for p in points):
        mine = [p for p in points if p.run == run]
        med = {f: statistics.median(getattr(p, f) for p in mine)
               for f in ("numel", "fallback_fraction", "median_alpha", "retained")}
        print(f"{run:<24} {len(mine):>6} {med['numel']:>9.0f} {med['fallback_fraction']:>9.3f} "
              f"{med['median_alpha']:>10.3g} {med['retained']:>10.3g}")
    print(f"wrote {plot_alpha_scale(points, args.out)}")


if __name__ == "__main__":
    main()
