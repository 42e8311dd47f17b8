"""The pipeline's stages as functions, one per notebook; they talk only through files in ``run_dir``.

extract -> ``features.json`` (where each feature entry lives), fit -> ``models.json`` (fitted
models), evaluate -> ``results.csv`` (one row per configuration, split, protocol and direction).
"""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd

from . import demo, given
from .data import SPLITS, TEXT_KINDS, Recipe1M
from .encoders import ImageEncoder, TextEncoder
from .features import ExtractionIncomplete, Features, concat, image_features, paired, text_features
from .io import save_json
from .models import fit_cached
from .retrieval import evaluate as evaluate_bags
from .retrieval import protocol_name

CONCAT_PARTS = ("title", "ingredients", "instructions")
CONFIG_COLUMNS = ["text_kind", "features", "image_encoder", "text_encoder", "model", "shrinkage",
                  "latent_dim", "n_components", "score"]


def extract(run_dir, cache_dir, data_dir=None, demo_recipes=3000, demo_seed=0, text_encoder="minilm",
            image_encoder="efficientnet-lite0", image_weights=None, text_kinds=("title",),
            batch_size=32, num_workers=2, device=None, text_layer=-2, text_pooling="mean",
            given_dir=None, shard=0, num_shards=1, ingredients="raw", progress=True) -> dict:
    """Encode every split's images and texts (cached), write ``features.json`` and return it.

    ``data_dir`` None means the embedded demo corpus, generated once into the cache. The text
    kind ``concat`` is the concatenation of the title, ingredients and instructions embeddings.
    With ``given_dir``, vectors come from the user's files there (see ``given``) instead of the
    encoders. ``shard``/``num_shards`` split the encoding into independent jobs over a shared
    cache: each encodes its share of every entry, and the job that completes an entry merges it;
    a job that leaves entries waiting for others raises ExtractionIncomplete after doing its share.
    """
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, num_shards), got shard={shard}, num_shards={num_shards}")
    job = (shard, num_shards)
    unknown = set(text_kinds) - set(TEXT_KINDS) - {"concat"}
    if unknown:
        raise ValueError(f"unknown text kinds {sorted(unknown)}; choose from {TEXT_KINDS + ('concat',)}")
    base = list(dict.fromkeys(k for kind in text_kinds for k in (CONCAT_PARTS if kind == "concat" else [kind])))
    root = Path(data_dir) if data_dir else demo.ensure(cache_dir, demo_recipes, demo_seed)
    ds = Recipe1M(root, ingredients)
    fingerprint = ds.fingerprint()
    if given_dir:
        encoders = {"image": {"name": "given"}, "text": {"name": "given"}}
        image_of = lambda split: given.import_features(  # noqa: E731
            ds, split, given.find(given_dir, f"image_{split}"), cache_dir, fingerprint, "image",
            all_images=(split == "train"))
        text_of = lambda split, kind: given.import_features(  # noqa: E731
            ds, split, given.find(given_dir, f"text_{kind}_{split}"), cache_dir, fingerprint, "text", kind)
    else:
        images = ImageEncoder(image_encoder, image_weights, batch_size, num_workers, device)
        texts = TextEncoder(text_encoder, text_layer, text_pooling, batch_size=batch_size, device=device)
        encoders = {"image": images.config, "text": texts.config}
        image_of = lambda split: image_features(  # noqa: E731
            ds, split, images, cache_dir, fingerprint, all_images=(split == "train"), progress=progress, job=job)
        text_of = lambda split, kind: text_features(  # noqa: E731
            ds, split, kind, texts, cache_dir, fingerprint, progress, job)
    manifest = {"data": {"root": str(root), "fingerprint": fingerprint, "ingredients": ingredients,
                         "counts": ds.counts().reset_index().to_dict("records")},
                "source": "given" if given_dir else "generated", "encoders": encoders,
                "image": {}, "text": {k: {} for k in text_kinds}}
    waiting = []

    def entry(make, *args):
        try:
            return str(make(*args))
        except ExtractionIncomplete as e:
            waiting.append(str(e))

    for split in SPLITS:
        manifest["image"][split] = entry(image_of, split)
        done = {kind: entry(text_of, split, kind) for kind in base}
        for kind in text_kinds:
            manifest["text"][kind][split] = [done[k] for k in CONCAT_PARTS] if kind == "concat" else done[kind]
    if waiting:
        raise ExtractionIncomplete(f"{len(waiting)} feature entries wait for other jobs' shards: " + " | ".join(waiting))
    save_json(Path(run_dir) / "features.json", manifest)
    return manifest


def skipped_table(run_dir) -> pd.DataFrame:
    """Everything the data layer and the encoders dropped, with the reason, from the run's manifest."""
    manifest = _read(run_dir, "features.json")
    frames = [Recipe1M(manifest["data"]["root"], manifest["data"]["ingredients"]).skipped.assign(split="")]
    for split, path in manifest["image"].items():
        frames.append(Features.load(path).skipped.assign(stage="image encoder", split=split))
    entries = {p: split for paths in manifest["text"].values() for split, path in paths.items()
               for p in (path if isinstance(path, list) else [path])}  # concat lists its parts' entries
    for path, split in entries.items():
        feats = Features.load(path)
        frames.append(feats.skipped.assign(stage=f"text encoder ({feats.meta['text_kind']})", split=split))
    return pd.concat(frames, ignore_index=True)[["stage", "split", "id", "reason"]]


