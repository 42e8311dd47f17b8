"""Recipe1M layout: ``layer1.json`` (recipes), ``layer2.json`` (recipe -> images), nested image folders.

The loader keeps what it can use and records every entry it drops with a reason, so a run on a
real, imperfect download says what it skipped instead of crashing or silently shrinking.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import ijson
import pandas as pd

from cmr_utils.io import file_digest

SPLITS = ("train", "val", "test")
TEXT_KINDS = ("title", "ingredients", "instructions", "all")
UNSAFE_ID = "unsafe image id (path separator or '..')"
OUTSIDE = "image file links outside the data folder"

try:
    _ijson = ijson.get_backend("yajl2_c")
except ImportError:  # no compiled backend on this platform: ijson's default, slower but the same
    _ijson = ijson


@dataclass
class Recipe:
    id: str
    title: str
    ingredients: list[str]
    instructions: list[str]
    partition: str
    images: list[str] = field(default_factory=list)

    def text(self, kind: str) -> str:
        """The recipe's text of one kind; 'all' joins title, ingredients and instructions."""
        if kind == "title":
            return self.title
        if kind == "ingredients":
            return "\n".join(self.ingredients)
        if kind == "instructions":
            return "\n".join(self.instructions)
        if kind == "all":
            return "\n".join(p for p in (self.title, *self.ingredients, *self.instructions) if p)
        raise ValueError(f"unknown text kind {kind!r}; choose from {TEXT_KINDS}")


class Recipe1M:
    """A Recipe1M-layout folder: recipes with their image ids, and the entries that were dropped.

    ``skipped`` is a DataFrame (stage, id, reason) of entries of the wrong shape or without id,
    duplicate recipes, duplicate or orphan layer2 entries, recipes without images, and listed images
    whose id is not a plain file name, that are listed twice (each photo is one pair, with its first
    recipe), whose file is missing, or whose file is a link leading out of the data folder and out of
    the folder its split's ``images/<split>`` resolves to (split folders linked in from another disk
    are fine; a single photo linking elsewhere is not read); an entry without a usable id is
    named ``<entry N>`` (its index in the file). With ``ingredients="detected"``
    the ingredients text is Recipe1M's ``det_ingrs.json`` (the ingredient names it marks valid,
    e.g. "penne" for "1 pound penne pasta, cooked") instead of the raw lines. ``need_files``
    False keeps listed images without looking for their files (a synthetic corpus with given
    features has none).
    """

    def __init__(self, root: str | Path, ingredients: str = "raw", need_files: bool = True):
        self.root = Path(root)
        if ingredients not in ("raw", "detected"):
            raise ValueError(f"ingredients must be 'raw' or 'detected', got {ingredients!r}")
        self.ingredients = ingredients
        for name in ("layer1.json", "layer2.json"):
            if not (self.root / name).is_file():
                raise FileNotFoundError(
                    f"{self.root / name} not found. A Recipe1M folder holds layer1.json, layer2.json and "
                    "images/<partition>/a/b/c/d/<image id>; set data_dir to such a folder "
                    "(or leave it empty for the embedded demo corpus).")
        skipped: list[tuple[str, str, str]] = []
        self._inside, self._real_dirs = {}, {}  # split -> its allowed folders, resolved; folder -> resolved
        self.recipes: dict[str, Recipe] = {}
        for n, r in enumerate(iter_json_array(self.root / "layer1.json")):
            rid, why = _entry_problem(n, r, "recipe", title=str, ingredients=list, instructions=list)
            if not why and r.get("partition") not in SPLITS:
                why = f"unknown partition {r.get('partition')!r}"
            if not why and rid in self.recipes:
                why = "duplicate recipe id"
            if why:
                skipped.append(("layer1", rid, why))
                continue
            self.recipes[rid] = Recipe(
                id=rid, title=(r.get("title") or "").strip(),
                ingredients=[t for t in (_text(x) for x in r.get("ingredients") or []) if t],
                instructions=[t for t in (_text(x) for x in r.get("instructions") or []) if t],
                partition=r["partition"])
        listed, owner = set(), {}  # recipes with a layer2 entry; image id -> the recipe it pairs with
        for n, entry in enumerate(iter_json_array(self.root / "layer2.json")):
            rid, why = _entry_problem(n, entry, "layer2 entry", images=list)
            recipe = self.recipes.get(rid)
            if not why and recipe is None:
                why = "layer2 entry for a recipe not in layer1"
            if not why and rid in listed:
                why = "duplicate layer2 entry"
            if why:
                skipped.append(("layer2", rid, why))
                continue
            listed.add(rid)
            for im in entry.get("images") or []:
                image_id = im.get("id") if isinstance(im, dict) else None
                if not isinstance(image_id, str) or not image_id:
                    skipped.append(("layer2", rid, "image entry without an id"))
                elif _unsafe(image_id):
                    skipped.append(("image", image_id, UNSAFE_ID))
                elif image_id in owner:
                    skipped.append(("image", image_id, "image listed twice for its recipe" if owner[image_id] == rid
                                    else f"image already listed for recipe {owner[image_id]}"))
                elif not need_files:
                    recipe.images.append(image_id)
                    owner[image_id] = rid
                elif not self.image_path(recipe.partition, image_id).is_file():
                    skipped.append(("image", image_id, "image file missing"))
                elif self._leaves(recipe.partition, image_id):
                    skipped.append(("image", image_id, OUTSIDE))
                else:
                    recipe.images.append(image_id)
                    owner[image_id] = rid
        for r in self.recipes.values():
            if not r.images:
                skipped.append(("layer1", r.id, "recipe has no image"))
        if ingredients == "detected":
            self._use_detected(skipped)
        self.skipped = pd.DataFrame(skipped, columns=["stage", "id", "reason"])

    def _use_detected(self, skipped: list) -> None:
        path = self.root / "det_ingrs.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: ingredients='detected' needs Recipe1M's det_ingrs.json")
        seen = set()
        for n, entry in enumerate(iter_json_array(path)):
            rid, why = _entry_problem(n, entry, "det_ingrs entry", ingredients=list, valid=list)
            recipe = self.recipes.get(rid)
            if recipe is None:
                continue
            seen.add(rid)
            if why:
                skipped.append(("det_ingrs", rid, why))
                continue
            names = [_text(x) for x in entry.get("ingredients") or []]
            recipe.ingredients = [n for n, ok in zip(names, entry.get("valid") or []) if ok and n]
        skipped += [("det_ingrs", rid, "no detected ingredients entry") for rid in self.recipes if rid not in seen]

    def _leaves(self, partition: str, image_id: str) -> bool:
        """Whether the photo's file resolves outside the data root and outside its split's folder (resolved).

        Folders are resolved once each and a file only when it is a link: a few system calls per photo.
        """
        path = self.image_path(partition, image_id)
        if partition not in self._inside:
            self._inside[partition] = (os.path.realpath(self.root), os.path.realpath(self.root / "images" / partition))
        if path.parent not in self._real_dirs:
            self._real_dirs[path.parent] = os.path.realpath(path.parent)
        real = os.path.realpath(path) if path.is_symlink() else os.path.join(self._real_dirs[path.parent], image_id)
        return not any(real.startswith(folder + os.sep) for folder in self._inside[partition])

    def image_path(self, partition: str, image_id: str) -> Path:
        """root/images/<partition>/a/b/c/d/<image id>; ids come from the JSON, so one that is not a
        plain file name (and could name a file outside images/) is refused with ``ValueError``."""
        if partition not in SPLITS or not isinstance(image_id, str) or not image_id or _unsafe(image_id):
            raise ValueError(f"{UNSAFE_ID}: partition {partition!r}, image id {image_id!r}")
        return self.root / "images" / partition / Path(*image_id[:4]) / image_id

    def split(self, partition: str) -> list[Recipe]:
        """Recipes of one partition that have at least one image, in file order."""
        if partition not in SPLITS:
            raise ValueError(f"unknown split {partition!r}; choose from {SPLITS}")
        return [r for r in self.recipes.values() if r.partition == partition and r.images]

    def fingerprint(self) -> str:
        """Content hash of the two JSON files: part of every cache key built on this data."""
        digest = file_digest(self.root / "layer1.json") + file_digest(self.root / "layer2.json")
        return digest + ("-det" + file_digest(self.root / "det_ingrs.json") if self.ingredients == "detected" else "")

    def counts(self) -> pd.DataFrame:
        rows = [{"split": s, "recipes": len(rs), "images": sum(len(r.images) for r in rs)}
                for s in SPLITS for rs in [self.split(s)]]
        return pd.DataFrame(rows).set_index("split")


