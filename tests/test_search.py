"""Search a run's test set by photo or text: right answers on the demo, clear errors, and fast at Recipe1M size."""
import time

import numpy as np
import pandas as pd
import pytest
from test_visualize import demo_run

from cmr_utils import search, stages


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return demo_run(tmp_path_factory)


@pytest.mark.slow
def test_test_photos_find_their_recipe(run_dir):
    gallery = search.load(run_dir)
    photos = list(gallery.index.path[:20])
    np.testing.assert_allclose(gallery.embed_photos(photos[:2]), gallery.photos[:2], atol=1e-4)  # same encoder
    found = sum(hits.match.any() for hits in gallery.search(photos, k=10))
    print(f"{found} of 20 demo test photos have their recipe in the top 10 (of {len(gallery.index)} test recipes)")
    assert found >= 10


@pytest.mark.slow
def test_cli_answers_photos_and_texts_from_the_cache(run_dir, capsys, monkeypatch):
    photo = search.load(run_dir).index.path[0]
    monkeypatch.setattr(stages, "space", lambda *a: pytest.fail("the cached test latents were not used"))
    assert search.main([str(run_dir), photo, "tomato soup", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "→ recipes" in out and "recipe_id" in out and "→ photos" in out and ".jpg" in out
    assert search.main([str(run_dir), "tomato soup", "--to", "recipes", "--kind", "instructions"]) == 0
    assert "instructions: " in capsys.readouterr().out
    assert search.main([str(run_dir), "x", "--kind", "nope"]) == 1
    assert "text kind 'nope' is not in this run" in capsys.readouterr().err


def gallery(n: int, dim: int, encoders=None) -> search.Gallery:
    """A synthetic gallery of ``n`` pairs in a ``dim``-dimensional space."""
    rng = np.random.default_rng(0)
    unit = lambda Z: (Z / np.linalg.norm(Z, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    index = pd.DataFrame({"recipe_id": [f"r{i}" for i in range(n)], "image_id": "", "title": "", "path": ""})
    return search.Gallery(None, {"text_kind": "title", "score": "cosine"}, None,
                          encoders or {"image": {"name": "given"}, "text": {"name": "given"}},
                          unit(rng.normal(size=(n, dim))), unit(rng.normal(size=(n, dim))), index)


def test_top_k_is_exact_and_fast_at_recipe1m_size():
    g = gallery(51_000, 50)
    queries = g.photos[:20]
    g.top(queries[0], 10)  # warm up
    t0 = time.perf_counter()
    found = [g.top(q, 10) for q in queries]
    per_query = (time.perf_counter() - t0) / len(queries)
    print(f"top-10 over 51,000 test recipes: {1000 * per_query:.1f} ms per query")
    assert per_query < 1.0
    rows, scores = found[0]
    exact = np.argsort(-(g.recipes @ queries[0]), kind="stable")[:10]
    assert list(rows[0]) == list(exact) and np.all(np.diff(scores[0]) <= 0)


def test_given_features_say_which_modality_has_no_encoder(tmp_path):
    g = gallery(10, 4)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not read")
    with pytest.raises(ValueError, match="given image features: there is no image encoder"):
        g.search([str(photo)])
    assert search.target(str(photo)) == "recipes" and search.target("x" * 5000) == "photos"
