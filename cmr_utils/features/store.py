"""Feature store: encoder outputs cached on disk, keyed by everything that produced them.

An entry is a folder ``<cache>/features/<key>/`` holding ``X.npy`` (float32, memory-mappable),
``index.csv`` (recipe_id, image_id per row), ``skipped.csv`` (id, reason) and ``meta.json``.
Work is done in shards written atomically under ``<key>.parts/``, each an independent task (on a
Dask cluster's workers when there is one), so an interrupted extraction resumes from its finished
shards; the process that holds the entry's lock merges them, once, and the final entry appears in
one rename.
"""
from __future__ import annotations

import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cmr_utils import cluster
from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.io import NpyRows, atomic_dir, atomic_file, built, check_finite, key, write_npy

VERSION = 1  # bump when the layout or the meaning of stored features changes
SHARD_SIZE = 1024


@dataclass
class Features:
    X: np.ndarray  # or Rows
    index: pd.DataFrame  # recipe_id, image_id ('' for text)
    skipped: pd.DataFrame  # id, reason
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> "Features":
        """An entry whose vectors are read only when indexed (``Rows``): entries may be far larger than memory."""
        path = Path(path)
        return cls(Rows([NpyRows(path / "X.npy")]),
                   pd.read_csv(path / "index.csv", dtype=str, keep_default_na=False),
                   pd.read_csv(path / "skipped.csv", dtype=str, keep_default_na=False),
                   json.loads((path / "meta.json").read_text()))


class Rows:
    """Chosen rows of one or more 2-D sources side by side (a text kind's parts for ``concat``), read when indexed.

    ``rows[i]``, ``rows[a:b]`` or ``rows[index array]`` reads just those rows into an array;
    ``take`` narrows the view without reading. Sources are ``io.NpyRows`` (plain reads, nothing
    memory-mapped) or arrays, and a view pickles as their paths and its row numbers, packed:
    pairs' rows (ascending, repeated for a recipe's photos) travel to a Dask worker in about
    3 % of their 8 bytes a row, so a task's graph stays small at Recipe1M's size.
    """

    def __init__(self, sources: list, rows: list[np.ndarray] | None = None):
        self.sources = list(sources)
        self.rows = [np.arange(len(s)) for s in self.sources] if rows is None else [np.asarray(r) for r in rows]
        self.shape = (len(self.rows[0]), sum(s.shape[1] for s in self.sources))
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, idx) -> "Rows":
        return Rows(self.sources, [r[idx] for r in self.rows])

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, (int, np.integer)):
            return self[[idx]][0]
        parts = [np.asarray(s[r[idx]], np.float32) for s, r in zip(self.sources, self.rows)]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:].astype(dtype or self.dtype, copy=False)

    def __reduce__(self):
        return _unpacked, (self.sources, [_packed(r) for r in self.rows])


