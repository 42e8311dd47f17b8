"""Dask overhead: image extraction throughput on a LocalCluster against in-process, same images, same run.

    python benchmarks/dask_overhead.py [--recipes 400] [--data DIR] [--workers 2] [--shard-size 64]

Both encode every training photo of a generated demo corpus (or of the Recipe1M-layout folder
``--data``) into a fresh cache, with the same shards. In-process: one process, torch on all
cores, DataLoader workers decoding. On the cluster: ``local:N`` workers, each with an equal
share of the cores, decoding in the worker's own thread, each shard a task. Every
worker loads the encoder and runs a warm-up extraction first (timed apart, as "cold start"),
as this process does, so the ratio compares steady throughput (goal ≥ 0.9). Features must match within float32 rounding.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cmr_utils import cluster
from cmr_utils.data import demo
from cmr_utils.features import store as F
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.images import ImageEncoder
from cmr_utils.features.weights import loaded as _loaded


def extract(ds, cache: Path, client=None) -> tuple[float, np.ndarray]:
    enc = ImageEncoder("efficientnet-lite0", batch_size=32, num_workers=2)
    t0 = time.perf_counter()
    path = F.image_features(ds, "train", enc, cache, "bench", all_images=True, progress=False, client=client)
    return time.perf_counter() - t0, np.load(path / "X.npy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", type=int, default=400)
    ap.add_argument("--data", type=Path, help="a Recipe1M-layout folder with photos instead of the demo")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-size", type=int, default=64)
    args = ap.parse_args()
    F.SHARD_SIZE = args.shard_size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds = Recipe1M(args.data or demo.generate(tmp / "demo", n_recipes=args.recipes, seed=0, progress=False))
        warm = Recipe1M(demo.generate(tmp / "warm", n_recipes=40, seed=1, progress=False))
        n = sum(len(r.images) for r in ds.split("train"))
        extract(warm, tmp / "warm-here")  # the same warm-up for this process: weights loaded, pages cached
        here, X_here = extract(ds, tmp / "here")
        t0 = time.perf_counter()
        with cluster.connect(f"local:{args.workers}") as client:
            start = time.perf_counter() - t0
            t1 = time.perf_counter()
            enc = ImageEncoder("efficientnet-lite0", batch_size=32, num_workers=2)
            client.run(_loaded, ImageEncoder, enc._args)  # every worker loads the encoder, not only the first
            extract(warm, tmp / "warm-there", client)
            cold = time.perf_counter() - t1
            there, X_there = extract(ds, tmp / "there", client)
    print(f"{n} training photos of {args.data or 'the demo'}, shards of {args.shard_size}, Lite0:")
    print(f"  in-process            {n / here:6.1f} img/s ({here:.1f} s)")
    print(f"  local:{args.workers}               {n / there:6.1f} img/s ({there:.1f} s); cluster start {start:.1f} s, "
          f"workers' cold start (encoder load) {cold:.1f} s")
    print(f"  ratio local:{args.workers} / in-process: {here / there:.2f} (goal >= 0.9); "
          f"features differ by at most {np.abs(X_here - X_there).max():.1e}")


if __name__ == "__main__":
    main()
