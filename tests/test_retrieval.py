import numpy as np
import pytest

from cmr_utils.evaluate.retrieval import evaluate, metrics, normalize, protocols, ranks


def brute_ranks(Q, G):
    """Reference: sort each query's scores; rank = 1-based position of the truth placed after its ties."""
    S = Q @ G.T
    out = []
    for i, row in enumerate(S):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == i))
        out.append(order.index(i) + 1)
    return np.array(out)


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_ranks_match_brute_force_with_ties(chunk):
    rng = np.random.default_rng(0)
    Q = rng.integers(-2, 3, size=(53, 3)).astype(float)  # small integers: many exact ties
    G = rng.integers(-2, 3, size=(53, 3)).astype(float)
    a2b, b2a = ranks(Q, G, chunk=chunk)  # both directions from one similarity matrix
    np.testing.assert_array_equal(a2b, brute_ranks(Q, G))
    np.testing.assert_array_equal(b2a, brute_ranks(G, Q))


def test_identical_candidates_tie_with_the_truth_whatever_the_rounding():
    """Duplicates (a recipe's title repeated, a photo uploaded twice) tie with the truth in float32 too."""
    rng = np.random.default_rng(3)
    B = np.repeat(normalize(rng.normal(size=(150, 48)), "cosine"), 2, axis=0)  # every gallery vector twice
    A = normalize(B + 0.5 * rng.normal(size=B.shape), "cosine")
    a2b, b2a = ranks(A, B)
    for r, (Q, G) in ((a2b, (A, B)), (b2a, (B, A))):
        S = Q @ G.T  # float64 reference, ties (the duplicate) counted against the query
        exact = (S >= np.diag(S)[:, None] - 1e-12).sum(1)
        near = (S >= np.diag(S)[:, None] - 1e-5).sum(1)  # within float32 rounding of the truth
        assert (r >= exact).all() and (r <= near).all()


def test_ranks_extremes():
    Z = normalize(np.random.default_rng(1).normal(size=(40, 8)), "cosine")
    assert all((r == 1).all() for r in ranks(Z, Z))
    const = np.ones((40, 3))
    assert all((r == 40).all() for r in ranks(const, const))  # all tied: the truth gets the worst rank, not the best


def test_metrics_against_definition():
    r = np.random.default_rng(2).integers(1, 50, size=101)
    m = metrics(r)
    assert m["medr"] == sorted(r)[50]
    for k in (1, 5, 10):
        assert m[f"r{k}"] == pytest.approx(100 * sum(x <= k for x in r) / len(r))


def test_correlation_score_is_pearson():
    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(5, 12)), rng.normal(size=(5, 12))
    S = normalize(A, "correlation") @ normalize(B, "correlation").T
    ref = np.corrcoef(A, B)[:5, 5:]
    np.testing.assert_allclose(S, ref, atol=1e-12)


def test_weighted_score_scales_dims_by_correlation():
    Z = np.array([[1.0, 1.0]])
    out = normalize(Z, "weighted", corrs=np.array([1.0, 0.5]), power=1)
    np.testing.assert_allclose(out, [[2 / np.sqrt(5), 1 / np.sqrt(5)]])
    with pytest.raises(ValueError):
        normalize(Z, "weighted")


def test_evaluate_bags_seeded_and_informative():
    rng = np.random.default_rng(4)
    latent = rng.normal(size=(300, 10))
    Zi, Zt = latent + 0.5 * rng.normal(size=latent.shape), latent + 0.5 * rng.normal(size=latent.shape)
    a = evaluate(Zi, Zt, "cosine", 100, 5, seed=7)
    b = evaluate(Zi, Zt, "cosine", 100, 5, seed=7)
    assert a == b
    assert [r["direction"] for r in a] == ["im2recipe", "recipe2im"]
    assert all(r["n_bags"] == 5 and r["bag_size"] == 100 for r in a)
    # by hand: five seeded bags of 100 pairs, each ranked by brute force; mean and spread over the bags
    bag_rng = np.random.default_rng(7)
    unit = lambda Z: Z / np.linalg.norm(Z, axis=1, keepdims=True)  # noqa: E731
    bags = [bag_rng.choice(300, 100, replace=False) for _ in range(5)]
    for row, (Q, G) in zip(a, ((Zi, Zt), (Zt, Zi))):
        per_bag = {"medr": [], "r1": [], "r10": []}
        for bag in bags:
            r = brute_ranks(unit(Q[bag]), unit(G[bag]))
            per_bag["medr"].append(np.median(r))
            per_bag["r1"].append(100 * np.mean(r <= 1))
            per_bag["r10"].append(100 * np.mean(r <= 10))
        for m, values in per_bag.items():
            assert row[m] == pytest.approx(np.mean(values)) and row[f"{m}_std"] == pytest.approx(np.std(values)), m
            assert [float(v) for v in row[f"{m}_bags"].split(";")] == pytest.approx(values), m
    assert all(row["r1_std"] > 0 for row in a)  # the bags differ: a spread to check
    noise = evaluate(rng.normal(size=(300, 10)), rng.normal(size=(300, 10)), "cosine", 100, 5, seed=7)
    assert a[0]["r1"] > 5 * noise[0]["r1"] + 1 and a[0]["medr"] < noise[0]["medr"]


def test_evaluate_whole_set_once_when_bag_too_large():
    Z = np.random.default_rng(5).normal(size=(30, 4))
    rows = evaluate(Z, Z, "cosine", 1000, 10, seed=0)
    assert all(r["n_bags"] == 1 and r["bag_size"] == 30 and r["r1"] == 100 for r in rows)


def test_protocol_labels_never_depend_on_the_split_size():
    assert protocols([1000, 10000, 0], 51000) == {"1k": 1000, "10k": 10000, "full": 51000}
    assert protocols([1000, 10000, 0], 5000) == {"1k": 1000, "full": 5000}
    for n in (997, 998, 999):  # a split smaller than every bag is ranked whole, as 'full'
        assert protocols([1000, 10000], n) == {"full": n}
    assert protocols([0, 40], 100) == {"40": 40, "full": 100}


def test_non_finite_scores_never_make_a_hit():
    rng = np.random.default_rng(6)
    Q, G = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    Q[3] = np.nan  # a query whose every similarity is NaN
    G[7, 0] = np.inf  # a gallery item with an infinite score for most queries
    ok = [i for i in range(20) if i not in (3, 7)]
    for r, clean in zip(ranks(Q, G), ranks(np.delete(Q, [3, 7], 0), np.delete(G, [3, 7], 0))):
        assert r[3] == 20 and r[7] == 20  # worst rank, never rank 0 or 1
        assert (r >= 1).all() and (r <= 20).all()
        assert (r[ok] >= clean).all()  # a non-finite candidate can only push the truth down


def test_ranks_in_a_forked_child_after_the_parent_ranked():
    """The ranking threads are kept per process: a child forked after its parent ranked must start its own,
    not wait forever on threads that fork did not copy."""
    import multiprocessing as mp
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(1500, 8)), rng.normal(size=(1500, 8))
    expected = ranks(A, B, chunk=256)
    with mp.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(ranks, (A, B), {"chunk": 256}).get(timeout=60)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
