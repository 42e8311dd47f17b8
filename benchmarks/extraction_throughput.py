"""Encoding throughput of every runtime × precision, side by side in one run, on real photos and texts.

    python benchmarks/extraction_throughput.py [--data DIR] [--images 96] [--texts 64]
        [--image-encoder efficientnet-lite2] [--views 1] [--text-encoder mpnet] [--text-kind all]
        [--bucketing] [--variants torch:float32,openvino:float32]

For each available variant (``runtimes.BACKENDS`` × ``PRECISIONS`` that this machine runs) it
prints img/s (photos through the whole extraction path: files decoded and preprocessed in
DataLoader workers, the network on the runtime) and seq/s (texts, tokenised and windowed), and
- ``× torch``: the ratio to the torch float32 path (the project's reference),
- ``/ forward``: the ratio to the same runtime's pure forward pass on the same inputs already
  decoded into tensors (token batches): how far the input pipeline is from keeping it busy,
- ``cos``: the mean (and least) cosine of its features with torch float32's.
``--images 0`` or ``--texts 0`` leaves that modality out. ``--variants`` keeps some of them (torch float32, the reference, always comes first: a CPU
without native bfloat16, such as an AVX2-only one, emulates torch's slowly). ``--bucketing`` adds texts encoded in their own order against length-sorted batches. The data
defaults to the real sample in ../shared/data/epicurious-r1m (the demo corpus without it).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cmr_utils.data import demo
from cmr_utils.features import runtimes
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.data.photos import load_image
from cmr_utils.features.images import ImageEncoder
from cmr_utils.features.text import TextEncoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "epicurious-r1m"


def variants(device: torch.device, keep: str | None = None) -> list[tuple[str, str]]:
    """(backend, precision) pairs this machine can run; ``keep`` ("torch:float32,openvino:bfloat16") some."""
    if device.type == "cuda":
        out = [("torch", p) for p in runtimes.PRECISIONS]
    else:
        out = [("torch", "float32"), ("torch", "bfloat16")]
        if runtimes._installed("openvino"):
            out += [("openvino", "float32"), ("openvino", "bfloat16")]
        if runtimes._installed("onnxruntime"):
            out += [("onnxruntime", "float32")]
    wanted = {tuple(v.split(":")) for v in keep.split(",")} | {("torch", "float32")} if keep else set(out)
    return [v for v in out if v in wanted]


def timed(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def images(paths, args, cache) -> list[dict]:
    rows, reference = [], None
    for backend, precision in variants(runtimes.device_of(), args.variants):
        enc = ImageEncoder(args.image_encoder, batch_size=32, num_workers=args.workers, views=args.views,
                           backend=backend, precision=precision, cache_dir=cache)
        enc.encode(paths[:32], progress=False)  # warm-up (and conversion, once)
        seconds, (X, failed) = timed(enc.encode, paths, False)
        ok = [i for i in range(len(paths)) if i not in failed]
        batches = [torch.stack([enc.transform(load_image(paths[i])) for i in ok[s:s + 32]]).flatten(0, 1).numpy()
                   for s in range(0, len(ok), 32)]
        forward, _ = timed(lambda: [enc.run(x) for x in batches])
        reference = X[ok] if reference is None else reference
        rows.append(row("images", backend, precision, len(paths) / seconds, len(ok) / forward, X[ok], reference))
    return rows


def texts(items, args, cache) -> list[dict]:
    rows, reference = [], None
    for backend, precision in variants(runtimes.device_of(), args.variants):
        enc = TextEncoder(args.text_encoder, batch_size=32, backend=backend, precision=precision, cache_dir=cache)
        enc.encode(items[:8], progress=False)
        seconds, T = timed(enc.encode, items, False)
        ids = enc.tokenizer(items, add_special_tokens=False, verbose=False)["input_ids"]
        windows = sorted((w for t in ids for w in enc.windows(t)), key=len)
        batches = []
        for s in range(0, len(windows), 32):
            chunk = windows[s:s + 32]
            x = np.full((len(chunk), len(chunk[-1])), enc.tokenizer.pad_token_id, np.int64)
            mask = np.zeros_like(x)
            for k, w in enumerate(chunk):
                x[k, :len(w)], mask[k, :len(w)] = w, 1
            batches.append((x, mask))
        forward, _ = timed(lambda: [enc.run(x, m) for x, m in batches])
        reference = T if reference is None else reference
        rows.append(row("texts", backend, precision, len(items) / seconds, len(items) / forward, T, reference))
    if args.bucketing:
        enc = TextEncoder(args.text_encoder, batch_size=32, cache_dir=cache)
        plain, _ = timed(enc.encode, items, False, False)
        sorted_, _ = timed(enc.encode, items, False, True)
        print(f"texts, {enc.config['backend']}: bucketed {sorted_:.1f} s, in their own order {plain:.1f} s "
              f"({plain / sorted_:.2f}x; same vectors)")
    return rows


def row(what, backend, precision, rate, forward, X, reference) -> dict:
    cos = cosines(X, reference)
    return {"what": what, "variant": f"{backend} {precision}", "rate": rate, "forward": forward,
            "cos": cos.mean(), "least": cos.min()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED if (SHARED / "layer1.json").exists() else None)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--image-encoder", default="efficientnet-lite2")
    ap.add_argument("--views", type=int, default=1)
    ap.add_argument("--text-encoder", default="mpnet")
    ap.add_argument("--text-kind", default="all", help="title, ingredients, instructions or all")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bucketing", action="store_true")
    ap.add_argument("--variants", help="backend:precision pairs, comma-separated (default: every available one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or demo.generate(Path(tmp) / "demo", n_recipes=max(args.images, args.texts), seed=0,
                                          progress=False)
        ds = Recipe1M(root)
        recipes = [r for r in ds.split("train") if r.images]
        paths = [ds.image_path("train", r.images[0]) for r in recipes][:args.images]
        items = [r.text(args.text_kind) for r in recipes][:args.texts]
        rows = (images(paths, args, tmp) if paths else []) + (texts(items, args, tmp) if items else [])
    print(f"\n{root}: {len(paths)} photos ({args.image_encoder}, {args.views} view(s)), {len(items)} texts "
          f"({args.text_encoder}, kind '{args.text_kind}'); {torch.get_num_threads()} threads, device {runtimes.device_of()}")
    print(f"{'':7} {'variant':22} {'rate/s':>8} {'× torch':>8} {'/ forward':>9} {'cos mean':>9} {'least':>9}")
    for what in sorted({r["what"] for r in rows}):
        base = next(r["rate"] for r in rows if r["what"] == what)
        for r in (r for r in rows if r["what"] == what):
            print(f"{what:7} {r['variant']:22} {r['rate']:8.2f} {r['rate'] / base:8.2f} {r['rate'] / r['forward']:9.2f} "
                  f"{r['cos']:9.6f} {r['least']:9.6f}")


if __name__ == "__main__":
    main()
