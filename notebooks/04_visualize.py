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
# # 4 · Visualisation
#
# Recall by text kind, median rank against latent dimension, the shared space in t-SNE, and
# retrieval examples. Each text kind uses its configuration chosen on val.

# %% tags=["parameters"]
tsne_points = 400  # test pairs per t-SNE plot
n_examples = 4  # query photos (and recipes) shown with their top-5 matches
swaps = [["chocolate", "strawberry"], ["tomato", "blueberry"], ["chicken", "salmon"]]  # photo − a + b
seed = 0
run_dir = "../reports/interactive"

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from cmr_utils import plots, stages
from cmr_utils.data import Recipe1M

results = stages.load_results(run_dir)
best = plots.best_per_kind(results)
ds = Recipe1M(json.loads((Path(run_dir) / "features.json").read_text())["data"]["root"])

# %% [markdown]
# ## Recall tables (test, image→recipe)

# %%
plots.recall_table(results)

# %% [markdown]
# ## Recall by text kind

# %%
plots.recall_by_kind(results);

# %% [markdown]
# ## Median rank against latent dimension (test)

# %%
plots.medr_vs_dim(results);

# %% [markdown]
# ## The shared space: t-SNE of test images (●) and texts (×), coloured by dish word in the title

# %%
rng = np.random.default_rng(seed)
fig, axes = plt.subplots(1, len(best), figsize=(5 * len(best), 4.5), squeeze=False)
for ax, (kind, cfg) in zip(axes[0], best.iterrows()):
    est, (X, Y, index) = stages.space(run_dir, {**cfg, "text_kind": kind})
    pick = rng.choice(len(X), min(tsne_points, len(X)), replace=False)
    Zi, Zt = est.transform(X[pick], Y[pick])
    labels = [plots.dish_keyword(ds.recipes[r].title) for r in index.recipe_id[pick]]
    plots.tsne(Zi, Zt, labels, cfg.score, est.corrs_, seed, ax=ax)
    ax.set_title(f"{kind}: {cfg.model}, dim {cfg.latent_dim}, {cfg.score}")
fig.tight_layout()

# %% [markdown]
# ## Retrieval examples: a test photo and its top-5 recipes
# Best text kind on val; ✓ marks the true recipe.

# %%
kind = best.medr.idxmin()
cfg = best.loc[kind]
est, (X, Y, index) = stages.space(run_dir, {**cfg, "text_kind": kind})
Zi, Zt = est.transform(X, Y)
queries = rng.choice(min(1000, len(X)), n_examples, replace=False)
plots.retrieval_examples(ds, index, Zi[:1000], Zt[:1000], cfg.score, est.corrs_, queries);

# %% [markdown]
# ## Recipe → photos: a test recipe and its top-5 photos (the true photo framed in green)

# %%
plots.photos_for_recipe(ds, index, Zi[:1000], Zt[:1000], cfg.score, est.corrs_, queries);

# %% [markdown]
# ## Vector arithmetic in the shared space
# A test photo, minus the text vector of one word, plus another's: the nearest test photos
# and recipes to the result. Uses the best single text kind (a free word has no "concat" form).

# %%
single = best.drop(index="concat", errors="ignore")
kind = single.medr.idxmin()
cfg = single.loc[kind]
est, (X, Y, index) = stages.space(run_dir, {**cfg, "text_kind": kind})
Zi, Zt = est.transform(X, Y)
if results.features.iloc[0] == "given":
    print("given text features: no encoder to embed free words, so no arithmetic")
else:
    fig = plots.arithmetic_examples(ds, index, Zi, Zt, swaps,
                                    lambda t: est.transform(None, stages.embed_texts(run_dir, t))[1],
                                    cfg.score, est.corrs_)
    print(f"text kind {kind}" if fig else f"no test recipe title contains any of {[a for a, _ in swaps]}")
