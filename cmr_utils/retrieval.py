"""Retrieval in the shared space: similarity scores, ranks, medR and Recall@K over seeded bags.

Pairs are row-aligned: query i's true match is gallery item i. Ranks start at 1 and count
ties against the query (rank = number of candidates scoring at least as high as the truth),
so a model that scores everything equally gets the worst rank, never the best. A NaN or
infinite score counts against the query too: it can never make a hit.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SCORES = ("correlation", "cosine", "weighted")
DIRECTIONS = {"im2recipe": (0, 1), "recipe2im": (1, 0)}
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


def ranks(Q: np.ndarray, G: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """1-based rank of G[i] among all rows of G for query Q[i] (dot-product similarity), chunked by query."""
    n = len(Q)
    if len(G) != n:
        raise ValueError(f"queries and gallery must be aligned, got {len(Q)} and {len(G)}")
    out = np.empty(n, dtype=np.int64)
    for s in range(0, n, chunk):
        S = Q[s:s + chunk] @ G.T
        S[~np.isfinite(S)] = np.inf  # a non-finite candidate beats the truth ...
        true = S[np.arange(len(S)), np.arange(s, s + len(S))]
        out[s:s + chunk] = np.where(np.isinf(true), n, (S >= true[:, None]).sum(1))  # ... and a non-finite truth ranks last
    return out


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
    rows = []
    for direction, (q, g) in DIRECTIONS.items():
        per_bag = pd.DataFrame([metrics(ranks(views[q][b], views[g][b])) for b in bags])
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