def pairs(manifest: dict, kind: str, split: str):
    """(image features, text features, index) of one text kind and split, row-aligned."""
    entry = manifest["text"][kind][split]
    text = concat([Features.load(p) for p in entry]) if isinstance(entry, list) else Features.load(entry)
    return paired(Features.load(manifest["image"][split]), text)


def fit(run_dir, cache_dir, models=("ridge",), latent_dims=(50,), shrinkage=(0.5,), standardize=True,
        pca=None) -> pd.DataFrame:
    """Fit every (text kind, model, shrinkage, latent dim) on the train pairs (cached); write ``models.json``.

    Plain ``cca`` has no shrinkage, so it is fitted once per dimension.
    """
    manifest = _read(run_dir, "features.json")
    entries = []
    for kind in manifest["text"]:
        X, Y, _ = pairs(manifest, kind, "train")
        for model in models:
            for c in ([0.0] if model == "cca" else shrinkage):
                for dim in latent_dims:
                    est, path = fit_cached(cache_dir, manifest["image"]["train"], manifest["text"][kind]["train"],
                                           X, Y, model=model, n_components=dim, shrinkage=float(c),
                                           standardize=standardize, pca=pca if model == "exact" else None)
                    entries.append({"text_kind": kind, "model": model, "shrinkage": float(c), "latent_dim": dim,
                                    "n_components": est.n_components_, "train_pairs": len(X),
                                    "top_corr": float(est.corrs_[0]), "path": str(path)})
    save_json(Path(run_dir) / "models.json", entries)
    return pd.DataFrame(entries)


def evaluate(run_dir, scores=("correlation",), bag_sizes=(1000,), n_bags=10, seed=0,
             select_by="medr") -> pd.DataFrame:
    """Score every fitted model on val and test; mark the configuration chosen on val; write ``results.csv``.

    A bag size larger than a split is skipped there and 0 ranks the whole split at once; a split
    smaller than every bag size is ranked whole once, labelled by its size. The choice uses
    image->recipe on val at its smallest protocol: lowest ``select_by`` (medR), ties broken by
    the higher R@10. Test numbers never influence the choice.
    """
    manifest = _read(run_dir, "features.json")
    enc = manifest["encoders"]
    rows, data = [], {}
    for entry in _read(run_dir, "models.json"):
        est = joblib.load(entry["path"])
        for split in ("val", "test"):
            if (entry["text_kind"], split) not in data:
                data[entry["text_kind"], split] = pairs(manifest, entry["text_kind"], split)
            X, Y, _ = data[entry["text_kind"], split]
            Zi, Zt = est.transform(X, Y)
            fits = [b for b in bag_sizes if 0 < b <= len(X)]
            sizes = fits + [0] * (0 in bag_sizes) if fits else [len(X)]
            for score in scores:
                for bag in sizes:
                    for r in evaluate_bags(Zi, Zt, score, bag, n_bags, seed, est.corrs_):
                        rows.append({"text_kind": entry["text_kind"], "features": manifest["source"],
                                     "image_encoder": enc["image"]["name"], "text_encoder": enc["text"]["name"],
                                     "model": entry["model"], "shrinkage": entry["shrinkage"],
                                     "latent_dim": entry["latent_dim"], "n_components": entry["n_components"],
                                     "score": score, "split": split,
                                     "protocol": protocol_name(0 if bag <= 0 else r["bag_size"]), **r})
    df = pd.DataFrame(rows)
    val = df[(df.split == "val") & (df.direction == "im2recipe")]
    val = val[val.bag_size == val.bag_size.min()]
    best = val.sort_values([select_by, "r10"], ascending=[True, False]).iloc[0]
    df["chosen"] = (df[CONFIG_COLUMNS] == best[CONFIG_COLUMNS]).all(axis=1)
    df.round(4).to_csv(Path(run_dir) / "results.csv", index=False)
    return df


def load_results(run_dir) -> pd.DataFrame:
    """``results.csv`` with its protocol labels kept as text ('1k', '999', 'full')."""
    return pd.read_csv(Path(run_dir) / "results.csv", dtype={"protocol": str})


def space(run_dir, config) -> tuple:
    """(fitted SharedSpace, test pairs (X, Y, index)) of one configuration, e.g. a row of results.csv."""
    keys = ("text_kind", "model", "shrinkage", "latent_dim")
    entry = next(e for e in _read(run_dir, "models.json") if all(e[k] == config[k] for k in keys))
    return joblib.load(entry["path"]), pairs(_read(run_dir, "features.json"), entry["text_kind"], "test")


def embed_texts(run_dir, texts: list[str]):
    """Text features of free text, by the same encoder (model, layer, pooling) as the run's extraction."""
    cfg = _read(run_dir, "features.json")["encoders"]["text"]
    if cfg["name"] == "given":
        raise ValueError("this run uses given text features: there is no encoder for free text")
    return TextEncoder(cfg["name"], cfg["layer"], cfg["pooling"], cfg["max_length"]).encode(texts, progress=False)


def _read(run_dir, name: str):
    path = Path(run_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the notebook that writes it first "
                                "(01_extract -> features.json, 02_fit -> models.json).")
    return json.loads(path.read_text())
