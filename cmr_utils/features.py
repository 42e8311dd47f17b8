"""Feature store: encoder outputs cached on disk, keyed by everything that produced them.

An entry is a folder ``<cache>/features/<key>/`` holding ``X.npy`` (float32, memory-mappable),
``index.csv`` (recipe_id, image_id per row), ``skipped.csv`` (id, reason) and ``meta.json``.
Work is done in shards written atomically under ``<key>.parts/``, so an interrupted extraction
resumes from the last finished shard and the final entry appears in one rename.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .data import Recipe1M
from .io import atomic_dir, atomic_file, check_finite, key, locked

VERSION = 1  # bump when the layout or the meaning of stored features changes
SHARD_SIZE = 1024


@dataclass
class Features:
    X: np.ndarray
    index: pd.DataFrame  # recipe_id, image_id ('' for text)
    skipped: pd.DataFrame  # id, reason
    meta: dict

    @classmethod
    def load(cls, path: str | Path) -> "Features":
        path = Path(path)
        return cls(np.load(path / "X.npy", mmap_mode="r"),
                   pd.read_csv(path / "index.csv", dtype=str, keep_default_na=False),
                   pd.read_csv(path / "skipped.csv", dtype=str, keep_default_na=False),
                   json.loads((path / "meta.json").read_text()))


class ExtractionIncomplete(RuntimeError):
    """This job finished its shards of an entry; other jobs' shards are still missing."""


def text_features(ds: Recipe1M, split: str, kind: str, encoder, cache_dir: str | Path,
                  fingerprint: str, progress: bool = True, job: tuple[int, int] = (0, 1)) -> Path:
    """Encode one text kind of one split; recipes whose text of that kind is empty are skipped."""
    recipes = ds.split(split)
    meta = {"modality": "text", "split": split, "text_kind": kind, "encoder": encoder.config,
            "data": fingerprint, "version": VERSION}
    return cached(cache_dir, meta, lambda dest: _text_features(recipes, kind, encoder, dest, meta, progress, job), job)


def _text_features(recipes, kind, encoder, dest, meta, progress, job):
    texts = [(r.id, r.text(kind)) for r in recipes]
    items = [(rid, t) for rid, t in texts if t]
    skipped = [(rid, f"empty {kind}") for rid, t in texts if not t]
    X, _ = _sharded(dest, "text", items, lambda chunk: (encoder.encode([t for _, t in chunk], progress), {}),
                    encoder.dim, job)
    index = pd.DataFrame({"recipe_id": [rid for rid, _ in items], "image_id": ""})
    store(dest, X, index, skipped, meta)


def image_features(ds: Recipe1M, split: str, encoder, cache_dir: str | Path, fingerprint: str,
                   all_images: bool, progress: bool = True, job: tuple[int, int] = (0, 1)) -> Path:
    """Encode the images of one split: every image (``all_images``) or the first readable one per recipe.

    For the first-image protocol a recipe whose first image cannot be decoded falls back to its
    next image, round by round, so only images actually used are encoded.
    """
    recipes = ds.split(split)
    meta = {"modality": "image", "split": split, "all_images": all_images, "encoder": encoder.config,
            "data": fingerprint, "files": image_files_key(ds, split, recipes), "version": VERSION}
    return cached(cache_dir, meta,
                  lambda dest: _image_features(ds, split, recipes, encoder, dest, meta, all_images, progress, job), job)


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


def cached(cache_dir: str | Path, meta: dict, build: Callable[[Path], None], job: tuple[int, int] = (0, 1)) -> Path:
    """The entry keyed by ``meta``, built by ``build(dest)`` unless it exists.

    A finished entry is read without a lock, so a cache shared read-only serves it. One
    process at a time builds an entry; jobs that split its shards between them
    (``job[1] > 1``) must not wait on each other, so they take no lock.
    """
    dest = Path(cache_dir) / "features" / key(meta)
    if not (dest / "X.npy").exists():
        with locked(dest) if job[1] == 1 else contextlib.nullcontext():
            if not (dest / "X.npy").exists():
                build(dest)
    return dest


def _image_features(ds, split, recipes, encoder, dest, meta, all_images, progress, job):
    encode = lambda chunk: encoder.encode([ds.image_path(split, im) for _, im in chunk], progress)  # noqa: E731
    blocks, rows, skipped = [], [], []
    if all_images:
        items = [(r.id, im) for r in recipes for im in r.images]
        X, failed = _sharded(dest, "all", items, encode, encoder.dim, job)
        keep = [i for i in range(len(items)) if i not in failed]
        blocks.append(X[keep])
        rows += [items[i] for i in keep]
        skipped += [(items[i][1], reason) for i, reason in failed.items()]
    else:
        pending = recipes
        for round_ in range(max((len(r.images) for r in recipes), default=0)):
            items = [(r.id, r.images[round_]) for r in pending if round_ < len(r.images)]
            X, failed = _sharded(dest, f"round{round_}", items, encode, encoder.dim, job)
            keep = [i for i in range(len(items)) if i not in failed]
            blocks.append(X[keep])
            rows += [items[i] for i in keep]
            skipped += [(items[i][1], reason) for i, reason in failed.items()]
            done = {items[i][0] for i in keep}
            pending = [r for r in pending if r.id not in done and round_ + 1 < len(r.images)]
        found = {rid for rid, _ in rows}
        skipped += [(r.id, "no readable image") for r in recipes if r.id not in found]
    # keep file order of recipes so the result does not depend on which round found an image
    order = {r.id: i for i, r in enumerate(recipes)}
    X = np.concatenate(blocks) if blocks else np.zeros((0, encoder.dim), np.float32)
    perm = sorted(range(len(rows)), key=lambda i: (order[rows[i][0]], i))
    index = pd.DataFrame([rows[i] for i in perm], columns=["recipe_id", "image_id"])
    store(dest, X[perm], index, skipped, meta)


