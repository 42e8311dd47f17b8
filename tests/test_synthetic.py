import re

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from cmr_utils import cli
from cmr_utils.data import given
from cmr_utils.evaluate import retrieval
from cmr_utils.data import synthetic
from cmr_utils.data.recipe1m import SPLITS, TEXT_KINDS, Recipe1M
from cmr_utils.io import file_digest
from cmr_utils.fit.linear import RidgeCCA

SCALE = 0.003
RECIPE1M = {"train": 238_000, "val": 51_000, "test": 51_000}  # Recipe1M's recipes with photos


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return synthetic.generate(tmp_path_factory.mktemp("synthetic") / "corpus", scale=SCALE, seed=5, progress=False)


@pytest.fixture(scope="module")
def ds(corpus):
    return Recipe1M(corpus, need_files=False)


def digests(root):
    return {p.relative_to(root): file_digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_recipe1m_layout_without_photos(corpus, ds):
    assert not (corpus / "images").exists()
    assert ds.skipped.empty
    counts = ds.counts()
    for split, n in RECIPE1M.items():
        assert abs(counts.loc[split, "recipes"] - n * SCALE) <= 1
    assert all(len(r.images) >= 1 for r in ds.recipes.values())
    per_recipe = counts.loc["train", "images"] / counts.loc["train", "recipes"]
    assert 2.3 < per_recipe < 2.9
    ids = [r.id for r in ds.recipes.values()] + [im for r in ds.recipes.values() for im in r.images]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids[:len(ds.recipes)])
    assert all(re.fullmatch(r"[0-9a-f]{10}\.jpg", i) for i in ids[len(ds.recipes):])
    assert all(r.title and r.ingredients and r.instructions for r in ds.recipes.values())


def test_tiny_scale_keeps_every_split():
    assert all(n >= 3 for n in synthetic.split_sizes(1e-9).values())


def test_given_files_cover_each_split_in_loader_order(corpus, ds):
    for split in SPLITS:
        recipes = ds.split(split)
        ids, X = given.read(corpus / "given" / f"image_{split}.npy")
        expected = [im for r in recipes for im in (r.images if split == "train" else r.images[:1])]
        assert ids == expected and X.shape == (len(expected), 2048)
        for kind in TEXT_KINDS:
            ids, X = given.read(corpus / "given" / f"text_{kind}_{split}.npy")
            assert ids == [r.id for r in recipes] and X.shape == (len(recipes), 768)


def test_same_seed_same_bytes_other_seed_other_corpus(tmp_path, corpus):
    again = synthetic.generate(tmp_path / "again", scale=SCALE, seed=5, progress=False)
    other = synthetic.generate(tmp_path / "other", scale=SCALE, seed=6, progress=False)
    assert digests(again) == digests(corpus)
    differ = {name for name, d in digests(other).items() if digests(corpus).get(name) != d}
    assert differ == set(digests(corpus))


def test_planted_signal_is_learnable_but_not_perfect(corpus, ds):
    """Ridge CCA on train finds the recipe of a test photo far above chance, better from all text than from titles."""
    folder = corpus / "given"
    photos_per_recipe = [len(r.images) for r in ds.split("train")]
    X, X_test = np.load(folder / "image_train.npy"), np.load(folder / "image_test.npy")
    medr = {}
    for kind in ("title", "all"):
        Y = np.repeat(np.load(folder / f"text_{kind}_train.npy"), photos_per_recipe, axis=0)
        with threadpool_limits(1):  # a small eigenproblem: BLAS threads only thrash on a busy machine
            space = RidgeCCA(n_components=20, shrinkage=0.5).fit(X, Y)
        Z_img, Z_txt = space.transform(X_test, np.load(folder / f"text_{kind}_test.npy"))
        r = retrieval.ranks(retrieval.normalize(Z_img, "cosine"), retrieval.normalize(Z_txt, "cosine"))[0]
        medr[kind] = retrieval.metrics(r)["medr"]
        assert retrieval.metrics(r)["r1"] < 60
    n_test = len(X_test)
    assert 1 < medr["all"] < n_test / 8
    assert medr["all"] < medr["title"] < n_test / 2


def test_ensure_generates_once_and_cli_prints_it(tmp_path, capsys):
    cli.main(["synthetic", "--scale", str(SCALE), "--seed", "1", "--cache-dir", str(tmp_path)])
    root = synthetic.ensure(tmp_path, scale=SCALE, seed=1, progress=False)
    assert capsys.readouterr().out.strip() == str(root)
    assert root.parent == tmp_path / "synthetic" and (root / "given" / "image_train.npy").is_file()
    stamp = (root / "layer1.json").stat().st_mtime_ns
    assert synthetic.ensure(tmp_path, scale=SCALE, seed=1, progress=False) == root
    assert (root / "layer1.json").stat().st_mtime_ns == stamp
