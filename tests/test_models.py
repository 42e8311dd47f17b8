import numpy as np
import pytest
from cca_zoo import linear as zoo
from threadpoolctl import threadpool_limits

from cmr_utils import fit
from cmr_utils.fit import MODELS, make, params_of
from cmr_utils.fit import contrastive as contrastive_module
from cmr_utils.fit import sweep
from cmr_utils.fit.cache import fit_cached, moments_cached
from cmr_utils.fit import kernel as kernel_module
from cmr_utils.fit.kernel import KernelCCA
from cmr_utils.fit.linear import CCA, ExactCCA, RidgeCCA
from cmr_utils.fit.moments import Moments, covariances


def correlated(n, p=30, q=20, k=3, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, k))
    return (Z @ rng.normal(size=(k, p)) + noise * rng.normal(size=(n, p)),
            Z @ rng.normal(size=(k, q)) + noise * rng.normal(size=(n, q)))


@pytest.mark.parametrize("model,ref", [("cca", lambda: zoo.CCA(n_components=3)),
                                       ("ridge", lambda: zoo.RidgeCCA(n_components=3, shrinkage=[0.3, 0.3]))])
def test_projections_match_cca_zoo(model, ref):
    X, Y = correlated(400)
    ours = make(model, n_components=3, shrinkage=0.3, standardize=False).fit(X, Y)
    theirs = ref().fit([X, Y])
    A, B = ours.transform(X, Y), theirs.transform([X, Y])
    sign = np.sign((A[0] * B[0]).sum(0))  # cca-zoo leaves each component's sign arbitrary; ours fixes it
    for a, b in zip(A, B):
        np.testing.assert_allclose(a, b * sign, atol=1e-8)
    Xn, Yn = correlated(50, seed=1)
    assert ours.transform(Xn)[1] is None and ours.transform(None, Yn)[0] is None


@pytest.mark.parametrize("standardize", [False, True])
@pytest.mark.parametrize("shrinkage", [0.0, 0.3])
@pytest.mark.parametrize("model", ["ridge", "exact"])
def test_chunked_solver_on_memory_mapped_features_agrees_with_cca_zoo(tmp_path, model, standardize, shrinkage):
    X, Y = correlated(3000, p=40, q=25, k=3)
    X = X * np.linspace(0.1, 10, 40) + 5  # features on different scales, off-centre
    mm = tmp_path / "X.npy"
    np.save(mm, X.astype(np.float32))
    Xm = np.load(mm, mmap_mode="r")  # memory-mapped, read in chunks
    views = [np.asarray(Xm, np.float64), Y]
    if standardize:
        views = [(V - V.mean(0)) / V.std(0, ddof=1) for V in views]
    ref = zoo.RidgeCCA(n_components=5, shrinkage=[shrinkage, shrinkage]).fit(views)
    ours = make(model, n_components=5, shrinkage=shrinkage, standardize=standardize, chunk_size=700).fit(Xm, Y)
    A, B = ref.transform(views), ours.transform(Xm, Y)
    np.testing.assert_allclose(ours.corrs_, [np.corrcoef(a, b)[0, 1] for a, b in zip(*(v.T for v in A))], atol=1e-9)
    sign = np.sign((A[0] * B[0]).sum(0))  # cca-zoo leaves each component's sign arbitrary
    for a, b in zip(A, B):
        np.testing.assert_allclose(a - a.mean(0), b * sign, atol=1e-8)


def test_chunked_covariances_equal_numpy():
    X, Y = correlated(1001, p=7, q=5)
    mx, my, Cxx, Cyy, Cxy, dtype = covariances(X + 1e4, Y, chunk_size=100)  # large offset: no cancellation
    assert dtype == np.float64  # float64 features: float64 products
    np.testing.assert_allclose(mx, X.mean(0) + 1e4)
    C = np.cov(np.hstack([X, Y]).T)
    np.testing.assert_allclose(Cxx, C[:7, :7], atol=1e-9)
    np.testing.assert_allclose(Cyy, C[7:, 7:], atol=1e-9)
    np.testing.assert_allclose(Cxy, C[:7, 7:], atol=1e-9)


