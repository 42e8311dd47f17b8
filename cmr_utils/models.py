"""The shared latent space: CCA between image and text features.

``cca`` is the paper's plain CCA and ``ridge`` cca-zoo's RidgeCCA, which shrinks each view's
covariance towards the identity and so does not overfit when pairs are few for the dimension.
``exact`` is the project's own solver of the same ridge-CCA problem for large data: it
accumulates covariances over row chunks in float64, so memory is O(p²) whatever the number of
pairs and memory-mapped features are never loaded whole; ``pca`` optionally keeps only the
leading principal directions of each view before whitening.
"""
from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
from sklearn.base import BaseEstimator

from .io import atomic_file, key, locked

VERSION = 2
MODELS = ("cca", "ridge", "exact")


class SharedSpace(BaseEstimator):
    """Fit on paired rows (image features X, text features Y); project either view into the space.

    Whatever the solver, the fitted space is ``means_`` and ``weights_`` per view in the units of
    the input features (standardisation folded in): latent = (V - means_[i]) @ weights_[i].
    ``n_components`` is capped by the rank the data allows; ``n_components_`` says what was used.
    ``corrs_`` are the canonical correlations on the training pairs (used by the weighted score).
    """

    def __init__(self, model: str = "ridge", n_components: int = 50, shrinkage: float = 0.5,
                 standardize: bool = True, pca: int | None = None, chunk_size: int = 8192):
        self.model = model
        self.n_components = n_components
        self.shrinkage = shrinkage
        self.standardize = standardize
        self.pca = pca
        self.chunk_size = chunk_size

    def fit(self, X, Y) -> "SharedSpace":
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if len(X) != len(Y):
            raise ValueError(f"X and Y must have the same rows, got {len(X)} and {len(Y)}")
        if self.pca is not None and self.model != "exact":
            raise ValueError("pca pre-reduction is available with model='exact'")
        if self.model == "exact":
            self._fit_exact(X, Y)
        else:
            self._fit_cca_zoo(np.asarray(X, np.float64), np.asarray(Y, np.float64))
        self.n_components_ = self.weights_[0].shape[1]
        return self

    def transform(self, X=None, Y=None):
        """Latent vectors of image features ``X`` and/or text features ``Y`` (None stays None)."""
        return tuple(None if V is None else (np.asarray(V, np.float64) - self.means_[i]) @ self.weights_[i]
                     for i, V in enumerate((X, Y)))

    def _fit_cca_zoo(self, X: np.ndarray, Y: np.ndarray) -> None:
        from cca_zoo.linear import CCA, RidgeCCA
        k = int(min(self.n_components, X.shape[1], Y.shape[1], len(X) - 1))
        scale = [_scaler(V, self.standardize) for V in (X, Y)]
        views = [(V - m) / s for V, (m, s) in zip((X, Y), scale)]
        est = (CCA(n_components=k) if self.model == "cca"
               else RidgeCCA(n_components=k, shrinkage=[self.shrinkage, self.shrinkage])).fit(views)
        self.means_ = [m + s * mu for (m, s), mu in zip(scale, est.means_)]
        self.weights_ = [w / s[:, None] for w, (_, s) in zip(est.weights_, scale)]
        A, B = est.transform(views)
        self.corrs_ = np.array([np.corrcoef(A[:, i], B[:, i])[0, 1] for i in range(A.shape[1])])

    def _fit_exact(self, X, Y) -> None:
        n = len(X)
        mx, my, Cxx, Cyy, Cxy = covariances(X, Y, self.chunk_size)
        dx = _std(Cxx, self.standardize)
        dy = _std(Cyy, self.standardize)
        Cxx, Cyy, Cxy = Cxx / np.outer(dx, dx), Cyy / np.outer(dy, dy), Cxy / np.outer(dx, dy)
        Wx, Wy = _whitener(Cxx, self.shrinkage, self.pca), _whitener(Cyy, self.shrinkage, self.pca)
        U, _, Vt = np.linalg.svd(Wx.T @ Cxy @ Wy, full_matrices=False)
        k = int(min(self.n_components, U.shape[1], n - 1))
        wx, wy = Wx @ U[:, :k], Wy @ Vt[:k].T
        cov = np.einsum("ik,ik->k", wx, Cxy @ wy)
        self.corrs_ = cov / np.sqrt(np.einsum("ij,ij->j", wx, Cxx @ wx) * np.einsum("ij,ij->j", wy, Cyy @ wy))
        self.means_ = [mx, my]
        self.weights_ = [wx / dx[:, None], wy / dy[:, None]]