def _text(item) -> str:
    return str((item.get("text") if isinstance(item, dict) else item) or "").strip()


def _entry_problem(n: int, entry, what: str, **fields: type) -> tuple[str, str | None]:
    """(the entry's id, or ``<entry n>`` without one; why it cannot be used, or None).

    The JSON comes from a download, so any entry may have any shape; absent or null fields
    count as empty, as Recipe1M leaves them out.
    """
    if not isinstance(entry, dict):
        return f"<entry {n}>", f"{what} of the wrong shape: {type(entry).__name__}, expected an object"
    rid = entry.get("id")
    if not isinstance(rid, str) or not rid:
        return f"<entry {n}>", f"{what} without id"
    for name, kind in fields.items():
        value = entry.get(name)
        if value is not None and not isinstance(value, kind):
            expected = "a string" if kind is str else f"a {kind.__name__}"
            return rid, f"{what} of the wrong shape: {name} is {type(value).__name__}, expected {expected}"
    return rid, None


def _unsafe(image_id: str) -> bool:
    """Whether the id could step out of its folder: a separator, NUL, '.' or '..' (it is a path part)."""
    return image_id in (".", "..") or any(c in image_id for c in "/\\\0")


class JSONFormatError(ValueError):
    """A JSON file that is not one well-formed array; the message names the file and a byte offset."""


class _CountingReader:
    """Counts the bytes handed to the parser: ijson's errors say what is wrong but not where."""

    def __init__(self, f):
        self.f, self.pos = f, 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.pos += len(data)
        return data


def iter_json_array(path: str | Path, buf_size: int = 1 << 16) -> Iterator:
    """Yield the elements of a top-level JSON array one by one (ijson, C backend when present).

    Recipe1M's layer1.json is 1.3 GB; ``json.load`` would hold the text and every parsed object
    at once, while this holds one ``buf_size`` read plus the objects the caller keeps. A file that
    is not exactly one array (missing comma, trailing junk, truncated) raises ``JSONFormatError``
    near the offending byte: at most ``buf_size`` bytes before the offset it names.
    """
    with open(path, "rb") as f:
        first = f.read(1)
        while first.isspace():
            first = f.read(1)
        if first != b"[":
            raise JSONFormatError(f"{path}: expected a JSON array, found {first!r} near byte {f.tell() - len(first)}")
        f.seek(0)
        reader = _CountingReader(f)
        try:
            yield from _ijson.items(reader, "item", use_float=True, buf_size=buf_size)
        except ijson.JSONError as e:
            text = e.args[0] if e.args else type(e).__name__  # yajl's text, sometimes as bytes
            reason = (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).split("\n")[0]
            raise JSONFormatError(f"{path}: malformed JSON near byte {reader.pos} "
                                  f"(within the {buf_size} bytes before it): {reason}") from None
