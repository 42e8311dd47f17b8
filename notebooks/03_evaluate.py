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
# (ranks start at 1) and Recall@1/5/10 over seeded random bags of pairs (mean ± std). The
# configuration with the best image→recipe medR on **val** is marked `chosen`; its test row is
# the headline number.

# %% tags=["parameters"]
scores = ["correlation", "cosine"]  # "correlation" (paper), "cosine", "weighted" (by canonical correlation)
bag_sizes = [1000, 10000]  # pairs per bag (skipped where a split is smaller); 0 ranks the whole split
n_bags = 10
seed = 0
run_dir = "../reports/interactive"

# %%
from cmr_utils import plots, stages

results = stages.evaluate(run_dir, scores, bag_sizes, n_bags, seed)

# %% [markdown]
# ## Chosen on val, reported on test

# %%
cols = ["text_kind", "model", "latent_dim", "score", "split", "protocol", "direction",
        "medr", "medr_std", "r1", "r1_std", "r5", "r10", "r10_std"]
results[results.chosen][cols].round(2)

# %% [markdown]
# ## The paper's configuration against the one chosen on val, per text kind
# Paper: plain CCA, 50 latent dimensions, correlation score. Chosen: lowest val medR for that
# text kind. Test split, image→recipe.

# %%
plots.paper_vs_chosen(results)
