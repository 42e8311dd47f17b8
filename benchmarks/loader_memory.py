"""Peak memory of loading a Recipe1M-size layer1.json, as a multiple of the file size.

    python benchmarks/loader_memory.py [--recipes 340000] [--gb 1.3]

Writes a synthetic layer1.json of about the real size (recipes with Recipe1M-like field lengths)
and an empty layer2.json, then in separate child processes measures the peak resident memory
of the project's streaming loader (``Recipe1M``) and, for reference, of plain ``json.load``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

WORDS = ("chopped tomato onion garlic butter flour sugar salt pepper olive oil chicken stock cream cheese "
         "basil parsley lemon juice eggs milk bake stir simmer minutes until golden heat pan bowl whisk").split()


def write_layer1(path: Path, n: int, target_bytes: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_recipe = target_bytes / n
    words_per_recipe = int(per_recipe / 7)  # about 7 bytes per word with JSON overhead
    with open(path, "w") as f:
        f.write("[")
        for i in range(n):
            w = rng.choice(WORDS, size=words_per_recipe)
            k = words_per_recipe // 3
            r = {"id": f"{i:010x}", "title": " ".join(w[:6]), "partition": ("train", "val", "test")[i % 3],
                 "url": f"http://example.org/{i}",
                 "ingredients": [{"text": " ".join(w[j:j + 5])} for j in range(6, k, 5)],
                 "instructions": [{"text": " ".join(w[j:j + 12])} for j in range(k, words_per_recipe, 12)]}
            f.write(("," if i else "") + json.dumps(r))
        f.write("]")


def measure(how: str, root: str, queue) -> None:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if how == "Recipe1M (streaming)":
        from cmr_utils.data.recipe1m import Recipe1M
        n = len(Recipe1M(root).recipes)
    else:
        n = len(json.load(open(Path(root) / "layer1.json")))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((how, n, time.perf_counter() - t0, base * 1024, peak * 1024))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", type=int, default=340_000)
    ap.add_argument("--gb", type=float, default=1.3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_layer1(root / "layer1.json", args.recipes, args.gb * 1e9)
        (root / "layer2.json").write_text("[]")
        size = (root / "layer1.json").stat().st_size
        print(f"layer1.json: {args.recipes:,} recipes, {size / 1e9:.2f} GB (written in {time.perf_counter() - t0:.0f} s)")
        ctx = mp.get_context("spawn")
        for how in ("Recipe1M (streaming)", "json.load (reference)"):
            q = ctx.Queue()
            p = ctx.Process(target=measure, args=(how, str(root), q))
            p.start()
            how, n, sec, base, peak = q.get()
            p.join()
            print(f"{how:24s} {n:,} recipes in {sec:5.1f} s; peak RSS {peak / 1e9:5.2f} GB = {peak / size:4.2f}x file "
                  f"(interpreter before loading: {base / 1e9:.2f} GB)")


if __name__ == "__main__":
    main()
