"""What every model of the shared space has in common (projection, one sign convention, checks) and the ridge-CCA
solver that all but the contrastive model end in."""
import copy

import numpy as np
from sklearn.base import BaseEstimator

from cmr_utils.cluster import one_blas_thread
from cmr_utils.fit.moments import Moments


class Space(BaseEstimator):
    """Base of the models: ``fit(X, Y)`` on paired rows (image features X, text features Y) returns self.

    A fitted space is ``maps_``, ``means_`` and ``weights_`` per view: latent = (map(V) - means_[i]) @ weights_[i],
    map the identity (``maps_[i]`` None; standardisation folded into the weights) or a fixed feature map
    (``KernelCCA``). ``n_components`` is capped by the rank the data allows (None: all it allows);
    ``n_components_`` is what was used; ``corrs_`` the components' correlations on the training pairs;
    ``stable_digits_`` (solved from moments) the digits of the latent vectors that rounding of the moments
    cannot change.
    """

    from_moments = False  # solved from the pairs' moments alone (``fit_moments``)
    nested = False  # its first k components do not depend on n_components (``head``)

    def head(self, k: int) -> "Space":
        """This space cut to its first ``k`` components: for a nested model, the fit with n_components=k."""
        if not self.nested:
            raise ValueError(f"{type(self).__name__} is not nested: fit it with n_components={k} instead")
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
        F, c = (V if self.maps_[i] is None else self.maps_[i].rows(V)), self.chunk_size
        with one_blas_thread():
            return np.concatenate([(np.asarray(F[s:s + c], np.float64) - self.means_[i]) @ self.weights_[i]
                                   for s in range(0, max(len(V), 1), c)])

    @staticmethod
    def _check_rows(X, Y) -> None:
        if len(X) != len(Y):
            raise ValueError(f"X and Y must have the same rows, got {len(X)} and {len(Y)}")

    def _finish(self) -> "Space":
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
            raise ValueError(f"{type(self).__name__}({params}): non-finite {', '.join(bad)}; check the features for "
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

    def _solve(self, m: Moments, scale: str, shrinkage: float, pca: int | None = None) -> None:
        """Ridge CCA from covariances: whiten each view by ((1-c) C + c I)^(-1/2), then SVD of the whitened Cxy.

        ``scale`` puts the views on a common footing first: 'feature' (unit variance per feature), 'total' (one
        factor: mean variance 1, which keeps the spectrum's shape) or 'none'. Each view's eigendecomposition does
        not depend on the shrinkage and is kept on ``m``: a sweep costs one per view, then one SVD per shrinkage.
        """
        (Cxx, dx, ex), (Cyy, dy, ey) = m.scaled("x", scale), m.scaled("y", scale)
        Cxy = m.Cxy / np.outer(dx, dy)
        Wx, Wy = _whitener(ex, shrinkage, pca, m.eps), _whitener(ey, shrinkage, pca, m.eps)
        self.stable_digits_ = _stable_digits((Wx, Wy), m.eps)
        U, _, Vt = np.linalg.svd(Wx.T @ Cxy @ Wy, full_matrices=False)
        k = int(min(self.n_components or U.shape[1], U.shape[1], m.n - 1))
        wx, wy = Wx @ U[:, :k], Wy @ Vt[:k].T
        cov = np.einsum("ik,ik->k", wx, Cxy @ wy)
        self.corrs_ = cov / np.sqrt(np.einsum("ij,ij->j", wx, Cxx @ wx) * np.einsum("ij,ij->j", wy, Cyy @ wy))
        self.means_ = [m.mx, m.my]
        self.weights_ = [wx / dx[:, None], wy / dy[:, None]]


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

    Whitening amplifies a relative error in a covariance by up to the condition number of the shrunk covariance
    it inverts (largest over smallest eigenvalue kept, i.e. over the whitener's squared column norms): plain CCA
    on few pairs for the dimension has none left, so its ranks may differ in near-ties on another machine's BLAS.
    """
    cond = max(float(norms.max() / norms.min()) for norms in ((W * W).sum(0) for W in whiteners))
    return max(0, int(np.floor(-np.log10(cond * eps))))


def scaler(V, standardize: bool, chunk_size: int):
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
