"""Retrieval in the shared space: similarity scores, ranks, medR and Recall@K over seeded bags.

Pairs are row-aligned: query i's true match is gallery item i. Ranks start at 1 and count
ties against the query (rank = number of candidates scoring at least as high as the truth),
so a model that scores everything equally gets the worst rank, never the best. A NaN or
infinite score counts against the query too: it can never make a hit.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

SCORES = ("correlation", "cosine", "weighted")
DIRECTIONS = ("im2recipe", "recipe2im")
KS = (1, 5, 10)


def normalize(Z: np.ndarray, score: str, corrs: np.ndarray | None = None, power: float = 4.0) -> np.ndarray:
    """Rows prepared so that a dot product is the score.

    correlation: Pearson between latent vectors (the paper's). It centres each vector across
    its components, so it depends on each component's sign, which CCA leaves arbitrary;
    ``SharedSpace`` fixes the signs the same way for every solver. cosine; weighted: cosine
    after scaling latent dim j by corrs[j] ** power (Gong et al. 2014).
    """
    Z = np.asarray(Z, np.float64)
    if score == "correlation":
        Z = Z - Z.mean(1, keepdims=True)
    elif score == "weighted":
        if corrs is None:
            raise ValueError("the weighted score needs the canonical correlations")
        Z = Z * np.clip(corrs, 0, None) ** power
    elif score != "cosine":
        raise ValueError(f"unknown score {score!r}; choose from {SCORES}")
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norms > 0, norms, 1.0)


def ranks(A: np.ndarray, B: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks both ways from one similarity matrix S = A Bᵀ: (rank of B[i] among B's rows for the
    query A[i], rank of A[j] among A's rows for the query B[j]).

    S is computed once, in float32 and in row chunks spread over this process's cores (both
    directions read the same chunk: rows for A's queries, columns for B's). The truths
    d[i] = A[i]·B[i] are computed apart and written into S's diagonal; a candidate within
    float32 rounding of the truth (``TIE`` ulps per √k, scaled by the vectors' norms) counts as a
    tie, so an identical vector (a duplicate photo or title) ties whatever the rounding, and ties
    count against the query.
    """
    n = len(A)
    if len(B) != n:
        raise ValueError(f"queries and gallery must be aligned, got {len(A)} and {len(B)}")
    A, B = np.asarray(A, np.float32), np.asarray(B, np.float32)
    d = np.einsum("ij,ij->i", A, B)
    finite = np.isfinite(A).all() and np.isfinite(B).all()
    eps = TIE * np.finfo(np.float32).eps * np.sqrt(max(A.shape[1], 1))
    na, nb = np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=1)
    top_a, top_b = (v[np.isfinite(v)].max(initial=0.0) for v in (na, nb))
    with np.errstate(invalid="ignore"):  # a non-finite truth's floor is NaN: it ranks last below
        row_floor = d - eps * na * top_b  # a query's truth, less what rounding can move it
        col_floor = d - eps * nb * top_a

    def part(s: int):
        S = A[s:s + chunk] @ B.T
        if not finite:
            S[~np.isfinite(S)] = np.inf  # a non-finite candidate beats the truth ...
        rows = np.arange(len(S))
        S[rows, s + rows] = d[s:s + len(S)]
        # sums of the masks' bytes (count_nonzero with an axis converts them to intp first: slower)
        col_type = np.uint16 if chunk < 2**16 else np.int64
        return (np.add.reduce((S >= row_floor[s:s + len(S), None]).view(np.uint8), 1, dtype=np.int64),
                np.add.reduce((S >= col_floor[None, :]).view(np.uint8), 0, dtype=col_type))

    a2b, b2a = np.empty(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    starts = range(0, n, chunk)
    threads = _cores()
    if threads > 1:  # numpy's comparisons use one core: a chunk per core, each GEMM on one BLAS thread
        with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
            parts = list(pool.map(part, starts))
    else:
        parts = [part(s) for s in starts]
    for s, (a, b) in zip(starts, parts):
        a2b[s:s + len(a)] = a
        b2a += b
    bad = ~np.isfinite(d)  # ... and a non-finite truth ranks last
    a2b[bad], b2a[bad] = n, n
    return a2b, b2a


TIE = 4  # float32 ulps per √(latent dim) within which a score ties with the truth


def _cores() -> int:
    """The cores this process may use: its CPU affinity, capped by OMP_NUM_THREADS (a Dask worker's share)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(n, int(os.environ.get("OMP_NUM_THREADS") or n)))


def metrics(r: np.ndarray) -> dict:
    """medR and Recall@1/5/10 (percent) of a rank vector."""
    return {"medr": float(np.median(r)), **{f"r{k}": 100.0 * float(np.mean(r <= k)) for k in KS}}


def evaluate(Z_img: np.ndarray, Z_txt: np.ndarray, score: str, bag_size: int, n_bags: int,
             seed: int, corrs: np.ndarray | None = None) -> list[dict]:
    """Mean and std over ``n_bags`` seeded random subsets of ``bag_size`` pairs, both directions.

    ``bag_size=0``, or one not smaller than the number of pairs, ranks the whole set once.
    """
    n = len(Z_img)
    views = (normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs))
    rng = np.random.default_rng(seed)
    if bag_size <= 0 or bag_size >= n:
        bags = [np.arange(n)]
    else:
        bags = [rng.choice(n, bag_size, replace=False) for _ in range(n_bags)]
    both = [ranks(views[0][b], views[1][b]) for b in bags]  # (im2recipe, recipe2im) per bag
    rows = []
    for i, direction in enumerate(DIRECTIONS):
        per_bag = pd.DataFrame([metrics(r[i]) for r in both])
        row = {"direction": direction, "bag_size": len(bags[0]), "n_bags": len(bags)}
        for col in per_bag:
            row[col] = per_bag[col].mean()
            row[f"{col}_std"] = per_bag[col].std(ddof=0)
        rows.append(row)
    return rows


def protocols(bag_sizes, n: int) -> dict[str, int]:
    """{label: pairs per bag} for ``n`` pairs: '1k', '10k' (other sizes by number) and 'full'.

    A bag of 0, or one not smaller than ``n``, ranks the whole set once as 'full'; labels come
    from the requested sizes, never from ``n``, so they mean the same on every split and kind.
    """
    out = {}
    for b in sorted(bag_sizes, key=lambda b: (b <= 0 or b >= n, b)):
        label, size = ("full", n) if b <= 0 or b >= n else (f"{b // 1000}k" if b % 1000 == 0 else str(b), b)
        out.setdefault(label, size)
    return out
