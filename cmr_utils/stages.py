"""The pipeline's stages as functions, one per notebook; they talk only through files in ``run_dir``.

extract -> ``features.json`` (where each feature entry lives), fit -> ``models.json`` (fitted
models), evaluate -> ``results.csv`` (one row per configuration, split, protocol and direction).
"""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cmr_utils import paths
from cmr_utils.data import demo
from cmr_utils.data import given
from cmr_utils.features import lexical
from cmr_utils.data import synthetic
from cmr_utils.cluster import connect, describe
from cmr_utils.data.recipe1m import SPLITS, TEXT_KINDS, Recipe1M
from cmr_utils.features.encoders import ImageEncoder, TextEncoder
from cmr_utils.features.store import Features, Rows, concat, image_features, paired, text_features
from cmr_utils.io import key, save_csv, save_json
from cmr_utils.progress import bar
from cmr_utils.fit.models import LINEAR, NESTED, OWN_PARAMS, Moments, SharedSpace, fit_cached, moments_cached
from cmr_utils.fit.models import load as load_model
from cmr_utils.cluster import run as cluster_run
from cmr_utils.evaluate.results import CONFIG_COLUMNS, CV_KEYS, chosen, cv_means, ranked
from cmr_utils.evaluate.results import load as load_results
from cmr_utils.evaluate.retrieval import evaluate as evaluate_bags
from cmr_utils.evaluate.retrieval import BANK, protocols

CONCAT_PARTS = ("title", "ingredients", "instructions")  # concat's default parts
OUTPUTS = {"01_extract": ("features.json",), "02_fit": ("models.json",),
           "03_evaluate": ("results.csv", "dropped.csv")}  # what each notebook hands to the next ones


def cache_folder(cache_dir=None) -> Path:
    """The cache a notebook uses: ``cache_dir``, or the project's ``cache/`` (the runner's), from any folder."""
    return Path(cache_dir) if cache_dir else paths.CACHE


def run_folder(notebook: str, params: dict) -> Path:
    """The folder a notebook run by hand reads and writes: ``params['run_dir']``, or the project's
    ``reports/interactive`` from any working directory.

    In that default folder, a notebook whose upstream outputs (``OUTPUTS``) are not there takes them from
    the latest runner output under ``reports/`` made with this notebook's parameters (``params``, e.g.
    the notebook's ``globals()``), so ``02_fit`` opened after ``make report`` goes on from the runner's
    features; it says which.
    """
    if params.get("run_dir"):
        return Path(params["run_dir"])
    run_dir = paths.REPORTS / "interactive"
    need = [f for nb, files in OUTPUTS.items() if nb < notebook for f in files]
    if all((run_dir / f).exists() for f in need):
        return run_dir
    from cmr_utils.runner.notebooks import declared
    defaults = declared()[notebook]
    mine = {k: params.get(k, v) for k, v in defaults.items() if k not in ("run_dir", "cache_dir", "cluster")}
    cache = str(cache_folder(params.get("cache_dir")).resolve())
    runs = []
    for saved in run_dir.parent.glob("**/params.yaml"):
        ran = yaml.safe_load(saved.read_text()) or {}
        if saved.parent != run_dir and all((saved.parent / f).exists() for f in need) and \
                all(ran.get(k, defaults[k]) == v for k, v in mine.items()) and ran.get("cache_dir") in (None, cache):
            runs.append(saved.parent)
    if runs:
        latest = max(runs, key=lambda r: (r / need[-1]).stat().st_mtime)
        run_dir.mkdir(parents=True, exist_ok=True)
        for f in need:
            shutil.copy2(latest / f, run_dir / f)
        print(f"{', '.join(need)}: from {latest.relative_to(paths.ROOT)}, the latest runner output with these parameters")
    return run_dir


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
    save_csv(Path(run_dir) / "skipped.csv", skipped_table(run_dir, ds))
    return manifest


def dataset(manifest: dict) -> Recipe1M:
    """The run's recipes, read as extraction read them (a synthetic corpus has no photo files)."""
    return Recipe1M(manifest["data"]["root"], manifest["data"]["ingredients"], need_files=manifest["data"]["photos"])


