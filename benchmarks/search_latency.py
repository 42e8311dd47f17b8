"""Search latency at Recipe1M's test-set size, measured side by side in one run.

    python benchmarks/search_latency.py [--n 51000] [--dim 50] [--k 10] [--queries 200]

A synthetic gallery of ``n`` normalised photo and recipe vectors, searched the way
``python -m cmr_utils search`` does (``Gallery.top``: one matrix-vector product and a partial
sort), against ranking the whole gallery with a full sort; plus loading the gallery from its
cache file, which the CLI pays once per process. Query encoding (one encoder pass) is not included.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cmr_utils.fit.linear import RidgeCCA
from cmr_utils.report.search import Gallery, _read_gallery, _write_gallery


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=51_000)
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    unit = lambda Z: (Z / np.linalg.norm(Z, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    index = pd.DataFrame({"recipe_id": [f"{i:010x}" for i in range(args.n)], "image_id": "",
                          "title": [f"synthetic recipe number {i}" for i in range(args.n)],
                          "path": [f"/data/recipe1m/images/test/a/b/c/d/{i:010x}.jpg" for i in range(args.n)]})
    space = RidgeCCA(args.dim).fit(rng.normal(size=(4 * args.dim, 2 * args.dim)),
                                   rng.normal(size=(4 * args.dim, 2 * args.dim)))
    built = Gallery(None, {"text_kind": "title", "score": "cosine"}, space, {},
                    unit(rng.normal(size=(args.n, args.dim))), unit(rng.normal(size=(args.n, args.dim))), index)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "title.npz"
        _write_gallery(path, built, "key")
        t0 = time.perf_counter()
        gallery = _read_gallery(None, path, "key")
        load = time.perf_counter() - t0
    queries = gallery.photos[: args.queries]
    gallery.top(queries[0], args.k)
    t0 = time.perf_counter()
    for q in queries:
        gallery.top(q, args.k)
    top = (time.perf_counter() - t0) / len(queries)
    t0 = time.perf_counter()
    for q in queries:
        np.argsort(-(gallery.recipes @ q))[: args.k]
    full = (time.perf_counter() - t0) / len(queries)
    print(f"gallery: {args.n:,} test pairs, latent dim {args.dim}, top {args.k}, {len(queries)} queries")
    print(f"  Gallery.top (partial sort):   {1000 * top:7.2f} ms per query")
    print(f"  full sort of every score:     {1000 * full:7.2f} ms per query ({full / top:.1f}x Gallery.top)")
    print(f"  cache load, once per process: {1000 * load:7.0f} ms")
    print(f"  budget of 1 s per query:      {1 / top:,.0f}x Gallery.top")


if __name__ == "__main__":
    main()
