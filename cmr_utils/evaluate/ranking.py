"""One fitted configuration ranked on one split's pairs: the rows of ``results.csv``, and the training bank a
hubness-corrected score looks at."""
from __future__ import annotations

import numpy as np

from cmr_utils.evaluate.retrieval import BANK, protocols
from cmr_utils.evaluate.retrieval import evaluate as evaluate_bags
from cmr_utils.features.store import Rows


def corrects_hubness(scores) -> bool:
    return any("+" in s for s in scores)


def query_bank(parts: list[tuple], seed: int) -> tuple:
    """(X, Y): at most ``BANK`` of the training pairs in ``parts`` ([(X, Y), ...]), a seeded subset: the
    queries a hubness-corrected score is normalised by. One part stays a view (``Rows``): a task
    carries its row numbers, not its rows."""
    sizes = [len(X) for X, _ in parts]
    n, starts = sum(sizes), np.cumsum([0, *sizes])
    idx = np.arange(n) if n <= BANK else np.sort(np.random.default_rng(seed).choice(n, BANK, replace=False))
    taken = [[v.take(i) if isinstance(v, Rows) else np.asarray(v)[i] for v in part]
             for part, lo, hi in zip(parts, starts, starts[1:]) for i in [idx[(idx >= lo) & (idx < hi)] - lo]]
    return taken[0] if len(taken) == 1 else tuple(np.vstack([np.asarray(t[j]) for t in taken]) for j in (0, 1))


def rank_rows(labels, entry, est, X, Y, split, scores, bag_sizes, n_bags, seed, fit_on,
              projected=False, bank=None) -> list[dict]:
    """Rows of results.csv: one model ranking one split's pairs (or their latent vectors, ``projected``;
    ``bank`` likewise), per score, protocol and direction; ``labels``: ``RunDir.labels`` of its text kind."""
    Zi, Zt = (X, Y) if projected else est.transform(X, Y)
    if bank is not None and not projected:
        bank = est.transform(*bank)
    return [{"text_kind": entry["text_kind"], **labels, "model": entry["model"], "shrinkage": entry["shrinkage"],
             "latent_dim": entry["latent_dim"], "n_components": est.n_components_, "fit_on": fit_on, "score": score,
             "split": split, "protocol": label, "n_pairs": len(X), **r,
             "stable_digits": getattr(est, "stable_digits_", None)}
            for score in scores for label, bag in protocols(bag_sizes, len(X)).items()
            for r in evaluate_bags(Zi, Zt, score, bag, n_bags, seed, est.corrs_, bank)]
