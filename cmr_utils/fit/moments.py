"""The pairs' sufficient statistics (``Moments``): all that linear CCA needs, summed over row chunks in O(p²)
memory whatever the number of pairs, features on disk never loaded whole, on a Dask cluster with the same bits."""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmr_utils import cluster
from cmr_utils.io import atomic_file


@dataclass
class Moments:
    """Sufficient statistics of paired rows: their number, means and (n-1)-normalised covariances.

    ``a - b`` are the moments of a's rows without b's (a subset), exactly: the scatter of a union is the parts'
    scatters plus n_a n_b / n (m_a - m_b)(m_a - m_b)ᵀ (Chan, Golub & LeVeque 1979). So a cross-validation
    training set costs one pass over its held-out fold, not over its own rows."""
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

    A chunked map-reduce whose every sum is fixed by n and ``chunk_size`` alone: tasks of ``TASK_CHUNKS`` chunks
    each add their chunks' products in float64 in chunk order, on one BLAS thread, and the tasks' sums are added
    in task order; so the bits are the same whether the tasks ran here (as threads) or, with a Dask ``client``
    (X and Y ``features.Rows`` views), on its workers. Rows are read ``chunk_size`` at a time, centred on the
    first chunk's mean (well-conditioned sums); float32 features are multiplied in float32 (the BLAS's fastest).
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
    with cluster.one_blas_thread():  # a GEMM's rounding depends on the threads that split it
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


def _scales(C: np.ndarray, how: str, eps: float) -> np.ndarray:
    """Each feature's scale; a feature whose variance is within the rounding of the sums (``eps`` of the largest
    variance) is constant and keeps scale 1: dividing by its rounding noise would blow that
    noise up to unit variance and its covariances with it (a train+val refit's whitening went indefinite)."""
    if how == "none":
        return np.ones(len(C))
    var = np.diag(C) if how == "feature" else np.full(len(C), np.trace(C) / len(C))
    floor = eps * max(var.max(), 0.0)
    return np.where(var > floor, np.sqrt(np.maximum(var, floor)), 1.0)
