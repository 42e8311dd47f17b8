"""The lexical text view: TF-IDF over a recipe's words (its ingredients and instructions; on request its
title too, and word pairs), reduced by TruncatedSVD.

Ingredient and instruction words are near-labels of what a dish looks like; a TF-IDF bag of
words reduced by a truncated SVD (latent semantic analysis) is the classic CCA text view (Gong et
al., IJCV 2014), costs seconds, and stands beside the neural features (``concat_parts``) or alone
(the text kind ``lexical``). Word pairs (``ngrams=2``) keep "olive oil" apart from "oil" and "olive".
The vectorizer and the SVD are fitted on the train split's text only and
then map every split, so nothing of val or test enters what train's features are. The fitted model is
kept as arrays (words, idf, components; nothing pickled) under ``<cache>/lexical/``, keyed by the
settings and the train recipes' text, so a free-text query (``search``) is mapped as extraction did.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from cmr_utils.data.recipe1m import SPLITS, Recipe, Recipe1M
from cmr_utils.features.store import cached, store
from cmr_utils.io import atomic_file, built, key

KIND = "lexical"
VERSION = 2  # bump when the meaning of the stored model or features changes
# words of two letters or more (quantities and temperatures are not what a photo shows), sublinear counts,
# English stop words out, and a word must occur in 2 train recipes and in at most half of them
TFIDF = {"sublinear_tf": True, "stop_words": "english", "min_df": 2, "max_df": 0.5,
         "token_pattern": r"(?u)\b[^\W\d_]{2,}\b"}
SEED = 0  # TruncatedSVD's randomized solver
CHUNK = 16384  # texts mapped at a time when writing an entry
PARTS = ("ingredients", "instructions")  # what the view reads by default
READABLE = ("title", "ingredients", "instructions")  # what it may read


def text(recipe: Recipe, parts=PARTS) -> str:
    """What the lexical view reads: the recipe's ``parts`` (text kinds), in that order."""
    return "\n".join(t for t in (recipe.text(p) for p in parts) if t)


def config(dims: int, parts=PARTS, ngrams: int = 1) -> dict:
    """The lexical encoder's settings, as the feature entries, the cache keys and the report show them."""
    return {"name": KIND, "dims": dims, "parts": list(parts), "ngrams": ngrams, **TFIDF, "seed": SEED,
            "sklearn": sklearn.__version__, "version": VERSION}


class Lexical:
    """A fitted TF-IDF vocabulary (``words``: words and, with ``ngrams`` 2, word pairs; ``idf``) and SVD
    ``components`` (k × words): text -> k features."""

    def __init__(self, words, idf: np.ndarray, components: np.ndarray, ngrams: int = 1):
        self.words, self.idf, self.components = list(words), np.asarray(idf), np.asarray(components, np.float32)
        self.ngrams = ngrams
        self._tfidf = TfidfVectorizer(**TFIDF, ngram_range=(1, ngrams), vocabulary=self.words, dtype=np.float32)
        self._tfidf.idf_ = self.idf

    @classmethod
    def fit(cls, texts: list[str], dims: int, ngrams: int = 1) -> "Lexical":
        """Fit on ``texts`` (the train split's). ``dims`` is capped below the number of texts and of words
        kept: an SVD has no more directions than that."""
        tfidf = TfidfVectorizer(**TFIDF, ngram_range=(1, ngrams), dtype=np.float32)
        T = tfidf.fit_transform(texts)
        svd = TruncatedSVD(min(dims, min(T.shape) - 1), random_state=SEED).fit(T)
        return cls(tfidf.get_feature_names_out(), tfidf.idf_, svd.components_, ngrams)

    def transform(self, texts: list[str]) -> np.ndarray:
        """float32 features (len(texts) × k); a text with no known word maps to zeros."""
        return np.asarray(self._tfidf.transform(texts) @ self.components.T, np.float32)

    def save(self, path: str | Path) -> None:
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, words=np.array(self.words, dtype=str), idf=self.idf, components=self.components,
                     ngrams=self.ngrams)

    @classmethod
    def load(cls, path: str | Path) -> "Lexical":
        with np.load(path, allow_pickle=False) as z:  # a model from before word pairs has no ``ngrams``: 1
            return cls(z["words"].tolist(), z["idf"], z["components"], int(z["ngrams"]) if "ngrams" in z else 1)


def _digest(items: list[tuple[str, str]]) -> str:
    """A content key of (recipe id, text) pairs, hashed as a stream: Recipe1M's train text is never one string."""
    h = hashlib.sha1()
    for item in items:
        h.update(json.dumps(item).encode())
    return h.hexdigest()[:16]


def features(ds: Recipe1M, cache_dir: str | Path, dims: int = 256, parts=PARTS,
             ngrams: int = 1) -> tuple[dict[str, Path], Path]:
    """({split: feature entry}, fitted model file) of the lexical view of every split; cached.

    The model is fitted once on the train split's texts and keyed by them and the settings; each
    split's entry is keyed by the model and that split's texts. Recipes without text in any of
    ``parts`` are skipped, as an encoder skips empty text; the entries' ``encoder`` is
    ``config(dims, parts, ngrams)`` with the model's key, and their meta records the components kept.
    """
    if not parts or set(parts) - set(READABLE) or len(set(parts)) < len(parts):
        raise ValueError(f"lexical_parts must be distinct text kinds from {READABLE}, got {list(parts)}")
    texts = {s: [(r.id, text(r, parts)) for r in ds.split(s)] for s in SPLITS}
    cfg = config(dims, parts, ngrams)
    model_key = key(cfg, _digest(texts["train"]))
    path = Path(cache_dir) / KIND / f"{model_key}.npz"

    def fitted() -> Path:
        return built(path, lambda dest: Lexical.fit([t for _, t in texts["train"] if t], dims, ngrams).save(dest))

    model = functools.cache(lambda: Lexical.load(fitted()))

    entries = {}
    for split in SPLITS:
        meta = {"modality": "text", "split": split, "text_kind": KIND, "encoder": {**cfg, "model": model_key},
                "texts": _digest(texts[split])}
        entries[split] = cached(cache_dir, meta, lambda dest, split=split, meta=meta: _store(
            dest, model(), texts[split], meta))
    return entries, fitted()  # a search maps free text by it


def refitted(ds: Recipe1M, encoder: dict, without, ids: list[str]) -> np.ndarray:
    """Features of recipes ``ids`` from a model fitted as ``encoder`` (an entry's settings) says, on the
    train and val recipes' texts except those of the recipes ``without``.

    A k-fold's held-out recipes must not shape the SVD they are ranked in: the stored model read
    their words whenever they are train recipes.
    """
    texts = {r.id: text(r, encoder["parts"]) for s in ("train", "val") for r in ds.split(s)}
    without = set(without)
    lex = Lexical.fit([t for rid, t in texts.items() if t and rid not in without], encoder["dims"], encoder["ngrams"])
    return lex.transform([texts[rid] for rid in ids])


def _store(dest: Path, lex: Lexical, items: list[tuple[str, str]], meta: dict) -> None:
    kept = [(rid, t) for rid, t in items if t]
    blocks = (lex.transform([t for _, t in kept[s:s + CHUNK]]) for s in range(0, len(kept), CHUNK))
    store(dest, blocks, pd.DataFrame({"recipe_id": [rid for rid, _ in kept], "image_id": ""}),
          [(rid, f"empty {' and '.join(meta['encoder']['parts'])}") for rid, t in items if not t],
          {**meta, "components": len(lex.components), "words": len(lex.words)},
          shape=(len(kept), len(lex.components)))
