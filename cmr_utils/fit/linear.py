"""Linear CCA from the pairs' moments alone (the paper's ``CCA``, ``RidgeCCA``, ``ExactCCA``): moments computed once
serve every shrinkage and latent dim of a sweep, and a fold's are all pairs' minus the fold's; cca-zoo's solutions."""
from cmr_utils.fit.moments import Moments
from cmr_utils.fit.space import Space


class _Linear(Space):
    from_moments = nested = True
    shrinkage, pca = 0.0, None

    def fit(self, X, Y) -> "_Linear":
        self._check_rows(X, Y)
        return self.fit_moments(Moments.of(X, Y, self.chunk_size))

    def fit_moments(self, moments: Moments) -> "_Linear":
        """Fit from the pairs' moments alone: all that linear CCA needs."""
        self._check_finite({"image features": moments.mx, "text features": moments.my})
        self.maps_ = [None, None]
        self._solve(moments, "feature" if self.standardize else "none", self.shrinkage, self.pca)
        return self._finish()


class CCA(_Linear):
    """The paper's plain CCA (no shrinkage): overfits when pairs are few for the dimension."""

    def __init__(self, n_components=50, standardize=True, chunk_size=8192):
        self.n_components, self.standardize, self.chunk_size = n_components, standardize, chunk_size


class RidgeCCA(_Linear):
    """Ridge CCA (as cca-zoo's RidgeCCA): each view's covariance shrunk towards the identity by ``shrinkage``."""

    def __init__(self, n_components=50, shrinkage=0.5, standardize=True, chunk_size=8192):
        self.n_components, self.shrinkage, self.standardize, self.chunk_size = (
            n_components, shrinkage, standardize, chunk_size)


class ExactCCA(_Linear):
    """Ridge CCA that keeps only the leading ``pca`` principal directions of each view before whitening."""

    def __init__(self, n_components=50, shrinkage=0.5, standardize=True, pca=None, chunk_size=8192):
        self.n_components, self.shrinkage, self.standardize, self.pca, self.chunk_size = (
            n_components, shrinkage, standardize, pca, chunk_size)