def test_moments_and_projections_are_the_same_bits_whatever_the_blas_threads():
    """A float32 GEMM's rounding depends on how many threads split it (a Dask worker of local:2 has one, this
    process all the cores): the moments and the latent vectors are computed so that it does not matter."""
    X, Y = (V.astype(np.float32) for V in correlated(4000, p=300, q=384, k=4))
    est, out = RidgeCCA(10, shrinkage=0.5).fit(X, Y), {}  # (the fit itself runs in one process)
    for threads in (1, 2):
        with threadpool_limits(threads):
            m = Moments.of(X, Y, chunk_size=256)
            out[threads] = [m.Cxx, m.Cyy, m.Cxy, *est.transform(X[:999].astype(np.float64), Y[:999])]
    for a, b in zip(out[1], out[2]):
        assert a.tobytes() == b.tobytes()


def test_stable_digits_say_how_much_whitening_amplifies_rounding():
    """Plain CCA with pairs barely more than the dimension inverts a nearly singular covariance: few digits of
    its solution survive another machine's rounding of the sums; ridge's shrinkage keeps most."""
    X, Y = (V.astype(np.float32) for V in correlated(240, p=200, q=150, k=2, noise=2.0))
    m = Moments.of(X, Y)
    cca, ridge = CCA(5).fit_moments(m), RidgeCCA(5, shrinkage=0.5).fit_moments(m)
    assert 0 <= cca.stable_digits_ <= 3 < ridge.stable_digits_ <= 7  # float32 products: about 7 digits at most
    assert RidgeCCA(5, shrinkage=0.5).fit(*correlated(240)).stable_digits_ > 12  # float64 products


