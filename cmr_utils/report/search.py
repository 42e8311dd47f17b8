"""Try a run's shared space: the nearest recipes to a photo, or the nearest photos to a text, in its test set.

    python -m cmr_utils search RUN [QUERY...] [--interactive] [--k 10] [--kind TEXT_KIND] [--to recipes|photos]

RUN is a run folder (or a name under reports/). A QUERY that is an existing file is a photo,
anything else is text; a photo finds recipes and a text finds photos unless ``--to`` says
otherwise. The space is the run's chosen configuration (``--kind``: that text kind's best on
val). The test set's latent vectors are cached in ``RUN/search/``, and an encoder loads once per
process (seconds; ``--interactive`` then reads queries one a line), so a query costs one encoder
pass and one matrix product: well under a second at Recipe1M's 51k test pairs
(benchmarks/search_latency.py).
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cmr_utils.evaluate import stage as evaluation

from cmr_utils.features import extract as extraction
from cmr_utils.io import atomic_file, key
from cmr_utils.fit.cache import entry_key, from_arrays, to_arrays
from cmr_utils.evaluate.results import CONFIG_COLUMNS, best_per_kind
from cmr_utils.evaluate.retrieval import normalize, penalty
from cmr_utils.run_dir import RunDir, as_run

from cmr_utils.paths import REPORTS
GALLERY_VERSION = 2  # 2: hubness penalties stored with the gallery (a version-1 gallery ranked without them)


@dataclass
class Gallery:
    """A run's test pairs in one configuration's space; rows of ``photos`` and ``recipes`` are normalised
    for its score (a dot product is the score) and aligned with ``index`` (recipe_id, image_id, title, path)."""
    run_dir: RunDir
    config: dict
    space: object  # the fitted space (``fit.space.Space``)
    encoders: dict  # features.json "encoders": how to embed a new query like the run's features
    photos: np.ndarray
    recipes: np.ndarray
    index: pd.DataFrame
    penalties: dict = field(default_factory=dict)  # {"photos"|"recipes": each item's hubness} for a "+csls"-style score

    @property
    def label(self) -> str:
        c = self.config
        return f"{c['text_kind']}: {c['model']}, dim {c['latent_dim']}, {c['score']}"

    def normalize(self, Z: np.ndarray) -> np.ndarray:
        return normalize(Z, self.config["score"], self.space.corrs_).astype(np.float32)

    def embed_photos(self, paths: list[str]) -> np.ndarray:
        """Normalised latent vectors of photo files, by the image encoder the run's features came from."""
        cfg = self.encoders["image"]
        if cfg["name"] == "given":
            raise ValueError("this run uses given image features: there is no image encoder for a photo query")
        from cmr_utils.features.images import ImageEncoder  # torch loads for a photo query only
        encoder = extraction.encoder_like(ImageEncoder, json.dumps(cfg, sort_keys=True), num_workers=0,
                                          cache_dir=str(self.run_dir.cache))
        X, failed = encoder.encode([str(p) for p in paths], progress=False)
        if failed:
            raise ValueError("; ".join(f"{paths[i]}: {why}" for i, why in failed.items()))
        return self.normalize(self.space.transform(X, None)[0])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Normalised latent vectors of free texts; for ``concat`` the text stands for each of its parts."""
        F = extraction.embed_texts(self.run_dir, texts, self.config["text_kind"])
        return self.normalize(self.space.transform(None, F)[1])

    def top(self, Z: np.ndarray, k: int = 10, to: str = "recipes") -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), best first, of the ``k`` gallery items nearest to each query row (normalised
        latent vectors, or sums of them: the ranking is the score's)."""
        S = np.atleast_2d(Z) @ {"recipes": self.recipes, "photos": self.photos}[to].T
        if to in self.penalties:  # ranked as evaluated: less what the training queries give each item
            S = S - self.penalties[to].astype(S.dtype)
        k = min(k, S.shape[1])
        rows = np.argpartition(-S, k - 1, axis=1)[:, :k]
        rows = np.take_along_axis(rows, np.argsort(-np.take_along_axis(S, rows, 1), axis=1, kind="stable"), 1)
        return rows, np.take_along_axis(S, rows, 1)

    def search(self, queries: list[str], k: int = 10, to: str | None = None) -> list[pd.DataFrame]:
        """Per query (a photo file or a text), its top ``k`` recipes (id, title) or photos (path, title) with
        their scores; ``match`` marks the recipe of a query photo that is itself in the test set."""
        is_photo = [_is_photo(q) for q in queries]
        Z = np.zeros((len(queries), self.photos.shape[1]), np.float32)
        for flag, embed in ((True, self.embed_photos), (False, self.embed_texts)):
            which = [i for i, f in enumerate(is_photo) if f == flag]
            if which:
                Z[which] = embed([queries[i] for i in which])
        paths = dict(zip(self.index.path, self.index.recipe_id))
        out = []
        for q, photo, z in zip(queries, is_photo, Z):
            what = target(q, to)
            rows, scores = self.top(z, k, what)
            hits = self.index.iloc[rows[0]].set_axis(pd.RangeIndex(1, len(rows[0]) + 1, name="rank"))
            truth = paths.get(str(Path(q).resolve())) if photo else None
            show = ["recipe_id", "title"] if what == "recipes" else ["path", "title"]
            found = hits[show].assign(score=scores[0].round(3), match=hits.recipe_id == truth)
            out.append(found[["score", *show, "match"]])
        return out


def _is_photo(query: str) -> bool:
    try:
        return Path(query).is_file()
    except OSError:  # e.g. a text longer than a file name may be
        return False


def target(query: str, to: str | None = None) -> str:
    """What a query finds: ``to``, else recipes for a photo and photos for a text (the other modality)."""
    return to or ("recipes" if _is_photo(query) else "photos")