def skipped_table(run_dir, ds: Recipe1M | None = None) -> pd.DataFrame:
    """Everything the data layer and the encoders dropped, with the reason, from the run's manifest (``ds``: its
    recipes, already read)."""
    manifest = _read(run_dir, "features.json")
    frames = [(ds or dataset(manifest)).skipped.assign(split="")]
    for split, path in manifest["image"].items():
        frames.append(Features.load(path).skipped.assign(stage="image encoder", split=split))
    entries = {p: split for paths in manifest["text"].values() for split, path in paths.items()
               for p in (path if isinstance(path, list) else [path])}  # concat lists its parts' entries
    for path, split in entries.items():
        feats = Features.load(path)
        frames.append(feats.skipped.assign(stage=f"text encoder ({feats.meta['text_kind']})", split=split))
    return pd.concat(frames, ignore_index=True)[["stage", "split", "id", "reason"]]


QUERY_SET = "query set (evaluation)"


def read_skipped(run_dir) -> pd.DataFrame:
    """``skipped.csv`` (stage, split, id, reason): what extraction and evaluation left out and why, ids as written."""
    return pd.read_csv(Path(run_dir) / "skipped.csv", dtype=str, keep_default_na=False)


def pairs(manifest: dict, kind: str, split: str, recipes=None):
    """(image features, text features, index) of one text kind and split, row-aligned.

    ``recipes`` (recipe ids) restricts the pairs to those recipes, in image-entry order.
    """
    entry = manifest["text"][kind][split]
    text = concat([Features.load(p) for p in entry]) if isinstance(entry, list) else Features.load(entry)
    return paired(Features.load(manifest["image"][split]), text, recipes)


def concat_kinds(manifest: dict) -> list[str]:
    """The text kinds ``concat`` stacks in a run, in order (a features.json from before they were a parameter:
    the default three)."""
    return list(manifest.get("concat_parts", CONCAT_PARTS))


def text_encoder_name(manifest: dict, kind: str) -> str:
    """What a text kind's features came from, as results.csv names it: the neural encoder, ``lexical``, or both
    for a ``concat`` that stacks them."""
    parts = concat_kinds(manifest) if kind == "concat" else [kind]
    return " + ".join([manifest["encoders"]["text"]["name"]] * any(p != lexical.KIND for p in parts)
                      + [lexical.KIND] * (lexical.KIND in parts))


def query_set(manifest: dict, split: str) -> tuple[list[str], pd.DataFrame]:
    """(recipe ids, dropped) of the pairs every requested text kind is evaluated on in ``split``.

    A recipe counts only if it has an image and the text of every requested kind (and of every
    part of ``concat``), so all kinds, models and scores are ranked on the same recipes and the
    same seeded bags. ``dropped`` (split, recipe_id, reason) lists the recipes with an image
    that lack some kind's text.
    """
    parts = concat_kinds(manifest)
    kinds = list(dict.fromkeys(k for kind in manifest["text"] for k in (parts if kind == "concat" else [kind])))
    have = {}
    for kind in kinds:
        entry = manifest["text"][kind][split] if kind in manifest["text"] else \
            manifest["text"]["concat"][split][parts.index(kind)]
        have[kind] = set(Features.load(entry).index.recipe_id)
    keep, dropped = [], []
    for rid in dict.fromkeys(Features.load(manifest["image"][split]).index.recipe_id):
        missing = [k for k in kinds if rid not in have[k]]
        if missing:
            dropped.append((split, rid, "no " + " / ".join(missing) + " text"))
        else:
            keep.append(rid)
    return keep, pd.DataFrame(dropped, columns=["split", "recipe_id", "reason"])