def paired(image: Features, text: Features, recipes=None) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Row-aligned (image features, text features, index) for images whose recipe has text features.

    ``recipes`` (recipe ids), when given, keeps only those recipes' pairs.
    """
    text_row = {rid: i for i, rid in enumerate(text.index["recipe_id"])}
    if recipes is not None:
        keep = set(recipes)
        text_row = {rid: i for rid, i in text_row.items() if rid in keep}
    rows = [(i, text_row[rid]) for i, rid in enumerate(image.index["recipe_id"]) if rid in text_row]
    ii = np.array([a for a, _ in rows], dtype=np.int64)
    tt = np.array([b for _, b in rows], dtype=np.int64)
    return np.asarray(image.X[ii]), np.asarray(text.X[tt]), image.index.iloc[ii].reset_index(drop=True)


def concat(parts: list[Features]) -> Features:
    """Text features of several kinds side by side, for the recipes that have all of them."""
    rows = [dict(zip(f.index.recipe_id, range(len(f.index)))) for f in parts]
    ids = [rid for rid in parts[0].index.recipe_id if all(rid in r for r in rows)]
    X = np.hstack([np.asarray(f.X)[[r[rid] for rid in ids]] for f, r in zip(parts, rows)])
    skipped = pd.concat([f.skipped for f in parts], ignore_index=True).drop_duplicates("id")
    return Features(X, pd.DataFrame({"recipe_id": ids, "image_id": ""}), skipped,
                    {"modality": "text", "text_kind": "concat", "parts": [f.meta for f in parts]})


def _sharded(dest: Path, tag: str, items: list, encode: Callable, dim: int,
             job: tuple[int, int] = (0, 1)) -> tuple[np.ndarray, dict[int, str]]:
    """Run ``encode`` over ``items`` shard by shard, reusing shards an earlier run finished.

    ``job = (i, n)`` encodes only shards s with s % n == i; the result is returned once every
    shard exists (whichever job comes last merges), else ExtractionIncomplete is raised.
    """
    parts = dest.with_name(dest.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    shard, num_shards = job
    starts = list(range(0, len(items), SHARD_SIZE))
    for s, start in enumerate(starts):
        f = parts / f"{tag}-{s:05d}.npz"
        chunk = items[start:start + SHARD_SIZE]
        if s % num_shards == shard and not _shard_of(f, chunk):
            X, bad = encode(chunk)
            good = np.setdiff1d(np.arange(len(chunk)), list(bad))
            check_finite(X[good], f"features of {dest.name} ({tag})", [chunk[i] for i in good])
            with atomic_file(f) as tmp:
                np.savez(tmp, X=X, bad_idx=np.array(list(bad), dtype=np.int64),
                         bad_reason=np.array(list(bad.values()), dtype=str), items=key(chunk))
    missing = [s for s, start in enumerate(starts)
               if not _shard_of(parts / f"{tag}-{s:05d}.npz", items[start:start + SHARD_SIZE])]
    if missing:
        raise ExtractionIncomplete(
            f"job {shard} of {num_shards} finished its shards of {dest.name} ({tag}); {len(missing)} of "
            f"{len(starts)} shards are other jobs' and not done yet. Run the remaining jobs; the last one "
            "merges (or rerun with num_shards=1 once they are done).")
    blocks, failed = [], {}
    for s, start in enumerate(starts):
        f = parts / f"{tag}-{s:05d}.npz"
        with np.load(f) as z:
            blocks.append(z["X"])
            failed.update({start + int(i): str(r) for i, r in zip(z["bad_idx"], z["bad_reason"])})
    X = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
    return X, failed


def _shard_of(path: Path, chunk: list) -> bool:
    """Whether ``path`` is a finished shard computed for exactly these items (a resumed run may list others)."""
    if not path.exists():
        return False
    with np.load(path) as z:
        return "items" in z and str(z["items"]) == key(chunk)


def store(dest: Path, X: np.ndarray, index: pd.DataFrame, skipped: list, meta: dict) -> None:
    with atomic_dir(dest) as tmp:
        np.save(tmp / "X.npy", np.ascontiguousarray(X, dtype=np.float32))
        index.to_csv(tmp / "index.csv", index=False)
        pd.DataFrame(skipped, columns=["id", "reason"]).to_csv(tmp / "skipped.csv", index=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    shutil.rmtree(dest.with_name(dest.name + ".parts"), ignore_errors=True)
