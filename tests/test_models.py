import numpy as np
import pytest
from cca_zoo.linear import CCA, RidgeCCA

from cmr_utils.models import SharedSpace, covariances, fit_cached


def correlated(n, p=30, q=20, k=3, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, k))
    return (Z @ rng.normal(size=(k, p)) + noise * rng.normal(size=(n, p)),
            Z @ rng.normal(size=(k, q)) + noise * rng.normal(size=(n, q)))


@pytest.mark.parametrize("model,ref", [("cca", lambda: CCA(n_components=3)),
                                       ("ridge", lambda: RidgeCCA(n_components=3, shrinkage=[0.3, 0.3]))])
def test_projections_match_cca_zoo(model, ref):
    X, Y = correlated(400)
    ours = SharedSpace(model, 3, shrinkage=0.3, standardize=False).fit(X, Y)
    theirs = ref().fit([X, Y])
    for a, b in zip(ours.transform(X, Y), theirs.transform([X, Y])):
        np.testing.assert_allclose(a, b, atol=1e-8)
    Xn, Yn = correlated(50, seed=1)
    assert ours.transform(Xn)[1] is None and ours.transform(None, Yn)[0] is None


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("shrinkage", [0.0, 0.3])
def test_exact_chunked_cca_agrees_with_cca_zoo(tmp_path, standardize, shrinkage):
    X, Y = correlated(3000, p=40, q=25, k=3)
    X = X * np.linspace(0.1, 10, 40) + 5  # features on different scales, off-centre
    mm = tmp_path / "X.npy"
    np.save(mm, X.astype(np.float32))
    Xm = np.load(mm, mmap_mode="r")  # memory-mapped, read in chunks
    ref = SharedSpace("ridge", 5, shrinkage=shrinkage, standardize=standardize).fit(Xm, Y)
    ours = SharedSpace("exact", 5, shrinkage=shrinkage, standardize=standardize, chunk_size=700).fit(Xm, Y)
    np.testing.assert_allclose(ours.corrs_, ref.corrs_, atol=1e-9)
    A, B = ref.transform(Xm, Y), ours.transform(Xm, Y)
    sign = np.sign((A[0] * B[0]).sum(0))  # each component is defined up to its sign
    for a, b in zip(A, B):
        np.testing.assert_allclose(a, b * sign, atol=1e-8)


def test_chunked_covariances_equal_numpy():
    X, Y = correlated(1001, p=7, q=5)
    mx, my, Cxx, Cyy, Cxy = covariances(X + 1e4, Y, chunk_size=100)  # large offset: no cancellation
    np.testing.assert_allclose(mx, X.mean(0) + 1e4)
    C = np.cov(np.hstack([X, Y]).T)
    np.testing.assert_allclose(Cxx, C[:7, :7], atol=1e-9)
    np.testing.assert_allclose(Cyy, C[7:, 7:], atol=1e-9)
    np.testing.assert_allclose(Cxy, C[:7, 7:], atol=1e-9)


def test_pca_pre_reduction_limits_the_space():
    X, Y = correlated(2000, p=40, q=25, k=3, noise=0.3)
    m = SharedSpace("exact", 20, pca=8).fit(X, Y)
    assert m.n_components_ == 8
    assert np.linalg.matrix_rank(m.weights_[0]) == 8 and m.corrs_[0] > 0.9
    with pytest.raises(ValueError, match="pca"):
        SharedSpace("ridge", pca=8).fit(X, Y)


def test_recovers_planted_correlation_and_caps_dimension():
    X, Y = correlated(2000, k=2, noise=0.5)
    m = SharedSpace("cca", 500, standardize=True).fit(X, Y)
    assert m.n_components_ == 20  # min(p, q, n - 1)
    assert m.corrs_[0] > 0.9 and m.corrs_[1] > 0.9 and m.corrs_[2] < 0.3
    assert np.all(np.diff(m.corrs_) <= 1e-9)


def test_ridge_generalises_where_plain_cca_overfits():
    A, B = correlated(1240, p=200, q=150, k=2, noise=2.0)
    X, Y, Xt, Yt = A[:240], B[:240], A[240:], B[240:]  # train with n close to p, test on the rest

    def held_out_corr(model):
        a, b = model.transform(Xt, Yt)
        return np.corrcoef(a[:, 0], b[:, 0])[0, 1]

    cca = SharedSpace("cca", 5).fit(X, Y)
    ridge = SharedSpace("ridge", 5, shrinkage=0.5).fit(X, Y)
    assert cca.corrs_[0] > 0.99  # fits noise on the training pairs
    assert held_out_corr(ridge) > held_out_corr(cca) + 0.2


def test_fit_cached_reloads_the_same_model(tmp_path):
    X, Y = correlated(300)
    a, pa = fit_cached(tmp_path, "x", "y", X, Y, model="ridge", n_components=4, shrinkage=0.2)
    b, pb = fit_cached(tmp_path, "x", "y", X * 0, Y * 0, model="ridge", n_components=4, shrinkage=0.2)
    assert pa == pb
    np.testing.assert_array_equal(a.transform(X, Y)[0], b.transform(X, Y)[0])
    _, pc = fit_cached(tmp_path, "x", "y", X, Y, model="ridge", n_components=4, shrinkage=0.3)
    assert pc != pa


def test_rejects_unknown_model_and_misaligned_rows():
    X, Y = correlated(50)
    with pytest.raises(ValueError, match="model"):
        SharedSpace("pls").fit(X, Y)
    with pytest.raises(ValueError, match="same rows"):
        SharedSpace().fit(X, Y[:-1])