def fit(run_dir, cache_dir, models=("ridge",), latent_dims=(50,), shrinkage=(0.5,), standardize=True,
        pca=None, kernel_landmarks=1000, kernel_gamma=None, seed=0, cluster=None, progress=True) -> pd.DataFrame:
    """Fit every (text kind, model, shrinkage, latent dim) on the train pairs (cached); write ``models.json``.

    The linear models (``models.LINEAR``) are solved from the train pairs' moments, computed once
    per text kind (on the cluster, with ``cluster``) and cached; a nested model is fitted once per
    shrinkage with all its components and every latent dim is a prefix, so a sweep costs about
    one fit. Plain ``cca`` has no shrinkage. ``pca`` (exact), the kernel settings and ``seed``
    (kernel landmarks, contrastive batches) reach only the models that read them
    (``models.OWN_PARAMS``); each entry keeps its estimator parameters for refits.
    """
    manifest = _read(run_dir, "features.json")
    own = {"pca": pca, "kernel_landmarks": kernel_landmarks, "kernel_gamma": kernel_gamma, "seed": seed}
    entries = []
    with connect(cluster) as client:
        for kind in manifest["text"]:
            X, Y, _ = pairs(manifest, kind, "train")
            keys = manifest["image"]["train"], manifest["text"][kind]["train"]
            moments = functools.cache(lambda: moments_cached(cache_dir, *keys, X, Y, client, progress))  # noqa: B023
            for model in models:
                for c in ([0.0] if model == "cca" else shrinkage):
                    for dim in latent_dims:
                        params = {"model": model, "n_components": dim, "shrinkage": float(c),
                                  "standardize": standardize, "pca": None,
                                  **{k: own[k] for k in OWN_PARAMS.get(model, ())}}
                        est, path = fit_cached(cache_dir, *keys, X, Y, moments, **params)
                        entries.append({"text_kind": kind, "model": model, "shrinkage": float(c), "latent_dim": dim,
                                        "n_components": est.n_components_, "train_pairs": len(X),
                                        "top_corr": float(est.corrs_[0]), "params": params, "path": str(path)})
    save_json(Path(run_dir) / "models.json", entries)
    return pd.DataFrame(entries).drop(columns="params")


def evaluate(run_dir, scores=("correlation",), bag_sizes=(1000,), n_bags=10, seed=0,
             select_by="medr", select="val", folds=5, cluster=None, progress=True) -> pd.DataFrame:
    """Score every fitted model on val and test; mark the chosen configuration; write ``results.csv``.

    Each split is evaluated on one query set shared by every text kind (``query_set``; what it
    drops goes to ``dropped.csv``) and the same seeded bags. Protocols are '1k', '10k' and 'full'
    (see ``retrieval.protocols``); test is ranked at every one, val (which only chooses) at its
    main protocol; ``n_pairs`` is the query set's size. The choice uses image->recipe at the main
    protocol (``results.chosen``): on val (``select='val'``) or averaged over ``folds`` folds of
    train+val (``'kfold'``: ``cross_validate``, ``kfold.csv``). The chosen configuration is also
    refitted on train+val and ranked on test (``refit``): those rows have ``fit_on``
    'train+val', all others 'train'. Test numbers never take part in a choice. Each fitted model
    (all latent dims of a nested one at once) on each split is a task, on the cluster's workers
    with ``cluster``.
    """
    if select not in ("val", "kfold"):
        raise ValueError(f"select must be 'val' or 'kfold', got {select!r}")
    manifest = _read(run_dir, "features.json")
    queries, dropped = {}, []
    for split in ("val", "test"):
        queries[split], d = query_set(manifest, split)
        dropped.append(d)
        if len(queries[split]) < 2:
            raise ValueError(f"{split}: only {len(queries[split])} recipes have an image and every requested text "
                             "kind; retrieval needs at least two (see dropped.csv)")
    save_csv(Path(run_dir) / "dropped.csv", pd.concat(dropped, ignore_index=True))
    query = pd.concat(dropped, ignore_index=True).rename(columns={"recipe_id": "id"}).assign(stage=QUERY_SET)
    before = read_skipped(run_dir) if (Path(run_dir) / "skipped.csv").exists() else \
        pd.DataFrame(columns=["stage", "split", "id", "reason"])  # features made before skipped.csv, or by hand
    save_csv(Path(run_dir) / "skipped.csv", pd.concat([before[before.stage != QUERY_SET], query[before.columns]],
                                                      ignore_index=True))
    data = {(kind, split): pairs(manifest, kind, split, queries[split])[:2]
            for kind in manifest["text"] for split in ("val", "test")}
    banks = {kind: _bank([pairs(manifest, kind, "train")[:2]], seed) if _hubness(scores) else None
             for kind in manifest["text"]}
    groups = {}  # entries that share one fitted model file: the latent dims of a nested model
    for entry in _read(run_dir, "models.json"):
        groups.setdefault(entry["path"], []).append(entry)
    main = [min(bag_sizes, key=lambda b: (b <= 0, b))]
    # test (every protocol) before val (its main one): the long tasks first, the short ones fill the tail
    tasks = [(manifest, group, split, *data[group[0]["text_kind"], split], banks[group[0]["text_kind"]], scores,
              sizes, n_bags, seed)
             for split, sizes in (("test", bag_sizes), ("val", main)) for group in groups.values()]
    with connect(cluster) as client:
        rows = cluster_run(_evaluate_model, tasks, client, "evaluate", [len(t[1]) for t in tasks], progress,
                           combine=lambda a, b: a + b)
        df = pd.DataFrame(rows)
        cv = cross_validate(run_dir, scores, bag_sizes, n_bags, seed, folds, progress) if select == "kfold" else None
        best = chosen(df, select_by, cv)
        df["chosen"] = (df[CONFIG_COLUMNS] == best).all(axis=1)
        df = pd.concat([df, refit(run_dir, best, bag_sizes, n_bags, seed, client).assign(chosen=True)],
                       ignore_index=True)
    save_csv(Path(run_dir) / "results.csv", df.round(4))
    return df