def load(run_dir, kind: str | None = None) -> Gallery:
    """The run's chosen configuration (results.csv's ``chosen``), or another text kind's best on val, over the
    test pairs; cached in ``run_dir/search``, keyed by the configuration, features.json and models.json
    (a refitted run recomputes it), so a query needs neither the features nor the corpus again."""
    run = as_run(run_dir)
    config = run.chosen
    if kind is not None and kind != config["text_kind"]:
        best = best_per_kind(run.results)
        if kind not in best.index:
            raise ValueError(f"text kind {kind!r} is not in this run; choose from {list(best.index)}")
        config = best.loc[kind].copy()
        config["text_kind"] = kind
        config = {c: config[c].item() if hasattr(config[c], "item") else config[c] for c in CONFIG_COLUMNS}
    manifest = run.manifest
    stamp = _stamp(config, manifest, run.models)
    path = run / "search" / f"{config['text_kind']}.npz"
    if path.exists() and (cached := _read_gallery(run, path, stamp)) is not None:
        return cached
    space, (X, Y, index) = evaluation.space(run, config)
    photos, recipes = space.transform(X, Y)
    ds = run.dataset
    recipe = [ds.recipes[r] for r in index.recipe_id]
    index = index.assign(title=[r.title for r in recipe],
                         path=[str(ds.image_path(r.partition, i)) for r, i in zip(recipe, index.image_id)])
    gallery = Gallery(run, config, space, manifest["encoders"], photos, recipes, index)
    gallery.photos, gallery.recipes = gallery.normalize(photos), gallery.normalize(recipes)
    if hub := config["score"].partition("+")[2]:
        # as in evaluation: photos are penalised by the training bank's texts, recipes by its images
        bank_img, bank_txt = (gallery.normalize(z) for z in space.transform(*evaluation.train_bank(run, config)))
        gallery.penalties = {"photos": penalty(gallery.photos, bank_txt, hub),
                             "recipes": penalty(gallery.recipes, bank_img, hub)}
    _write_gallery(path, gallery, stamp)
    return gallery


def _write_gallery(path: Path, g: Gallery, stamp: str) -> None:
    """A gallery as npz + JSON (nothing pickled: whoever can write a run folder must not run code in a search)."""
    about = {"key": stamp, "config": g.config, "encoders": g.encoders, "columns": list(g.index.columns)}
    columns = {f"index_{c}": np.array(g.index[c].astype(str).tolist(), dtype=str) for c in g.index.columns}
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, photos=g.photos, recipes=g.recipes, about=np.array(json.dumps(about)), **columns,
                 **to_arrays(g.space, "space_"), **{f"penalty_{k}": v for k, v in g.penalties.items()})


def _read_gallery(run_dir: RunDir, path: Path, stamp: str) -> Gallery | None:
    """The gallery cached at ``path`` if it was made for ``stamp``, else None."""
    with np.load(path, allow_pickle=False) as z:
        about = json.loads(str(z["about"]))
        if about["key"] != stamp:
            return None
        index = pd.DataFrame({c: z[f"index_{c}"].astype(object) for c in about["columns"]})
        return Gallery(run_dir, about["config"], from_arrays(dict(z), "space_"), about["encoders"], z["photos"],
                       z["recipes"], index, {k[8:]: z[k] for k in z.files if k.startswith("penalty_")})


def _stamp(config: dict, manifest: dict, models: list[dict]) -> str:
    """The key of a gallery: its configuration, and what the features and models are (their content keys),
    not the paths that reached them; the data root stays in, as the gallery keeps its photos' paths."""
    features = {**manifest, "image": entry_key(list(manifest["image"].values())),
                "text": {k: entry_key(list(v.values())) for k, v in manifest["text"].items()}}
    return key(config, features, [{**m, "path": Path(m["path"]).name} for m in models], GALLERY_VERSION)


def galleries(run_dir) -> dict[str, Gallery]:
    """Every text kind's gallery (``load``), the chosen one first."""
    run = as_run(run_dir)
    kinds = dict.fromkeys([run.chosen["text_kind"], *best_per_kind(run.results).index])
    return {k: load(run, k) for k in kinds}


def session(run: str, queries: list[str], k: int = 10, kind: str | None = None, to: str | None = None,
            interactive: bool = False) -> bool:
    """Print the hits of ``queries``, then (``interactive``) of one query a line from stdin until an empty one,
    in run ``run`` (a folder or a name under reports/); whether every query had hits."""
    gallery = load(Path(run) if Path(run).is_dir() else REPORTS / run, kind)
    ok = all([_answer(gallery, q, k, to) for q in queries])
    while interactive and (query := _ask()):
        ok = _answer(gallery, query, k, to) and ok
    return ok


def _ask() -> str:
    try:
        return input("\nquery (a photo file or a text; empty to stop)> ").strip()
    except EOFError:
        return ""


def _answer(gallery: Gallery, query: str, k: int, to: str | None) -> bool:
    """Print one query's hits (or why there are none); whether it had any."""
    try:
        hits = gallery.search([query], k, to)[0]
    except ValueError as e:
        print(f"[cmr] error: {e}", file=sys.stderr)
        return False
    print(f"\n{query!r} → {target(query, to)} ({gallery.label})")
    hits = hits.assign(**{c: hits[c].map(printable) for c in ("title", "path") if c in hits})
    print(hits.assign(title=hits.title + np.where(hits.match, "  ✓", "")).drop(columns="match").to_string())
    return True


def printable(text: str) -> str:
    """Text from the data as a terminal shows it literally: control characters (escape sequences that could
    recolour, retitle or rewrite the terminal) written as ``\\xNN`` escapes."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda m: f"\\x{ord(m.group()):02x}", str(text))
