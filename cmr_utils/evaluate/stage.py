"""The evaluation stage (notebook 03): every fitted model on val and test, the choice, the refit; writes ``results.csv``."""
from __future__ import annotations

import numpy as np
import pandas as pd

from cmr_utils.cluster import connect
from cmr_utils.cluster import run as cluster_run
from cmr_utils.evaluate.ranking import corrects_hubness, query_bank, rank_rows
from cmr_utils.evaluate.results import CONFIG_COLUMNS, chosen
from cmr_utils.evaluate.selection import cross_validate, refit
from cmr_utils.fit.cache import load as load_model
from cmr_utils.run_dir import QUERY_SET, as_run


def evaluate(run_dir, scores=("correlation",), bag_sizes=(1000,), n_bags=10, seed=0,
             select_by="medr", select="val", folds=5, cluster=None, progress=True) -> pd.DataFrame:
    """Score every fitted model on val and test; mark the chosen configuration; write ``results.csv``.

    Each split is evaluated on one query set shared by every text kind (``query_set``; what it
    drops goes to ``dropped.csv``) and the same seeded bags. Protocols are '1k', '10k' and 'full'
    (see ``retrieval.protocols``); test is ranked at every one, val (which only chooses) at its
    main protocol; ``n_pairs`` is the query set's size. The choice uses image->recipe at the main
    protocol (``results.chosen``): on val (``select='val'``) or averaged over ``folds`` folds of
    train+val (``'kfold'``: ``cross_validate``, ``kfold.csv``). The chosen configuration is also
    refitted on train+val and ranked on test (``refit``): those rows have ``fit_on``
    'train+val', all others 'train'. Test numbers never take part in a choice. Each fitted model
    (all latent dims of a nested one at once) on each split is a task, on the cluster's workers
    with ``cluster``. ``run_dir``: a ``RunDir`` or a path.
    """
    if select not in ("val", "kfold"):
        raise ValueError(f"select must be 'val' or 'kfold', got {select!r}")
    run = as_run(run_dir)
    queries, dropped = {}, []
    for split in ("val", "test"):
        queries[split], d = run.query_set(split)
        dropped.append(d)
        if len(queries[split]) < 2:
            raise ValueError(f"{split}: only {len(queries[split])} recipes have an image and every requested text "
                             "kind; retrieval needs at least two (see dropped.csv)")
    run.save_csv("dropped.csv", pd.concat(dropped, ignore_index=True))
    query = pd.concat(dropped, ignore_index=True).rename(columns={"recipe_id": "id"}).assign(stage=QUERY_SET)
    before = run.skipped if (run / "skipped.csv").exists() else \
        pd.DataFrame(columns=["stage", "split", "id", "reason"])  # features made before skipped.csv, or by hand
    run.save_csv("skipped.csv", pd.concat([before[before.stage != QUERY_SET], query[before.columns]],
                                          ignore_index=True))
    kinds = run.manifest["text"]
    data = {(kind, split): run.pairs(kind, split, queries[split])[:2] for kind in kinds for split in ("val", "test")}
    banks = {kind: query_bank([run.pairs(kind, "train")[:2]], seed) if corrects_hubness(scores) else None
             for kind in kinds}
    groups = {}  # entries that share one fitted model file: the latent dims of a nested model
    for entry in run.models:
        groups.setdefault(entry["path"], []).append(entry)
    main = [min(bag_sizes, key=lambda b: (b <= 0, b))]
    # test (every protocol) before val (its main one): the long tasks first, the short ones fill the tail
    tasks = [(run.labels(group[0]["text_kind"]), group, split, *data[group[0]["text_kind"], split],
              banks[group[0]["text_kind"]], scores, sizes, n_bags, seed)
             for split, sizes in (("test", bag_sizes), ("val", main)) for group in groups.values()]
    with connect(cluster) as client:
        rows = cluster_run(_evaluate_model, tasks, client, "evaluate", [len(t[1]) for t in tasks], progress,
                           combine=lambda a, b: a + b)
        df = pd.DataFrame(rows)
        cv = cross_validate(run, scores, bag_sizes, n_bags, seed, folds, progress) if select == "kfold" else None
        best = chosen(df, select_by, cv)
        df["chosen"] = (df[CONFIG_COLUMNS] == best).all(axis=1)
        df = pd.concat([df, refit(run, best, bag_sizes, n_bags, seed, client).assign(chosen=True)],
                       ignore_index=True)
    run.save_csv("results.csv", df.round(4))
    return df


def _evaluate_model(labels, group, split, X, Y, bank, scores, bag_sizes, n_bags, seed) -> list[dict]:
    """Rows of one fitted model's entries (its latent dims) on one split's pairs X, Y (``bank``: training
    pairs for a hubness-corrected score, or None).

    A nested model projects the split once with all its components; a latent dim's vectors are
    the first columns, which is what the model cut to that dim gives.
    """
    full, rows = load_model(group[0]["path"]), []
    Zi, Zt = full.transform(X, Y)
    Bi, Bt = full.transform(*bank) if bank is not None else (None, None)
    for entry in group:  # a model that is not nested has one entry
        est = full.head(entry["latent_dim"]) if full.nested else full
        k = est.n_components_
        rows += rank_rows(labels, entry, est, Zi[:, :k], Zt[:, :k], split, scores, bag_sizes, n_bags, seed,
                          "train", projected=True, bank=None if bank is None else (Bi[:, :k], Bt[:, :k]))
    return rows


def space(run_dir, config) -> tuple:
    """(fitted space, test pairs (X, Y, index)) of one configuration, e.g. a row of results.csv."""
    run = as_run(run_dir)
    entry = run.model_entry(config)
    return (load_model(entry["path"], entry["latent_dim"]),
            run.pairs(entry["text_kind"], "test", run.query_set("test")[0]))


def train_bank(run_dir, config) -> tuple:
    """The training pairs' features (X, Y) that evaluation used as the bank of a hubness-corrected score
    for ``config``'s text kind (the same seeded subset beyond ``BANK``)."""
    run = as_run(run_dir)
    seed = run.params.get("seed", 0)  # 03_evaluate's default
    bank = query_bank([run.pairs(config["text_kind"], "train")[:2]], seed)
    return tuple(np.asarray(v) for v in bank)