def _hubness(scores) -> bool:
    return any("+" in s for s in scores)


def _bank(parts: list[tuple], seed: int) -> tuple:
    """(X, Y): at most ``BANK`` of the training pairs in ``parts`` ([(X, Y), ...]), a seeded subset: the
    queries a hubness-corrected score is normalised by. One part stays a view (``Rows``): a task
    carries its row numbers, not its rows."""
    sizes = [len(X) for X, _ in parts]
    n, starts = sum(sizes), np.cumsum([0, *sizes])
    idx = np.arange(n) if n <= BANK else np.sort(np.random.default_rng(seed).choice(n, BANK, replace=False))
    taken = [[v.take(i) if isinstance(v, Rows) else np.asarray(v)[i] for v in part]
             for part, lo, hi in zip(parts, starts, starts[1:]) for i in [idx[(idx >= lo) & (idx < hi)] - lo]]
    return taken[0] if len(taken) == 1 else tuple(np.vstack([np.asarray(t[j]) for t in taken]) for j in (0, 1))


def _evaluate_model(manifest, group, split, X, Y, bank, scores, bag_sizes, n_bags, seed) -> list[dict]:
    """Rows of one fitted model's entries (its latent dims) on one split's pairs X, Y (``bank``: training
    pairs for a hubness-corrected score, or None).

    A nested model projects the split once with all its components; a latent dim's vectors are
    the first columns, which is what the model cut to that dim gives.
    """
    full, rows = load_model(group[0]["path"]), []
    Zi, Zt = full.transform(X, Y)
    Bi, Bt = full.transform(*bank) if bank is not None else (None, None)
    for entry in group:  # a model that is not nested has one entry
        est = full.head(entry["latent_dim"]) if full.model in NESTED else full
        k = est.n_components_
        rows += _ranked(manifest, entry, est, Zi[:, :k], Zt[:, :k], split, scores, bag_sizes, n_bags, seed,
                        "train", projected=True, bank=None if bank is None else (Bi[:, :k], Bt[:, :k]))
    return rows


def _ranked(manifest, entry, est, X, Y, split, scores, bag_sizes, n_bags, seed, fit_on,
            projected=False, bank=None) -> list[dict]:
    """Rows of results.csv: one model ranking one split's pairs (or their latent vectors, ``projected``;
    ``bank`` likewise), per score, protocol and direction."""
    image, text = manifest["encoders"]["image"]["name"], text_encoder_name(manifest, entry["text_kind"])
    Zi, Zt = (X, Y) if projected else est.transform(X, Y)
    if bank is not None and not projected:
        bank = est.transform(*bank)
    return [{"text_kind": entry["text_kind"], "features": manifest["source"], "image_encoder": image,
             "text_encoder": text, "model": entry["model"], "shrinkage": entry["shrinkage"],
             "latent_dim": entry["latent_dim"], "n_components": est.n_components_, "fit_on": fit_on, "score": score,
             "split": split, "protocol": label, "n_pairs": len(X), **r,
             "stable_digits": getattr(est, "stable_digits_", None)}
            for score in scores for label, bag in protocols(bag_sizes, len(X)).items()
            for r in evaluate_bags(Zi, Zt, score, bag, n_bags, seed, est.corrs_, bank)]


