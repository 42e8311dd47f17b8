"""Linear CCA solved from the pairs' moments: the paper's ``CCA``, ``RidgeCCA`` and ``ExactCCA`` (ridge + PCA).

All three need only the pairs' means and covariances (``Moments``), computed once per training set
(on a cluster or cached) and solved for every shrinkage and latent dim of a sweep, or for a
cross-validation fold as all pairs' moments minus the fold's. They give cca-zoo's solutions (tested)
at a fraction of its cost.
"""
from __future__ import annotations

from cmr_utils.fit.moments import Moments
from cmr_utils.fit.space import Space


class _Linear(Space):
    from_moments = nested = True
    shrinkage, pca = 0.0, None

    def fit(self, X, Y) -> "_Linear":
        if len(X) != len(Y):
            raise ValueError(f"X and Y must have the same rows, got {len(X)} and {len(Y)}")
        return self.fit_moments(Moments.of(X, Y, self.chunk_size))

    def fit_moments(self, moments: Moments) -> "_Linear":
        """Fit from the pairs' moments alone: all that linear CCA needs."""
        self._check_finite({"image features": moments.mx, "text features": moments.my})
        self.maps_ = [None, None]
        self._solve(moments, "feature" if self.standardize else "none", self.shrinkage, self.pca)
        return self._finish()


class CCA(_Linear):
    """The paper's plain CCA (no shrinkage): overfits when pairs are few for the dimension."""

    def __init__(self, n_components: int | None = 50, standardize: bool = True, chunk_size: int = 8192):
        self.n_components, self.standardize, self.chunk_size = n_components, standardize, chunk_size


class RidgeCCA(_Linear):
    """Ridge CCA (as cca-zoo's RidgeCCA): each view's covariance shrunk towards the identity by ``shrinkage``."""

    def __init__(self, n_components: int | None = 50, shrinkage: float = 0.5, standardize: bool = True,
                 chunk_size: int = 8192):
        self.n_components, self.shrinkage, self.standardize, self.chunk_size = (
            n_components, shrinkage, standardize, chunk_size)


class ExactCCA(_Linear):
    """Ridge CCA that keeps only the leading ``pca`` principal directions of each view before whitening."""

    def __init__(self, n_components: int | None = 50, shrinkage: float = 0.5, standardize: bool = True,
                 pca: int | None = None, chunk_size: int = 8192):
        self.n_components, self.shrinkage, self.standardize, self.pca, self.chunk_size = (
            n_components, shrinkage, standardize, pca, chunk_size)
