"""Retrieval in the shared space: similarity scores, ranks, medR and Recall@K over seeded bags.

Pairs are row-aligned: query i's true match is gallery item i. Ranks start at 1 and count
ties against the query (rank = number of candidates scoring at least as high as the truth),
so a model that scores everything equally gets the worst rank, never the best. A NaN or
infinite score counts against the query too: it can never make a hit.
"""
from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from cmr_utils.cluster import cores, one_blas_thread

BASES = ("correlation", "cosine", "weighted")
# hubness corrections on top of a base score ("weighted+csls"): each gallery item's score is lowered by
# how close it sits to a bank of *training* queries, so no test statistic enters a rank
HUBNESS = ("csls", "isoftmax")
SCORES = BASES + tuple(f"{b}+{h}" for b in BASES for h in HUBNESS)
CSLS_K, ISOFTMAX_BETA = 10, 20.0  # CSLS's neighbours (Conneau et al. 2018); inverted softmax's inverse temperature
BANK = 5000  # training queries in a bank at most (a seeded subset beyond)
DIRECTIONS = ("im2recipe", "recipe2im")
KS = (1, 5, 10)


def normalize(Z: np.ndarray, score: str, corrs: np.ndarray | None = None, power: float = 4.0) -> np.ndarray:
    """Rows prepared so that a dot product is the (base) score.

    correlation: Pearson between latent vectors (the paper's). It centres each vector across
    its components, so it depends on each component's sign, which CCA leaves arbitrary;
    every fitted space (``fit.space``) fixes the signs the same way for every solver. cosine; weighted: cosine
    after scaling latent dim j by corrs[j] ** power (Gong et al. 2014).
    """
    Z = np.asarray(Z, np.float64)
    score = score.partition("+")[0]
    if score == "correlation":
        Z = Z - Z.mean(1, keepdims=True)
    elif score == "weighted":
        if corrs is None:
            raise ValueError("the weighted score needs the canonical correlations")
        Z = Z * np.clip(corrs, 0, None) ** power
    elif score != "cosine":
        raise ValueError(f"unknown score {score!r}; choose from {BASES}")
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norms > 0, norms, 1.0)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool of ranking threads per process (starting threads per call cost as much as the ranking)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="ranks")


os.register_at_fork(after_in_child=_pool.cache_clear)  # a forked child has none of its parent's threads


