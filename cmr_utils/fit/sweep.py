"""The fitting stage (notebook 02): every text kind, model, shrinkage and latent dim on the train pairs."""
import functools
from pathlib import Path

import pandas as pd

from cmr_utils.cluster import connect
from cmr_utils.fit import make, params_of
from cmr_utils.fit.cache import fit_cached, moments_cached
from cmr_utils.fit.kernel import Mapped
from cmr_utils.fit.space import Space
from cmr_utils.io import key, save_json
from cmr_utils.run_dir import RunDir


def grid(models=("ridge",), latent_dims=(50,), shrinkage=(0.5,), settings=None) -> list[Space]:
    """The unfitted models of a sweep, each model by shrinkage by latent dim, once each (plain ``cca``, without
    shrinkage, once per latent dim); ``settings`` (``standardize``, ``pca``, the kernel's, ``seed``) reach the
    models that declare them."""
    points = [make(m, n_components=dim, shrinkage=float(c), **(settings or {}))
              for m in models for c in shrinkage for dim in latent_dims]
    return list({key(params_of(est)): est for est in points}.values())


def fit(run_dir, cache_dir, grid: list[Space], cluster=None, progress=True) -> pd.DataFrame:
    """Fit every model of ``grid`` per text kind on the train pairs (cached); write ``models.json``.

    Models solved from moments take the train pairs' moments, computed once per text kind (on the ``cluster``)
    and cached; a nested model is fitted once with all its components, each latent dim a prefix: a sweep costs
    about one fit per shrinkage. Each entry keeps its model's ``params_of`` for refits.
    """
    run = RunDir(run_dir)
    manifest = run.manifest
    entries = []
    with connect(cluster) as client:
        for kind in manifest["text"]:
            X, Y, _ = run.pairs(kind, "train")
            keys = manifest["image"]["train"], manifest["text"][kind]["train"]
            moments = functools.cache(lambda: moments_cached(cache_dir, *keys, X, Y, client, progress))  # noqa: B023
            mapped = Mapped(X, Y)  # the kernel models' maps, once for all their shrinkages
            for point in grid:
                params = params_of(point)
                est, path = fit_cached(cache_dir, *keys, X, Y, moments, mapped, **params)
                entries.append({"text_kind": kind, "model": params["model"], "shrinkage": float(point.shrinkage),
                                "latent_dim": point.n_components, "n_components": est.n_components_,
                                "train_pairs": len(X), "top_corr": float(est.corrs_[0]), "params": params,
                                "path": str(path)})
    save_json(Path(run_dir) / "models.json", entries)
    return pd.DataFrame(entries).drop(columns="params")
