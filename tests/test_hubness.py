"""Hubness corrections ("cosine+csls", "+isoftmax"): hand-computed penalties, ranks on penalised scores,
a bank of training queries only, and the stage that feeds them."""
import math

import numpy as np
import pytest

from cmr_utils.evaluate import retrieval
from cmr_utils.evaluate.retrieval import evaluate, normalize, penalty, ranks


def test_penalties_equal_hand_computed_values():
    r = math.sqrt(0.5)
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [r, r]])
    bank = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [r, r]])
    # csls: half the mean of the best min(10, 4) = 4 scores with the bank
    np.testing.assert_allclose(penalty(gallery, bank, "csls"),
                               [(1 + 1 + 0 + r) / 8, (0 + 0 + 1 + r) / 8, (r + r + r + 1) / 8], rtol=1e-6)
    b = retrieval.ISOFTMAX_BETA
    lse = [math.log(2 * math.exp(b) + 1 + math.exp(b * r)) / b, math.log(2 + math.exp(b) + math.exp(b * r)) / b,
           math.log(3 * math.exp(b * r) + math.exp(b)) / b]
    np.testing.assert_allclose(penalty(gallery, bank, "isoftmax"), lse, rtol=1e-6)
    with pytest.raises(ValueError, match="csls"):
        penalty(gallery, bank, "mean")


def test_csls_keeps_only_the_k_best_bank_scores():
    gallery = np.array([[1.0, 0.0]])
    bank = np.vstack([np.tile([1.0, 0.0], (retrieval.CSLS_K, 1)), np.tile([-1.0, 0.0], (30, 1))])
    assert penalty(gallery, bank, "csls")[0] == pytest.approx(0.5)  # the 30 opposite queries are not among the 10 best


def brute(Q, G, p):
    """Reference: 1-based rank of the truth under scores Q Gᵀ − p (gallery penalties), ties against the query."""
    S = Q @ G.T - p[None, :]
    return np.array([(row >= row[i]).sum() for i, row in enumerate(S)])


@pytest.mark.parametrize("chunk", [1, 5, 512])
def test_penalised_ranks_match_brute_force_both_ways(chunk):
    rng = np.random.default_rng(0)
    A, B = (normalize(rng.normal(size=(40, 6)), "cosine") for _ in range(2))
    pa, pb = rng.uniform(0, 0.5, 40), rng.uniform(0, 0.5, 40)
    a2b, b2a = ranks(A, B, pa, pb, chunk=chunk)
    np.testing.assert_array_equal(a2b, brute(A, B, pb))
    np.testing.assert_array_equal(b2a, brute(B, A, pa))


def hub_case(n=20, bank_size=30):
    """Test pairs (image i, text i), i = 1..n, whose images all score text 0 (the hub) above their own text,
    as the training images of the bank do; the hub's own image scores it alone."""
    e = np.eye(1 + n + bank_size)
    texts = e[:n + 1]
    images = np.vstack([e[0], 0.9 * e[0] + 0.8 * e[1:n + 1]])
    bank_images = 0.9 * e[0] + 0.8 * e[n + 1:]  # pairs of the bank: their texts elsewhere
    return images, texts, (bank_images, e[n + 1:])


def test_a_training_bank_demotes_the_hub():
    images, texts, bank = hub_case()
    plain = ranks(normalize(images, "cosine"), normalize(texts, "cosine"))[0]
    assert plain[0] == 1 and (plain[1:] == 2).all()  # the hub beats every truth
    for hub in retrieval.HUBNESS:
        fixed = evaluate(images, texts, f"cosine+{hub}", 0, 1, 0, bank=bank)[0]
        assert fixed["r1"] == 100.0 and fixed["medr"] == 1.0, hub
    assert evaluate(images, texts, "cosine", 0, 1, 0)[0]["r1"] == pytest.approx(100 / 21)


def test_a_query_rank_reads_no_other_test_query():
    """Transductive CSLS would penalise the gallery by the test queries; a bank of training queries does not."""
    rng = np.random.default_rng(2)
    Zi, Zt, bank = hub_case()
    other = Zi.copy()
    other[1:] = rng.normal(size=other[1:].shape)  # every test image but the first replaced
    for hub in retrieval.HUBNESS:
        pb = [penalty(normalize(Zt, "cosine"), normalize(bank[0], "cosine"), hub)] * 2
        first = [ranks(normalize(q, "cosine"), normalize(Zt, "cosine"), None, p)[0][0] for q, p in zip((Zi, other), pb)]
        assert first[0] == first[1]
    with pytest.raises(ValueError, match="bank"):
        evaluate(Zi, Zt, "cosine+csls", 0, 1, 0)
