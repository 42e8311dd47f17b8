"""The CUDA path, checked: the demo's photos and texts encoded on the GPU at each precision against CPU float32.

    python benchmarks/gpu_check.py [--recipes 512] [--batch-size 64]

A script, not a test (CI has no GPU): run it on a machine with CUDA. For the bundled encoders
(EfficientNet-Lite0, MiniLM) it encodes the same demo photos and texts with torch float32 on the
CPU (the reference) and with torch on CUDA at float32, bfloat16 and float16, and prints img/s,
seq/s (a second pass: the first chooses kernels for each shape) and the least and mean cosine of each variant's features with the reference; a variant
whose least cosine is under 0.999 fails the check (exit status 1).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cmr_utils.data import demo
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.images import ImageEncoder
from cmr_utils.features.text import TextEncoder

FLOOR = 0.999


def encode(paths, texts, device: str, precision: str, batch_size: int, cache: str):
    images = ImageEncoder("efficientnet-lite0", batch_size=batch_size, num_workers=4, device=device,
                          backend="torch", precision=precision, cache_dir=cache)
    words = TextEncoder("minilm", batch_size=batch_size, device=device, backend="torch", precision=precision,
                        cache_dir=cache)
    images.encode(paths, progress=False)  # warm-up over every shape: kernels chosen, memory allocated
    words.encode(texts, progress=False)
    out = []
    for fn, items in ((lambda: images.encode(paths, progress=False)[0], paths),
                      (lambda: words.encode(texts, progress=False), texts)):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        X = fn()
        out.append((X, len(items) / (time.perf_counter() - t0)))
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        ds = Recipe1M(demo.generate(Path(tmp) / "demo", n_recipes=args.recipes, seed=0, progress=False))
        recipes = [r for s in ("train", "val", "test") for r in ds.split(s) if r.images]
        paths = [ds.image_path(r.partition, r.images[0]) for r in recipes]
        texts = [r.text("all") for r in recipes]
        (ref_x, cpu_img), (ref_t, cpu_txt) = encode(paths, texts, "cpu", "float32", args.batch_size, tmp)
        print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {len(paths)} demo photos and texts; "
              f"CPU float32 ({torch.get_num_threads()} threads): {cpu_img:.1f} img/s, {cpu_txt:.1f} seq/s")
        print(f"{'precision':10} {'img/s':>8} {'cos least':>10} {'cos mean':>9} {'seq/s':>8} {'cos least':>10} "
              f"{'cos mean':>9}")
        ok = True
        for precision in ("float32", "bfloat16", "float16"):
            (x, img), (t, txt) = encode(paths, texts, "cuda", precision, args.batch_size, tmp)
            ci, ct = cosines(x, ref_x), cosines(t, ref_t)
            ok &= min(ci.min(), ct.min()) >= FLOOR
            print(f"{precision:10} {img:8.1f} {ci.min():10.6f} {ci.mean():9.6f} {txt:8.1f} {ct.min():10.6f} "
                  f"{ct.mean():9.6f}")
    print("PASS" if ok else f"FAIL: a cosine under {FLOOR}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
