# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: cmr
#     language: python
#     name: cmr
# ---

# %% [markdown]
# # 3 · Retrieval evaluation
#
# Image→recipe and recipe→image retrieval in the shared space, on val and test: median rank
# (ranks start at 1) and Recall@1/5/10 over seeded random bags of pairs (mean ± std). Every
# text kind, model, dimension and score of a split is ranked on the same recipes and the same
# bags. Protocols: `1k` and `10k` are 10 bags of that many pairs; `full` ranks the whole split
# at once (also used when a split is smaller than a bag). Test is ranked at every protocol; val,
# which only chooses, at its main one (its smallest bag). The configuration with the best
# image→recipe medR on **val** (or, with `select="kfold"`, averaged over k folds of train+val)
# is marked `chosen`; its test row is the headline number.
#
# The paper's `correlation` score centres each latent vector across its components, so it
# depends on each component's sign, which CCA leaves arbitrary. Every solver here flips each
# component so that its largest image weight is positive, so the score is the same whichever
# solver fitted the space; `cosine` does not depend on the signs.

# %% tags=["parameters"]
scores = ["correlation", "cosine", "weighted"]  # "correlation" (paper), "cosine", "weighted" (by canonical correlation);
# "+csls" / "+isoftmax" after one ("weighted+csls") corrects hubness against a bank of training queries
bag_sizes = [1000, 10000]  # pairs per bag (skipped where a split is smaller); 0 ranks the whole split
n_bags = 10
seed = 0
cluster = None  # None: this process; "local:N" or "tcp://host:port": each fitted model on each split a Dask task
select = "val"  # choose the configuration on "val", or by 5-fold cross-validation on train+val ("kfold")
run_dir = None  # None: the project's reports/interactive (from any working folder)

# %%
from cmr_utils.evaluate import results as R
from cmr_utils.evaluate import selection, stage
from cmr_utils.report import plots
from cmr_utils.run_dir import RunDir, run_folder

run = RunDir(run_folder("03_evaluate", globals()))
results = stage.evaluate(run, scores=scores, bag_sizes=bag_sizes, n_bags=n_bags, seed=seed, select=select,
                         cluster=cluster)

# %% [markdown]
# ## The query sets
# Pairs per split that have a photo and the text of every requested kind; a recipe lacking one
# kind's text is dropped for all kinds, so that they are compared on the same queries.

# %%
run.query_summary()

# %% [markdown]
# ## The chosen configuration, reported on test
# Chosen on val, or by k-fold cross-validation on train+val where `select` is "kfold" (next
# section). Its val, test, and test of the same configuration refitted on train+val (`fit_on`).

# %%
cols = ["text_kind", "model", "shrinkage", "latent_dim", "score", "split", "fit_on", "protocol", "n_pairs",
        "direction", "medr", "medr_std", "r1", "r1_std", "r5", "r10", "r10_std"]
R.chosen_rows(results)[cols].round(2).set_index(["split", "fit_on", "protocol", "direction"])

# %% [markdown]
# ## How k-fold cross-validation ranked the configurations
# With `select="kfold"`: every configuration refitted on k − 1 folds of train+val and ranking the
# held-out fold's recipes; image→recipe medR and recalls averaged over the folds (`*_std`: their
# spread), best first: the first row is the chosen configuration. Each fold ranks its own share
# of train+val's recipes at once, so these medRs are on another scale than val's or test's.

# %%
selection.kfold_ranking(run, select=select)

# %% [markdown]
# ## The paper's configuration against the one chosen on val, per text kind
# Paper: plain CCA, 50 latent dimensions, correlation score. Chosen: lowest val medR for that
# text kind (on val even where `select="kfold"` chose the run's configuration, which may then
# differ). Test split, image→recipe.

# %%
plots.paper_vs_chosen(results)

# %% [markdown]
# ## Each model at its best on val
# Every model family of the run chosen the same way (its lowest val image→recipe medR over text
# kinds, shrinkages, latent dims and scores), beside its val and test numbers in both directions.
# Rows in order of val medR; test takes no part in any choice.

# %%
plots.models_compared(results)
