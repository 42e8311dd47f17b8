"""What a 1k-pair bag costs to rank: ``retrieval.ranks`` against its bare arithmetic, side by side in one run.

    python benchmarks/ranking_overhead.py [--n 1000] [--dim 25] [--calls 200]

Evaluation ranks thousands of small bags (the demo: ~3,500 calls of 1,000 pairs), so any per-call
setup multiplies. Three ways, timed per call: the bare arithmetic (one GEMM, the comparisons, no
threads), ``ranks`` as the project runs it (its BLAS libraries found once, one thread pool kept per
process), and the same ``ranks`` paying the per-call setup it used to (the BLAS libraries discovered
and a new ``ThreadPoolExecutor`` each call; the same ranks), with the ratios to the bare arithmetic.
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

from cmr_utils import cluster
from cmr_utils.evaluate import retrieval


def per_call(fn, calls: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def bare(A, B):
    S = A @ B.T
    d = np.diag(S)
    return (S >= d[:, None]).sum(1), (S >= d[None, :]).sum(0)


def former(A, B):
    """``ranks`` as it ran before: BLAS libraries found and threads started anew for every call."""
    kept = cluster._blas, retrieval._pool
    with ThreadPoolExecutor(retrieval.cores()) as pool:
        cluster._blas, retrieval._pool = ThreadpoolController, lambda threads: pool
        try:
            return retrieval.ranks(A, B)
        finally:
            cluster._blas, retrieval._pool = kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=25)
    ap.add_argument("--calls", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    A, B = (rng.normal(size=(args.n, args.dim)).astype(np.float32) for _ in range(2))
    base = per_call(lambda: bare(A, B), args.calls)
    now = per_call(lambda: retrieval.ranks(A, B), args.calls)
    old = per_call(lambda: former(A, B), args.calls)
    assert all((a == b).all() for a, b in zip(retrieval.ranks(A, B), former(A, B)))
    print(f"{args.n} pairs, dim {args.dim}, {retrieval.cores()} cores, {args.calls} calls each")
    print(f"{'':38s}{'ms/call':>9s}{'/ bare':>8s}")
    for name, t in [("bare arithmetic", base), ("ranks (libraries found once, pool kept)", now),
                    ("ranks with the former per-call setup", old)]:
        print(f"{name:38s}{t * 1e3:9.2f}{t / base:8.2f}")


if __name__ == "__main__":
    main()
