"""A search's first query (which loads the encoders) against the queries after it, side by side in one process.

    python benchmarks/query_latency.py [--run reports/demo] [--queries 10]

On a finished run folder (by default a small demo run made in a temporary folder first), the
gallery is loaded from its cache, then a photo query and a text query are timed: the first of each
loads its encoder, the later ones (median of ``--queries``) reuse it, as ``python -m cmr_utils
search --interactive`` does. The claim (once asserted by a unit test): after the first, a query
takes well under a second. Gallery.top alone at Recipe1M size: benchmarks/search_latency.py.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cmr_utils.features import extract as extraction
from cmr_utils.report import search

SMALL = ["demo_recipes=160", "text_kinds=[title, instructions]", "models=[cca, ridge]", "latent_dims=[2, 16]",
         "scores=[correlation]", "bag_sizes=[40]", "n_bags=3", "tsne_points=60", "n_examples=2"]


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(run_dir: Path, n: int) -> None:
    search.load(run_dir)  # the gallery itself: built once, then cached
    t0 = time.perf_counter()
    gallery = search.load(run_dir)
    load = time.perf_counter() - t0
    photos, texts = list(gallery.index.path[: n + 1]), [f"{t} soup" for t in gallery.index.title[: n + 1]]
    extraction.encoder_like.cache_clear()
    print(f"run {run_dir}: {len(gallery.index)} test pairs, {gallery.label}")
    print(f"  gallery from its cache:     {1000 * load:8.1f} ms")
    for what, queries in (("photo", photos), ("text", texts)):
        first = seconds(lambda: gallery.search(queries[:1]))
        later = statistics.median(seconds(lambda q=q: gallery.search([q])) for q in queries[1:])
        print(f"  first {what} query:          {1000 * first:8.1f} ms (loads the encoder)")
        print(f"  later {what} queries:        {1000 * later:8.1f} ms median ({first / later:.0f}x faster)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a finished run folder (default: a small demo run, made first)")
    ap.add_argument("--queries", type=int, default=10)
    args = ap.parse_args()
    if args.run:
        return measure(args.run, args.queries)
    from cmr_utils.runner import run as runner
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "demo.yaml"
        params.write_text(f"cache_dir: {Path(tmp) / 'cache'}\n")
        measure(runner.run(params, SMALL, name="demo", reports_dir=Path(tmp) / "reports"), args.queries)


if __name__ == "__main__":
    main()
