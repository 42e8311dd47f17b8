"""The pipeline's stages as functions, one per notebook; they talk only through files in ``run_dir``.

extract -> ``features.json`` (where each feature entry lives), fit -> ``models.json`` (fitted
models), evaluate -> ``results.csv`` (one row per configuration, split, protocol and direction).
"""
from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd

from . import demo
from .data import SPLITS, Recipe1M
from .encoders import ImageEncoder, TextEncoder
from .features import Features, image_features, paired, text_features
from .io import save_json
from .models import fit_cached
from .retrieval import evaluate as evaluate_bags
from .retrieval import protocol_name

CONFIG_COLUMNS = ["text_kind", "features", "image_encoder", "text_encoder", "model", "shrinkage",
                  "latent_dim", "n_components", "score"]


def extract(run_dir, cache_dir, data_dir=None, demo_recipes=3000, demo_seed=0, text_encoder="minilm",
            image_encoder="efficientnet-lite0", image_weights=None, text_kinds=("title",),
            batch_size=32, num_workers=2, device=None, progress=True) -> dict:
    """Encode every split's images and texts (cached), write ``features.json`` and return it.

    ``data_dir`` None means the embedded demo corpus, generated once into the cache.
    """
    root = Path(data_dir) if data_dir else demo.ensure(cache_dir, demo_recipes, demo_seed)
    ds = Recipe1M(root)
    fingerprint = ds.fingerprint()
    images = ImageEncoder(image_encoder, image_weights, batch_size, num_workers, device)
    texts = TextEncoder(text_encoder, batch_size=batch_size, device=device)
    manifest = {"data": {"root": str(root), "fingerprint": fingerprint,
                         "counts": ds.counts().reset_index().to_dict("records")},
                "encoders": {"image": images.config, "text": texts.config},
                "image": {}, "text": {k: {} for k in text_kinds}}
    for split in SPLITS:
        manifest["image"][split] = str(image_features(
            ds, split, images, cache_dir, fingerprint, all_images=(split == "train"), progress=progress))
        for kind in text_kinds:
            manifest["text"][kind][split] = str(text_features(ds, split, kind, texts, cache_dir, fingerprint, progress))
    save_json(Path(run_dir) / "features.json", manifest)
    return manifest


def skipped_table(run_dir) -> pd.DataFrame:
    """Everything the data layer and the encoders dropped, with the reason, from the run's manifest."""
    manifest = _read(run_dir, "features.json")
    frames = [Recipe1M(manifest["data"]["root"]).skipped.assign(split="")]
    for split, path in manifest["image"].items():
        frames.append(Features.load(path).skipped.assign(stage="image encoder", split=split))
    for kind, paths in manifest["text"].items():
        for split, path in paths.items():
            frames.append(Features.load(path).skipped.assign(stage=f"text encoder ({kind})", split=split))
    return pd.concat(frames, ignore_index=True)[["stage", "split", "id", "reason"]]


def pairs(manifest: dict, kind: str, split: str):
    """(image features, text features, index) of one text kind and split, row-aligned."""
    return paired(Features.load(manifest["image"][split]), Features.load(manifest["text"][kind][split]))


def fit(run_dir, cache_dir, models=("ridge",), latent_dims=(50,), shrinkage=0.5, standardize=True) -> pd.DataFrame:
    """Fit every (text kind, model, latent dim) on the train pairs (cached); write ``models.json``."""
    manifest = _read(run_dir, "features.json")
    entries = []
    for kind in manifest["text"]:
        X, Y, _ = pairs(manifest, kind, "train")
        for model in models:
            for dim in latent_dims:
                est, path = fit_cached(cache_dir, manifest["image"]["train"], manifest["text"][kind]["train"], X, Y,
                                       model=model, n_components=dim,
                                       shrinkage=shrinkage if model != "cca" else 0.0, standardize=standardize)
                entries.append({"text_kind": kind, "model": model, "latent_dim": dim,
                                "n_components": est.n_components_, "shrinkage": est.shrinkage,
                                "train_pairs": len(X), "top_corr": float(est.corrs_[0]), "path": str(path)})
    save_json(Path(run_dir) / "models.json", entries)
    return pd.DataFrame(entries)


def evaluate(run_dir, scores=("correlation",), bag_sizes=(1000,), n_bags=10, seed=0,
             select_by="medr") -> pd.DataFrame:
    """Score every fitted model on val and test; mark the configuration chosen on val; write ``results.csv``.

    The choice uses image->recipe on the first bag size: lowest ``select_by`` (medR) on val,
    ties broken by the higher R@10. Test numbers never influence the choice.
    """
    manifest = _read(run_dir, "features.json")
    enc = manifest["encoders"]
    rows = []
    for entry in _read(run_dir, "models.json"):
        est = joblib.load(entry["path"])
        for split in ("val", "test"):
            X, Y, _ = pairs(manifest, entry["text_kind"], split)
            Zi, Zt = est.transform(X, Y)
            for score in scores:
                for bag in bag_sizes:
                    for r in evaluate_bags(Zi, Zt, score, bag, n_bags, seed, est.corrs_):
                        rows.append({"text_kind": entry["text_kind"], "features": "generated",
                                     "image_encoder": enc["image"]["name"], "text_encoder": enc["text"]["name"],
                                     "model": entry["model"], "shrinkage": entry["shrinkage"],
                                     "latent_dim": entry["latent_dim"], "n_components": entry["n_components"],
                                     "score": score, "split": split, "protocol": protocol_name(r["bag_size"]),
                                     "requested_bag": bag, **r})
    df = pd.DataFrame(rows)
    val = df[(df.split == "val") & (df.direction == "im2recipe") & (df.requested_bag == bag_sizes[0])]
    best = val.sort_values([select_by, "r10"], ascending=[True, False]).iloc[0]
    df["chosen"] = (df[CONFIG_COLUMNS] == best[CONFIG_COLUMNS]).all(axis=1)
    df = df.drop(columns="requested_bag")
    df.round(4).to_csv(Path(run_dir) / "results.csv", index=False)
    return df


def load_results(run_dir) -> pd.DataFrame:
    """``results.csv`` with its protocol labels kept as text ('1k', '999', 'full')."""
    return pd.read_csv(Path(run_dir) / "results.csv", dtype={"protocol": str})


def space(run_dir, config) -> tuple:
    """(fitted SharedSpace, test pairs (X, Y, index)) of one configuration, e.g. a row of results.csv."""
    entry = next(e for e in _read(run_dir, "models.json")
                 if (e["text_kind"], e["model"], e["latent_dim"]) == (config["text_kind"], config["model"],
                                                                       config["latent_dim"]))
    return joblib.load(entry["path"]), pairs(_read(run_dir, "features.json"), entry["text_kind"], "test")


def _read(run_dir, name: str):
    path = Path(run_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the notebook that writes it first "
                                "(01_extract -> features.json, 02_fit -> models.json).")
    return json.loads(path.read_text())
