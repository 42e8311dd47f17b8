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
# retrieval examples. Every figure shows every text kind, each in its configuration chosen on
# val; ◆ and ★ mark the paper's configuration (plain CCA, dimension 50, correlation score).

# %% tags=["parameters"]
tsne_points = None  # test pairs in the t-SNE: None for every one, a number for a seeded sample
n_examples = 3  # test photos (and recipes) shown with each text kind's top-5
swaps = [["chocolate", "strawberry"], ["tomato", "blueberry"], ["chicken", "salmon"]]  # photo − a + b
seed = 0
run_dir = None  # None: the project's reports/interactive (from any working folder)

# %%
import numpy as np
from IPython.display import HTML, display

from cmr_utils.report import examples, plots, search, space_page, tables
from cmr_utils.run_dir import RunDir, run_folder

run = RunDir(run_folder("04_visualize", globals()))
results = run.results
galleries = search.galleries(run)  # per text kind: its configuration chosen on val, over the test pairs
chosen = galleries[run.chosen["text_kind"]]  # the run's chosen configuration
queries = np.random.default_rng(seed).choice(len(chosen.index), n_examples, replace=False)

# %% [markdown]
# ## Recall tables (test): the paper's Tables 1 and 2, both directions

# %%
for title, table in tables.paper_tables(results):
    display(HTML(f"<h3>{title}</h3>{table}"))

# %% [markdown]
# ## Recall by text kind (test)

# %%
plots.recall_by_kind(results=results);

# %% [markdown]
# ## Median rank against latent dimension (test)

# %%
plots.medr_vs_dim(results=results);

# %% [markdown]
# ## The shared space: t-SNE of every test photo (●) and recipe (×)
# Colours are groups of recipes (clusters of their latent text vectors in the chosen
# configuration), named by their most distinctive title words. A photo close to its own kind of
# recipe means the space put them together. [Explore it interactively](space.html): hover a
# point to see its recipe and photo.

# %%
layout = plots.tsne_layout(galleries, seed=seed, max_pairs=tsne_points)
plots.tsne_panels(layout=layout);
space_page.write(run, layout=layout, seed=seed);

# %% [markdown]
# ## Image → recipe: a test photo and each text kind's top-5 recipes
# Each recipe is shown by its own photo and title; the true recipe is framed green (✓).

# %%
plots.retrieval_examples(galleries, queries=queries, k=5);

# %% [markdown]
# ## Try it: a photo file's top-5 recipes
# The same search from a shell: `python -m cmr_utils search RUN PHOTO_OR_TEXT… [--k 10] [--kind KIND]`.

# %%
examples.photo_search(run, gallery=chosen, photo=chosen.index.path[queries[0]], k=5)

# %% [markdown]
# ## Recipe → image: a test recipe and each text kind's top-5 photos (the true photo framed green)

# %%
plots.photos_for_recipe(galleries, queries=queries, k=5);

# %% [markdown]
# ## Vector arithmetic in the shared space
# A test photo, minus the text vector of one word, plus another's: the nearest test photos and
# recipes to the result, per text kind (for `concat` the word stands for each of its parts).

# %%
examples.arithmetic(run, galleries=galleries, swaps=swaps)
