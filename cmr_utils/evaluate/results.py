"""``results.csv``: one row per configuration, split, protocol and direction, and how to read it.

Every text kind, model, dimension and score of a split is ranked on one query set and the same
seeded bags, so a split's protocols are the same for every row. Each split has one *main*
protocol (its smallest bag, else the whole split): model selection, tables and figures compare
rows at that protocol only, never a mix. ``fit_on`` says which pairs fitted a row's model:
'train' for every configuration, 'train+val' for the chosen one's refit, ranked on test only.
``stable_digits``: significant digits of the row's latent vectors that another machine's
rounding cannot change (``models._stable_digits``; empty for the contrastive head); in-process
and on a Dask cluster of one machine, every digit is the same.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cmr_utils.run_dir import CONFIG_COLUMNS, as_run

CV_KEYS = ["text_kind", "model", "shrinkage", "latent_dim", "score"]  # a configuration in kfold.csv


def load(run_dir) -> pd.DataFrame:
    """``results.csv`` with its protocol labels kept as text ('1k', '10k', 'full'): ``RunDir.results``."""
    return as_run(run_dir).results


def main_rows(results: pd.DataFrame, split: str, direction: str | None = None,
              fit_on: str = "train") -> pd.DataFrame:
    """The rows of ``split`` (and ``direction``) of models fitted on ``fit_on``, at the split's main protocol
    (its smallest bag).

    Tables and figures compare models fitted on the same pairs, so the train+val refit is left out
    unless asked for.
    """
    df = results[(results.split == split) & (results.fit_on == fit_on)]
    if direction is not None:
        df = df[df.direction == direction]
    if df.empty:
        return df
    return df[df.protocol == df.loc[df.bag_size.idxmin(), "protocol"]]


def ranked(df: pd.DataFrame, select_by: str = "medr") -> pd.DataFrame:
    """Best first: lowest ``select_by`` (medR), ties broken by the higher R@10."""
    return df.sort_values([select_by, "r10"], ascending=[True, False], kind="stable")


def chosen(results: pd.DataFrame, select_by: str = "medr", cv: pd.DataFrame | None = None) -> pd.Series:
    """Choose: the configuration with the best image->recipe ``select_by``, on val or, given ``cv``
    (``kfold.csv``), averaged over the cross-validation folds. Test never takes part. (The choice once
    made, results.csv marks it: ``RunDir.chosen``.)"""
    val = main_rows(results, "val", "im2recipe")
    if cv is None:
        return ranked(val, select_by).iloc[0][CONFIG_COLUMNS]
    best = ranked(cv_means(cv), select_by).iloc[0]
    return val[(val[CV_KEYS] == best[CV_KEYS]).all(axis=1)].iloc[0][CONFIG_COLUMNS]


def chosen_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The chosen configuration's rows as a reader follows them: val, test, then test of its refit on
    train+val."""
    df = results[results.chosen]
    return df.iloc[np.lexsort([df.fit_on != "train", df.split != "val"])]


def cv_means(cv: pd.DataFrame, direction: str = "im2recipe") -> pd.DataFrame:
    """Per configuration of ``kfold.csv``: medR and recalls averaged over the folds, fold spread as ``*_std``."""
    by = cv[cv.direction == direction].groupby(CV_KEYS, sort=False)
    return by[["medr", "r1", "r5", "r10"]].mean().join(by[["medr", "r10"]].std(ddof=0).add_suffix("_std")).reset_index()


def best_per_kind(results: pd.DataFrame, direction: str = "im2recipe") -> pd.DataFrame:
    """For each text kind, the configuration with the best val medR (then R@10), indexed by text kind."""
    return ranked(main_rows(results, "val", direction)).groupby("text_kind", sort=False).head(1).set_index("text_kind")
