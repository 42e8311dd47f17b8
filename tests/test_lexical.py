"""The lexical view: fitted on train text only, deterministic, cached, and stacked beside the neural features."""
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from helpers import NoisyHash

from cmr_utils.features import store as F
from cmr_utils.features import lexical
from cmr_utils import run_dir as rd
from cmr_utils.evaluate import selection
from cmr_utils.evaluate import stage as evaluation
from cmr_utils.features import extract as extraction
from cmr_utils.features import images, text
from cmr_utils.fit import sweep
from cmr_utils.data.recipe1m import SPLITS, Recipe1M
from cmr_utils.features.lexical import Lexical

WORD = "zanzibarquux"


class Stub(NoisyHash):
    """Stands in for both neural encoders in ``extraction.run``: hash features, whatever it is built with."""

    def __init__(self, *args, **kwargs):
        super().__init__()


@pytest.fixture
def corpus(demo_root, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(demo_root, root)
    return Recipe1M(root)


def _x(entry) -> np.ndarray:
    return F.Features.load(entry).X[:]


def test_fitted_on_train_text_only(corpus, tmp_path):
    before, model = lexical.features(corpus, tmp_path / "a", 16)
    for r in corpus.split("test")[:3]:  # a word only test recipes use
        r.ingredients.append(f"2 cups {WORD}")
    after, refitted = lexical.features(corpus, tmp_path / "b", 16)  # a fresh cache: fitted again
    assert refitted.name == model.name and WORD not in Lexical.load(refitted).words
    np.testing.assert_array_equal(_x(after["train"]), _x(before["train"]))
    assert not np.array_equal(_x(after["test"]), _x(before["test"]))  # test rows are mapped, with what train knows
    train = corpus.split("train")
    expected = Lexical.fit([lexical.text(r) for r in train], 16).transform([lexical.text(r) for r in train])
    np.testing.assert_array_equal(_x(after["train"]), expected)
    for r in train[:3]:  # the control: the same word in train recipes does get a column
        r.ingredients.append(f"2 cups {WORD}")
    _, with_word = lexical.features(corpus, tmp_path / "b", 16)
    assert with_word.name != model.name and WORD in Lexical.load(with_word).words


def test_deterministic_and_the_stored_model_maps_as_extraction_did(corpus, tmp_path):
    one, model = lexical.features(corpus, tmp_path / "a", 16)
    two, _ = lexical.features(corpus, tmp_path / "b", 16)
    for split in SPLITS:
        assert (one[split] / "X.npy").read_bytes() == (two[split] / "X.npy").read_bytes()
        feats = F.Features.load(one[split])
        assert feats.X.shape[1] == feats.meta["components"] == 16 and feats.meta["encoder"]["name"] == "lexical"
    test = corpus.split("test")
    np.testing.assert_array_equal(Lexical.load(model).transform([lexical.text(r) for r in test]), _x(one["test"]))


def test_cached_model_and_entries_are_reused(corpus, tmp_path, monkeypatch):
    fits, fit = [], Lexical.fit
    monkeypatch.setattr(Lexical, "fit", classmethod(lambda cls, texts, dims, ngrams=1: fits.append(dims)
                                                    or fit(texts, dims, ngrams)))
    first, _ = lexical.features(corpus, tmp_path, 16)
    assert fits == [16]
    assert lexical.features(corpus, tmp_path, 16)[0] == first and fits == [16]
    test = _x(first["test"])
    shutil.rmtree(first["test"])  # a lost entry is mapped again by the stored model, not refitted
    np.testing.assert_array_equal(_x(lexical.features(corpus, tmp_path, 16)[0]["test"]), test)
    assert fits == [16]
    lexical.features(corpus, tmp_path, 8)
    assert fits == [16, 8]  # other settings: another model


def test_title_words_and_word_pairs_on_request(corpus, tmp_path):
    for r in corpus.split("train")[:3]:  # a word only titles use
        r.title = f"{WORD} pie"
    plain, plain_model = lexical.features(corpus, tmp_path, 16)
    titled, titled_model = lexical.features(corpus, tmp_path, 16, parts=("title", "ingredients", "instructions"))
    assert WORD not in Lexical.load(plain_model).words and WORD in Lexical.load(titled_model).words
    assert F.Features.load(titled["train"]).meta["encoder"]["parts"] == ["title", "ingredients", "instructions"]
    paired, paired_model = lexical.features(corpus, tmp_path, 16, ngrams=2)
    words = Lexical.load(paired_model).words
    assert any(" " in w for w in words) and not any(" " in w for w in Lexical.load(plain_model).words)
    test = corpus.split("test")  # the stored model maps word pairs as extraction did
    np.testing.assert_array_equal(Lexical.load(paired_model).transform([lexical.text(r) for r in test]),
                                  _x(paired["test"]))
    assert len({plain_model, titled_model, paired_model}) == 3  # each setting its own model
    with pytest.raises(ValueError, match="lexical_parts must be distinct text kinds"):
        lexical.features(corpus, tmp_path, 16, parts=("all",))


def test_recipe_without_ingredients_or_instructions_is_skipped(corpus, tmp_path):
    r = corpus.split("val")[0]
    r.ingredients, r.instructions = [], []
    feats = F.Features.load(lexical.features(corpus, tmp_path, 16)[0]["val"])
    assert r.id not in set(feats.index.recipe_id)
    assert feats.skipped.values.tolist() == [[r.id, "empty ingredients and instructions"]]


@pytest.fixture
def extract(corpus, tmp_path, monkeypatch):
    """``extraction.extract`` on the corpus with hash encoders; returns (run folder, manifest)."""
    monkeypatch.setattr(images, "ImageEncoder", Stub)
    monkeypatch.setattr(text, "TextEncoder", Stub)

    def run(name, **kwargs):
        run_dir = tmp_path / name
        return run_dir, extraction.extract(run_dir=run_dir, cache_dir=tmp_path / "cache", data_dir=corpus.root,
                                       progress=False, **kwargs)
    return run


def test_stacked_concat_keeps_the_neural_blocks_and_adds_the_lexical_one(extract, monkeypatch):
    plain_dir, plain = extract("plain", text_kinds=["concat"])
    run_dir, stacked = extract("stacked", text_kinds=["concat", "lexical"], lexical_dims=16,
                               concat_parts=["title", "ingredients", "instructions", "lexical"])
    assert "lexical" not in plain["encoders"] and "lexical_model" not in plain  # off by default
    assert rd.RunDir(plain_dir).labels("concat")["text_encoder"] == "hash"
    assert stacked["encoders"]["lexical"]["dims"] == 16
    for split in SPLITS:
        _, neural, index = rd.RunDir(plain_dir).pairs("concat", split)
        _, both, both_index = rd.RunDir(run_dir).pairs("concat", split)
        _, lex, _ = rd.RunDir(run_dir).pairs("lexical", split)
        neural, both, lex = neural[:], both[:], lex[:]
        assert both.shape[1] == neural.shape[1] + 16 == 3 * Stub.dim + 16
        pd.testing.assert_frame_equal(both_index, index)
        np.testing.assert_array_equal(both[:, :3 * Stub.dim], neural)
        np.testing.assert_array_equal(both[:, 3 * Stub.dim:], lex)
    # the next stages take the stacked and the lexical kinds like any other
    sweep.fit(run_dir=run_dir, cache_dir=run_dir.parent / "cache", grid=sweep.grid(models=["ridge"], latent_dims=[2]))
    results = evaluation.evaluate(run_dir=run_dir, scores=["cosine"], bag_sizes=[5], n_bags=2, progress=False)
    assert results.groupby("text_kind").text_encoder.unique().map(list).to_dict() == {
        "concat": ["hash + lexical"], "lexical": ["lexical"]}
    # a free text is mapped into each kind's features as extraction mapped the recipes
    monkeypatch.setattr(extraction, "encoder_like", lambda cls, cfg, **kwargs: Stub())
    words = ["salmon", "rice pie"]
    lex = Lexical.load(stacked["lexical_model"]).transform(words)
    np.testing.assert_array_equal(extraction.embed_texts(run_dir, words, "lexical"), lex)
    np.testing.assert_array_equal(extraction.embed_texts(run_dir, words, "concat"),
                                  np.hstack([Stub().encode(words)] * 3 + [lex]))


def test_concat_parts_are_checked(extract):
    with pytest.raises(ValueError, match="concat_parts"):
        extract("bad", text_kinds=["concat"], concat_parts=["title", "title"])


def test_kfold_refits_the_lexical_view_without_each_folds_recipes(extract, corpus, monkeypatch):
    """A fold ranks recipes whose words its SVD never read, as val and test are ranked: the view is
    refitted per fold on the other train+val recipes, for the lexical kind and a concat that stacks it."""
    run_dir, _ = extract("stacked", text_kinds=["concat", "lexical"], lexical_dims=16,
                         concat_parts=["title", "ingredients", "instructions", "lexical"])
    sweep.fit(run_dir=run_dir, cache_dir=run_dir.parent / "cache", grid=sweep.grid(models=["ridge"], latent_dims=[2]))
    fits, fit = [], Lexical.fit.__func__
    monkeypatch.setattr(Lexical, "fit", classmethod(lambda cls, texts, *a, **k: fits.append(texts) or fit(cls, texts, *a, **k)))
    selection.cross_validate(run_dir, scores=["cosine"], bag_sizes=[5], n_bags=2, folds=3, progress=False)

    run = rd.RunDir(run_dir)
    words = Counter(t for s in ("train", "val") for r in corpus.split(s) if (t := lexical.text(r)))
    ranked = Counter(lexical.text(r) for s in ("train", "val") for r in corpus.split(s)
                     if r.id in set(run.query_set("train")[0] + run.query_set("val")[0]))
    assert len(fits) == 2 * 3  # two kinds with the view × three folds
    for kind_fits in (fits[:3], fits[3:]):
        left_out = [words - Counter(texts) for texts in kind_fits]
        assert all(left_out) and sum(left_out, Counter()) == ranked  # each fold's recipes, and only they, left out
