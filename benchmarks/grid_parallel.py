"""Wall time of a 16-point grid run with -j 1 and with -j 2, side by side in one run.

    python benchmarks/grid_parallel.py [--jobs 2]

Both runs use the same warmed feature cache (so they do the same work: kernels, fits,
evaluation, plots, HTML) in fresh report folders; then a third run with nothing changed shows
the cost of a rerun that finds every notebook up to date.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from cmr_utils.runner import run as R

GRID = """demo_recipes: 300
text_kinds: [title]
models: [ridge]
latent_dims: [10]
bag_sizes: [100]
n_bags: 3
tsne_points: 100
n_examples: 2
cache_dir: {cache}
grid:
  seed: [0, 1, 2, 3]
  scores: [[cosine], [correlation], [weighted], [cosine, weighted]]
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grid = tmp / "grid.yaml"
        grid.write_text(GRID.format(cache=tmp / "cache"))
        R.run(grid, ["grid={seed: [0]}"], name="warm", reports_dir=tmp / "reports")  # fills the cache
        times = {}
        for jobs in (1, args.jobs):
            t0 = time.perf_counter()
            R.run(grid, name=f"j{jobs}", reports_dir=tmp / "reports", jobs=jobs)
            times[jobs] = time.perf_counter() - t0
        t0 = time.perf_counter()
        R.run(grid, name=f"j{args.jobs}", reports_dir=tmp / "reports", jobs=args.jobs)
        rerun = time.perf_counter() - t0
    print(f"\n16 grid points: -j 1 {times[1]:.1f} s, -j {args.jobs} {times[args.jobs]:.1f} s, "
          f"speed-up {times[1] / times[args.jobs]:.2f}x; rerun with nothing changed {rerun:.1f} s")


if __name__ == "__main__":
    main()
