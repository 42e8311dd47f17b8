"""Fitted models and the pairs' moments on disk, keyed by what they were computed from, built once under a lock;
npz + JSON, never pickled: a cache others can write must not run code in this run."""
import json
from pathlib import Path

import numpy as np

from cmr_utils.fit import fit_shared, make, params_of
from cmr_utils.fit.kernel import Nystroem
from cmr_utils.fit.moments import Moments
from cmr_utils.fit.space import Space
from cmr_utils.io import atomic_file, built, key

VERSION = 11  # bump when fitted models change meaning (11: the contrastive head trained in numpy float64)
MOMENTS_VERSION = 9  # bump when the stored moments change meaning (9: products on one BLAS thread)
FITTED = ("best_epoch_", "temperature_", "stable_digits_")  # scalars some models have


def fit_cached(cache_dir: str | Path, X_key, Y_key, X, Y, moments=None, mapped=None, **params) -> tuple[Space, Path]:
    """Fit (or reload) ``make(**params)`` keyed by the feature entries ``X_key``/``Y_key`` (lists when the pairs span
    several) and its parameters. A model solved from moments takes ``moments()`` (called only if not cached)
    when given, a kernel model ``mapped`` (``fit_shared``); a nested one is fitted once with all its components
    and cut: one fit serves a sweep of latent dims.
    """
    est = make(**params)
    k, est = est.n_components, est.set_params(n_components=None) if est.nested else est
    path = Path(cache_dir) / "models" / f"{key(entry_key(X_key), entry_key(Y_key), params_of(est), VERSION)}.npz"

    def build(dest: Path) -> None:
        fitted = fit_shared(est, X, Y, moments, mapped)
        with atomic_file(dest) as tmp, open(tmp, "wb") as f:
            np.savez(f, **to_arrays(fitted))
    return load(built(path, build), k), path


def entry_key(entry):
    """What a feature entry holds, whatever path reached it: its folder's name, the content key of what
    produced it (``features.cached``); a list for pairs that span several entries."""
    return [entry_key(e) for e in entry] if isinstance(entry, (list, tuple)) else Path(entry).name


def load(path: str | Path, n_components: int | None = None) -> Space:
    """A cached model, cut to its first ``n_components`` if it is nested."""
    with np.load(path, allow_pickle=False) as z:
        est = from_arrays(dict(z))
    return est.head(n_components) if n_components is not None and est.nested else est


def to_arrays(est: Space, prefix: str = "") -> dict[str, np.ndarray]:
    """A fitted space as plain arrays (its ``params_of`` and scalars as one JSON string): ``np.savez`` stores them
    and ``from_arrays`` rebuilds the space."""
    arrays = {"means0": est.means_[0], "means1": est.means_[1], "weights0": est.weights_[0],
              "weights1": est.weights_[1], "corrs": est.corrs_}
    scalars = {"params": params_of(est), "maps": [None if m is None else m.gamma for m in est.maps_],
               **{k: getattr(est, k) for k in FITTED if hasattr(est, k)}}
    for i, m in enumerate(est.maps_):
        if m is not None:
            arrays.update({f"map{i}_{k}": np.asarray(getattr(m, k)) for k in ("mean", "std", "landmarks", "proj")})
    return {prefix + k: v for k, v in {**arrays, "json": np.array(json.dumps(scalars))}.items()}


def from_arrays(arrays: dict, prefix: str = "") -> Space:
    z = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    scalars = json.loads(str(z["json"]))
    est = make(**scalars["params"])
    est.means_, est.weights_, est.corrs_ = [z["means0"], z["means1"]], [z["weights0"], z["weights1"]], z["corrs"]
    est.maps_ = [None if gamma is None else Nystroem.restored(gamma, *(z[f"map{i}_{k}"] for k in ("mean", "std", "landmarks", "proj")))
                 for i, gamma in enumerate(scalars["maps"])]
    for k in FITTED:
        if k in scalars:
            setattr(est, k, scalars[k])
    est.n_components_ = est.weights_[0].shape[1]
    return est


def moments_cached(cache_dir: str | Path, X_key, Y_key, X, Y, client=None, progress: bool = True) -> Moments:
    """The pairs' moments (``Moments.of``, on the cluster with ``client``), cached by the entries that hold them:
    one entry serves every linear model of a sweep (the solver standardises and shrinks)."""
    path = Path(cache_dir) / "moments" / f"{key(entry_key(X_key), entry_key(Y_key), MOMENTS_VERSION)}.npz"
    return Moments.load(built(path, lambda dest: Moments.of(X, Y, client=client, progress=progress).save(dest)))
