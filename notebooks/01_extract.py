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
# Each split's photos go through a pretrained CNN with its classifier removed, fed the input its
# weights were trained on, and each text kind through a BERT-family model (one hidden layer,
# mean-pooled over tokens; a text longer than the model was trained on is read in overlapping
# windows and pooled over all of them); the kind `lexical` is instead a TF-IDF bag of ingredient and
# instruction words reduced by TruncatedSVD, fitted on the train split's text only. Training uses
# every photo of a recipe; val and test use the first readable photo. Features are cached on
# disk, keyed by everything that produced them, in shards: an interrupted run resumes from its
# finished shards, and with `cluster` the shards are tasks spread over a Dask cluster's workers.

# %% tags=["parameters"]
data_dir = None  # Recipe1M-layout folder, or None for the embedded demo corpus
demo_recipes = 3000  # size of the demo corpus (when data_dir is None)
demo_seed = 0
synthetic_scale = None  # instead of data: a corpus of Recipe1M's size × this, no photos, given features with planted factors
text_encoder = "minilm"  # "minilm", "mpnet" (bundled), "bert-base-uncased" (paper; local cache) or a model folder
image_encoder = "efficientnet-lite0"  # "efficientnet-lite0", "efficientnet-lite2" (bundled) or "resnet50" (paper)
image_views = 1  # features averaged over views: 1 centre crop, 2 + mirror, 5 corners + centre, 10 + mirrors
image_normalization = "own"  # pixels scaled as the weights were trained; "imagenet": ImageNet mean/std (ablation)
image_weights = None  # ResNet-50 state-dict file, or None for the torch hub cache
text_layer = None  # hidden layer; None: the model's own (-1 for sentence encoders minilm/mpnet, -2 for BERT as in the paper)
text_pooling = "mean"  # "mean" over tokens (attention-masked) or "cls"
text_windows = True  # a text longer than the model's trained length in overlapping windows; False truncates (ablation)
ingredients = "raw"  # "raw" ingredient lines, or "detected": the names in Recipe1M's det_ingrs.json
text_kinds = ["title", "ingredients", "instructions", "all"]  # and "concat" (concat_parts side by side), "lexical"
concat_parts = ["title", "ingredients", "instructions"]  # what "concat" stacks; add "lexical" for the TF-IDF view
lexical_dims = 256  # "lexical": TF-IDF of ingredient + instruction words, fitted on train, TruncatedSVD to this many
lexical_parts = ["ingredients", "instructions"]  # the text kinds whose words "lexical" reads (also "title")
lexical_ngrams = 1  # 2: word pairs too ("olive oil")
batch_size = 32
num_workers = 2
device = None  # None: CUDA when available, else CPU
backend = "auto"  # encoders' runtime: "torch", "openvino", "onnxruntime"; "auto": the fastest installed (torch on CUDA)
precision = "float32"  # "bfloat16" (CPU or GPU), "float16" (GPU): faster, features within cosine 0.999 of float32
given_dir = None  # folder of given features (image_<split>.npz, text_<kind>_<split>.npz, ...) instead of encoders
given_allow_pickle = False  # True reads .pkl given features: unpickling runs any code in the file, so only trusted ones
cluster = None  # None: this process; "local:N": N worker processes here; "tcp://host:port": a running Dask scheduler
cache_dir = None  # None: the project's cache/, shared with the runner
run_dir = None  # None: the project's reports/interactive (from any working folder)

# %%
from cmr_utils import run_dir as rd
from cmr_utils.features import extract as extraction

run_dir, cache_dir = rd.run_folder("01_extract", globals()), rd.cache_folder(cache_dir)
corpus = extraction.Corpus(data_dir=data_dir, demo_recipes=demo_recipes, demo_seed=demo_seed,
                           synthetic_scale=synthetic_scale, ingredients=ingredients)
kinds = extraction.TextKinds(kinds=text_kinds, concat_parts=concat_parts, lexical_dims=lexical_dims,
                             lexical_parts=lexical_parts, lexical_ngrams=lexical_ngrams)
encoders = extraction.Encoders(
    text=extraction.TextSettings(name=text_encoder, layer=text_layer, pooling=text_pooling, windows=text_windows),
    image=extraction.ImageSettings(name=image_encoder, weights=image_weights, views=image_views,
                                   normalization=image_normalization),
    runtime=extraction.Runtime(batch_size=batch_size, num_workers=num_workers, device=device, backend=backend,
                               precision=precision, cluster=cluster))
given = extraction.Given(folder=given_dir, allow_pickle=given_allow_pickle)
manifest = extraction.run(run_dir=run_dir, cache_dir=cache_dir, corpus=corpus, kinds=kinds, encoders=encoders,
                          given=given)

# %% [markdown]
# ## The data
# Recipes and photos per split (recipes without any photo file are not counted).

# %%
import pandas as pd

pd.DataFrame(manifest["data"]["counts"]).set_index("split")

# %% [markdown]
# ## What was skipped, and why
# Entries the loader or the encoders could not use: orphan layer2 entries, recipes without
# photos, missing, empty, truncated or non-image files, empty text fields.

# %%
skipped = rd.read_skipped(run_dir)  # also in skipped.csv beside results.csv
print(f"{len(skipped)} entries skipped")
skipped.groupby(["stage", "reason"]).size().rename("count").to_frame()

# %%
from cmr_utils.report import tables

tables.whole(skipped.set_index(["stage", "split", "id"]))

# %% [markdown]
# ## Encoders, and where they ran

# %%
pd.DataFrame(manifest["encoders"]).T

# %%
pd.Series(manifest["cluster"], name="extraction ran on").to_frame()
