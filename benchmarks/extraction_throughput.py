"""Extraction throughput against the encoders' pure forward throughput, and text length bucketing.

    python benchmarks/extraction_throughput.py [--images 512] [--texts 1024]

Images: the full extraction path (files decoded and preprocessed in DataLoader workers, then the
forward pass) against the forward pass alone on the same images already decoded into tensors,
in the same run; the ratio is extraction img/s over forward img/s. Texts: the same texts encoded
in length-sorted batches (the default) and in their original order.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cmr_utils import demo
from cmr_utils.data import Recipe1M
from cmr_utils.encoders import ImageEncoder, TextEncoder, load_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = demo.generate(Path(tmp) / "demo", n_recipes=max(args.images, args.texts), seed=0, progress=False)
        ds = Recipe1M(root)
        recipes = [r for s in ("train", "val", "test") for r in ds.split(s)]
        paths = [ds.image_path(r.partition, im) for r in recipes for im in r.images][: args.images]

        enc = ImageEncoder(num_workers=args.workers, batch_size=32)
        enc.encode(paths[:64], progress=False)  # warm-up
        t0 = time.perf_counter()
        enc.encode(paths, progress=False)
        full = len(paths) / (time.perf_counter() - t0)
        batches = [torch.stack([enc.transform(load_image(p)) for p in paths[i:i + 32]])
                   for i in range(0, len(paths), 32)]
        t0 = time.perf_counter()
        with torch.inference_mode():
            for x in batches:
                enc.model(x.contiguous(memory_format=torch.channels_last))
        forward = len(paths) / (time.perf_counter() - t0)
        print(f"images ({enc.name}, {torch.get_num_threads()} torch threads, {args.workers} workers): "
              f"extraction {full:.1f} img/s, forward only {forward:.1f} img/s, ratio {full / forward:.2f}")

        texts = [r.text("all") for r in recipes][: args.texts]
        shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "epicurious-r1m"
        if (shared / "layer1.json").exists():  # real recipes vary in length far more than the demo's
            texts = [r.text("all") for r in Recipe1M(shared).recipes.values()][: args.texts]
        tenc = TextEncoder("minilm", batch_size=32)
        tenc.encode(texts[:64], progress=False)
        times = {}
        for bucket in (True, False):
            t0 = time.perf_counter()
            out = tenc.encode(texts, progress=False, bucket=bucket)
            times[bucket] = time.perf_counter() - t0
            times[bucket, "out"] = out
        assert np.allclose(times[True, "out"], times[False, "out"], atol=1e-4)
        lengths = [len(ids) for ids in tenc.tokenizer(texts, truncation=True, max_length=512)["input_ids"]]
        print(f"texts ({len(texts)}, tokens median {int(np.median(lengths))}, max {max(lengths)}): "
              f"bucketed {times[True]:.1f} s, unbucketed {times[False]:.1f} s, "
              f"speed-up {times[False] / times[True]:.2f}x (same vectors)")


if __name__ == "__main__":
    main()
