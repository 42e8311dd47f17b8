"""The shared latent space between image and text features: linear CCA, kernel CCA and a contrastive head.

``cca`` is the paper's plain CCA and ``ridge`` ridge CCA (as cca-zoo's RidgeCCA), which shrinks
each view's covariance towards the identity and so does not overfit when pairs are few for the
dimension; ``exact`` is ridge CCA whose ``pca`` option keeps only the leading principal
directions of each view before whitening. All three are solved from the pairs' moments
(``Moments``): means and covariances summed over row chunks (float32 products for float32
features, accumulated in float64), so memory is O(p²) whatever the number of pairs, features on
disk are never loaded whole, and the sums can be spread over a Dask cluster. They give
cca-zoo's solutions (tested) at a fraction of its cost.
``kernel`` is kernel CCA made to scale: the same ridge solver on Nyström RBF features of each view.
``contrastive`` is a two-tower linear head trained with the symmetric InfoNCE loss from the
ridge-CCA solution. Every model maps a view linearly, after a fixed feature map for ``kernel``.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path

import json

import numpy as np
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits

from cmr_utils import cluster
from cmr_utils.io import atomic_file, clean_temporaries, key, locked

VERSION = 9  # bump when fitted models change meaning (3: one sign convention; 4: feature maps, contrastive;
# 5: cca and ridge solved from moments, nested models stored whole; 6: moments know their precision;
# 7: a feature constant to that precision keeps scale 1; 8: stored as npz + JSON, not pickled;
# 9: moments' products on one BLAS thread, stable_digits_)
MODELS = ("cca", "ridge", "exact", "kernel", "contrastive")
LINEAR = ("cca", "ridge", "exact")  # solved from the pairs' moments alone (``fit_moments``)
# what each model reads beyond model, n_components, shrinkage and standardize: its own config, in the cache key
OWN_PARAMS = {"exact": ("pca",), "kernel": ("kernel_landmarks", "kernel_gamma", "seed"), "contrastive": ("seed",)}
NESTED = ("cca", "ridge", "exact", "kernel")  # their first k components do not depend on n_components
# InfoNCE training (not in the cache key: bump VERSION when changing them)
CONTRASTIVE = {"lr": 1e-4, "weight_decay": 1e-4, "batch_size": 256, "max_epochs": 200, "patience": 10,
               "holdout": 0.1, "temperature": 0.07}


class SharedSpace(BaseEstimator):
    """Fit on paired rows (image features X, text features Y); project either view into the space.

    Whatever the solver, the fitted space is ``maps_``, ``means_`` and ``weights_`` per view:
    latent = (map(V) - means_[i]) @ weights_[i], with map the identity (``maps_[i]`` None; then the
    weights are in the units of the input features, standardisation folded in) or, for ``kernel``,
    the view's Nyström map. ``n_components`` is capped by the rank the data allows (None: all
    it allows); ``n_components_`` says what was used. ``corrs_`` are the correlations of the latent components
    on the training pairs (used by the weighted score). ``stable_digits_`` (solvers from moments)
    are the significant digits of the latent vectors that rounding of the moments cannot change.
    """

    def __init__(self, model: str = "ridge", n_components: int | None = 50, shrinkage: float = 0.5,
                 standardize: bool = True, pca: int | None = None, chunk_size: int = 8192,
                 kernel_landmarks: int = 1000, kernel_gamma: float | None = None, seed: int = 0):
        self.model = model
        self.n_components = n_components
        self.shrinkage = shrinkage
        self.standardize = standardize
        self.pca = pca
        self.chunk_size = chunk_size
        self.kernel_landmarks = kernel_landmarks
        self.kernel_gamma = kernel_gamma
        self.seed = seed

    def fit(self, X, Y) -> "SharedSpace":
        self._validate()
        if len(X) != len(Y):
            raise ValueError(f"X and Y must have the same rows, got {len(X)} and {len(Y)}")
        if self.model in LINEAR:
            return self.fit_moments(Moments.of(X, Y, self.chunk_size))
        self.maps_ = [None, None]
        if self.model == "kernel":
            self._fit_kernel(X, Y)
        else:
            X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
            self._check_finite({"image features": X, "text features": Y})
            self._fit_contrastive(X, Y)
        return self._finish()

    def fit_moments(self, moments: "Moments") -> "SharedSpace":
        """Fit a ``LINEAR`` model from the pairs' moments alone: all that linear CCA needs.

        The moments of a training set are computed once (``Moments.of``, on a cluster or
        cached) and every shrinkage and latent dim of a sweep is solved from them; or they are
        all pairs' minus a cross-validation fold's.
        """
        self._validate()
        if self.model not in LINEAR:
            raise ValueError(f"fit_moments needs a linear model {LINEAR}, got {self.model!r}")
        self._check_finite({"image features": moments.mx, "text features": moments.my})
        self.maps_ = [None, None]
        self._solve(moments, "feature" if self.standardize else "none", 0.0 if self.model == "cca" else self.shrinkage)
        return self._finish()

    def head(self, k: int) -> "SharedSpace":
        """This space cut to its first ``k`` components: for the NESTED solvers, the fit with n_components=k."""
        if self.model not in NESTED:
            raise ValueError(f"model={self.model!r} is not nested: fit it with n_components={k} instead")
        out = copy.copy(self).set_params(n_components=k)
        out.weights_ = [w[:, :k] for w in self.weights_]
        out.corrs_ = self.corrs_[:k]
        out.n_components_ = out.weights_[0].shape[1]
        return out

    def transform(self, X=None, Y=None):
        """Latent vectors of image features ``X`` and/or text features ``Y`` (None stays None), in row chunks."""
        return tuple(None if V is None else self._project(i, V) for i, V in enumerate((X, Y)))

    def _project(self, i: int, V) -> np.ndarray:
        """Latent vectors, on one BLAS thread: the same bits in this process and on a Dask worker."""
        F, c = (V if self.maps_[i] is None else _Mapped(V, self.maps_[i])), self.chunk_size
        with threadpool_limits(1, user_api="blas"):
            return np.concatenate([(np.asarray(F[s:s + c], np.float64) - self.means_[i]) @ self.weights_[i]
                                   for s in range(0, max(len(V), 1), c)])

    def _validate(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.pca is not None and self.model != "exact":
            raise ValueError("pca pre-reduction is available with model='exact'")
        if self.kernel_gamma is not None and not self.kernel_gamma > 0:
            raise ValueError("kernel_gamma must be positive, or None for the median heuristic, "
                             f"got {self.kernel_gamma!r}")

    def _finish(self) -> "SharedSpace":
        self._fix_signs()
        self._check_finite({"image means": self.means_[0], "text means": self.means_[1],
                            "image weights": self.weights_[0], "text weights": self.weights_[1],
                            "canonical correlations": self.corrs_})
        self.n_components_ = self.weights_[0].shape[1]
        return self

    def _check_finite(self, arrays: dict) -> None:
        """Stop on NaN or infinite values, naming this model: they would rank as hits downstream."""
        bad = [name for name, v in arrays.items() if not np.isfinite(v).all()]
        if bad:
            params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            raise ValueError(f"SharedSpace({params}): non-finite {', '.join(bad)}; check the features for "
                             "NaN, constant or degenerate columns, or raise the shrinkage")

    def _fix_signs(self) -> None:
        """Flip each component so that its largest image weight is positive.

        CCA defines each component only up to a sign shared by both views; the paper's
        correlation score depends on it, so every solver must settle it the same way.
        """
        W = self.weights_[0]
        sign = np.sign(W[np.abs(W).argmax(0), np.arange(W.shape[1])])
        sign[sign == 0] = 1.0
        self.weights_ = [w * sign for w in self.weights_]

    def _solve(self, m: "Moments", scale: str, shrinkage: float) -> None:
        """Ridge CCA from covariances: whiten each view by ((1-c) C + c I)^(-1/2), then SVD of the whitened Cxy.

        ``scale`` puts the views on a common footing first: 'feature' (unit variance per feature),
        'total' (one factor: mean variance 1, which keeps the spectrum's shape) or 'none'. Each
        view's eigendecomposition does not depend on the shrinkage and is kept on ``m``, so a
        sweep costs one per view and then one SVD per shrinkage; every latent dim is a prefix.
        """
        (Cxx, dx, ex), (Cyy, dy, ey) = m.scaled("x", scale), m.scaled("y", scale)
        Cxy = m.Cxy / np.outer(dx, dy)
        Wx, Wy = _whitener(ex, shrinkage, self.pca, m.eps), _whitener(ey, shrinkage, self.pca, m.eps)
        self.stable_digits_ = _stable_digits((Wx, Wy), m.eps)
        U, _, Vt = np.linalg.svd(Wx.T @ Cxy @ Wy, full_matrices=False)
        k = int(min(self.n_components or U.shape[1], U.shape[1], m.n - 1))
        wx, wy = Wx @ U[:, :k], Wy @ Vt[:k].T
        cov = np.einsum("ik,ik->k", wx, Cxy @ wy)
        self.corrs_ = cov / np.sqrt(np.einsum("ij,ij->j", wx, Cxx @ wx) * np.einsum("ij,ij->j", wy, Cyy @ wy))
        self.means_ = [m.mx, m.my]
        self.weights_ = [wx / dx[:, None], wy / dy[:, None]]

    def _fit_kernel(self, X, Y) -> None:
        """Kernel CCA (Bach & Jordan 2002; Hardoon et al. 2004) at the cost of linear CCA in m dimensions.

        Each view's RBF kernel k(a, b) = exp(-gamma |a - b|²) on standardised features is
        approximated by m Nyström features (Williams & Seeger 2001), so kernel CCA with ridge
        regularisation becomes ridge CCA on those features, solved from chunked covariances as
        ``exact``. The features are scaled to mean variance 1 (one factor per view, which keeps
        the spectrum's shape), so ``shrinkage`` does not depend on gamma or m; its best value
        tends to be lower than linear CCA's, the kernel features being many and noisier.
        """
        self.maps_ = [Nystroem(V, self.kernel_landmarks, self.kernel_gamma, self.standardize, self.seed + i,
                               self.chunk_size) for i, V in enumerate((X, Y))]
        self._solve(Moments.of(_Mapped(X, self.maps_[0]), _Mapped(Y, self.maps_[1]), self.chunk_size), "total",
                    self.shrinkage)

    def _fit_contrastive(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Two linear towers trained with the symmetric InfoNCE loss (CLIP, Radford et al. 2021).

        z = normalise(((V - mean) / std) @ W) per view; the loss is the cross-entropy of each
        pair's cosine against every other pair in the mini-batch, both ways, scaled by a learnable
        inverse temperature. W starts from the ridge-CCA solution with this ``shrinkage``, and
        AdamW moves it from there. Early stopping: a seeded ``holdout`` share of the training
        pairs' texts (with all their photos) is kept out of training and scores the loss after each
        epoch; the weights with the lowest held-out loss are kept (the CCA start included). Each
        epoch sees one photo per text, so a batch never holds a recipe twice. Single-threaded and
        seeded, so a fit is reproducible.
        """
        import torch
        import torch.nn.functional as F

        h = CONTRASTIVE
        scale = [_scaler(V, self.standardize, self.chunk_size) for V in (X, Y)]
        views = [(V - m) / s for V, (m, s) in zip((X, Y), scale)]
        text = np.unique(Y, axis=0, return_inverse=True)[1].ravel()  # a recipe's photos share its text row
        rng = np.random.default_rng(self.seed)
        n_texts = text.max() + 1
        held = np.isin(text, rng.permutation(n_texts)[:max(1, round(h["holdout"] * n_texts))])
        train_rows, held_rows = np.flatnonzero(~held), np.flatnonzero(held)
        held_rows = held_rows[np.unique(text[held_rows], return_index=True)[1]]
        start = SharedSpace("exact", self.n_components, self.shrinkage, standardize=False).fit(
            views[0][train_rows], views[1][train_rows])
        with _torch_threads(torch, 1):
            torch.manual_seed(self.seed)
            T = [torch.from_numpy(v.astype(np.float32)) for v in views]
            W = [torch.nn.Parameter(torch.from_numpy(w.astype(np.float32))) for w in start.weights_]
            log_scale = torch.nn.Parameter(torch.tensor(-np.log(h["temperature"]), dtype=torch.float32))
            opt = torch.optim.AdamW([*W, log_scale], lr=h["lr"], weight_decay=h["weight_decay"])

            def loss(rows):
                a, b = (F.normalize(t[rows] @ w, dim=1) for t, w in zip(T, W))
                logits = log_scale.exp().clamp(max=100.0) * a @ b.T
                target = torch.arange(len(rows))
                return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

            def held_loss():  # mean over the held-out texts, in training-size batches
                n_batches = -(-len(held_rows) // h["batch_size"])
                batches = [torch.from_numpy(b) for b in np.array_split(held_rows, n_batches)]
                with torch.no_grad():
                    return sum(float(loss(b)) * len(b) for b in batches) / len(held_rows)

            def snapshot():
                return [w.detach().numpy().astype(np.float64) for w in W], float(log_scale.detach())

            best, state, self.best_epoch_, epoch = held_loss(), snapshot(), 0, 0
            while epoch < h["max_epochs"] and epoch - self.best_epoch_ < h["patience"]:
                epoch += 1
                order = rng.permutation(train_rows)
                order = rng.permutation(order[np.unique(text[order], return_index=True)[1]])  # one photo per text
                for s in range(0, len(order) - 1, h["batch_size"]):
                    opt.zero_grad()
                    loss(torch.from_numpy(order[s:s + h["batch_size"]])).backward()
                    opt.step()
                if (v := held_loss()) < best:
                    best, state, self.best_epoch_ = v, snapshot(), epoch
        (wx, wy), log_s = state
        A, B = views[0] @ wx, views[1] @ wy
        corrs = np.array([np.corrcoef(A[:, j], B[:, j])[0, 1] for j in range(A.shape[1])])
        order = np.argsort(-corrs, kind="stable")
        self.corrs_, self.temperature_ = corrs[order], float(np.exp(-log_s))
        self.means_ = [m for m, _ in scale]
        self.weights_ = [w[:, order] / s[:, None] for w, (_, s) in zip((wx, wy), scale)]


@dataclass
class Moments:
    """Sufficient statistics of paired rows: their number, means and (n-1)-normalised covariances.

    ``a - b`` are the moments of a's rows without b's (b's rows a subset of a's), exactly: the
    scatter of a union is the parts' scatters plus n_a n_b / n (m_a - m_b)(m_a - m_b)ᵀ
    (Chan, Golub & LeVeque 1979). So each cross-validation training set costs one pass over its
    held-out fold, not over its own rows.
    """
    n: int
    mx: np.ndarray
    my: np.ndarray
    Cxx: np.ndarray
    Cyy: np.ndarray
    Cxy: np.ndarray
    eps: float = float(np.finfo(np.float64).eps)  # the precision the products were summed in
    _eig: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, X, Y, chunk_size: int = 8192, client=None, progress: bool = False) -> "Moments":
        """The moments of row-aligned X and Y (see ``covariances``)."""
        *stats, dtype = covariances(X, Y, chunk_size, client, progress)
        return cls(len(X), *stats, eps=float(np.finfo(dtype).eps))

    def __add__(self, b: "Moments") -> "Moments":
        """The moments of both sets of rows together."""
        n = self.n + b.n
        mx, my = (self.n * self.mx + b.n * b.mx) / n, (self.n * self.my + b.n * b.my) / n
        dx, dy, f = self.mx - b.mx, self.my - b.my, self.n * b.n / n

        def union(C, Cb, u, v):
            return ((self.n - 1) * C + (b.n - 1) * Cb + f * np.outer(u, v)) / (n - 1)
        return Moments(n, mx, my, union(self.Cxx, b.Cxx, dx, dx), union(self.Cyy, b.Cyy, dy, dy),
                       union(self.Cxy, b.Cxy, dx, dy), max(self.eps, b.eps))

    def __sub__(self, b: "Moments") -> "Moments":
        n = self.n - b.n
        mx, my = (self.n * self.mx - b.n * b.mx) / n, (self.n * self.my - b.n * b.my) / n
        dx, dy, f = mx - b.mx, my - b.my, n * b.n / self.n

        def rest(C, Cb, u, v):
            return ((self.n - 1) * C - (b.n - 1) * Cb - f * np.outer(u, v)) / (n - 1)
        return Moments(n, mx, my, rest(self.Cxx, b.Cxx, dx, dx), rest(self.Cyy, b.Cyy, dy, dy),
                       rest(self.Cxy, b.Cxy, dx, dy), max(self.eps, b.eps))

    def scaled(self, view: str, scale: str) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(covariance of ``view`` 'x' or 'y' divided by its scales, the scales, its eigendecomposition), memoised."""
        if (view, scale) not in self._eig:
            C = self.Cxx if view == "x" else self.Cyy
            d = _scales(C, scale, self.eps)
            Cs = C / np.outer(d, d)
            self._eig[view, scale] = Cs, d, np.linalg.eigh(Cs)
        return self._eig[view, scale]

    def save(self, path: str | Path) -> None:
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, n=self.n, mx=self.mx, my=self.my, Cxx=self.Cxx, Cyy=self.Cyy, Cxy=self.Cxy, eps=self.eps)

    @classmethod
    def load(cls, path: str | Path) -> "Moments":
        with np.load(path, allow_pickle=False) as z:
            return cls(int(z["n"]), *(z[k] for k in ("mx", "my", "Cxx", "Cyy", "Cxy")), eps=float(z["eps"]))


def covariances(X, Y, chunk_size: int = 8192, client=None, progress: bool = False):
    """Means and (n-1)-normalised covariances of X, Y and their cross-covariance, in float64, and the dtype
    of the products (whose precision bounds the covariance spectrum the solver trusts).

    A chunked map-reduce whose every sum is fixed by n and ``chunk_size`` alone: tasks of
    ``TASK_CHUNKS`` chunks each add their chunks' products in float64 in chunk order, on one
    BLAS thread, and the tasks' sums are added in task order as they arrive; so the result is
    the same bits whether the tasks ran here (on this process's cores, as threads) or, with a
    Dask ``client`` (X and Y ``features.Rows`` views), on its workers. Rows are read
    ``chunk_size`` at a time (features on disk are never loaded whole) and centred on the first
    chunk's mean, which keeps the sums well conditioned; float32 features are multiplied in
    float32 (the BLAS's fastest) and accumulated across chunks in float64.
    """
    from cmr_utils.features.store import Rows
    n = len(X)
    if n < 2:
        raise ValueError("need at least two pairs")
    shift_x = np.asarray(X[:chunk_size], np.float64).mean(0)
    shift_y = np.asarray(Y[:chunk_size], np.float64).mean(0)
    single = all(np.dtype(getattr(V, "dtype", np.float64)) == np.float32 for V in (X, Y))
    dtype = np.float32 if single else np.float64
    step = chunk_size * TASK_CHUNKS
    spans = [(s, min(s + step, n)) for s in range(0, n, step)]
    if client is not None and isinstance(X, Rows) and isinstance(Y, Rows):
        tasks = [(X.take(slice(a, b)), Y.take(slice(a, b)), 0, b - a, shift_x, shift_y, dtype, chunk_size)
                 for a, b in spans]
    else:
        client = None
        tasks = [(X, Y, a, b, shift_x, shift_y, dtype, chunk_size) for a, b in spans]
    sums = cluster.run(_sums, tasks, client, f"moments of {n:,} pairs", [b - a for a, b in spans], progress,
                       combine=lambda t, r: [u + v for u, v in zip(t, r)], threads=cluster.cores())
    sx, sy, Sxx, Syy, Sxy = sums
    ax, ay = sx / n, sy / n
    Cxx = (Sxx - n * np.outer(ax, ax)) / (n - 1)
    Cyy = (Syy - n * np.outer(ay, ay)) / (n - 1)
    Cxy = (Sxy - n * np.outer(ax, ay)) / (n - 1)
    return shift_x + ax, shift_y + ay, Cxx, Cyy, Cxy, dtype


TASK_CHUNKS = 8  # chunks per map-reduce task: few enough partial sums, enough tasks to spread


def _sums(X, Y, lo: int, hi: int, shift_x, shift_y, dtype, chunk_size: int) -> list[np.ndarray]:
    """Sums of rows lo..hi of (X - shift_x) and (Y - shift_y) and of their products, products in ``dtype``."""
    p, q = X.shape[1], Y.shape[1]
    sx, sy = np.zeros(p), np.zeros(q)
    Sxx, Syy, Sxy = np.zeros((p, p)), np.zeros((q, q)), np.zeros((p, q))
    sx_, sy_ = shift_x.astype(dtype), shift_y.astype(dtype)
    with threadpool_limits(1, user_api="blas"):  # a GEMM's rounding depends on the threads that split it
        for s in range(lo, hi, chunk_size):
            e = min(s + chunk_size, hi)
            a, b = _centred(X[s:e], sx_, dtype), _centred(Y[s:e], sy_, dtype)
            sx += a.sum(0, dtype=np.float64)
            sy += b.sum(0, dtype=np.float64)
            Sxx += a.T @ a
            Syy += b.T @ b
            Sxy += a.T @ b
    return [sx, sy, Sxx, Syy, Sxy]


def _centred(V, shift: np.ndarray, dtype) -> np.ndarray:
    """V - shift in ``dtype``; in place when V is a fresh array of its own (rows read from disk), not a view of the input."""
    V = np.asarray(V, dtype)
    if V.base is not None or not V.flags.writeable:
        return V - shift
    V -= shift
    return V


class Nystroem:
    """phi(v) with phi(a)·phi(b) ≈ exp(-gamma |a - b|²) on standardised rows (Williams & Seeger 2001).

    With landmarks L (``landmarks`` seeded training rows) and K_LL = U Λ Uᵀ,
    phi(v) = k(v, L) U Λ^(-1/2). Eigenvalues below 1e-6 of the largest are dropped: a new row's
    feature there is noise amplified by 1/√λ (a recipe's text repeated for each photo gives
    exact zeros). gamma None is the median heuristic, 1 / median of the landmarks' squared distances.
    """

    def __init__(self, V, landmarks: int, gamma: float | None, standardize: bool, seed: int, chunk_size: int):
        self.mean, self.std = _scaler(V, standardize, chunk_size)
        idx = np.sort(np.random.default_rng(seed).choice(len(V), min(landmarks, len(V)), replace=False))
        self.landmarks = (np.asarray(V[idx], np.float64) - self.mean) / self.std
        d2 = _sqdist(self.landmarks, self.landmarks)
        self.gamma = gamma or 1.0 / np.median(d2[np.triu_indices(len(idx), 1)])
        lam, U = np.linalg.eigh(np.exp(-self.gamma * d2))
        keep = lam > 1e-6 * lam.max()
        self.proj = U[:, keep] / np.sqrt(lam[keep])

    @classmethod
    def restored(cls, gamma: float, mean, std, landmarks, proj) -> "Nystroem":
        """The map as ``to_arrays`` stored it."""
        f = cls.__new__(cls)
        f.gamma, f.mean, f.std, f.landmarks, f.proj = gamma, mean, std, landmarks, proj
        return f

    def __call__(self, V) -> np.ndarray:
        Z = (np.asarray(V, np.float64) - self.mean) / self.std
        return np.exp(-self.gamma * _sqdist(Z, self.landmarks)) @ self.proj


class _Mapped:
    """Rows of V through a feature map, computed when sliced: chunked readers never hold all of them."""

    def __init__(self, V, f: Nystroem):
        self.V, self.f = V, f
        self.shape = (len(V), f.proj.shape[1])

    def __len__(self) -> int:
        return len(self.V)

    def __getitem__(self, rows) -> np.ndarray:
        return self.f(self.V[rows])


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None] - 2 * A @ B.T, 0.0)


def _whitener(eig: tuple[np.ndarray, np.ndarray], shrinkage: float, pca: int | None, eps: float) -> np.ndarray:
    """W with W.T ((1-c) C + c I) W = I on C's numerical range (as cca-zoo), optionally top ``pca`` directions;
    ``eig`` is C's eigendecomposition."""
    lam, V = eig
    p = len(lam)
    rank = int(np.count_nonzero(lam > lam.max() * p * eps))  # below that, rounding of the sums, not data
    keep = rank if pca is None else min(rank, pca)
    lam, V = lam[p - keep:], V[:, p - keep:]
    return V / np.sqrt((1.0 - shrinkage) * lam + shrinkage)


def _stable_digits(whiteners, eps: float) -> int:
    """Significant digits of the solution that a relative rounding ``eps`` in the moments cannot change.

    Whitening amplifies a relative error in a covariance by up to the condition number of the
    shrunk covariance it inverts (largest over smallest eigenvalue kept, i.e. over the whitener's
    squared column norms): plain CCA on few pairs for the dimension has none left, so its ranks may
    differ in near-ties on another machine's BLAS, though not between runs on one machine.
    """
    cond = max(float(norms.max() / norms.min()) for norms in ((W * W).sum(0) for W in whiteners))
    return max(0, int(np.floor(-np.log10(cond * eps))))


def _scales(C: np.ndarray, how: str, eps: float) -> np.ndarray:
    """Each feature's scale; a feature whose variance is within the rounding of the sums (``eps`` of the largest
    variance) is constant and keeps scale 1: dividing by its rounding noise would blow that
    noise up to unit variance and its covariances with it (a train+val refit's whitening went indefinite)."""
    if how == "none":
        return np.ones(len(C))
    var = np.diag(C) if how == "feature" else np.full(len(C), np.trace(C) / len(C))
    floor = eps * max(var.max(), 0.0)
    return np.where(var > floor, np.sqrt(np.maximum(var, floor)), 1.0)


def _scaler(V, standardize: bool, chunk_size: int):
    """Column means and standard deviations (ddof 1; 1 for a constant column), over row chunks, in float64."""
    p = V.shape[1]
    if not standardize:
        return np.zeros(p), np.ones(p)
    shift = np.asarray(V[:chunk_size], np.float64).mean(0)
    s, ss, n = np.zeros(p), np.zeros(p), len(V)
    for i in range(0, n, chunk_size):
        a = np.asarray(V[i:i + chunk_size], np.float64) - shift
        s += a.sum(0)
        ss += (a * a).sum(0)
    std = np.sqrt(np.maximum(ss - s * s / n, 0.0) / (n - 1))
    return shift + s / n, np.where(std > 0, std, 1.0)


@contextlib.contextmanager
def _torch_threads(torch, n: int):
    """Run torch on ``n`` threads, then restore: reductions, hence fits, are then the same on every machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_cached(cache_dir: str | Path, X_key, Y_key, X, Y, moments=None, **params) -> tuple[SharedSpace, Path]:
    """Fit (or reload) a SharedSpace keyed by the feature entries it was trained on and its parameters.

    ``X_key``/``Y_key`` name the entries (a list when the pairs span several). A ``LINEAR`` model
    is solved from ``moments()`` (a callable, called only if the fit is not cached) when given.
    A ``NESTED`` model is fitted once with every component it has (``n_components`` None) and
    returned cut to ``params['n_components']``: one fit serves a whole sweep of latent dims.
    A fitted model is loaded without a lock, so a cache shared read-only serves it.
    """
    k = params.get("n_components")
    if params["model"] in NESTED:
        params = {**params, "n_components": None}
    path = Path(cache_dir) / "models" / f"{key(entry_key(X_key), entry_key(Y_key), params, VERSION)}.npz"
    if not path.exists():
        with locked(path):
            if not path.exists():
                clean_temporaries(path)
                est = SharedSpace(**params)
                est = est.fit_moments(moments()) if moments is not None and est.model in LINEAR else est.fit(X, Y)
                with atomic_file(path) as tmp, open(tmp, "wb") as f:
                    np.savez(f, **to_arrays(est))
    return load(path, k), path


def entry_key(entry):
    """What a feature entry holds, whatever path reached it: its folder's name, the content key of what
    produced it (``features.cached``); a list for pairs that span several entries."""
    return [entry_key(e) for e in entry] if isinstance(entry, (list, tuple)) else Path(entry).name


def load(path: str | Path, n_components: int | None = None) -> SharedSpace:
    """A cached model, cut to its first ``n_components`` if it is ``NESTED``; read without unpickling (a cache
    others can write must not run code in this run)."""
    with np.load(path, allow_pickle=False) as z:
        est = from_arrays(dict(z))
    return est.head(n_components) if n_components is not None and est.model in NESTED else est


def to_arrays(est: SharedSpace, prefix: str = "") -> dict[str, np.ndarray]:
    """A fitted space as plain arrays (its parameters and scalars as one JSON string): ``np.savez`` stores them and
    ``from_arrays`` rebuilds the space, with nothing pickled."""
    arrays = {"means0": est.means_[0], "means1": est.means_[1], "weights0": est.weights_[0],
              "weights1": est.weights_[1], "corrs": est.corrs_}
    scalars = {"params": est.get_params(), "maps": [None if m is None else m.gamma for m in est.maps_],
               **{k: getattr(est, k) for k in ("best_epoch_", "temperature_", "stable_digits_") if hasattr(est, k)}}
    for i, m in enumerate(est.maps_):
        if m is not None:
            arrays.update({f"map{i}_{k}": np.asarray(getattr(m, k)) for k in ("mean", "std", "landmarks", "proj")})
    return {prefix + k: v for k, v in {**arrays, "json": np.array(json.dumps(scalars))}.items()}


def from_arrays(arrays: dict, prefix: str = "") -> SharedSpace:
    z = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    scalars = json.loads(str(z["json"]))
    est = SharedSpace(**scalars["params"])
    est.means_, est.weights_, est.corrs_ = [z["means0"], z["means1"]], [z["weights0"], z["weights1"]], z["corrs"]
    est.maps_ = [None if gamma is None else Nystroem.restored(gamma, *(z[f"map{i}_{k}"] for k in ("mean", "std", "landmarks", "proj")))
                 for i, gamma in enumerate(scalars["maps"])]
    for k in ("best_epoch_", "temperature_", "stable_digits_"):
        if k in scalars:
            setattr(est, k, scalars[k])
    est.n_components_ = est.weights_[0].shape[1]
    return est


def moments_cached(cache_dir: str | Path, X_key, Y_key, X, Y, client=None, progress: bool = True) -> Moments:
    """The pairs' moments (``Moments.of``, on the cluster with ``client``), cached by the entries that hold them.

    Standardisation and shrinkage are applied by the solver, so one entry serves every linear
    model of a sweep.
    """
    path = Path(cache_dir) / "moments" / f"{key(entry_key(X_key), entry_key(Y_key), VERSION)}.npz"
    if not path.exists():
        with locked(path):
            if not path.exists():
                clean_temporaries(path)
                Moments.of(X, Y, client=client, progress=progress).save(path)
    return Moments.load(path)