def ranks(A: np.ndarray, B: np.ndarray, pa: np.ndarray | None = None, pb: np.ndarray | None = None,
          chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks both ways from one similarity matrix S = A Bᵀ: (rank of B[i] among B's rows for the
    query A[i], rank of A[j] among A's rows for the query B[j]). ``pa``, ``pb``: penalties subtracted
    from each candidate's score when it is in the gallery (A's rows for B's queries, and the other way).

    S is computed once, in float32 and in row chunks spread over this process's cores (both
    directions read the same chunk: rows for A's queries, columns for B's), each chunk's GEMM on
    one BLAS thread, so its bits do not depend on the cores of the process that ranks. The truths
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
    pa, pb = (None if p is None else np.asarray(p, np.float32) for p in (pa, pb))
    with np.errstate(invalid="ignore"):  # a non-finite truth's floor is NaN: it ranks last below
        row_floor = (d if pb is None else d - pb) - eps * na * top_b  # a query's truth, less what rounding can move it
        col_floor = (d if pa is None else d - pa) - eps * nb * top_a

    def part(s: int):
        S = A[s:s + chunk] @ B.T
        if not finite:
            S[~np.isfinite(S)] = np.inf  # a non-finite candidate beats the truth ...
        rows = np.arange(len(S))
        S[rows, s + rows] = d[s:s + len(S)]
        # sums of the masks' bytes (count_nonzero with an axis converts them to intp first: slower)
        col_type = np.uint16 if chunk < 2**16 else np.int64
        rows_s = S if pb is None else S - pb[None, :]  # the scores A's queries see, and B's
        cols_s = S if pa is None else S - pa[s:s + len(S), None]
        return (np.add.reduce((rows_s >= row_floor[s:s + len(S), None]).view(np.uint8), 1, dtype=np.int64),
                np.add.reduce((cols_s >= col_floor[None, :]).view(np.uint8), 0, dtype=col_type))

    a2b, b2a = np.empty(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    starts = range(0, n, chunk)
    threads = cores()
    # numpy's comparisons use one core: a chunk per core, each GEMM on one BLAS thread (however many cores)
    with one_blas_thread():
        parts = list(_pool(threads).map(part, starts)) if threads > 1 else [part(s) for s in starts]
    for s, (a, b) in zip(starts, parts):
        a2b[s:s + len(a)] = a
        b2a += b
    bad = ~np.isfinite(d)  # ... and a non-finite truth ranks last
    a2b[bad], b2a[bad] = n, n
    return a2b, b2a


TIE = 4  # float32 ulps per √(latent dim) within which a score ties with the truth


def metrics(r: np.ndarray) -> dict:
    """medR and Recall@1/5/10 (percent) of a rank vector."""
    return {"medr": float(np.median(r)), **{f"r{k}": 100.0 * float(np.mean(r <= k)) for k in KS}}


def penalty(gallery: np.ndarray, bank: np.ndarray, hub: str, chunk: int = 4096) -> np.ndarray:
    """Each gallery row's hubness: how strongly the bank's queries (rows, both normalized) score it.

    csls: half the mean of its ``CSLS_K`` best scores with the bank (CSLS ranks by 2s − r(query) −
    r(candidate), and the query's term is the same for all its candidates); isoftmax: log Σ_b
    exp(β s(b, y)) / β (inverted softmax normalises over queries: ranking by its log is ranking by s
    less this). The bank holds training queries, so a test rank reads no other test query. Each
    chunk's GEMM runs on one BLAS thread: the same bits wherever it runs.
    """
    if hub not in HUBNESS:
        raise ValueError(f"unknown hubness correction {hub!r}; choose from {HUBNESS}")
    gallery, bank = np.asarray(gallery, np.float32), np.asarray(bank, np.float32)
    out = np.empty(len(gallery), np.float64)
    k = min(CSLS_K, len(bank))
    with one_blas_thread():
        for s in range(0, len(gallery), chunk):
            S = (gallery[s:s + chunk] @ bank.T).astype(np.float64)
            out[s:s + len(S)] = np.partition(S, -k, axis=1)[:, -k:].mean(1) / 2 if hub == "csls" else \
                logsumexp(ISOFTMAX_BETA * S, axis=1) / ISOFTMAX_BETA
    return out


def evaluate(Z_img: np.ndarray, Z_txt: np.ndarray, score: str, bag_size: int, n_bags: int,
             seed: int, corrs: np.ndarray | None = None, bank: tuple | None = None) -> list[dict]:
    """Mean and std over ``n_bags`` seeded random subsets of ``bag_size`` pairs, both directions.

    ``bag_size=0``, or one not smaller than the number of pairs, ranks the whole set once. Each metric's
    per-bag values are kept too (``medr_bags``: ';'-separated, in bag order), so that two runs ranked on
    the same seeded bags can be compared bag by bag (``cmr_utils.report.compare``). A hubness-corrected score
    ("weighted+csls") needs ``bank``: the latent (image, text) vectors of training pairs.
    """
    n = len(Z_img)
    views = (normalize(Z_img, score, corrs), normalize(Z_txt, score, corrs))
    hub = score.partition("+")[2]
    if hub and bank is None:
        raise ValueError(f"the score {score!r} needs a bank of training queries")
    # an image gallery is penalised by the bank's texts (recipe->image queries), a text gallery by its images
    pa, pb = (penalty(v, normalize(b, score, corrs), hub) for v, b in zip(views, bank[::-1])) if hub else (None, None)
    rng = np.random.default_rng(seed)
    if bag_size <= 0 or bag_size >= n:
        bags = [np.arange(n)]
    else:
        bags = [rng.choice(n, bag_size, replace=False) for _ in range(n_bags)]
    both = [ranks(views[0][b], views[1][b], *(None if p is None else p[b] for p in (pa, pb))) for b in bags]  # (im2recipe, recipe2im) per bag
    rows = []
    for i, direction in enumerate(DIRECTIONS):
        per_bag = pd.DataFrame([metrics(r[i]) for r in both])
        row = {"direction": direction, "bag_size": len(bags[0]), "n_bags": len(bags)}
        for col in per_bag:
            row[col] = per_bag[col].mean()
            row[f"{col}_std"] = per_bag[col].std(ddof=0)
            row[f"{col}_bags"] = ";".join(f"{v:.10g}" for v in per_bag[col])
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
