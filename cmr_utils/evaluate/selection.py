"""Choosing a configuration beyond val: k-fold cross-validation on train+val, and the chosen one refitted on train+val."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cmr_utils.evaluate.ranking import corrects_hubness, query_bank, rank_rows
from cmr_utils.features import lexical
from cmr_utils.evaluate.results import CV_KEYS, cv_means, ranked
from cmr_utils.evaluate.retrieval import evaluate as evaluate_bags
from cmr_utils.evaluate.retrieval import protocols
from cmr_utils.fit import MODELS, fit_shared, make
from cmr_utils.fit.kernel import Mapped
from cmr_utils.fit.cache import fit_cached, moments_cached
from cmr_utils.fit.moments import Moments
from cmr_utils.io import key
from cmr_utils.progress import bar
from cmr_utils.run_dir import as_run


def cross_validate(run_dir, scores=("correlation",), bag_sizes=(1000,), n_bags=10, seed=0,
                   folds=5, progress=True) -> pd.DataFrame:
    """K-fold cross-validation of every fitted configuration on the train+val pairs; writes ``kfold.csv``.

    A small val split makes a noisy judge; here every train+val recipe judges. The recipes of the
    train and val query sets are dealt into ``folds`` seeded folds (a seeded permutation dealt round
    robin: sklearn's GroupKFold deals other folds, which would move every k-fold number). Per fold, each configuration
    is refitted on all other train+val pairs (every photo of the other recipes, and the recipes
    lacking some kind's text) and ranks the fold's recipes, one photo each as on val and test, at
    the fold's main protocol (its smallest bag), on the same bags for every configuration. Test is
    never read. Cost: nested solvers fit once per fold at their largest latent dim and are cut
    (``head``); linear models take the fold's complement from the moments of all
    pairs minus the fold's (``Moments``), so a fold costs one solve. A kind with the lexical view
    (alone or in ``concat``) has it refitted per fold on the other train+val recipes' words, as
    extraction fitted it on train's: the fold ranks words its SVD never read (seconds a fold). (The
    train+val pairs are read into memory here: k-fold selection is for small data such as the real sample.)
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    run = as_run(run_dir)
    recipes = run.query_set("train")[0] + run.query_set("val")[0]
    fold_of = dict(zip(np.random.default_rng(seed).permutation(recipes), np.arange(len(recipes)) % folds))
    rows, by_kind = [], {}
    for e in run.models:  # per text kind, the configurations that differ only in latent dim
        by_kind.setdefault(e["text_kind"], {}).setdefault(
            key({k: v for k, v in e["params"].items() if k != "n_components"}), []).append(e)
    steps = bar(total=folds * sum(map(len, by_kind.values())), desc="k-fold", disable=not progress)
    for kind, groups in by_kind.items():
        parts = [run.pairs(kind, split) for split in ("train", "val")]
        X, Y = (np.vstack([p[i] for p in parts]) for i in (0, 1))
        ids = pd.concat([p[2].recipe_id for p in parts], ignore_index=True)
        fold, first = ids.map(fold_of).fillna(-1).to_numpy(int), ~ids.duplicated().to_numpy()
        lexical_block = run.lexical_block(kind)
        linear = any(MODELS[g[0]["model"]].from_moments for g in groups.values())
        total = Moments.of(X, Y) if linear and lexical_block is None else None
        for f in range(folds):
            out, held = fold == f, np.flatnonzero((fold == f) & first)
            Yf = Y if lexical_block is None else _with_lexical_refitted(  # the fold's words stay out of its SVD
                run, Y, ids, lexical_block, [r for r, g in fold_of.items() if g == f])
            rest = total - Moments.of(X[out], Y[out]) if total is not None else \
                Moments.of(X[~out], Yf[~out]) if linear else None
            label, bag = next(iter(protocols(bag_sizes, len(held)).items()))
            train = X[~out], Yf[~out]  # the fold's training pairs
            bank = query_bank([train], seed) if corrects_hubness(scores) else None
            mapped = Mapped(*train)  # the kernel models' maps, once for all their shrinkages
            for group in groups.values():
                for est, entries in _fold_fits(group, train, rest, mapped):
                    # projected once: a latent dim's vectors are the first columns (as in ``stage``)
                    Zi, Zt = est.transform(X[held], Yf[held])
                    Bi, Bt = est.transform(*bank) if bank is not None else (None, None)
                    for e in entries:
                        cut = est.head(e["params"]["n_components"]) if est.nested else est
                        k = cut.n_components_
                        latent = None if bank is None else (Bi[:, :k], Bt[:, :k])
                        rows += [{"text_kind": kind, "model": e["model"], "shrinkage": e["shrinkage"],
                                  "latent_dim": e["latent_dim"], "score": score, "fold": f, "protocol": label,
                                  "n_pairs": len(held), **r}
                                 for score in scores
                                 for r in evaluate_bags(Zi[:, :k], Zt[:, :k], score, bag, n_bags, seed, cut.corrs_,
                                                        latent)]
                steps.update()
    steps.close()
    cv = pd.DataFrame(rows).round(4)  # the numbers kfold.csv keeps: the choice and the report rank the same ones
    run.save_csv("kfold.csv", cv)
    return cv


def _with_lexical_refitted(run, Y: np.ndarray, ids: pd.Series, block: tuple[slice, dict], fold: list) -> np.ndarray:
    """``Y`` with its lexical columns (``block``: where, and the view's settings) mapped by a model fitted
    without the recipes of ``fold``."""
    where, encoder = block
    words = lexical.refitted(run.dataset, encoder, fold, ids.tolist())
    return np.hstack([Y[:, :where.start], words, Y[:, where.stop:]])


def _fold_fits(group: list[dict], train: tuple, rest: Moments | None, mapped: Mapped) -> list[tuple]:
    """(a model fitted on the fold's ``train`` pairs, whose moments are ``rest`` and kernel maps ``mapped``;
    the entries it serves) for entries that differ only in latent dim: a nested model is fitted once at the
    largest and serves them all."""
    est = make(**{**group[0]["params"], "n_components": max(e["params"]["n_components"] for e in group)})
    if not est.nested:
        return [(make(**e["params"]).fit(*train), [e]) for e in group]
    return [(fit_shared(est, *train, None if rest is None else lambda: rest, mapped), group)]


def refit(run_dir, config, bag_sizes=(1000,), n_bags=10, seed=0, client=None) -> pd.DataFrame:
    """Rows of one configuration refitted on the train+val pairs and ranked on test, ``fit_on`` 'train+val'.

    The estimator parameters are its train fit's, and the fit is cached beside it (a linear
    model from the train moments plus the val pairs' moments); only the configuration's score is
    ranked, on test's query set and bags. Val is then spent, so these rows exist only on test and
    take no part in any choice.
    """
    run = as_run(run_dir)
    manifest, entry = run.manifest, run.model_entry(config)
    kind, cache_dir = entry["text_kind"], Path(entry["path"]).parents[1]
    parts = {split: run.pairs(kind, split)[:2] for split in ("train", "val")}
    keys = {split: (manifest["image"][split], manifest["text"][kind][split]) for split in ("train", "val")}

    def moments():
        m = [moments_cached(cache_dir, *keys[s], *parts[s], client, progress=False) for s in ("train", "val")]
        return m[0] + m[1]

    X, Y = (None, None) if MODELS[entry["model"]].from_moments else \
        (np.vstack([np.asarray(parts[s][i]) for s in ("train", "val")]) for i in (0, 1))
    est, _ = fit_cached(cache_dir, *zip(*keys.values()), X, Y, moments, **entry["params"])
    bank = query_bank(list(parts.values()), seed) if corrects_hubness([config["score"]]) else None  # the refit's training pairs
    X, Y, _ = run.pairs(kind, "test", run.query_set("test")[0])
    return pd.DataFrame(rank_rows(run.labels(kind), entry, est, X, Y, "test", [config["score"]], bag_sizes, n_bags,
                                  seed, "train+val", bank=bank))


def kfold_ranking(run_dir, select: str = "kfold", top: int = 10) -> pd.DataFrame:
    """The ``top`` configurations by image→recipe medR (then R@10) averaged over the k folds of train+val,
    best (the chosen one) first, with the spread over folds; a line saying so when the choice was on val."""
    if select != "kfold":
        return pd.DataFrame({"k-fold cross-validation": ["not run: the configuration was chosen on val"]})
    ranking = ranked(cv_means(pd.read_csv(as_run(run_dir) / "kfold.csv"))).head(top).reset_index(drop=True)
    metrics = ranking.columns.difference(CV_KEYS)
    ranking[metrics] = ranking[metrics].round(2)
    return ranking.set_axis(pd.RangeIndex(1, len(ranking) + 1, name="rank"))