def _packed(rows: np.ndarray) -> tuple[bytes, str]:
    """Row numbers as their steps in the narrowest integer type that holds them, compressed."""
    steps = np.diff(np.asarray(rows, np.int64), prepend=0)
    lo, hi = (int(steps.min()), int(steps.max())) if len(steps) else (0, 0)
    kind = next(t for t in (np.int8, np.int16, np.int32, np.int64)
                if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
    return zlib.compress(steps.astype(kind).tobytes()), np.dtype(kind).str


def _unpacked(sources: list, packed: list[tuple[bytes, str]]) -> Rows:
    return Rows(sources, [np.cumsum(np.frombuffer(zlib.decompress(b), kind), dtype=np.int64) for b, kind in packed])


def text_features(ds: Recipe1M, split: str, kind: str, encoder, cache_dir: str | Path,
                  fingerprint: str, progress: bool = True, client=None) -> Path:
    """Encode one text kind of one split; recipes whose text of that kind is empty are skipped."""
    recipes = ds.split(split)
    meta = {"modality": "text", "split": split, "text_kind": kind, "encoder": encoder.config,
            "data": fingerprint, "version": VERSION}
    return cached(cache_dir, meta, lambda dest: _text_features(recipes, kind, encoder, dest, meta, progress, client))


def _text_features(recipes, kind, encoder, dest, meta, progress, client):
    texts = [(r.id, r.text(kind)) for r in recipes]
    items = [(rid, t) for rid, t in texts if t]
    skipped = [(rid, f"empty {kind}") for rid, t in texts if not t]
    files, _ = _sharded(dest, "text", items, [t for _, t in items], encoder, client, progress,
                        f"{meta['split']} {kind}")
    index = pd.DataFrame({"recipe_id": [rid for rid, _ in items], "image_id": ""})
    store(dest, _blocks(files, {}), index, skipped, meta, shape=(len(items), _width(files, encoder)))


def image_features(ds: Recipe1M, split: str, encoder, cache_dir: str | Path, fingerprint: str,
                   all_images: bool, progress: bool = True, client=None) -> Path:
    """Encode the images of one split: every image (``all_images``) or the first readable one per recipe.

    For the first-image protocol a recipe whose first image cannot be decoded falls back to its
    next image, round by round, so only images actually used are encoded.
    """
    recipes = ds.split(split)
    meta = {"modality": "image", "split": split, "all_images": all_images, "encoder": encoder.config,
            "data": fingerprint, "files": image_files_key(ds, split, recipes), "version": VERSION}
    return cached(cache_dir, meta,
                  lambda dest: _image_features(ds, split, recipes, encoder, dest, meta, all_images, progress, client))


def image_files_key(ds: Recipe1M, split: str, recipes) -> str:
    """A key of the split's image files (name, size, mtime): a photo added, removed or replaced changes it.

    The data fingerprint hashes only the JSON files; stat calls are cheap next to encoding.
    """
    stats = []
    for r in recipes:
        for im in r.images:
            try:
                st = os.stat(ds.image_path(split, im))
                stats.append((im, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append((im, None, None))
    return key(stats)


def cached(cache_dir: str | Path, meta: dict, build: Callable[[Path], None]) -> Path:
    """The entry keyed by ``meta``, built by ``build(dest)`` unless it exists.

    A finished entry is read without a lock, so a cache shared read-only serves it. One
    process at a time builds an entry (and merges its shards); a second waits and reads it.
    """
    dest = Path(cache_dir) / "features" / key(meta)
    return built(dest, build, done=dest / "X.npy")


def _image_features(ds, split, recipes, encoder, dest, meta, all_images, progress, client):
    def encode(tag, items):
        return _sharded(dest, tag, items, [ds.image_path(split, im) for _, im in items], encoder, client,
                        progress, f"{split} images ({tag})")

    if all_images:  # already in recipe order: streamed from the shards into the entry, never held whole
        items = [(r.id, im) for r in recipes for im in r.images]
        files, failed = encode("all", items)
        index = pd.DataFrame([it for i, it in enumerate(items) if i not in failed], columns=["recipe_id", "image_id"])
        skipped = [(items[i][1], reason) for i, reason in failed.items()]
        store(dest, _blocks(files, failed), index, skipped, meta, shape=(len(index), _width(files, encoder)))
        return
    blocks, rows, skipped, pending = [], [], [], recipes
    for round_ in range(max((len(r.images) for r in recipes), default=0)):
        items = [(r.id, r.images[round_]) for r in pending if round_ < len(r.images)]
        files, failed = encode(f"round{round_}", items)
        blocks += list(_blocks(files, failed))
        rows += [it for i, it in enumerate(items) if i not in failed]
        skipped += [(items[i][1], reason) for i, reason in failed.items()]
        done = {rid for i, (rid, _) in enumerate(items) if i not in failed}
        pending = [r for r in pending if r.id not in done and round_ + 1 < len(r.images)]
    found = {rid for rid, _ in rows}
    skipped += [(r.id, "no readable image") for r in recipes if r.id not in found]
    # keep file order of recipes so the result does not depend on which round found an image
    order = {r.id: i for i, r in enumerate(recipes)}
    X = np.concatenate(blocks) if blocks else np.zeros((0, encoder.dim), np.float32)
    perm = sorted(range(len(rows)), key=lambda i: (order[rows[i][0]], i))
    index = pd.DataFrame([rows[i] for i in perm], columns=["recipe_id", "image_id"])
    store(dest, X[perm], index, skipped, meta)


def paired(image: Features, text: Features, recipes=None) -> tuple[Rows, Rows, pd.DataFrame]:
    """Row-aligned (image features, text features, index) for images whose recipe has text features.

    ``recipes`` (recipe ids), when given, keeps only those recipes' pairs. The features are
    ``Rows`` views: nothing is read until they are indexed.
    """
    text_row = {rid: i for i, rid in enumerate(text.index["recipe_id"])}
    if recipes is not None:
        keep = set(recipes)
        text_row = {rid: i for rid, i in text_row.items() if rid in keep}
    rows = [(i, text_row[rid]) for i, rid in enumerate(image.index["recipe_id"]) if rid in text_row]
    ii = np.array([a for a, _ in rows], dtype=np.int64)
    tt = np.array([b for _, b in rows], dtype=np.int64)
    return image.X.take(ii), text.X.take(tt), image.index.iloc[ii].reset_index(drop=True)


def concat(parts: list[Features]) -> Features:
    """Text features of several kinds side by side, for the recipes that have all of them (a view: nothing is read)."""
    rows = [dict(zip(f.index.recipe_id, range(len(f.index)))) for f in parts]
    ids = [rid for rid in parts[0].index.recipe_id if all(rid in r for r in rows)]
    X = Rows([s for f in parts for s in f.X.sources],
             [f.X.rows[0][[r[rid] for rid in ids]] for f, r in zip(parts, rows)])
    skipped = pd.concat([f.skipped for f in parts], ignore_index=True).drop_duplicates("id")
    return Features(X, pd.DataFrame({"recipe_id": ids, "image_id": ""}), skipped,
                    {"modality": "text", "text_kind": "concat", "parts": [f.meta for f in parts]})


def _sharded(dest: Path, tag: str, items: list, inputs: list, encoder, client=None, progress: bool = True,
             desc: str = "") -> tuple[list[Path], dict[int, str]]:
    """Encode ``inputs`` (texts or image paths; ``items`` name them) shard by shard, each a task.

    Shards an earlier run finished for exactly these items are reused; the rest run in this
    process or, with a Dask ``client``, on the cluster's workers (the encoder travels as its
    arguments and each worker loads it once). Returns (the shard files in order, {item index:
    reason it failed}).
    """
    parts = dest.with_name(dest.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    for tmp in parts.glob(".*.npz"):  # shards a killed writer left half-written (the entry's lock is ours)
        tmp.unlink(missing_ok=True)
    shards = [(parts / f"{tag}-{s // SHARD_SIZE:05d}.npz", items[s:s + SHARD_SIZE],
               inputs[s:s + SHARD_SIZE]) for s in range(0, len(items), SHARD_SIZE)]
    todo = [(str(f), chunk, x, encoder) for f, chunk, x in shards if not _shard_of(f, chunk)]
    cluster.run(_encode_shard, todo, client, f"{desc} · {encoder.config['name']}", [len(t[1]) for t in todo], progress)
    failed = {}
    for s, (f, _, _) in enumerate(shards):
        with np.load(f) as z:
            failed.update({s * SHARD_SIZE + int(i): str(r) for i, r in zip(z["bad_idx"], z["bad_reason"])})
    return [f for f, _, _ in shards], failed


def _width(files: list[Path], encoder) -> int:
    """The features' dimension, as the shards hold them (the encoder's when there is none)."""
    if not files:
        return encoder.dim
    with np.load(files[0]) as z:
        return z["X"].shape[1]


def _blocks(files: list[Path], failed: dict[int, str]):
    """The shards' features in order, one shard at a time, without the items that failed."""
    for s, f in enumerate(files):
        with np.load(f) as z:
            X = z["X"]
        yield X[[i for i in range(len(X)) if s * SHARD_SIZE + i not in failed]]


def _encode_shard(path: str, items: list, inputs: list, encoder) -> None:
    """One shard's features, checked finite and written atomically: a task that may run anywhere, any number of times."""
    out = encoder.encode(inputs, progress=cluster.advance)
    X, bad = out if isinstance(out, tuple) else (out, {})
    good = np.setdiff1d(np.arange(len(items)), list(bad))
    check_finite(X[good], f"features of {Path(path).parent.name} ({Path(path).stem})", [items[i] for i in good])
    with atomic_file(path) as tmp:
        np.savez(tmp, X=X, bad_idx=np.array(list(bad), dtype=np.int64),
                 bad_reason=np.array(list(bad.values()), dtype=str), items=key(items))


def _shard_of(path: Path, chunk: list) -> bool:
    """Whether ``path`` is a finished shard computed for exactly these items (a resumed run may list others)."""
    if not path.exists():
        return False
    with np.load(path) as z:
        return "items" in z and str(z["items"]) == key(chunk)


def store(dest: Path, X, index: pd.DataFrame, skipped: list, meta: dict, shape: tuple | None = None) -> None:
    """Write an entry; ``X`` is an array, or row blocks of a ``shape`` too large to hold at once."""
    with atomic_dir(dest) as tmp:
        if shape is None:
            np.save(tmp / "X.npy", np.ascontiguousarray(X, dtype=np.float32))
        else:
            write_npy(tmp / "X.npy", shape, X)
        index.to_csv(tmp / "index.csv", index=False)
        pd.DataFrame(skipped, columns=["id", "reason"]).to_csv(tmp / "skipped.csv", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    shutil.rmtree(dest.with_name(dest.name + ".parts"), ignore_errors=True)
