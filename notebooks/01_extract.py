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
# # 1 · Feature extraction
#
# Recipes and photos are read from a Recipe1M-layout folder (`layer1.json`, `layer2.json`,
# `images/<partition>/a/b/c/d/<id>`); without one, the embedded demo corpus is generated.
# Each split's photos go through a pretrained CNN with its classifier removed, and each text
# kind through a BERT-family model (second-to-last hidden layer, mean-pooled over tokens,
# truncated at 512 tokens). Training uses every photo of a recipe; val and test use the first
# readable photo. Features are cached on disk, keyed by everything that produced them.

# %% tags=["parameters"]
data_dir = None  # Recipe1M-layout folder, or None for the embedded demo corpus
demo_recipes = 3000  # size of the demo corpus (when data_dir is None)
demo_seed = 0
text_encoder = "minilm"  # "minilm" (bundled), "bert-base-uncased" (paper; local cache) or a model folder
image_encoder = "efficientnet-lite0"  # "efficientnet-lite0" (bundled) or "resnet50" (paper)
image_weights = None  # ResNet-50 state-dict file, or None for the torch hub cache
text_layer = -2  # hidden layer of the text model (-2: second-to-last, the paper's)
text_pooling = "mean"  # "mean" over tokens (attention-masked) or "cls"
ingredients = "raw"  # "raw" ingredient lines, or "detected": the names in Recipe1M's det_ingrs.json
text_kinds = ["title", "ingredients", "instructions", "all"]  # and "concat": the first three side by side
batch_size = 32
num_workers = 2
device = None  # None: CUDA when available, else CPU
given_dir = None  # folder of given features (image_<split>.npz, text_<kind>_<split>.npz, ...) instead of encoders
shard = 0  # this job's share of the encoding, for splitting extraction into num_shards jobs
num_shards = 1
cache_dir = "../cache"
run_dir = "../reports/interactive"

# %%
from cmr_utils import stages

manifest = stages.extract(run_dir, cache_dir, data_dir, demo_recipes, demo_seed, text_encoder, image_encoder,
                          image_weights, text_kinds, batch_size, num_workers, device, text_layer, text_pooling,
                          given_dir, shard, num_shards, ingredients)

# %% [markdown]
# ## The data
# Recipes and photos per split (recipes without any photo file are not counted).

# %%
import pandas as pd

pd.DataFrame(manifest["data"]["counts"])

# %% [markdown]
# ## What was skipped, and why
# Entries the loader or the encoders could not use: orphan layer2 entries, recipes without
# photos, missing, empty, truncated or non-image files, empty text fields.

# %%
skipped = stages.skipped_table(run_dir)
print(f"{len(skipped)} entries skipped")
skipped.groupby(["stage", "reason"]).size().rename("count").reset_index()

# %%
skipped.head(50)

# %% [markdown]
# ## Encoders

# %%
pd.DataFrame(manifest["encoders"]).T
