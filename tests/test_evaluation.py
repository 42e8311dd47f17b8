"""One query set per split: every text kind is ranked on the same recipes, bags and protocol labels."""
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import NoisyHash

from cmr_utils.features import store as F
from cmr_utils.report import plots
from cmr_utils import run_dir as rd
from cmr_utils.evaluate import ranking, retrieval
from cmr_utils.evaluate import selection
from cmr_utils.evaluate import stage as evaluation
from cmr_utils.fit import sweep
from cmr_utils.data.recipe1m import SPLITS, Recipe1M
from cmr_utils.io import save_json
from cmr_utils.evaluate.results import best_per_kind, chosen_rows, load, main_rows


@pytest.fixture
def run_dir(demo_root, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(demo_root, root)
    ds = Recipe1M(root)
    lacking = ds.split("test")[0].id
    ds.recipes[lacking].instructions = []  # one test recipe without instructions, as in real data
    enc, cache = NoisyHash(), tmp_path / "cache"
    manifest = {"data": {"root": str(root)}, "source": "generated",
                "encoders": {"image": {"name": "hash"}, "text": {"name": "hash"}},
                "image": {s: str(F.image_features(ds, s, enc, cache, "fp", all_images=(s == "train"))) for s in SPLITS},
                "text": {k: {s: str(F.text_features(ds, s, k, enc, cache, "fp")) for s in SPLITS}
                         for k in ("title", "instructions")}}
    run = tmp_path / "run"
    save_json(run / "features.json", manifest)
    sweep.fit(run_dir=run, cache_dir=cache, grid=sweep.grid(models=["ridge", "cca"], latent_dims=[2, 3], shrinkage=[0.5]))
    evaluation.evaluate(run_dir=run, scores=["correlation", "cosine"], bag_sizes=[5, 1000, 0], n_bags=3)
    return run, lacking, ds


def test_every_kind_is_ranked_on_one_query_set(run_dir):
    run, lacking, ds = run_dir
    results = load(run)
    for split, protocols in (("val", ["5"]), ("test", ["5", "full"])):  # val only chooses: its main protocol
        here = results[results.split == split]
        assert here.groupby("text_kind").n_pairs.first().nunique() == 1  # same pairs for title and instructions
        assert set(here.protocol) == set(protocols)  # labels from the requested sizes, never a pair count
        for _, grp in here.groupby(["text_kind", "model", "latent_dim", "score", "direction", "fit_on"]):
            assert sorted(grp.protocol) == protocols
    test = results[results.split == "test"]
    assert test.n_pairs.iloc[0] == len(ds.split("test")) - 1
    dropped = pd.read_csv(run / "dropped.csv", dtype=str)
    assert dropped.values.tolist() == [["test", lacking, "no instructions text"]]
    summary = rd.RunDir(run).query_summary()
    assert summary.loc["test", "dropped"] == 1 and summary.loc["test", "query pairs"] == test.n_pairs.iloc[0]


def test_selection_tables_and_figures_keep_every_kind(run_dir):
    run, _, _ = run_dir
    results = load(run)
    assert set(main_rows(results, "test").protocol) == {"5"}
    assert set(best_per_kind(results).index) == {"title", "instructions"}
    assert set(plots.paper_vs_chosen(results).reset_index().text_kind) == {"title", "instructions"}
    assert results.chosen.any() and set(results[results.chosen].split) == {"val", "test"}
    rows = chosen_rows(results)  # as read: val, test, then the train+val refit on test
    assert list(dict.fromkeys(zip(rows.split, rows.fit_on))) == [("val", "train"), ("test", "train"),
                                                                   ("test", "train+val")]


def test_each_model_is_shown_at_its_best_on_val_with_its_test_numbers(run_dir):
    results = load(run_dir[0])
    table = plots.models_compared(results)
    val, test = main_rows(results, "val", "im2recipe"), main_rows(results, "test", "recipe2im")
    assert sorted(table.index.get_level_values("model")) == ["cca", "ridge"]
    for (model, kind, shrinkage, dim, score), row in table.iterrows():
        assert row["val 5", "image→recipe", "medR"] == round(val[val.model == model].medr.min(), 1)
        same = test[(test.model == model) & (test.text_kind == kind) & (test.latent_dim == dim) & (test.score == score)]
        assert row["test 5", "recipe→image", "R@10"] == round(same.r10.item(), 1)


def test_a_hubness_corrected_score_runs_through_choice_kfold_and_refit(run_dir, monkeypatch):
    """Its bank is the fit's own training pairs (train; the other folds; train+val), never val or test."""
    run, _, ds = run_dir
    before = load(run)
    train, seen = len(rd.RunDir(run).pairs("title", "train")[0]), []
    real = ranking.query_bank
    for module in (evaluation, selection):
        monkeypatch.setattr(module, "query_bank", lambda parts, seed: seen.append(sum(len(p[0]) for p in parts)) or
                            real(parts, seed))
    evaluation.evaluate(run_dir=run, scores=["cosine", "cosine+csls"], bag_sizes=[5, 1000, 0], n_bags=3,
                    select="kfold", folds=3)
    after, cv = load(run), pd.read_csv(run / "kfold.csv")
    assert set(cv.score) == {"cosine", "cosine+csls"}
    for split in ("val", "test"):
        assert set(after[after.split == split].score) == {"cosine", "cosine+csls"}
    keys = ["text_kind", "model", "latent_dim", "split", "protocol", "direction", "fit_on"]
    plain = [d[(d.score == "cosine") & (d.fit_on == "train")].set_index(keys).medr.sort_index() for d in (before, after)]
    pd.testing.assert_series_equal(*plain)  # the base score's numbers do not move
    val = len(rd.RunDir(run).pairs("title", "val")[0])
    folds = seen[2:2 + 2 * 3]  # after train's bank per kind (title, instructions): each kind's 3 folds' rest
    assert seen[:2] == [train, train] and max(folds) < train + val  # each pair is held out in one fold
    assert sum(folds[:3]) >= 2 * (train + val) and sum(folds[3:]) >= 2 * (train + val)
    best = after[after.chosen]
    assert seen[8:] == ([train + val] if best.score.iloc[0] == "cosine+csls" else [])  # the refit's train+val


def test_the_weighted_score_ranks_by_canonical_correlation_weighted_vectors(run_dir):
    """``weighted`` through the stage: each model's rows are its latent vectors ranked after scaling dim j by
    corrs[j] ** 4, which ranks otherwise than cosine on this run."""
    run = run_dir[0]
    results = evaluation.evaluate(run_dir=run, scores=["weighted"], bag_sizes=[5, 0], n_bags=3, progress=False)
    test, moved = results[(results.split == "test") & (results.fit_on == "train")], 0
    for _, rows in test.groupby(["text_kind", "model", "latent_dim"]):
        est, (X, Y, _) = evaluation.space(run, rows.iloc[0])
        Zi, Zt = est.transform(X, Y)
        for protocol, bag in (("5", 5), ("full", len(X))):
            got = rows[rows.protocol == protocol].set_index("direction")
            for want, plain in zip(retrieval.evaluate(Zi, Zt, "weighted", bag, 3, 0, est.corrs_),
                                   retrieval.evaluate(Zi, Zt, "cosine", bag, 3, 0)):
                row = got.loc[want["direction"]]
                assert row.medr_bags == want["medr_bags"] and row.r1_bags == want["r1_bags"]
                assert row[["medr", "r1", "r5", "r10"]].tolist() == pytest.approx(
                    [want[m] for m in ("medr", "r1", "r5", "r10")], abs=1e-4)
                moved += want["medr_bags"] != plain["medr_bags"] or want["r1_bags"] != plain["r1_bags"]
    assert moved  # the weights reach the ranks


def test_a_run_folder_is_read_once_per_stage(run_dir, monkeypatch):
    """``evaluate`` with k-fold and the refit reads features.json and models.json once; a RunDir keeps what it
    read and forgets a file it rewrites."""
    run = rd.RunDir(run_dir[0])
    reads, real = [], Path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: reads.append(self.name) or real(self, *a, **k))
    chosen_before = run.chosen
    evaluation.evaluate(run_dir=run, scores=["cosine"], bag_sizes=[5], n_bags=2, select="kfold", folds=3,
                        progress=False)
    assert reads.count("features.json") == 1 and reads.count("models.json") == 1
    assert set(run.results.score) == {"cosine"} and run.chosen["score"] == "cosine"  # the new results.csv
    assert chosen_before["score"] in ("correlation", "cosine")
    row = run.results[run.results.chosen].iloc[0]
    assert run.chosen == {c: row[c] for c in rd.CONFIG_COLUMNS}
    assert run.model_entry(run.chosen)["latent_dim"] == run.chosen["latent_dim"]
    assert reads.count("features.json") == 1


def test_a_run_with_given_features_says_why_it_has_no_new_queries(tmp_path, capsys):
    from cmr_utils.report import examples
    save_json(tmp_path / "features.json", {"source": "given", "encoders": {"image": {"name": "given"}}})
    run = rd.RunDir(tmp_path)
    assert not run.encodes_queries
    examples.photo_search(run, gallery=None, photo="a.jpg")
    examples.arithmetic(run, galleries={}, swaps=[["a", "b"]])
    assert capsys.readouterr().out == ("given image features: no image encoder to embed a new photo\n"
                                       "given text features: no encoder to embed free words, so no arithmetic\n")
    with pytest.raises(FileNotFoundError, match="02_fit -> models.json"):
        run.models