def covariances(X, Y, chunk_size: int = 8192):
    """Means and (n-1)-normalised covariances of X, Y and their cross-covariance, in float64.

    Rows are read ``chunk_size`` at a time (so memory-mapped arrays stay on disk) and centred on
    the first chunk's mean before accumulating, which keeps the sums well conditioned.
    """
    n, p, q = len(X), X.shape[1], Y.shape[1]
    if n < 2:
        raise ValueError("need at least two pairs")
    shift_x = np.asarray(X[:chunk_size], np.float64).mean(0)
    shift_y = np.asarray(Y[:chunk_size], np.float64).mean(0)
    sx, sy = np.zeros(p), np.zeros(q)
    Sxx, Syy, Sxy = np.zeros((p, p)), np.zeros((q, q)), np.zeros((p, q))
    for s in range(0, n, chunk_size):
        a = np.asarray(X[s:s + chunk_size], np.float64) - shift_x
        b = np.asarray(Y[s:s + chunk_size], np.float64) - shift_y
        sx += a.sum(0)
        sy += b.sum(0)
        Sxx += a.T @ a
        Syy += b.T @ b
        Sxy += a.T @ b
    ax, ay = sx / n, sy / n
    Cxx = (Sxx - n * np.outer(ax, ax)) / (n - 1)
    Cyy = (Syy - n * np.outer(ay, ay)) / (n - 1)
    Cxy = (Sxy - n * np.outer(ax, ay)) / (n - 1)
    return shift_x + ax, shift_y + ay, Cxx, Cyy, Cxy


def _whitener(C: np.ndarray, shrinkage: float, pca: int | None) -> np.ndarray:
    """W with W.T ((1-c) C + c I) W = I on C's numerical range (as cca-zoo), optionally top ``pca`` directions."""
    lam, V = np.linalg.eigh(C)
    p = len(lam)
    rank = int(np.count_nonzero(lam > lam.max() * p * np.finfo(lam.dtype).eps))
    keep = rank if pca is None else min(rank, pca)
    lam, V = lam[p - keep:], V[:, p - keep:]
    return V / np.sqrt((1.0 - shrinkage) * lam + shrinkage)


def _std(C: np.ndarray, standardize: bool) -> np.ndarray:
    if not standardize:
        return np.ones(len(C))
    d = np.sqrt(np.diag(C))
    return np.where(d > 0, d, 1.0)


def _scaler(V: np.ndarray, standardize: bool):
    if not standardize:
        return np.zeros(V.shape[1]), np.ones(V.shape[1])
    std = V.std(0, ddof=1)
    return V.mean(0), np.where(std > 0, std, 1.0)


def fit_cached(cache_dir: str | Path, X_key: str, Y_key: str, X: np.ndarray, Y: np.ndarray,
               **params) -> tuple[SharedSpace, Path]:
    """Fit (or reload) a SharedSpace keyed by the feature entries it was trained on and its parameters."""
    path = Path(cache_dir) / "models" / f"{key(X_key, Y_key, params, VERSION)}.joblib"
    with locked(path):
        if path.exists():
            return joblib.load(path), path
        model = SharedSpace(**params).fit(X, Y)
        with atomic_file(path) as tmp:
            joblib.dump(model, tmp)
    return model, path