def test_a_feature_constant_to_the_precision_of_the_sums_is_not_blown_up():
    """A text feature whose variance is rounding noise (float32 sums of a constant; the demo's train+val refit
    had one at 1e-69) keeps scale 1: standardised, its noisy covariances made the whitening indefinite."""
    X, Y = correlated(3000, p=6, q=4, k=2)
    m = Moments.of(X.astype(np.float32), Y.astype(np.float32))
    noise = np.random.default_rng(1).normal(size=6) * np.sqrt(m.Cxx.diagonal()) * 1e-5  # |rounding| ~ 1e-5 std
    Cyy, Cxy = np.pad(m.Cyy, (0, 1)), np.pad(m.Cxy, ((0, 0), (0, 1)))
    Cyy[-1, -1], Cxy[:, -1] = 1e-69, noise
    bad = Moments(m.n, m.mx, np.append(m.my, 0.3), m.Cxx, Cyy, Cxy, eps=m.eps)
    Cs = bad.scaled("y", "feature")[0]
    assert np.linalg.eigvalsh(Cs).min() > -1e-6
    est = RidgeCCA(2, shrinkage=0.5).fit_moments(bad)
    ref = RidgeCCA(2, shrinkage=0.5).fit_moments(m)
    np.testing.assert_allclose(est.corrs_, ref.corrs_, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_covariances_leave_in_memory_features_as_they_were(dtype):
    """Rows read from disk are centred in place; an array the caller holds never is."""
    X, Y = (V.astype(dtype) for V in correlated(300, p=4, q=3))
    before = X.copy(), Y.copy()
    covariances(X, Y, chunk_size=64)
    np.testing.assert_array_equal(X, before[0])
    np.testing.assert_array_equal(Y, before[1])


def test_pca_pre_reduction_limits_the_space():
    X, Y = correlated(2000, p=40, q=25, k=3, noise=0.3)
    m = ExactCCA(20, pca=8).fit(X, Y)
    assert m.n_components_ == 8
    assert np.linalg.matrix_rank(m.weights_[0]) == 8 and m.corrs_[0] > 0.9
    with pytest.raises(TypeError, match="pca"):
        RidgeCCA(pca=8)  # pca pre-reduction is ExactCCA's
    assert "pca" not in make("ridge", pca=8).get_params()  # a sweep's settings reach the models that declare them


def test_recovers_planted_correlation_and_caps_dimension():
    X, Y = correlated(2000, k=2, noise=0.5)
    m = CCA(500, standardize=True).fit(X, Y)
    assert m.n_components_ == 20  # min(p, q, n - 1)
    assert m.corrs_[0] > 0.9 and m.corrs_[1] > 0.9 and m.corrs_[2] < 0.3
    assert np.all(np.diff(m.corrs_) <= 1e-9)


def test_ridge_generalises_where_plain_cca_overfits():
    A, B = correlated(1240, p=200, q=150, k=2, noise=2.0)
    X, Y, Xt, Yt = A[:240], B[:240], A[240:], B[240:]  # train with n close to p, test on the rest

    def held_out_corr(model):
        a, b = model.transform(Xt, Yt)
        return np.corrcoef(a[:, 0], b[:, 0])[0, 1]

    cca = CCA(5).fit(X, Y)
    ridge = RidgeCCA(5, shrinkage=0.5).fit(X, Y)
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


def test_cache_keys_are_the_entries_content_not_the_path_that_reached_them(tmp_path):
    """The runner names entries by absolute paths, a notebook by ../cache/...: both must hit one cache entry."""
    X, Y = correlated(200)
    runner = (str(tmp_path / "cache" / "features" / "img0"), [str(tmp_path / "cache" / "features" / t) for t in "ab"])
    notebook = ("../cache/features/img0", ["../cache/features/a", "../cache/features/b"])
    paths = [moments_cached(tmp_path / "c", *keys, X, Y, progress=False) for keys in (runner, notebook)]
    assert len(list((tmp_path / "c" / "moments").glob("*.npz"))) == 1
    fits = [fit_cached(tmp_path / "c", *keys, X, Y, model="ridge", n_components=2, shrinkage=0.5)[1]
            for keys in (runner, notebook, ("../cache/features/img1", notebook[1]))]
    assert fits[0] == fits[1] != fits[2]
    np.testing.assert_array_equal(paths[0].Cxy, paths[1].Cxy)


@pytest.mark.parametrize("name", list(MODELS))
def test_each_registered_name_builds_its_class_and_rebuilds_from_its_params(name):
    est = make(name, n_components=3, shrinkage=0.2, pca=2, kernel_gamma=0.5, seed=4, color="red")
    assert type(est) is MODELS[name] and est.n_components == 3
    assert not hasattr(est, "color")  # a setting no model declares reaches none
    assert params_of(est) == {"model": name, **est.get_params()}
    assert make(**params_of(est)).get_params() == est.get_params()
    assert getattr(est, "shrinkage") == (0.0 if name == "cca" else 0.2)  # plain CCA has none to set


def test_a_grid_fits_a_model_without_shrinkage_once_per_latent_dim():
    g = sweep.grid(models=["cca", "kernel", "contrastive"], latent_dims=[2, 5], shrinkage=[0.1, 0.9],
                   settings={"kernel_landmarks": 40, "pca": 3, "seed": 7})
    assert [(params_of(e)["model"], e.shrinkage, e.n_components) for e in g] == [
        ("cca", 0.0, 2), ("cca", 0.0, 5), *((m, c, d) for m in ("kernel", "contrastive") for c in (0.1, 0.9) for d in (2, 5))]
    assert [getattr(e, "seed", None) for e in g[:3]] == [None, None, 7] and g[2].kernel_landmarks == 40
    assert not any("pca" in e.get_params() for e in g)  # only ExactCCA reads pca


def test_rejects_unknown_model_naming_the_models_and_misaligned_rows():
    X, Y = correlated(50)
    with pytest.raises(ValueError, match="unknown model 'pls': the models are cca, ridge, exact, kernel, contrastive"):
        make("pls")
    for est in (make(name) for name in MODELS):
        with pytest.raises(ValueError, match="same rows"):
            est.fit(X, Y[:-1])


def test_correlation_score_does_not_depend_on_the_solver():
    """The paper's score centres latent vectors across components, so it depends on their signs.

    Refitting the same space by another solver, on the same features in another column order
    (which changes the signs LAPACK returns), must give the same scores.
    """
    from cmr_utils.evaluate.retrieval import normalize
    X, Y = correlated(2000, p=40, q=25, k=6, noise=0.8)
    Xt, Yt = correlated(200, p=40, q=25, k=6, noise=0.8, seed=5)
    rng = np.random.default_rng(0)
    px, py = rng.permutation(40), rng.permutation(25)
    ridge = RidgeCCA(8, shrinkage=0.3).fit(X, Y)
    exact = ExactCCA(8, shrinkage=0.3, chunk_size=300).fit(X[:, px], Y[:, py])
    np.testing.assert_allclose(ridge.weights_[0][px], exact.weights_[0], atol=1e-8)
    np.testing.assert_allclose(ridge.weights_[1][py], exact.weights_[1], atol=1e-8)
    S = [normalize(m.transform(A)[0], "correlation") @ normalize(m.transform(None, B)[1], "correlation").T
         for m, A, B in ((ridge, Xt, Yt), (exact, Xt[:, px], Yt[:, py]))]
    np.testing.assert_allclose(S[0], S[1], atol=1e-8)


@pytest.mark.parametrize("model", ["ridge", "exact", "contrastive"])
def test_non_finite_fit_stops_naming_the_model(model):
    X, Y = correlated(300)
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match=rf"{type(make(model)).__name__}\(.*n_components=3.*\): non-finite image features"):
        make(model, n_components=3).fit(X, Y)


