"""The fitting stage (notebook 02): every text kind, model, shrinkage and latent dim on the train pairs; writes ``models.json``."""
from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from cmr_utils.cluster import connect
from cmr_utils.fit.models import (
    OWN_PARAMS,
    fit_cached,
    moments_cached,
)
from cmr_utils.io import save_json
from cmr_utils.run_dir import RunDir


def fit(run_dir, cache_dir, models=("ridge",), latent_dims=(50,), shrinkage=(0.5,), standardize=True,
        pca=None, kernel_landmarks=1000, kernel_gamma=None, seed=0, cluster=None, progress=True) -> pd.DataFrame:
    """Fit every (text kind, model, shrinkage, latent dim) on the train pairs (cached); write ``models.json``.

    The linear models (``models.LINEAR``) are solved from the train pairs' moments, computed once
    per text kind (on the cluster, with ``cluster``) and cached; a nested model is fitted once per
    shrinkage with all its components and every latent dim is a prefix, so a sweep costs about
    one fit. Plain ``cca`` has no shrinkage. ``pca`` (exact), the kernel settings and ``seed``
    (kernel landmarks, contrastive batches) reach only the models that read them
    (``models.OWN_PARAMS``); each entry keeps its estimator parameters for refits.
    """
    run = RunDir(run_dir)
    manifest = run.manifest
    own = {"pca": pca, "kernel_landmarks": kernel_landmarks, "kernel_gamma": kernel_gamma, "seed": seed}
    entries = []
    with connect(cluster) as client:
        for kind in manifest["text"]:
            X, Y, _ = run.pairs(kind, "train")
            keys = manifest["image"]["train"], manifest["text"][kind]["train"]
            moments = functools.cache(lambda: moments_cached(cache_dir, *keys, X, Y, client, progress))  # noqa: B023
            for model in models:
                for c in ([0.0] if model == "cca" else shrinkage):
                    for dim in latent_dims:
                        params = {"model": model, "n_components": dim, "shrinkage": float(c),
                                  "standardize": standardize, "pca": None,
                                  **{k: own[k] for k in OWN_PARAMS.get(model, ())}}
                        est, path = fit_cached(cache_dir, *keys, X, Y, moments, **params)
                        entries.append({"text_kind": kind, "model": model, "shrinkage": float(c), "latent_dim": dim,
                                        "n_components": est.n_components_, "train_pairs": len(X),
                                        "top_corr": float(est.corrs_[0]), "params": params, "path": str(path)})
    save_json(Path(run_dir) / "models.json", entries)
    return pd.DataFrame(entries).drop(columns="params")
