"""Search a run's test set by photo or text: right answers on the demo, clear errors, and fast at Recipe1M size."""
import dataclasses
import io
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cmr_utils import cli
from cmr_utils.report import search
from cmr_utils.run_dir import RunDir
from cmr_utils import run_dir as rd
from cmr_utils.features import extract as extraction
from cmr_utils.evaluate import stage as evaluation
from cmr_utils.features.images import ImageEncoder
from cmr_utils.features.text import TextEncoder


@pytest.fixture
def run_dir(demo_run):
    return demo_run


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
    monkeypatch.setattr(evaluation, "space", lambda *a: pytest.fail("the cached test latents were not used"))
    assert cli.main(["search", str(run_dir), photo, "tomato soup", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "→ recipes" in out and "recipe_id" in out and "→ photos" in out and ".jpg" in out
    assert cli.main(["search", str(run_dir), "tomato soup", "--to", "recipes", "--kind", "instructions"]) == 0
    assert "instructions: " in capsys.readouterr().out
    assert cli.main(["search", str(run_dir), "x", "--kind", "nope"]) == 1
    assert "text kind 'nope' is not in this run" in capsys.readouterr().err


@pytest.mark.slow
def test_the_encoders_load_once_per_process_and_print_nothing_stray(run_dir, capfd, monkeypatch):
    """Loading an encoder takes seconds, a query milliseconds (benchmarks/query_latency.py): each encoder loads
    once per process, without its loading bar; --interactive reads one query a line."""
    extraction.encoder_like.cache_clear()
    loads = []
    for cls in (ImageEncoder, TextEncoder):
        like = cls.like.__func__
        monkeypatch.setattr(cls, "like", classmethod(lambda c, *a, _like=like, **k: loads.append(c.__name__)
                                                     or caches.append(k["cache_dir"]) or _like(c, *a, **k)))
    caches = []
    gallery = search.load(run_dir)
    photo = gallery.index.path[0]
    gallery.search(["tomato soup", photo])
    assert sorted(loads) == ["ImageEncoder", "TextEncoder"]
    assert caches == [str(RunDir(run_dir).cache)] * 2  # the run's cache: its converted encoders, not a second copy
    for query in ("chocolate cake", gallery.index.path[1]):
        gallery.search([query])
    monkeypatch.setattr("sys.stdin", io.StringIO(f"chocolate cake\n{photo}\n\nnot read\n"))
    capfd.readouterr()
    assert cli.main(["search", str(run_dir), "tomato soup", "--interactive", "--k", "3"]) == 0
    out, err = capfd.readouterr()
    assert sorted(loads) == ["ImageEncoder", "TextEncoder"]  # later queries, and the CLI, reuse them
    assert err == "" and "Loading" not in out
    assert "'tomato soup' → photos" in out and "'chocolate cake' → photos" in out and f"{photo!r} → recipes" in out
    assert "not read" not in out


def gallery(n: int, dim: int, encoders=None) -> search.Gallery:
    """A synthetic gallery of ``n`` pairs in a ``dim``-dimensional space."""
    rng = np.random.default_rng(0)
    unit = lambda Z: (Z / np.linalg.norm(Z, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    index = pd.DataFrame({"recipe_id": [f"r{i}" for i in range(n)], "image_id": "", "title": "", "path": ""})
    return search.Gallery(None, {"text_kind": "title", "score": "cosine"}, None,
                          encoders or {"image": {"name": "given"}, "text": {"name": "given"}},
                          unit(rng.normal(size=(n, dim))), unit(rng.normal(size=(n, dim))), index)


def test_top_k_is_exact_at_recipe1m_size():
    """(Its speed, against a full sort: benchmarks/search_latency.py.)"""
    g = gallery(51_000, 50)
    for q in g.photos[:3]:
        (rows,), (scores,) = g.top(q, 10)
        exact = np.argsort(-(g.recipes @ q), kind="stable")[:10]
        assert list(rows) == list(exact) and np.array_equal(scores, (g.recipes @ q)[exact])
    (rows,), _ = g.top(g.photos[:2].sum(0), 10, to="photos")  # sums of latent vectors, and the other way
    assert list(rows) == list(np.argsort(-(g.photos @ g.photos[:2].sum(0)), kind="stable")[:10])


def test_the_gallery_key_is_what_the_features_and_models_are_not_their_paths():
    manifest = {"data": {"root": "/data", "fingerprint": "f"}, "encoders": {},
                "image": {"test": "/abs/cache/features/i1"}, "text": {"title": {"test": "/abs/cache/features/t1"}}}
    models = [{"text_kind": "title", "path": "/abs/cache/models/m1.joblib"}]
    relative = {**manifest, "image": {"test": "../cache/features/i1"}, "text": {"title": {"test": "../cache/features/t1"}}}
    same = search._stamp({"score": "cosine"}, relative, [{**models[0], "path": "../cache/models/m1.joblib"}])
    assert search._stamp({"score": "cosine"}, manifest, models) == same
    other = {**manifest, "image": {"test": "/abs/cache/features/i2"}}
    assert search._stamp({"score": "cosine"}, other, models) != same


def test_given_features_say_which_modality_has_no_encoder(tmp_path):
    g = gallery(10, 4)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not read")
    with pytest.raises(ValueError, match="given image features: there is no image encoder"):
        g.search([str(photo)])
    assert search.target(str(photo)) == "recipes" and search.target("x" * 5000) == "photos"


@pytest.mark.slow
def test_a_hubness_corrected_choice_searches_as_it_was_evaluated(run_dir, tmp_path, monkeypatch):
    """A run that chose "cosine+csls" ranks search results by the corrected score: each item less its CSLS
    penalty from the training bank (photos by its texts, recipes by its images), kept in the cached gallery."""
    from cmr_utils.evaluate.retrieval import normalize, penalty
    hub_run = tmp_path / "hub"
    shutil.copytree(run_dir, hub_run, ignore=shutil.ignore_patterns("search"))
    results = pd.read_csv(hub_run / "results.csv", dtype={"chosen": bool})
    results.loc[results.chosen, "score"] = "cosine+csls"
    results.to_csv(hub_run / "results.csv", index=False)
    gallery = search.load(hub_run)
    plain = search.load(run_dir, gallery.config["text_kind"])
    Bi, Bt = (normalize(z, "cosine") for z in gallery.space.transform(*rd.RunDir(hub_run).pairs(gallery.config["text_kind"], "train")[:2]))
    np.testing.assert_allclose(gallery.penalties["photos"], penalty(gallery.photos, Bt, "csls"), rtol=1e-6)
    np.testing.assert_allclose(gallery.penalties["recipes"], penalty(gallery.recipes, Bi, "csls"), rtol=1e-6)
    z = gallery.embed_texts(["tomato soup"])
    rows, scores = gallery.top(z, k=len(gallery.index), to="photos")
    expected = (z @ gallery.photos.T)[0] - gallery.penalties["photos"]
    np.testing.assert_allclose(scores[0], expected[rows[0]], rtol=1e-5, atol=1e-6)
    assert (np.diff(scores[0]) <= 1e-7).all() and not plain.penalties
    assert np.array_equal(search.load(hub_run).penalties["recipes"], gallery.penalties["recipes"])  # from the cache
    # a gallery cached before penalties were stored (version 1) is rebuilt, not searched without them
    current = search.GALLERY_VERSION
    monkeypatch.setattr(search, "GALLERY_VERSION", current - 1)
    path, hub = hub_run / "search" / f"{gallery.config['text_kind']}.npz", rd.RunDir(hub_run)
    stale = search._stamp(gallery.config, hub.manifest, hub.models)
    search._write_gallery(path, dataclasses.replace(gallery, penalties={}), stale)
    assert not search.load(hub_run).penalties
    monkeypatch.setattr(search, "GALLERY_VERSION", current)
    assert np.array_equal(search.load(hub_run).penalties["photos"], gallery.penalties["photos"])


@pytest.mark.slow
def test_a_cached_gallery_is_rebuilt_when_the_choice_or_its_model_changes(run_dir, tmp_path, monkeypatch):
    """The gallery cache is keyed by what it was made from: a rerun choosing another configuration, or a refit
    that leaves another model file, rebuilds it rather than serve the stale one; an unchanged run reads it."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("search"))
    built, space = [], evaluation.space
    monkeypatch.setattr(evaluation, "space", lambda *a: built.append(a[1]) or space(*a))
    first = search.load(run)
    assert np.array_equal(search.load(run).photos, first.photos) and len(built) == 1  # the second from the cache
    c = first.config
    # another configuration chosen (03_evaluate rerun): the gallery is rebuilt in its latent dimension
    results = pd.read_csv(run / "results.csv", dtype={"chosen": bool, "protocol": str})
    other = 16 if c["latent_dim"] == 2 else 2
    results["chosen"] = ((results.text_kind == c["text_kind"]) & (results.model == c["model"])
                         & (results.shrinkage == c["shrinkage"]) & (results.latent_dim == other)
                         & (results.score == c["score"]))
    assert results.chosen.any()
    results.to_csv(run / "results.csv", index=False)
    second = search.load(run)
    assert len(built) == 2 and second.config["latent_dim"] == other and second.photos.shape[1] == other
    # the chosen model refitted (02_fit rerun: models.json names another file): rebuilt from that file,
    # here another model's fit of the same kind
    models = json.loads((run / "models.json").read_text())
    mine, = [m for m in models if [m[k] for k in ("text_kind", "model", "shrinkage", "latent_dim")]
             == [c["text_kind"], c["model"], c["shrinkage"], other]]
    theirs = next(m for m in models if m["text_kind"] == c["text_kind"] and m["path"] != mine["path"])
    refit = run / "refit.npz"
    shutil.copyfile(theirs["path"], refit)
    mine["path"] = str(refit)
    (run / "models.json").write_text(json.dumps(models))
    third = search.load(run)
    assert len(built) == 3 and not np.allclose(third.photos, second.photos)
    expected, (X, Y, _) = space(run, second.config)
    np.testing.assert_allclose(third.photos, third.normalize(expected.transform(X, Y)[0]), rtol=1e-5, atol=1e-6)
    assert np.array_equal(search.load(run).photos, third.photos) and len(built) == 3