def held_out_corrs(model, X, Y):
    a, b = model.transform(X, Y)
    return np.array([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])])


@pytest.mark.parametrize("model,n,extra", [("kernel", 2000, {"kernel_landmarks": 300}), ("contrastive", 800, {})])
def test_new_models_recover_planted_correlation(model, n, extra):
    X, Y = correlated(n + 1000, k=2, noise=0.5)
    m = make(model, n_components=4, shrinkage=0.5, **extra).fit(X[:n], Y[:n])
    assert m.n_components_ == 4
    r = held_out_corrs(m, X[n:], Y[n:])  # on pairs it never saw
    assert r[0] > 0.9 and r[1] > 0.9
    np.testing.assert_allclose(m.corrs_[:2], r[:2], atol=0.05)  # the training correlations hold out


def test_kernel_finds_a_relation_linear_cca_misses():
    """Y depends on X through sin and a square: linear CCA sees little of it, kernel CCA most."""
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(1500, 2))
    X = np.hstack([Z, rng.normal(size=(1500, 6))])
    Y = np.hstack([np.sin(2 * Z[:, :1]), Z[:, 1:] ** 2, rng.normal(size=(1500, 6))]) + 0.1 * rng.normal(size=(1500, 8))
    linear, kernel = (held_out_corrs(make(model, n_components=2, shrinkage=0.3, kernel_landmarks=200).fit(X[:1000], Y[:1000]),
                                     X[1000:], Y[1000:]) for model in ("exact", "kernel"))
    assert kernel[0] > 0.9 and kernel[0] > linear[0] + 0.4 and kernel[1] > linear[1] + 0.3


@pytest.mark.parametrize("model,extra", [("kernel", {"kernel_landmarks": 100, "kernel_gamma": 0.05}),
                                         ("contrastive", {})])
def test_fit_cached_reloads_new_models(tmp_path, model, extra):
    X, Y = correlated(400)
    a, pa = fit_cached(tmp_path, "x", "y", X, Y, model=model, n_components=3, **extra)
    b, pb = fit_cached(tmp_path, "x", "y", X * 0, Y * 0, model=model, n_components=3, **extra)
    assert pa == pb
    for u, v in zip(a.transform(X, Y), b.transform(X, Y)):
        np.testing.assert_array_equal(u, v)
    _, pc = fit_cached(tmp_path, "x", "y", X, Y, model=model, n_components=3, **{**extra, "seed": 1})
    assert pc != pa  # the seed is part of the key


def test_contrastive_is_deterministic_for_a_seed():
    X, Y = correlated(500)
    a, b, c = (fit.ContrastiveCCA(3, seed=s).fit(X, Y) for s in (0, 0, 1))
    for u, v in zip(a.weights_, b.weights_):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.weights_[0], c.weights_[0])


def test_contrastive_keeps_the_weights_of_its_best_epoch(monkeypatch):
    """The fit trains on past its best held-out epoch (``patience``) and returns that epoch's weights: the same
    weights as a fit stopped right there."""
    X, Y = correlated(600, k=2, noise=0.5)
    m = fit.ContrastiveCCA(2, shrinkage=0.5).fit(X, Y)
    assert m.best_epoch_ > 0 and m.temperature_ != pytest.approx(0.07)  # training moved from the start
    assert m.maps_ == [None, None]  # linear: latent = (V - means_) @ weights_
    np.testing.assert_allclose(m.transform(X)[0], (X - m.means_[0]) @ m.weights_[0])
    monkeypatch.setitem(contrastive_module.CONTRASTIVE, "max_epochs", m.best_epoch_)
    stopped = fit.ContrastiveCCA(2, shrinkage=0.5).fit(X, Y)
    assert stopped.best_epoch_ == m.best_epoch_ and stopped.temperature_ == m.temperature_
    for u, v in zip(stopped.weights_, m.weights_):
        np.testing.assert_array_equal(u, v)


