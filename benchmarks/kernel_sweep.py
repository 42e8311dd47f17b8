"""Kernel CCA over a sweep of shrinkages: each fit alone against fits sharing one mapping of the pairs.

    python benchmarks/kernel_sweep.py reports/<run> [--kind concat] [--shrinkage 0.5,0.7,0.9,0.97,0.99]

The Nyström maps and the moments of the mapped pairs do not depend on the shrinkage, so the sweep
(02_fit) and each fold of the k-fold choice (03_evaluate) compute them once per kernel setting
(``kernel.Mapped``). Both ways run side by side here on a run's training pairs, with the same
models to the bit (checked).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from cmr_utils.fit import fit_shared, make
from cmr_utils.fit.kernel import Mapped
from cmr_utils.run_dir import RunDir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--kind", default="concat")
    ap.add_argument("--shrinkage", default="0.5,0.7,0.9,0.97,0.99")
    ap.add_argument("--landmarks", type=int, default=1000)
    args = ap.parse_args()
    X, Y, _ = RunDir(args.run_dir).pairs(args.kind, "train")
    X, Y = np.asarray(X), np.asarray(Y)
    models = [make("kernel", n_components=None, shrinkage=float(c), kernel_landmarks=args.landmarks)
              for c in args.shrinkage.split(",")]
    t0 = time.perf_counter()
    alone = [make("kernel", **m.get_params()).fit(X, Y) for m in models]
    t1 = time.perf_counter()
    mapped = Mapped(X, Y)
    shared = [fit_shared(make("kernel", **m.get_params()), X, Y, mapped=mapped) for m in models]
    t2 = time.perf_counter()
    same = all(np.array_equal(a, b) for u, v in zip(alone, shared) for a, b in zip(u.weights_, v.weights_))
    print(f"{args.kind}: {len(X)} pairs, {X.shape[1]} + {Y.shape[1]} features, {len(models)} shrinkages, "
          f"{args.landmarks} landmarks\n  each alone {t1 - t0:.1f} s, sharing the maps {t2 - t1:.1f} s "
          f"({(t1 - t0) / (t2 - t1):.2f}x); same weights: {same}")


if __name__ == "__main__":
    main()
