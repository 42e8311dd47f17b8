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
# common latent space. `cca` is the paper's plain CCA; `ridge` (as cca-zoo's RidgeCCA) shrinks
# each view's covariance towards the identity, which keeps CCA from overfitting when the number
# of pairs is close to the feature dimension; `exact` is ridge with optional PCA pre-reduction.
# All three are solved from the training pairs' means and covariances, accumulated once per
# text kind in chunks that stream the features from disk (on a Dask cluster with `cluster`)
# and cached; every shrinkage and latent dim of the sweep is then solved from them, and each
# latent dim is the first columns of one solution. They equal cca-zoo's `CCA` and `RidgeCCA`
# (checked in the tests) at a fraction of the cost.
#
# Two models go beyond a linear map. `kernel` is kernel CCA with an RBF kernel per view, made to
# scale by `kernel_landmarks` Nyström features (the kernel's width from the median distance
# unless `kernel_gamma` is set) and the `exact` solver on them; `shrinkage` plays the same
# part. `contrastive` trains a linear projection per view with the symmetric InfoNCE loss
# (CLIP's), starting from the ridge-CCA solution; it stops early on a seeded 10 % of the
# training recipes that it holds out of its own training (val and test take no part).
# Fits are cached on disk.

# %% tags=["parameters"]
models = ["cca", "ridge"]  # "cca" (paper), "ridge" (RidgeCCA), "exact" (ridge + pca), "kernel", "contrastive"
latent_dims = [2, 10, 25, 50, 100, 250]  # capped by the rank the data allows
shrinkage = [0.5, 0.9, 0.99]  # ridge strengths in [0, 1] to sweep: 0 is CCA, 1 is PLS (contrastive: its start)
standardize = True  # scale each feature to unit variance before CCA
pca = None  # exact only: keep this many principal directions per view
kernel_landmarks = 1000  # kernel only: Nyström landmarks per view (the features' dimension)
kernel_gamma = None  # kernel only: RBF width on standardised features; None: 1 / median squared distance
seed = 0  # kernel landmarks; contrastive hold-out and batches
cluster = None  # None: this process; "local:N" or "tcp://host:port": the train moments as Dask tasks
cache_dir = None  # None: the project's cache/, shared with the runner
run_dir = None  # None: the project's reports/interactive (from any working folder)

# %%
from cmr_utils import run_dir as rd
from cmr_utils.fit import sweep

run_dir, cache_dir = rd.run_folder("02_fit", globals()), rd.cache_folder(cache_dir)
settings = dict(standardize=standardize, pca=pca, kernel_landmarks=kernel_landmarks, kernel_gamma=kernel_gamma, seed=seed)
grid = sweep.grid(models=models, latent_dims=latent_dims, shrinkage=shrinkage, settings=settings)
fitted = sweep.fit(run_dir=run_dir, cache_dir=cache_dir, grid=grid, cluster=cluster)

# %% [markdown]
# ## Fitted models
# `n_components` is the latent dimension actually used; `top_corr` is the first canonical
# correlation on the training pairs (near 1 for plain CCA, or for `kernel` with little
# shrinkage, means it has fitted noise).

# %%
from cmr_utils.report import tables

tables.whole(fitted.drop(columns="path").set_index(["text_kind", "model", "shrinkage", "latent_dim"]))
