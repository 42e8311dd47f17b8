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
# # 2 · Fitting the shared space
#
# For each text kind, image and text features of the training pairs are projected into a
# common latent space by CCA. `cca` is the paper's plain CCA (cca-zoo); `ridge` (cca-zoo's
# RidgeCCA) shrinks each view's covariance towards the identity, which keeps CCA from
# overfitting when the number of pairs is close to the feature dimension; `exact` solves the
# same ridge problem from covariances accumulated in chunks, for Recipe1M-size data, with
# optional PCA pre-reduction. Fits are cached on disk.

# %% tags=["parameters"]
models = ["cca", "ridge"]  # "cca" (paper), "ridge" (RidgeCCA), "exact" (chunked ridge CCA)
latent_dims = [2, 10, 25, 50, 100, 250]  # capped by the rank the data allows
shrinkage = [0.5]  # ridge strengths in [0, 1] to sweep: 0 is CCA, 1 is PLS
standardize = True  # scale each feature to unit variance before CCA
pca = None  # exact only: keep this many principal directions per view
cache_dir = "../cache"
run_dir = "../reports/interactive"

# %%
from cmr_utils import stages

fitted = stages.fit(run_dir, cache_dir, models, latent_dims, shrinkage, standardize, pca)

# %% [markdown]
# ## Fitted models
# `n_components` is the latent dimension actually used; `top_corr` is the first canonical
# correlation on the training pairs (near 1 for plain CCA means it has fitted noise).

# %%
fitted.drop(columns="path")
