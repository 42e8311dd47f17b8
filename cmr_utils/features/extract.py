"""The extraction stage (notebook 01): every split's photos and text kinds encoded and cached; writes ``features.json``."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from cmr_utils.cluster import connect, describe
from cmr_utils.data import demo, given, synthetic
from cmr_utils.data.recipe1m import SPLITS, TEXT_KINDS, Recipe1M
from cmr_utils.features import lexical
from cmr_utils.features.encoders import ImageEncoder, TextEncoder
from cmr_utils.features.store import (
    image_features,
    text_features,
)
from cmr_utils.io import save_csv, save_json
from cmr_utils.run_dir import CONCAT_PARTS, RunDir, as_run


def extract(run_dir, cache_dir, data_dir=None, demo_recipes=3000, demo_seed=0, synthetic_scale=None,
            text_encoder="minilm", image_encoder="efficientnet-lite0", image_weights=None, text_kinds=("title",),
            batch_size=32, num_workers=2, device=None, text_layer=None, text_pooling="mean", given_dir=None,
            ingredients="raw", image_views=1, image_normalization="own", text_windows=True, cluster=None,
            backend="auto", precision="float32", given_allow_pickle=False, concat_parts=CONCAT_PARTS,
            lexical_dims=256, progress=True) -> dict:
    """Encode every split's images and texts (cached), write ``features.json`` and return it.

    ``data_dir`` None means the embedded demo corpus, generated once into the cache;
    ``synthetic_scale`` (1.0: Recipe1M's size) instead generates a corpus without photos whose
    given features share planted factors (``synthetic``). The text kind ``concat`` is the
    concatenation of the ``concat_parts`` kinds' features (title, ingredients and instructions by
    default); the kind ``lexical`` (also a part) is a TF-IDF bag of ingredient and instruction words
    reduced to ``lexical_dims`` components, fitted on train's text (see ``lexical``). ``text_layer`` None
    takes the text model's own layer; ``image_views`` (1, 2, 5, 10) are the crops and mirrors
    averaged into each image's features (see ``encoders``). ``image_normalization='imagenet'`` and
    ``text_windows=False`` switch off each encoder's own input handling, to measure what it brings.
    With ``given_dir``, vectors come from the user's files there (see ``given``) instead of the
    encoders (pickles only with ``given_allow_pickle``). ``backend`` and ``precision`` choose the encoders'
    runtime (see ``runtimes``). ``cluster`` (see ``cluster``) spreads the shards of every feature entry over a
    Dask cluster's workers.
    """
    kinds = (*TEXT_KINDS, lexical.KIND)
    unknown = set(text_kinds) - set(kinds) - {"concat"}
    if unknown:
        raise ValueError(f"unknown text kinds {sorted(unknown)}; choose from {kinds + ('concat',)}")
    if not concat_parts or set(concat_parts) - set(kinds) or len(set(concat_parts)) < len(concat_parts):
        raise ValueError(f"concat_parts must be distinct text kinds from {kinds}, got {list(concat_parts)}")
    concat_parts = list(concat_parts)
    base = list(dict.fromkeys(k for kind in text_kinds for k in (concat_parts if kind == "concat" else [kind])))
    if synthetic_scale is not None:
        root = synthetic.ensure(cache_dir, synthetic_scale, demo_seed, progress)
        given_dir = given_dir or root / "given"
    else:
        root = Path(data_dir) if data_dir else demo.ensure(cache_dir, demo_recipes, demo_seed)
    photos = synthetic_scale is None  # a synthetic corpus lists photos it does not have (its features are given)
    ds = Recipe1M(root, ingredients, need_files=photos)
    fingerprint = ds.fingerprint()
    with connect(cluster) as client:
        if given_dir:
            encoders = {"image": {"name": "given"}, "text": {"name": "given"}}
            image_of = lambda split: given.import_features(  # noqa: E731
                ds, split, given.find(given_dir, f"image_{split}"), cache_dir, fingerprint, "image",
                all_images=(split == "train"), progress=progress, allow_pickle=given_allow_pickle)
            text_of = lambda split, kind: given.import_features(  # noqa: E731
                ds, split, given.find(given_dir, f"text_{kind}_{split}"), cache_dir, fingerprint, "text", kind,
                progress=progress, allow_pickle=given_allow_pickle)
        else:
            images = ImageEncoder(image_encoder, image_weights, batch_size, num_workers, device, image_views,
                                  image_normalization, backend, precision, cache_dir)
            texts = TextEncoder(text_encoder, text_layer, text_pooling, batch_size=batch_size, device=device,
                                cache_dir=cache_dir, windows=text_windows, backend=backend, precision=precision)
            encoders = {"image": images.config, "text": texts.config}
            image_of = lambda split: image_features(  # noqa: E731
                ds, split, images, cache_dir, fingerprint, all_images=(split == "train"), progress=progress,
                client=client)
            text_of = lambda split, kind: text_features(  # noqa: E731
                ds, split, kind, texts, cache_dir, fingerprint, progress, client)
        lexical_of, lexical_model = ({}, None) if lexical.KIND not in base else \
            lexical.features(ds, cache_dir, lexical_dims)
        manifest = {"data": {"root": str(root), "fingerprint": fingerprint, "ingredients": ingredients,
                             "photos": photos, "counts": ds.counts().reset_index().to_dict("records")},
                    "source": "given" if given_dir else "generated", "encoders": encoders,
                    "cluster": describe(client), "image": {}, "text": {k: {} for k in text_kinds},
                    "concat_parts": concat_parts}
        if lexical_model:
            encoders["lexical"] = lexical.config(lexical_dims)
            manifest["lexical_model"] = str(lexical_model)
        entries = {}  # what -> {split: entry}
        for split in SPLITS:
            manifest["image"][split] = entries.setdefault("image", {})[split] = str(image_of(split))
            done = {kind: str(lexical_of[split] if kind == lexical.KIND else text_of(split, kind)) for kind in base}
            for kind in text_kinds:
                manifest["text"][kind][split] = [done[k] for k in concat_parts] if kind == "concat" else done[kind]
            for kind, entry in done.items():
                if kind != lexical.KIND:  # the lexical view is computed here, never given
                    entries.setdefault(f"text {kind}", {})[split] = entry
        if given_dir:
            given.check_widths(entries)
    save_json(Path(run_dir) / "features.json", manifest)
    save_csv(Path(run_dir) / "skipped.csv", RunDir(run_dir).skipped_table(ds))
    return manifest


def embed_texts(run_dir, texts: list[str], kind: str):
    """Text features of free text for one text kind, as the run's extraction made them: the neural encoder's
    (model, layer, pooling), the fitted lexical model's for ``lexical``, and for ``concat`` each part's side by
    side (the text standing for every part)."""
    run = as_run(run_dir)
    manifest, parts = run.manifest, run.concat_kinds if kind == "concat" else [kind]
    if any(p != lexical.KIND for p in parts):
        cfg = manifest["encoders"]["text"]
        if cfg["name"] == "given":
            raise ValueError("this run uses given text features: there is no encoder for free text")
        neural = encoder_like(TextEncoder, json.dumps(cfg, sort_keys=True)).encode(texts, progress=False)
    lex = lexical.Lexical.load(manifest["lexical_model"]) if lexical.KIND in parts else None
    return np.hstack([lex.transform(texts) if p == lexical.KIND else neural for p in parts])


@functools.lru_cache(maxsize=4)


def encoder_like(cls, config: str, **kwargs):
    """``cls.like`` the encoder a run's features.json describes (JSON ``config``), loaded once per process and
    without the loading bar: loading takes seconds, a query's forward pass a few milliseconds."""
    from transformers.utils import logging as hf_logging
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return cls.like(json.loads(config), **kwargs)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
