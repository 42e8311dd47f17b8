"""Kernel CCA made to scale: the ridge-CCA solver on Nyström RBF features of each view (``KernelCCA``)."""
import numpy as np

from cmr_utils.fit.moments import Moments
from cmr_utils.fit.space import Space, scaler


class KernelCCA(Space):
    """Kernel CCA (Bach & Jordan 2002; Hardoon et al. 2004) at the cost of linear CCA in m dimensions.

    Each view's RBF kernel exp(-gamma |a - b|²) on standardised features is approximated by m =
    ``kernel_landmarks`` Nyström features (``seed``ed; ``kernel_gamma`` None: the median heuristic), so
    ridge-regularised kernel CCA is ridge CCA on them. They are scaled to mean variance 1 (one factor per
    view: the spectrum keeps its shape), so ``shrinkage`` does not depend on gamma or m; its best value
    tends to be lower than linear CCA's, the kernel features being many and noisier.
    """

    nested = True

    def __init__(self, n_components=50, shrinkage=0.5, standardize=True, kernel_landmarks=1000, kernel_gamma=None,
                 seed=0, chunk_size=8192):
        self.n_components, self.shrinkage, self.standardize, self.chunk_size = (
            n_components, shrinkage, standardize, chunk_size)
        self.kernel_landmarks, self.kernel_gamma, self.seed = kernel_landmarks, kernel_gamma, seed

    def fit(self, X, Y) -> "KernelCCA":
        return self.fit_mapped(self.mapped(X, Y))

    def mapped(self, X, Y) -> tuple[list["Nystroem"], Moments]:
        """Both views' Nyström maps and the moments of the mapped pairs: all a fit solves from, the same for
        every shrinkage and n_components (``map_settings``), so a sweep computes them once (``Mapped``)."""
        if self.kernel_gamma is not None and not self.kernel_gamma > 0:
            raise ValueError(f"kernel_gamma must be positive, or None (median heuristic), got {self.kernel_gamma!r}")
        self._check_rows(X, Y)
        maps = [Nystroem(V, self.kernel_landmarks, self.kernel_gamma, self.standardize, self.seed + i,
                         self.chunk_size) for i, V in enumerate((X, Y))]
        return maps, Moments.of(maps[0].rows(X), maps[1].rows(Y), self.chunk_size)

    def fit_mapped(self, mapped: tuple[list["Nystroem"], Moments]) -> "KernelCCA":
        """Fit from ``mapped(X, Y)`` of a model with the same ``map_settings``."""
        maps, moments = mapped
        self.maps_ = list(maps)
        self._solve(moments, "total", self.shrinkage)  # each view's eigendecomposition is kept on ``moments``
        return self._finish()

    def map_settings(self) -> tuple:
        """What the maps depend on: every parameter but the shrinkage and n_components."""
        return tuple(sorted((k, v) for k, v in self.get_params().items() if k not in ("shrinkage", "n_components")))


class Mapped:
    """``est -> est.mapped(X, Y)`` for kernel models fitted on the same pairs, computed once per ``map_settings``."""

    def __init__(self, X, Y):
        self.X, self.Y, self._done = X, Y, {}

    def __call__(self, est: KernelCCA) -> tuple[list["Nystroem"], Moments]:
        settings = est.map_settings()
        if settings not in self._done:
            self._done[settings] = est.mapped(self.X, self.Y)
        return self._done[settings]


class Nystroem:
    """phi(v) with phi(a)·phi(b) ≈ exp(-gamma |a - b|²) on standardised rows (Williams & Seeger 2001).

    With landmarks L (``landmarks`` seeded training rows) and K_LL = U Λ Uᵀ, phi(v) = k(v, L) U Λ^(-1/2).
    Eigenvalues below 1e-6 of the largest are dropped: a new row's feature there is noise amplified by 1/√λ
    (a recipe's text repeated for each photo gives exact zeros). gamma None: 1 / median squared distance.
    """

    def __init__(self, V, landmarks: int, gamma: float | None, standardize: bool, seed: int, chunk_size: int):
        self.mean, self.std = scaler(V, standardize, chunk_size)
        idx = np.sort(np.random.default_rng(seed).choice(len(V), min(landmarks, len(V)), replace=False))
        self.landmarks = (np.asarray(V[idx], np.float64) - self.mean) / self.std
        d2 = _sqdist(self.landmarks, self.landmarks)
        self.gamma = gamma or 1.0 / np.median(d2[np.triu_indices(len(idx), 1)])
        lam, U = np.linalg.eigh(np.exp(-self.gamma * d2))
        keep = lam > 1e-6 * lam.max()
        self.proj = U[:, keep] / np.sqrt(lam[keep])

    @classmethod
    def restored(cls, gamma: float, mean, std, landmarks, proj) -> "Nystroem":
        """The map as ``cache.to_arrays`` stored it."""
        f = cls.__new__(cls)
        f.gamma, f.mean, f.std, f.landmarks, f.proj = gamma, mean, std, landmarks, proj
        return f

    def __call__(self, V) -> np.ndarray:
        Z = (np.asarray(V, np.float64) - self.mean) / self.std
        return np.exp(-self.gamma * _sqdist(Z, self.landmarks)) @ self.proj

    def rows(self, V) -> "_Mapped":
        """V's rows through this map, computed when sliced."""
        return _Mapped(V, self)


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
