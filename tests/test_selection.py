"""Choosing a configuration by K-fold cross-validation on train+val, and the train+val refit."""
import shutil

import numpy as np
import pandas as pd
import pytest

from cmr_utils.evaluate import selection

from cmr_utils.evaluate import stage as evaluation

from cmr_utils.fit import kernel, sweep
from cmr_utils.features.store import store
from cmr_utils.io import save_json
from cmr_utils.evaluate.results import CV_KEYS, cv_means, load, main_rows


def entry(root, name, X, recipes, photos=None):
    index = pd.DataFrame({"recipe_id": recipes, "image_id": photos if photos is not None else [""] * len(recipes)})
    store(root / name, X, index, [], {"name": name})
    return str(root / name)


@pytest.fixture
def run(tmp_path):
    """Title text shares a 3-d signal with the photos on train and test, ingredients a weaker one; val,
    by bad luck, says the opposite. Train recipes have 1-3 photos each (rows), the other splits one."""
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(3, 20)), rng.normal(size=(3, 8))
    manifest = {"source": "generated", "encoders": {"image": {"name": "x"}, "text": {"name": "y"}},
                "image": {}, "text": {"title": {}, "ingredients": {}}}
    for split, n in (("train", 400), ("val", 40), ("test", 80)):
        recipes = [f"{split}{i}" for i in range(n)]
        photos = rng.integers(1, 4, n) if split == "train" else np.ones(n, int)
        Z = rng.normal(size=(n, 3))
        rows = np.repeat(np.arange(n), photos)
        X = Z[rows] @ A + rng.normal(size=(len(rows), 20))
        strong, weak = (0.3, 3.0) if split != "val" else (3.0, 0.3)  # val is misleading
        texts = {kind: Z @ B + noise * rng.normal(size=(n, 8))
                 for kind, noise in (("title", strong), ("ingredients", weak))}
        manifest["image"][split] = entry(tmp_path / "f", f"image_{split}", X, [recipes[r] for r in rows],
                                         [f"{recipes[r]}_{j}" for j, r in enumerate(rows)])
        for kind, T in texts.items():
            manifest["text"][kind][split] = entry(tmp_path / "f", f"{kind}_{split}", T, recipes)
    save_json(tmp_path / "run" / "features.json", manifest)
    grid = sweep.grid(models=["exact", "kernel"], latent_dims=[2, 3], shrinkage=[0.1, 0.9],
                      settings={"kernel_landmarks": 60})
    sweep.fit(run_dir=tmp_path / "run", cache_dir=tmp_path / "cache", grid=grid)
    return tmp_path / "run"


def test_kfold_picks_the_planted_best_and_never_reads_test(run):
    for name in ("image_test", "title_test", "ingredients_test"):
        shutil.rmtree(run.parent / "f" / name)  # reading test would fail
    cv = selection.cross_validate(run, scores=["cosine"], bag_sizes=[50], n_bags=2, folds=4)
    configs = 2 * 2 * 2 * 2  # kinds × models × shrinkages × dims
    assert set(cv.fold) == {0, 1, 2, 3} and len(cv) == configs * 4 * 2  # × folds × directions
    assert cv.n_pairs.sum() == configs * 2 * (400 + 40)  # every train+val recipe held out once, one photo each
    assert cv_means(cv).sort_values("medr").text_kind.iloc[0] == "title"


def test_kfold_shows_progress_per_fold_and_configuration(run, capfd):
    """Cross-validation can take minutes on the real sample: its bar moves once per fold and configuration group."""
    selection.cross_validate(run, scores=["cosine"], bag_sizes=[50], n_bags=2, folds=4)
    groups = 2 * 2 * 2  # kinds × models × shrinkages (the latent dims of one group share a fit)
    err = capfd.readouterr().err
    assert "k-fold: 100%|" in err and f" {4 * groups}/{4 * groups} [" in err


def test_evaluate_by_kfold_against_val_and_the_refit_rows(run):
    by_val = evaluation.evaluate(run, scores=["cosine"], bag_sizes=[50], n_bags=2)
    assert set(by_val[by_val.chosen].text_kind) == {"ingredients"}  # misled by val
    by_cv = evaluation.evaluate(run, scores=["cosine"], bag_sizes=[50], n_bags=2, select="kfold", folds=4)
    assert (run / "kfold.csv").exists()
    results = load(run)
    chosen = results[results.chosen]
    assert set(chosen.text_kind) == {"title"} and len(chosen.drop_duplicates(CV_KEYS)) == 1
    refit = results[results.fit_on == "train+val"]
    assert set(refit.split) == {"test"} and refit.chosen.all() and len(refit) == 2  # both directions, main protocol
    assert set(main_rows(results, "test").fit_on) == {"train"}  # tables compare train fits
    train_fit = chosen[(chosen.split == "test") & (chosen.fit_on == "train")]
    assert train_fit.n_pairs.tolist() == refit.n_pairs.tolist() == [80, 80]
    assert by_cv.shape[0] == results.shape[0]
    ranking = selection.kfold_ranking(run, top=3)  # what the report shows: the chosen configuration first
    assert len(ranking) == 3 and ranking.medr.is_monotonic_increasing
    assert (ranking.iloc[0][CV_KEYS] == chosen.iloc[0][CV_KEYS]).all()
    assert "chosen on val" in selection.kfold_ranking(run, select="val").iloc[0, 0]  # a stale kfold.csv is not shown
    with pytest.raises(ValueError, match="select"):
        evaluation.evaluate(run, select="test")


def test_contrastive_through_the_sweep_and_kfold(run):
    """The contrastive head is not nested: the sweep fits each latent dim on its own, k-fold each on every fold."""
    grid = sweep.grid(models=["contrastive"], latent_dims=[2, 3], shrinkage=[0.5])
    fitted = sweep.fit(run_dir=run, cache_dir=run.parent / "cache", grid=grid, progress=False)
    assert len(fitted) == fitted.path.nunique() == 4 and (fitted.n_components == fitted.latent_dim).all()
    top = fitted.groupby("text_kind").top_corr.min()
    assert top["title"] > 0.9 > top["ingredients"]  # the planted signal is strong in titles, weak in ingredients
    cv = selection.cross_validate(run, scores=["cosine"], bag_sizes=[50], n_bags=2, folds=3, progress=False)
    assert set(cv.model) == {"contrastive"} and len(cv) == 2 * 2 * 3 * 2  # kinds × dims × folds × directions
    assert cv_means(cv).sort_values("medr").text_kind.iloc[0] == "title"


def test_kfold_maps_the_kernel_models_once_a_fold_whatever_their_shrinkages(run, monkeypatch):
    built = []
    init = kernel.Nystroem.__init__
    monkeypatch.setattr(kernel.Nystroem, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    selection.cross_validate(run, scores=["cosine"], bag_sizes=[50], n_bags=2, folds=4, progress=False)
    assert len(built) == 2 * 4 * 2  # kinds × folds × views (the fixture's kernel models have two shrinkages)


def test_a_sweep_maps_the_kernel_models_once_a_kind_whatever_their_shrinkages(run, monkeypatch):
    built = []
    init = kernel.Nystroem.__init__
    monkeypatch.setattr(kernel.Nystroem, "__init__", lambda self, *a, **k: built.append(1) or init(self, *a, **k))
    grid = sweep.grid(models=["kernel"], latent_dims=[2, 3], shrinkage=[0.1, 0.5, 0.9], settings={"kernel_landmarks": 60})
    sweep.fit(run_dir=run, cache_dir=run.parent / "fresh", grid=grid, progress=False)
    assert len(built) == 2 * 2  # kinds × views