def cross_validate(run_dir, scores=("correlation",), bag_sizes=(1000,), n_bags=10, seed=0,
                   folds=5, progress=True) -> pd.DataFrame:
    """K-fold cross-validation of every fitted configuration on the train+val pairs; writes ``kfold.csv``.

    A small val split makes a noisy judge; here every train+val recipe judges. The recipes of the
    train and val query sets are dealt into ``folds`` seeded folds. Per fold, each configuration
    is refitted on all other train+val pairs (every photo of the other recipes, and the recipes
    lacking some kind's text) and ranks the fold's recipes, one photo each as on val and test, at
    the fold's main protocol (its smallest bag), on the same bags for every configuration. Test is
    never read. Cost: nested solvers fit once per fold at their largest latent dim and are cut
    (``SharedSpace.head``); linear models take the fold's complement from the moments of all
    pairs minus the fold's (``Moments``), so a fold costs one solve. (The train+val pairs are read
    into memory here: k-fold selection is for small data such as the real sample.)
    """
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    manifest = _read(run_dir, "features.json")
    recipes = query_set(manifest, "train")[0] + query_set(manifest, "val")[0]
    fold_of = dict(zip(np.random.default_rng(seed).permutation(recipes), np.arange(len(recipes)) % folds))
    entries, rows, by_kind = _read(run_dir, "models.json"), [], {}
    for e in entries:  # per text kind, the configurations that differ only in latent dim
        by_kind.setdefault(e["text_kind"], {}).setdefault(
            key({k: v for k, v in e["params"].items() if k != "n_components"}), []).append(e)
    steps = bar(total=folds * sum(map(len, by_kind.values())), desc="k-fold", disable=not progress)
    for kind, groups in by_kind.items():
        parts = [pairs(manifest, kind, split) for split in ("train", "val")]
        X, Y = (np.vstack([p[i] for p in parts]) for i in (0, 1))
        ids = pd.concat([p[2].recipe_id for p in parts], ignore_index=True)
        fold, first = ids.map(fold_of).fillna(-1).to_numpy(int), ~ids.duplicated().to_numpy()
        total = Moments.of(X, Y) if any(g[0]["model"] in LINEAR for g in groups.values()) else None
        for f in range(folds):
            out, held = fold == f, np.flatnonzero((fold == f) & first)
            rest = None if total is None else total - Moments.of(X[out], Y[out])
            label, bag = next(iter(protocols(bag_sizes, len(held)).items()))
            bank = _bank([(X[~out], Y[~out])], seed) if _hubness(scores) else None  # the fold's training pairs
            for group in groups.values():
                for e, est in _fold_fits(group, X, Y, out, rest):
                    Zi, Zt = est.transform(X[held], Y[held])
                    latent = None if bank is None else est.transform(*bank)
                    rows += [{"text_kind": kind, "model": e["model"], "shrinkage": e["shrinkage"],
                              "latent_dim": e["latent_dim"], "score": score, "fold": f, "protocol": label,
                              "n_pairs": len(held), **r}
                             for score in scores
                             for r in evaluate_bags(Zi, Zt, score, bag, n_bags, seed, est.corrs_, latent)]
                steps.update()
    steps.close()
    cv = pd.DataFrame(rows).round(4)  # the numbers kfold.csv keeps: the choice and the report rank the same ones
    save_csv(Path(run_dir) / "kfold.csv", cv)
    return cv


def _fold_fits(group: list[dict], X, Y, out: np.ndarray, rest: Moments | None) -> list[tuple]:
    """(entry, its model fitted on the rows not ``out``, whose moments are ``rest``) for entries that
    differ only in latent dim."""
    params = group[0]["params"]
    if params["model"] not in NESTED:
        return [(e, SharedSpace(**e["params"]).fit(X[~out], Y[~out])) for e in group]
    est = SharedSpace(**{**params, "n_components": max(e["params"]["n_components"] for e in group)})
    est = est.fit_moments(rest) if params["model"] in LINEAR else est.fit(X[~out], Y[~out])
    return [(e, est.head(e["params"]["n_components"])) for e in group]