def test_contrastive_that_cannot_improve_keeps_its_ridge_cca_start(monkeypatch):
    monkeypatch.setitem(contrastive_module.CONTRASTIVE, "lr", 0.0)
    X, Y = correlated(600, k=2, noise=0.5)
    m = fit.ContrastiveCCA(2, shrinkage=0.5).fit(X, Y)
    assert m.best_epoch_ == 0 and m.temperature_ == pytest.approx(0.07)
    ridge = RidgeCCA(2, shrinkage=0.5).fit(X, Y)  # on all pairs, not the start's training share: close, not equal
    assert np.abs(np.corrcoef(m.transform(X)[0].T, ridge.transform(X)[0].T)[[0, 1], [2, 3]]).min() > 0.95


@pytest.mark.parametrize("model", ["ridge", "exact", "kernel"])
def test_head_equals_a_fit_with_fewer_components(model):
    X, Y = correlated(600, k=4)
    big = make(model, n_components=6, shrinkage=0.3, kernel_landmarks=100).fit(X, Y).head(3)
    small = make(model, n_components=3, shrinkage=0.3, kernel_landmarks=100).fit(X, Y)
    assert big.n_components == big.n_components_ == 3
    for u, v in zip(big.transform(X, Y), small.transform(X, Y)):
        np.testing.assert_allclose(u, v, atol=1e-8)
    with pytest.raises(ValueError, match="not nested"):
        fit.ContrastiveCCA(3).fit(X, Y).head(2)


def test_moments_of_a_subset_by_subtraction():
    X, Y = correlated(1000, p=7, q=5)
    rest, direct = Moments.of(X + 1e3, Y) - Moments.of(X[700:] + 1e3, Y[700:]), Moments.of(X[:700] + 1e3, Y[:700])
    assert rest.n == 700
    for name in ("mx", "my", "Cxx", "Cyy", "Cxy"):
        np.testing.assert_allclose(getattr(rest, name), getattr(direct, name), atol=1e-8)
    a = ExactCCA(3).fit_moments(rest)
    np.testing.assert_allclose(a.transform(X)[0], ExactCCA(3).fit(X[:700] + 1e3, Y[:700]).transform(X)[0],
                               atol=1e-8)
    assert [name for name, cls in MODELS.items() if cls.from_moments] == ["cca", "ridge", "exact"]
    assert not hasattr(KernelCCA(), "fit_moments")


def test_moments_of_a_union_by_addition():
    X, Y = correlated(1000, p=7, q=5)
    both, direct = Moments.of(X[:300] + 1e3, Y[:300]) + Moments.of(X[300:] + 1e3, Y[300:]), Moments.of(X + 1e3, Y)
    assert both.n == 1000
    for name in ("mx", "my", "Cxx", "Cyy", "Cxy"):
        np.testing.assert_allclose(getattr(both, name), getattr(direct, name), atol=1e-8)


def test_rejects_a_bad_kernel_width():
    X, Y = correlated(50)
    with pytest.raises(ValueError, match="kernel_gamma"):
        KernelCCA(kernel_gamma=0.0).fit(X, Y)


def test_kernel_models_that_differ_in_shrinkage_share_their_maps(monkeypatch):
    """A sweep maps the pairs once per kernel setting: the Nyström maps and the mapped pairs' moments do not
    depend on the shrinkage, and a model fitted from the shared ones is the model fitted alone, bit for bit."""
    X, Y = correlated(300)
    settings = {"n_components": 3, "kernel_landmarks": 80}
    alone = [make("kernel", shrinkage=c, **settings).fit(X, Y) for c in (0.1, 0.5, 0.9)]
    built = []
    init = kernel_module.Nystroem.__init__
    monkeypatch.setattr(kernel_module.Nystroem, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    mapped = kernel_module.Mapped(X, Y)
    shared = [fit.fit_shared(make("kernel", shrinkage=c, **settings), X, Y, mapped=mapped) for c in (0.1, 0.5, 0.9)]
    assert len(built) == 2  # one map per view, for the three shrinkages
    for a, b in zip(alone, shared):
        for u, v in zip(a.transform(X, Y), b.transform(X, Y)):
            np.testing.assert_array_equal(u, v)
    fit.fit_shared(make("kernel", shrinkage=0.5, **{**settings, "seed": 1}), X, Y, mapped=mapped)
    assert len(built) == 4  # another seed draws other landmarks: maps of its own
