"""Given features: pre-computed embeddings a user brings, imported into the feature store.

A folder holds one file per modality and split, ``image_<split>.<ext>`` and
``text_<kind>_<split>.<ext>``, each with ids and a 2-D array of vectors:

- ``.npz``: arrays ``ids`` and ``X`` (or ``features`` / ``embeddings``);
- ``.npy``: the vectors, with the ids in ``<name>.ids.txt`` beside it, one per line;
- ``.pkl`` / ``.pickle``: ``{"ids": ..., "X": ...}`` or ``{id: vector}``, read only with
  ``allow_pickle`` (the run's ``given_allow_pickle: true``): unpickling runs whatever code the file
  holds, before any check, so only a file from a source you trust may be one;
- ``.h5`` / ``.hdf5``: datasets ``ids`` and ``X`` (or ``features`` / ``embeddings``).

Text ids are recipe ids. Image ids are image ids, or recipe ids for one vector per recipe
(as im2recipe's released embeddings are). Every recipe of the split must be covered: missing
ids stop the import with their number and the first of them, never a silent shrink.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from cmr_utils.data.recipe1m import Recipe1M
from cmr_utils.features.store import VERSION, cached, store
from cmr_utils.io import NpyRows, check_finite, file_digest
from cmr_utils.progress import bar

EXTENSIONS = (".npz", ".npy", ".pkl", ".pickle", ".h5", ".hdf5")
ARRAY_NAMES = ("X", "features", "embeddings")


PICKLE_REFUSED = ("a pickle file runs whatever code it holds when it is read, so it is not read by default: "
                  "convert it to .npz (arrays 'ids' and 'X'), or, if you trust where it came from, "
                  "set given_allow_pickle: true (or --set given_allow_pickle=true)")


def read(path: str | Path, allow_pickle: bool = False) -> tuple[list[str], np.ndarray | NpyRows]:
    """(ids, vectors) from a file in any supported format; errors name the file and the problem.

    A ``.npy`` file is not loaded: its rows are read when indexed (``io.NpyRows``), so a file
    larger than memory imports block by block, each block checked for non-finite values. A pickle
    is refused unless ``allow_pickle`` (see the module's note).
    """
    path = Path(path)
    if path.suffix.lower() in (".pkl", ".pickle") and not allow_pickle:
        raise ValueError(f"{path}: {PICKLE_REFUSED}")
    try:
        return _read(path)
    except (ValueError, TypeError, KeyError, OSError) as e:  # numpy's and h5py's messages name no file
        raise (e if str(path) in str(e) else ValueError(f"{path}: {type(e).__name__}: {e}")) from None


def _read(path: Path) -> tuple[list[str], np.ndarray | NpyRows]:
    ext = path.suffix.lower()
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            ids, X = z["ids"] if "ids" in z else None, _pick(z, list(z.keys()), path)
    elif ext == ".npy":
        try:
            X = NpyRows(path, np.float32)
        except ValueError:  # Fortran-ordered or not 2-D: read whole (the shape is checked below)
            X = np.load(path, allow_pickle=False)
        side = path.with_suffix(".ids.txt")
        if not side.exists():
            raise ValueError(f"{path}: a .npy file needs its ids in {side.name}, one per line")
        ids = side.read_text().split()
    elif ext in (".pkl", ".pickle"):
        with open(path, "rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")
        if "ids" in obj:
            ids, X = obj["ids"], _pick(obj, list(obj), path)
        else:
            ids, X = list(obj), np.stack([np.asarray(v) for v in obj.values()]) if obj else np.zeros((0, 0))
    elif ext in (".h5", ".hdf5"):
        import h5py
        with h5py.File(path, "r") as f:
            ids = f["ids"][()] if "ids" in f else None
            X = _pick(f, list(f.keys()), path)[()]
    else:
        raise ValueError(f"{path}: unsupported format; use one of {', '.join(EXTENSIONS)}")
    if ids is None:
        raise ValueError(f"{path}: no 'ids' array: given features need the recipe or image id of each row")
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in np.asarray(ids).ravel()]
    if not isinstance(X, NpyRows):
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 2:
            check_finite(X, str(path), ids)
    if len(X.shape) != 2 or len(X) != len(ids):
        raise ValueError(f"{path}: expected a 2-D array with one row per id, got shape {X.shape} for {len(ids)} ids")
    dup = pd.Series(ids)[pd.Series(ids).duplicated()].unique()
    if len(dup):
        raise ValueError(f"{path}: {len(dup)} ids appear more than once, e.g. {list(dup[:5])}")
    return ids, X


def _pick(container, names: list[str], path: Path):
    for name in ARRAY_NAMES:
        if name in names:
            return container[name]
    raise ValueError(f"{path}: no array named {' / '.join(ARRAY_NAMES)} (found {names})")


def find(folder: str | Path, stem: str) -> Path:
    """The file ``<stem>.<ext>`` in ``folder`` (exactly one supported extension)."""
    found = [Path(folder) / f"{stem}{ext}" for ext in EXTENSIONS if (Path(folder) / f"{stem}{ext}").exists()]
    if len(found) != 1:
        raise FileNotFoundError(f"given features: expected one file {stem}.<{'|'.join(e[1:] for e in EXTENSIONS)}> "
                                f"in {folder}, found {len(found)}")
    return found[0]


def import_features(ds: Recipe1M, split: str, path: str | Path, cache_dir: str | Path, fingerprint: str,
                    modality: str, kind: str | None = None, all_images: bool = False, progress: bool = True,
                    allow_pickle: bool = False) -> Path:
    """Store given vectors as a feature entry aligned to the loader's recipes (and images) of ``split``."""
    path = Path(path)
    ids_file = path.with_suffix(".ids.txt")  # a .npy file's ids: reordering them changes the entry
    digest = file_digest(path) + (file_digest(ids_file) if path.suffix.lower() == ".npy" and ids_file.exists() else "")
    meta = {"modality": modality, "split": split, "text_kind": kind, "all_images": all_images,
            "encoder": {"name": "given", "file": path.name, "digest": digest},
            "data": fingerprint, "version": VERSION}

    def build(dest: Path) -> None:
        ids, X = read(path, allow_pickle)
        row = {i: n for n, i in enumerate(ids)}
        recipes = ds.split(split)
        by_recipe = modality == "text" or any(r.id in row for r in recipes)
        if by_recipe:
            wanted = [(r.id, "" if modality == "text" else r.images[0], r.id) for r in recipes]
        else:
            wanted = [(r.id, im, im) for r in recipes for im in (r.images if all_images else r.images[:1])]
        missing = [w for _, _, w in wanted if w not in row]
        if missing:
            what = "recipe" if by_recipe else "image"
            raise ValueError(
                f"{path}: {len(missing)} of {len(wanted)} {split} {what} ids have no vector, e.g. {missing[:10]} "
                f"({len(ids) - (len(wanted) - len(missing))} ids in the file are not in this split)")
        index = pd.DataFrame([(rid, im) for rid, im, _ in wanted], columns=["recipe_id", "image_id"])
        rows = np.array([row[w] for _, _, w in wanted], dtype=np.int64)
        store(dest, _checked_blocks(X, rows, ids, path, progress), index, [], meta, shape=(len(rows), X.shape[1]))

    return cached(cache_dir, meta, build)


def check_widths(entries: dict[str, dict[str, str]]) -> None:
    """Stop when one modality's (or text kind's) given vectors differ in dimension between splits, naming
    the files: a space fitted on train could not take val's or test's vectors.

    ``entries`` maps what the vectors are (``image``, ``text title``, ...) to {split: feature entry}.
    """
    for what, by_split in entries.items():
        widths = {json.loads((Path(e) / "meta.json").read_text())["encoder"]["file"]: NpyRows(Path(e) / "X.npy").shape[1]
                  for e in by_split.values()}
        if len(set(widths.values())) > 1:
            raise ValueError(f"given {what} features differ in dimension between splits: "
                             + ", ".join(f"{f} has {w} columns" for f, w in widths.items())
                             + "; every split's vectors must come from the same encoder")


def _checked_blocks(X, rows: np.ndarray, ids: list[str], path: Path, progress: bool, size: int = 16384):
    """X[rows] in float32 blocks, each checked for NaN or infinite values (naming the file and ids)."""
    for s in bar(range(0, len(rows), size), desc=f"import {path.name}", disable=not progress or len(rows) <= size):
        block = np.asarray(X[rows[s:s + size]], dtype=np.float32)
        check_finite(block, str(path), [ids[i] for i in rows[s:s + size]])
        yield block
