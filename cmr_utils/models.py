"""The shared latent space: CCA between image and text features, via cca-zoo.

``cca`` is the paper's plain CCA; ``ridge`` is cca-zoo's RidgeCCA, which shrinks each view's
covariance towards the identity and so does not overfit when pairs are few for the dimension.
"""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator

from .io import atomic_file, key

VERSION = 1
MODELS = ("cca", "ridge")


class SharedSpace(BaseEstimator):
    """Fit on paired rows (image features X, text features Y); project either view into the space.

    ``n_components`` is capped by the rank the data allows (min of both dimensions and n - 1);
    the fitted ``n_components_`` says what was used. ``corrs_`` are the canonical correlations
    measured on the training pairs, used by the eigenvalue-weighted score.
    """

    def __init__(self, model: str = "ridge", n_components: int = 50, shrinkage: float = 0.5,
                 standardize: bool = True):
        self.model = model
        self.n_components = n_components
        self.shrinkage = shrinkage
        self.standardize = standardize

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "SharedSpace":
        from cca_zoo.linear import CCA, RidgeCCA
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
        if len(X) != len(Y):
            raise ValueError(f"X and Y must have the same rows, got {len(X)} and {len(Y)}")
        self.scale_ = [_scaler(X, self.standardize), _scaler(Y, self.standardize)]
        Xs, Ys = self._scaled(X, 0), self._scaled(Y, 1)
        self.n_components_ = int(min(self.n_components, X.shape[1], Y.shape[1], len(X) - 1))
        if self.model == "cca":
            est = CCA(n_components=self.n_components_)
        else:
            est = RidgeCCA(n_components=self.n_components_, shrinkage=[self.shrinkage, self.shrinkage])
        self.estimator_ = est.fit([Xs, Ys])
        A, B = self.estimator_.transform([Xs, Ys])
        self.corrs_ = np.array([np.corrcoef(A[:, i], B[:, i])[0, 1] for i in range(A.shape[1])])
        return self

    def transform(self, X: np.ndarray | None = None, Y: np.ndarray | None = None):
        """Latent vectors of image features ``X`` and/or text features ``Y`` (None stays None)."""
        w = self.estimator_.weights_
        mu = self.estimator_.means_ if getattr(self.estimator_, "center", True) else [0, 0]
        out = [None if V is None else (self._scaled(np.asarray(V, np.float64), i) - mu[i]) @ w[i]
               for i, V in enumerate((X, Y))]
        return tuple(out)

    def _scaled(self, V: np.ndarray, view: int) -> np.ndarray:
        mean, std = self.scale_[view]
        return (V - mean) / std


def _scaler(V: np.ndarray, standardize: bool):
    if not standardize:
        return np.zeros(V.shape[1]), np.ones(V.shape[1])
    std = V.std(0)
    return V.mean(0), np.where(std > 0, std, 1.0)


def fit_cached(cache_dir: str | Path, X_key: str, Y_key: str, X: np.ndarray, Y: np.ndarray,
               **params) -> tuple[SharedSpace, Path]:
    """Fit (or reload) a SharedSpace keyed by the feature entries it was trained on and its parameters."""
    path = Path(cache_dir) / "models" / f"{key(X_key, Y_key, params, VERSION)}.joblib"
    if path.exists():
        return joblib.load(path), path
    model = SharedSpace(**params).fit(X, Y)
    with atomic_file(path) as tmp:
        joblib.dump(model, tmp)
    return model, path