def refit(run_dir, config, bag_sizes=(1000,), n_bags=10, seed=0, client=None) -> pd.DataFrame:
    """Rows of one configuration refitted on the train+val pairs and ranked on test, ``fit_on`` 'train+val'.

    The estimator parameters are its train fit's, and the fit is cached beside it (a linear
    model from the train moments plus the val pairs' moments); only the configuration's score is
    ranked, on test's query set and bags. Val is then spent, so these rows exist only on test and
    take no part in any choice.
    """
    manifest, entry = _read(run_dir, "features.json"), _entry(run_dir, config)
    kind, cache_dir = entry["text_kind"], Path(entry["path"]).parents[1]
    parts = {split: pairs(manifest, kind, split)[:2] for split in ("train", "val")}
    keys = {split: (manifest["image"][split], manifest["text"][kind][split]) for split in ("train", "val")}

    def moments():
        m = [moments_cached(cache_dir, *keys[s], *parts[s], client, progress=False) for s in ("train", "val")]
        return m[0] + m[1]

    X, Y = (None, None) if entry["model"] in LINEAR else \
        (np.vstack([np.asarray(parts[s][i]) for s in ("train", "val")]) for i in (0, 1))
    est, _ = fit_cached(cache_dir, *zip(*keys.values()), X, Y, moments, **entry["params"])
    bank = _bank(list(parts.values()), seed) if _hubness([config["score"]]) else None  # the refit's training pairs
    X, Y, _ = pairs(manifest, kind, "test", query_set(manifest, "test")[0])
    return pd.DataFrame(_ranked(manifest, entry, est, X, Y, "test", [config["score"]], bag_sizes, n_bags, seed,
                                "train+val", bank=bank))


def _entry(run_dir, config) -> dict:
    """The models.json entry of a configuration (text kind, model, shrinkage, latent dim)."""
    keys = ("text_kind", "model", "shrinkage", "latent_dim")
    return next(e for e in _read(run_dir, "models.json") if all(e[k] == config[k] for k in keys))


def kfold_ranking(run_dir, select: str = "kfold", top: int = 10) -> pd.DataFrame:
    """The ``top`` configurations by image→recipe medR (then R@10) averaged over the k folds of train+val,
    best (the chosen one) first, with the spread over folds; a line saying so when the choice was on val."""
    if select != "kfold":
        return pd.DataFrame({"k-fold cross-validation": ["not run: the configuration was chosen on val"]})
    ranking = ranked(cv_means(pd.read_csv(Path(run_dir) / "kfold.csv"))).head(top).reset_index(drop=True)
    metrics = ranking.columns.difference(CV_KEYS)
    ranking[metrics] = ranking[metrics].round(2)
    return ranking.set_axis(pd.RangeIndex(1, len(ranking) + 1, name="rank"))


def query_summary(run_dir) -> pd.DataFrame:
    """Per split: recipes with a photo, those dropped from the shared query set and why, and the pairs used."""
    res, dropped = load_results(run_dir), pd.read_csv(Path(run_dir) / "dropped.csv", dtype=str)
    used = res.groupby("split").n_pairs.first()
    rows = []
    for split in used.index:
        d = dropped[dropped.split == split]
        rows.append({"split": split, "with photo": int(used[split]) + len(d), "dropped": len(d),
                     "why": "; ".join(f"{n} × {reason}" for reason, n in d.reason.value_counts().items()) or "-",
                     "query pairs": int(used[split])})
    return pd.DataFrame(rows).set_index("split")


def space(run_dir, config) -> tuple:
    """(fitted SharedSpace, test pairs (X, Y, index)) of one configuration, e.g. a row of results.csv."""
    entry, manifest = _entry(run_dir, config), _read(run_dir, "features.json")
    return (load_model(entry["path"], entry["latent_dim"]),
            pairs(manifest, entry["text_kind"], "test", query_set(manifest, "test")[0]))


def train_bank(run_dir, config) -> tuple:
    """The training pairs' features (X, Y) that evaluation used as the bank of a hubness-corrected score
    for ``config``'s text kind (the same seeded subset beyond ``BANK``)."""
    seed = yaml.safe_load((Path(run_dir) / "params.yaml").read_text()).get("seed", 0)  # 03_evaluate's default
    bank = _bank([pairs(_read(run_dir, "features.json"), config["text_kind"], "train")[:2]], seed)
    return tuple(np.asarray(v) for v in bank)


def shown_path(path, run_dir) -> str:
    """A photo's path as a shared page shows it: within the run's data folder, not this machine's folders."""
    root = Path(_read(run_dir, "features.json")["data"]["root"])
    return str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else Path(path).name


def embed_texts(run_dir, texts: list[str], kind: str):
    """Text features of free text for one text kind, as the run's extraction made them: the neural encoder's
    (model, layer, pooling), the fitted lexical model's for ``lexical``, and for ``concat`` each part's side by
    side (the text standing for every part)."""
    manifest = _read(run_dir, "features.json")
    parts = concat_kinds(manifest) if kind == "concat" else [kind]
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


def _read(run_dir, name: str):
    path = Path(run_dir) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the notebook that writes it first "
                                "(01_extract -> features.json, 02_fit -> models.json).")
    return json.loads(path.read_text())
